"""Playback of a RealSense recording, depth paired with colour by device time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

from sensors.errors import UserError
from sensors.realsense.clock import StreamClock

logger = logging.getLogger(__name__)

POLL_MS = 100  # how long one wait for a frameset may block before faults are re-checked
_END_GRACE_S = 0.5  # recordings: quiet time after the file was read before its end is declared



class RecordingPlayer:
    """Plays the depth and colour streams of a RealSense `.bag` / `.db3` and pairs them by timestamp.

    It reads the playback device's sensors directly instead of through `rs.pipeline`: the
    pipeline's syncer pairs every colour frame with the latest depth frame when one stream runs
    ahead of the other in the file (or on a busy machine), and it drops a file's first frameset.
    Each colour frame is paired with the depth frame nearest in device time (within 0.6 of the
    slower stream's frame period); colour frames without such a depth frame are skipped and counted
    (`skipped_colour`, a warning at the end). Each stream's time is made continuous first
    (`StreamClock`), so a clock that resets or jumps mid-recording re-synchronises instead of leaving
    every later colour frame without a partner; `clock_jumps` counts those re-synchronisations.

    real_time=False: the SDK waits for the reader (every frame, in order); True: recording speed,
    frames the reader misses are dropped. `next_frameset` returns an `rs.composite_frame` with one
    depth and one colour frame, or None at the end of the file. Bad files raise `UserError`.
    """

    QUEUE_SIZE = 8  # frames buffered between the SDK's threads and the reader
    MAX_PENDING = 64  # unpaired frames kept per stream

    def __init__(self, rs, path: Path, real_time: bool = False) -> None:
        self.rs = rs
        self.path = path
        self.real_time = bool(real_time)
        self._ctx = rs.context()
        try:
            self.playback = self._ctx.load_device(str(path)).as_playback()
        except RuntimeError as exc:
            logger.debug("pyrealsense2 could not open %s: %s", path, exc)
            raise UserError(
                f"'{path.name}' is not a readable RealSense recording (corrupt, truncated or another format): "
                "record it again or check the file."
            ) from exc
        self.playback.set_real_time(self.real_time)
        self.duration_s = self.playback.get_duration().total_seconds()
        self.depth_profile, self.color_profile, self.depth_sensor, groups = self._pick_profiles()
        periods = [1000.0 / max(1, p.fps()) for p in (self.depth_profile, self.color_profile)]
        self.max_gap_ms = 0.6 * max(periods)
        self._depth_clock, self._color_clock = StreamClock(periods[0]), StreamClock(periods[1])
        self.skipped_colour = 0
        self._last_color_ms: float | None = None
        self._reported = False
        self._reached_s = 0.0  # how far into the file (playback position) frames have come from
        # Frames from the SDK's threads. In batch mode a full queue makes the SDK wait (no frame is
        # lost), but only once `resume()` has returned: the SDK cannot resume while a callback waits.
        self._incoming: deque = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._backpressure = False
        self._depths: deque = deque()
        self._colors: deque = deque()
        self._received = 0
        self._file_read = False
        self._same_clock: bool | None = None
        self._pending = None
        self._composed = rs.frame_queue(2)
        self._composer = rs.processing_block(self._compose_callback)
        self._composer.start(self._composed)
        self._started = []
        # Paused while the sensors start, so that no frame is played before all of them listen.
        self.playback.pause()
        try:
            for sensor, profiles in groups:
                sensor.open(profiles if len(profiles) > 1 else profiles[0])
                sensor.start(self._on_frame)
                self._started.append(sensor)
        except RuntimeError as exc:
            self.close()
            raise UserError(f"'{path.name}' could not be played ({str(exc).rstrip('.')}): check the file.") from exc
        finally:
            self.playback.resume()
        with self._cond:
            self._backpressure = True

    def _pick_profiles(self):
        rs = self.rs
        depth = color = depth_sensor = None
        groups: dict[int, tuple] = {}
        for index, sensor in enumerate(self.playback.query_sensors()):
            for p in sensor.get_stream_profiles():
                if not p.is_video_stream_profile():
                    continue
                if depth is None and p.stream_type() == rs.stream.depth and p.format() == rs.format.z16:
                    depth, depth_sensor = p.as_video_stream_profile(), sensor
                    groups.setdefault(index, (sensor, []))[1].append(p)
                elif color is None and p.stream_type() == rs.stream.color:
                    color = p.as_video_stream_profile()
                    groups.setdefault(index, (sensor, []))[1].append(p)
        if depth is None or color is None:
            missing = "colour" if color is None else "depth (z16)"
            raise UserError(f"'{self.path.name}' has no {missing} stream: record both depth and colour.")
        return depth, color, depth_sensor, list(groups.values())

    # -- SDK threads -----------------------------------------------------------------------------
    def _on_frame(self, frame) -> None:
        with self._cond:
            if self.real_time and len(self._incoming) >= self.QUEUE_SIZE:
                return  # preview: the reader is behind, this frame is skipped
            while self._backpressure and not self._closing and len(self._incoming) >= self.QUEUE_SIZE:
                self._cond.wait(0.1)  # batch: hold the SDK back until the reader catches up
            if self._closing:
                return
            self._incoming.append(frame)
            self._reached_s = max(self._reached_s, self.playback.get_position() / 1e9)
            self._cond.notify_all()

    def _take(self, timeout_s: float):
        """The oldest frame from the SDK's threads, or None after `timeout_s`."""
        with self._cond:
            if not self._incoming:
                self._cond.wait(timeout_s)
            if not self._incoming:
                return None
            frame = self._incoming.popleft()
            self._cond.notify_all()
            return frame

    def _compose_callback(self, frame, source) -> None:
        depth, color = self._pending
        source.frame_ready(source.allocate_composite_frame([depth, color]))

    # -- reader ----------------------------------------------------------------------------------
    def next_frameset(self, timeout_s: float):
        """The next depth + colour frameset, or None at the end; UserError if playback stalls."""
        deadline = time.monotonic() + timeout_s
        stopped_since = None
        while True:
            pair = self._pair()
            if pair is not None:
                return self._compose(*pair)
            if self._file_read:
                self._report_pairing()
                self._check_complete()
                return None
            frame = self._take(POLL_MS / 1000.0)
            if frame is None:
                now = time.monotonic()
                if self.playback.current_status() == self.rs.playback_status.stopped:
                    # "stopped" means the file has been read; its last frames may still be on
                    # their way through the SDK's threads, so wait for a quiet spell first.
                    stopped_since = stopped_since or now
                    if now - stopped_since >= (_END_GRACE_S if self._received else timeout_s):
                        self._file_read = True
                elif now > deadline:
                    raise UserError(
                        f"'{self.path.name}' stopped delivering frames before its end: the file may be damaged."
                    )
                continue
            self._received += 1
            deadline = time.monotonic() + timeout_s
            stopped_since = None
            is_depth = frame.get_profile().stream_type() == self.rs.stream.depth
            pending = self._depths if is_depth else self._colors
            clock, other = (self._depth_clock, self._color_clock) if is_depth else (self._color_clock, self._depth_clock)
            pending.append((clock(frame.get_timestamp(), other.last_ms), frame))
            if len(pending) > self.MAX_PENDING:
                pending.popleft()

    def _pair(self):
        """(depth, colour) for the oldest colour frame whose nearest depth frame is known, else None."""
        depths, colors = self._depths, self._colors
        if colors and depths and self._same_clock is None:
            self._same_clock = colors[0][1].get_frame_timestamp_domain() == depths[0][1].get_frame_timestamp_domain()
            if not self._same_clock:
                logger.warning("%s: depth and colour use different clocks; pairing them in order", self.path.name)
        while colors:
            if not depths:
                if self._file_read:
                    colors.clear()
                return None
            if not self._same_clock:
                return depths.popleft()[1], colors.popleft()[1]
            tc = colors[0][0]
            self._last_color_ms = tc
            while len(depths) >= 2 and depths[1][0] <= tc:
                depths.popleft()
            if depths[-1][0] < tc and not self._file_read:
                return None  # a later depth frame may still be nearer
            td, nearest = min(list(depths)[:2], key=lambda d: abs(d[0] - tc))
            color = colors.popleft()[1]
            if abs(td - tc) <= self.max_gap_ms:
                return nearest, color
            self.skipped_colour += 1
            logger.debug("%s: colour frame at %.1f ms has no depth frame near it", self.path.name, tc)
        return None

    def _check_complete(self) -> None:
        """UserError when the SDK stopped reading well before the file's duration (a damaged message
        ends playback silently): the last frame came from `_reached_s` of `duration_s` seconds."""
        missing_s = self.duration_s - self._reached_s
        if self._received and missing_s > min(0.1 * self.duration_s, 1.0):
            raise UserError(
                f"'{self.path.name}' could not be read past {self._reached_s:.2f} s of its {self.duration_s:.2f} s: "
                "the rest of the file is damaged."
            )

    @property
    def clock_jumps(self) -> int:
        """How often a stream's clock jumped or reset and was re-synchronised (see `StreamClock`)."""
        return self._depth_clock.jumps + self._color_clock.jumps

    def _report_pairing(self) -> None:
        """One warning at the end of the file when frames were skipped or clocks re-synchronised."""
        if self._reported:
            return
        self._reported = True
        if self.clock_jumps:
            logger.warning("%s: a stream's clock jumped %d time(s) (a camera reset?); its frames were "
                           "re-synchronised by frame period", self.path.name, self.clock_jumps)
        last = self._last_color_ms
        orphans = sum(1 for t, _ in self._depths if last is None or t > last + self.max_gap_ms)
        if orphans:
            logger.warning("%s: the last %d depth frame(s) have no colour frame (the file may be damaged or cut "
                           "short); they were not played", self.path.name, orphans)
        if self.skipped_colour:
            logger.warning("%s: %d colour frame(s) had no depth frame within %.0f ms and were skipped",
                           self.path.name, self.skipped_colour, self.max_gap_ms)

    def _compose(self, depth, color):
        self._pending = (depth, color)
        try:
            self._composer.invoke(depth)
            ok, frames = self._composed.try_wait_for_frame(int(POLL_MS * 10))
        finally:
            self._pending = None
        if not ok:
            raise UserError(f"'{self.path.name}' could not be decoded: the file may be damaged.")
        return frames.as_frameset()

    def current_status(self):
        return self.playback.current_status()

    def close(self) -> None:
        """Stop the sensors; the SDK's threads waiting in `_on_frame` see `_closing` and return."""
        with self._cond:
            self._closing = True
            self._incoming.clear()
            self._cond.notify_all()
        for sensor in self._started:
            for step in (sensor.stop, sensor.close):
                try:
                    step()
                except RuntimeError as exc:
                    logger.debug("playback sensor shutdown: %s", exc)
        self._started = []
        self._depths.clear()
        self._colors.clear()
