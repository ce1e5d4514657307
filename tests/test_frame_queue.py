"""FrameQueue: bounded queue, drop-oldest vs. blocking modes, errors, end of stream and shutdown."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.frame_queue import FrameQueue
from sensors.rgbd_folder import RgbdFolderWriter
from sensors.source import Source, SourceInfo, open_source

W, H = 32, 24


def tiny_frame(index: int, host_time: float = 0.0) -> Frame:
    return Frame(
        color=np.full((H, W, 3), index % 256, np.uint8),
        depth_raw=np.full((H, W), 1000 + index, np.uint16),
        depth_scale=0.001,
        timestamp=index / 30.0,
        index=index,
        intrinsics=Intrinsics.default_for(W, H),
        host_time=host_time,
    )


class FakeSource(Source):
    """n frames (None: endless); raises at `fail_at`; each read takes `delay` s."""

    def __init__(self, n: int | None = 20, fail_at: int | None = None, delay: float = 0.0, fps: float = 30.0,
                 host_time_offset: float | None = None) -> None:
        super().__init__()
        self.n, self.fail_at, self.delay, self.fps = n, fail_at, delay, fps
        self.host_time_offset = host_time_offset
        self.next = 0
        self.closed = threading.Event()
        self.reader_threads: set[str] = set()

    def _open(self) -> SourceInfo:
        return SourceInfo(name="fake", width=W, height=H, fps=self.fps, live=False, frame_count=self.n)

    def _read(self) -> Frame | None:
        self.reader_threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_at is not None and self.next == self.fail_at:
            raise UserError("The camera was unplugged.")
        if self.n is not None and self.next >= self.n:
            return None
        host = 0.0 if self.host_time_offset is None else time.monotonic() - self.host_time_offset
        frame = tiny_frame(self.next, host)
        self.next += 1
        return frame

    def _close(self) -> None:
        self.closed.set()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_every_mode_blocks_the_reader_and_loses_nothing():
    source = FakeSource(n=20)
    with FrameQueue(source, maxsize=2, mode="every") as queue:
        wait_until(lambda: queue.stats().received >= 3)
        time.sleep(0.1)  # give a (buggy) non-blocking reader the chance to run ahead
        stats = queue.stats()
        assert stats.received <= 2 + 1  # two queued, one waiting in the reader's hand
        assert queue.qsize() <= 2 and stats.running
        indices = []
        while (frame := queue.get(timeout=10)) is not None:
            assert queue.qsize() <= 2
            indices.append(frame.index)
            time.sleep(0.002)  # slow consumer
        stats = queue.stats()
    assert indices == list(range(20))
    assert (stats.received, stats.delivered, stats.dropped) == (20, 20, 0)
    assert source.closed.is_set()


def test_latest_mode_drops_the_oldest_frames_and_counts_them():
    queue = FrameQueue(FakeSource(n=20), maxsize=2, mode="latest")
    with queue:
        wait_until(lambda: not queue.stats().running)  # consumer has not read anything yet
        assert queue.qsize() == 2
        assert [f.index for f in queue] == [18, 19]
        stats = queue.stats()
    assert (stats.received, stats.delivered, stats.dropped) == (20, 2, 18)


def test_latest_mode_under_a_slow_consumer_stays_bounded():
    with FrameQueue(FakeSource(n=60, delay=0.001), maxsize=3, mode="latest") as queue:
        indices = []
        for frame in queue:
            assert queue.qsize() <= 3
            indices.append(frame.index)
            time.sleep(0.01)
        stats = queue.stats()
    assert indices == sorted(indices) and indices[-1] == 59
    assert stats.received == 60 and stats.delivered == len(indices)
    assert stats.dropped == 60 - len(indices) > 0


@pytest.mark.parametrize("mode", ["latest", "every"])
def test_close_stops_a_blocked_reader_while_the_consumer_is_away(mode):
    source = FakeSource(n=None, delay=0.2)  # endless, each read blocks briefly
    queue = FrameQueue(source, maxsize=1, mode=mode)
    queue.start()
    wait_until(lambda: queue.stats().received >= 2)  # queue full; the reader is blocked or reading
    queue.close()
    assert not queue.stats().running
    assert source.closed.is_set()
    assert queue.get(timeout=0) is None


def test_source_error_arrives_after_the_frames_before_it():
    source = FakeSource(n=10, fail_at=3)
    with FrameQueue(source, maxsize=2, mode="every") as queue:
        got = [queue.get(timeout=10).index for _ in range(3)]
        with pytest.raises(UserError, match="unplugged"):
            queue.get(timeout=10)
        assert queue.get(timeout=10) is None
        stats = queue.stats()
    assert got == [0, 1, 2]
    assert "unplugged" in stats.error and not stats.running
    assert source.closed.is_set() and source.reader_threads == {"FrameQueue-reader"}


def test_end_of_stream_gives_none_and_latency_is_measured():
    with FrameQueue(FakeSource(n=3, host_time_offset=0.5), mode="every") as queue:
        frames = list(queue)
        assert queue.get(timeout=1) is None
        stats = queue.stats()
    assert [f.index for f in frames] == [0, 1, 2]
    # the source set host_time 0.5 s in the past: the queue keeps it and measures from it
    assert stats.latency_ms_last >= 500 and stats.latency_ms_median >= 500


def test_queue_stamps_host_time_when_the_source_does_not():
    before = time.monotonic()
    with FrameQueue(FakeSource(n=2), mode="every") as queue:
        frame = queue.get(timeout=10)
        assert queue.stats().latency_ms_last is not None
    assert before <= frame.host_time <= time.monotonic()


def test_get_times_out_when_no_frame_comes():
    with FrameQueue(FakeSource(n=None, delay=0.5)) as queue:
        with pytest.raises(TimeoutError):
            queue.get(timeout=0.01)


def test_pace_releases_frames_at_the_recording_fps():
    fps = 40.0
    with FrameQueue(FakeSource(n=5, fps=fps), maxsize=8, mode="every", pace=True) as queue:
        frames = list(queue)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[-1].host_time - frames[0].host_time >= 0.9 * 4 / fps  # a lower bound: sleeps never end early


def test_ctrl_c_in_the_consumer_stops_the_reader():
    source = FakeSource(n=None)
    with pytest.raises(KeyboardInterrupt):
        with FrameQueue(source, mode="every") as queue:
            queue.get(timeout=10)
            raise KeyboardInterrupt
    assert not queue.stats().running and source.closed.is_set()


def test_open_errors_raise_in_the_caller_and_bad_arguments():
    class Broken(FakeSource):
        def _open(self):
            raise UserError("No camera is connected.")

    with pytest.raises(UserError, match="No camera"):
        with FrameQueue(Broken()):
            pass
    with pytest.raises(ValueError):
        FrameQueue(FakeSource(), mode="newest")


def test_queue_over_a_recorded_folder(tmp_path):
    with RgbdFolderWriter(tmp_path / "rec", W, H) as writer:
        for i in range(5):
            writer.write(tiny_frame(i))
    with FrameQueue(open_source(str(tmp_path / "rec")), maxsize=2, mode="every") as queue:
        frames = list(queue)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(frames[3].depth_raw, tiny_frame(3).depth_raw)


def test_live_preview_queue_leaves_ground_truth_alpha_unread(tmp_path):
    """`open_frame_queue` (the app's reader) never decodes a recording's alpha/ files: a preview does not
    show them, and a damaged one must not stop playback. A plain source still reads them."""
    from dataclasses import replace

    from sensors.frame_queue import open_frame_queue

    with RgbdFolderWriter(tmp_path / "rec", W, H) as writer:
        for i in range(3):
            writer.write(replace(tiny_frame(i), alpha=np.full((H, W), 0.5, np.float32)))
    (tmp_path / "rec" / "alpha" / "000001.png").write_bytes(b"not a png")
    queue, _ = open_frame_queue(str(tmp_path / "rec"), pace_recordings=False)
    with queue:
        frames = list(queue)
    assert [f.index for f in frames] == [0, 1, 2] and all(f.alpha is None for f in frames)
    with open_source(str(tmp_path / "rec")) as source:
        assert source.read().alpha is not None


def test_skipped_frames_of_an_image_recording_are_not_decoded(tmp_path, monkeypatch):
    """A looping preview skips the recording's empty-scene frames every time round: a folder recording
    moves past them without decoding (damaged files there do not matter); the rest arrive in order."""
    with RgbdFolderWriter(tmp_path / "rec", W, H) as writer:
        for i in range(6):
            writer.write(tiny_frame(i))
    for i in (0, 1, 2):
        (tmp_path / "rec" / "color" / f"{i:06d}.png").write_bytes(b"damaged")
    with FrameQueue(open_source(str(tmp_path / "rec")), maxsize=8, mode="every", skip_below=3) as queue:
        assert [f.index for f in queue] == [3, 4, 5]


def test_frames_queued_before_skip_below_is_raised_are_not_delivered():
    """Raising `skip_below` while frames wait in the queue (a restored background arrives after the reader
    has started) drops the waiting ones below it too; the rest arrive in order."""
    queue = FrameQueue(FakeSource(n=8), maxsize=4, mode="every")
    queue.start()
    try:
        deadline = time.monotonic() + 5
        while queue.qsize() < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.qsize() == 4  # frames 0-3 wait; the reader waits for room
        queue.skip_below = 6
        assert [f.index for f in queue] == [6, 7]
    finally:
        queue.close()
