"""Recording (issue 18, item 2): the composite as H.264 MP4 read back through PyAV (the library that
wrote it, as ffprobe would), takes named by date and time, and a complete meta.json for the raw stream."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import av
import numpy as np
import pytest

from app.outputs import Outputs
from app.recorder import (
    COMPOSITE_NAME,
    Recorder,
    RecordOptions,
    default_recording_folder,
    raw_folder,
)
from sensors.frame import Frame, Intrinsics
from sensors.source import open_source

W, H = 64, 48


def frame(i: int, w: int = W, h: int = H, intrinsics: Intrinsics | None = None) -> Frame:
    return Frame(np.full((h, w, 3), 10 * i, np.uint8), np.full((h, w), 1500 + i, np.uint16), 0.001,
                 i / 30, 100 + i, intrinsics or Intrinsics(50.0, 51.0, w / 2, h / 2))


def probe(path: Path) -> tuple[str, str, int, int, int, list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        images = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return (stream.codec_context.name, stream.codec_context.pix_fmt, stream.codec_context.width,
                stream.codec_context.height, len(images), images)


@pytest.mark.parametrize("size", [(W, H), (W + 1, H + 1)])  # an odd size loses a column and a row
def test_composite_is_h264_mp4_with_every_frame(tmp_path, size):
    w, h = size
    recorder = Recorder(RecordOptions(tmp_path / "take", composite=True), w, h, 30.0, 0.001, None)
    for i in range(12):
        recorder.write(frame(i, w, h), np.full((h, w, 3), (220, 30, 30), np.uint8))
    recorder.close()
    codec, pix_fmt, width, height, count, images = probe(tmp_path / "take" / COMPOSITE_NAME)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert (width, height) == (W, H) and count == 12
    red = images[5].reshape(-1, 3).mean(axis=0)
    assert red[0] > 190 and red[1] < 60 and red[2] < 60  # RGB order kept


def test_takes_are_named_by_date_and_time_and_never_collide(tmp_path):
    now = time.mktime((2026, 11, 30, 14, 5, 12, 0, 0, -1))
    first = default_recording_folder(tmp_path, now)
    assert first.name == "Recording 2026-11-30 14-05-12"
    first.mkdir()
    assert default_recording_folder(tmp_path, now).name == "Recording 2026-11-30 14-05-12 (2)"
    assert raw_folder(first).name == "RGB-D 2026-11-30 14-05-12"  # not 'rgbd' for every take
    assert re.fullmatch(r"Recording \d{4}-\d\d-\d\d \d\d-\d\d-\d\d", default_recording_folder(tmp_path / "x").name)


def test_source_list_shows_the_dated_raw_recording(tmp_path):
    pytest.importorskip("PySide6")
    from app.source_picker import source_label

    folder = default_recording_folder(tmp_path, time.mktime((2026, 11, 30, 14, 5, 12, 0, 0, -1)))
    recorder = Recorder(RecordOptions(folder, composite=False, raw=True), W, H, 30.0, 0.001, None)
    recorder.write(frame(0), None)
    recorder.close()
    assert recorder.paths == [folder / "RGB-D 2026-11-30 14-05-12"]
    assert source_label(str(recorder.paths[0])) == "Recording: RGB-D 2026-11-30 14-05-12"


def read_meta(folder: Path) -> dict:
    return json.loads((raw_folder(folder) / "meta.json").read_text())


def test_raw_meta_is_complete_and_counts_the_leading_background_frames(tmp_path):
    emitted = []
    outputs = Outputs(emitted.append)
    folder = tmp_path / "take"
    outputs.set_recording(RecordOptions(folder, composite=True, raw=True))
    intrinsics = Intrinsics(61.0, 62.0, 31.5, 23.5)
    for i in range(3):  # the take starts with the background capture
        outputs.feed(frame(i, intrinsics=intrinsics), frame(i).color, 15.0, background=True)
    outputs.feed(frame(3, intrinsics=intrinsics), frame(3).color, 15.0)
    meta = read_meta(folder)  # already there while recording: an interrupted take keeps it
    assert meta["background_frames"] == 3 and meta["intrinsics"]["fx"] == 61.0
    outputs.feed(frame(4, intrinsics=intrinsics), frame(4).color, 15.0, background=True)  # a later capture
    outputs.stop_recording()
    meta = read_meta(folder)
    assert {k: meta[k] for k in ("width", "height", "fps", "depth_scale", "background_frames", "frame_count")} == \
        {"width": W, "height": H, "fps": 15.0, "depth_scale": 0.001, "background_frames": 3, "frame_count": 5}
    assert meta["intrinsics"] == {"fx": 61.0, "fy": 62.0, "cx": 31.5, "cy": 23.5}
    assert not list(raw_folder(folder).glob("*.tmp"))  # written by temp file + rename
    with open_source(str(raw_folder(folder))) as source:
        assert source.info.background_frames == 3 and source.info.frame_count == 5
    assert probe(folder / COMPOSITE_NAME)[4] == 5


def test_a_take_without_a_capture_says_nothing_about_background_frames(tmp_path):
    recorder = Recorder(RecordOptions(tmp_path / "take", composite=False, raw=True), W, H, 30.0, 0.001, None)
    for i in range(3):
        recorder.write(frame(i), None)
    recorder.close()
    meta = read_meta(tmp_path / "take")
    assert "background_frames" not in meta and meta["intrinsics"]["fx"] == 50.0 and meta["frame_count"] == 3


def test_a_take_lasts_as_long_as_it_was_recorded_when_frames_come_slower_than_the_camera(tmp_path):
    # Before: every frame was stamped at the camera's 30 fps, so a 10 s take at 8-12 fps played in 3-4 s.
    folder = tmp_path / "take"
    recorder = Recorder(RecordOptions(folder, composite=True, raw=True), W, H, 30.0, 0.001, None)
    start = time.monotonic()
    for i in range(8):  # about 10 frames per second
        recorder.write(frame(i), np.full((H, W, 3), 20 * i, np.uint8))
        time.sleep(0.1)
    recorder.close()
    elapsed = time.monotonic() - start - 0.1
    with av.open(str(folder / COMPOSITE_NAME)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * f.time_base) for f in container.decode(stream)]
    assert len(times) == 8 and times == sorted(times)
    assert times[-1] == pytest.approx(elapsed, abs=0.08)  # the last frame where it was recorded, not at 7/30 s
    meta = json.loads((raw_folder(folder) / "meta.json").read_text())
    assert meta["fps"] == pytest.approx(7 / elapsed, rel=0.1)  # the rate frames were written at, not 30
