"""Azure Kinect / Orbbec Femto `.mkv` playback (sensors/azure_kinect.py, sensors/k4a_calibration.py) on
the real pyk4a recording in ../shared/data (skipped without it), and on files remuxed from it."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from sensors.azure_kinect import AzureKinectSource
from sensors.errors import UserError
from sensors.k4a_calibration import fill_small_holes, parse_calibration
from sensors.source import open_source


@pytest.fixture
def k4a(shared_data) -> Path:
    return shared_data / "azure_kinect_recording"


def remux(src: Path, out: Path, *, color_times_us=(0,), depth_times_us=(0,), calibration: bytes | None = None,
          with_depth: bool = True, k4a_tags: bool = True) -> Path:
    """A k4arecorder-like .mkv whose frames are copies of the real recording's first capture, at the given times."""
    with av.open(str(src)) as source:
        color_in, depth_in = source.streams.video[0], source.streams.video[1]
        payload = {p.stream.index: bytes(p) for p in source.demux(color_in, depth_in) if p.size}
        if calibration is None:
            calibration = bytes(next(s for s in source.streams if s.type == "attachment").data)
        with av.open(str(out), "w", format="matroska", options={"allow_raw_vfw": "1"}) as sink:
            if k4a_tags:
                sink.metadata["K4A_DEPTH_DELAY_NS"] = "0"
            streams = [(sink.add_stream_from_template(color_in), color_in, color_times_us)]
            if with_depth:
                streams.append((sink.add_stream_from_template(depth_in), depth_in, depth_times_us))
            for stream, template, _ in streams:
                stream.metadata["title"] = template.metadata["title"]
            if calibration:
                sink.add_attachment("calibration.json", "application/octet-stream", calibration)
            events = sorted((t, k) for k, (_, _, times) in enumerate(streams) for t in times)
            for t, k in events:
                stream, template, _ = streams[k]
                packet = av.Packet(payload[template.index])
                packet.stream, packet.time_base = stream, Fraction(1, 1_000_000)
                packet.pts = packet.dts = 500_000 + t
                sink.mux(packet)
    return out


# -- the real recording ---------------------------------------------------------------------------
def test_real_recording_plays_with_registered_depth(k4a):
    source = open_source(str(k4a / "recording.mkv"))  # as `main.py process recording.mkv` opens it
    assert isinstance(source, AzureKinectSource)
    with source:
        info = source.info
        frames = list(source)
    assert (info.width, info.height, info.live, info.fps) == (1280, 720, False, 5.0)
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.index, frame.timestamp, frame.depth_scale) == (0, 0.0, 0.001)
    assert frame.color.shape == (720, 1280, 3) and frame.color.dtype == np.uint8
    assert frame.depth_raw.shape == (720, 1280) and frame.depth_raw.dtype == np.uint16
    # The colour camera's own intrinsics (720p mode of the 4:3 sensor), not a guess.
    k = frame.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((611.80, 611.93, 639.30, 365.85), abs=0.01)
    # Colour decodes like the JPEG pyk4a extracted; depth keeps its millimetres.
    reference = cv2.imread(str(k4a / "frame0_color_1280x720.jpg"))[:, :, ::-1]
    assert np.abs(reference.astype(int) - frame.color).mean() < 4
    raw = cv2.imread(str(k4a / "frame0_depth_mm_640x576.png"), cv2.IMREAD_UNCHANGED)
    registered = frame.depth_raw[frame.depth_raw > 0]
    assert np.median(registered) == pytest.approx(np.median(raw[raw > 0]), rel=0.1)
    assert 0.5 < registered.size / frame.depth_raw.size < 0.7  # dense where the depth camera sees (58.8%)
    assert source.stream_times(0) == (0.0, 0.0)


def _near_side_depth_edges(depth: np.ndarray, jump: float = 0.04) -> np.ndarray:
    """The nearer pixel of each pair of measured neighbours whose depths differ by more than `jump`."""
    d = depth.astype(np.float32)
    measured = depth > 0
    edges = np.zeros(depth.shape, bool)
    for a_sl, b_sl in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                       ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):
        a, b = d[a_sl], d[b_sl]
        step = measured[a_sl] & measured[b_sl] & (np.abs(a - b) > jump * np.minimum(a, b))
        edges[a_sl] |= step & (a < b)
        edges[b_sl] |= step & (b < a)
    return edges


def _fraction_near_colour_edges(depth: np.ndarray, grey: np.ndarray, within_px: float = 2.0) -> float:
    colour_edges = cv2.Canny(cv2.GaussianBlur(grey, (0, 0), 1.0), 40, 120) > 0
    distance = cv2.distanceTransform((~colour_edges).astype(np.uint8), cv2.DIST_L2, 3)
    edges = _near_side_depth_edges(depth)
    assert edges.sum() > 500
    return float((distance[edges] <= within_px).mean())


def test_depth_edges_fall_on_colour_edges(k4a):
    """Object outlines in the registered depth lie on the colour image's edges; in depth that is only
    resized to the colour size they do not. Measured: 0.59 registered, 0.09 resized, 0.08 for random
    pixels (the colour-edge pixels and their 2-pixel surroundings cover 7.8% of the image)."""
    with AzureKinectSource(str(k4a / "recording.mkv")) as source:
        frame = source.read()
    grey = cv2.cvtColor(frame.color, cv2.COLOR_RGB2GRAY)
    raw = cv2.imread(str(k4a / "frame0_depth_mm_640x576.png"), cv2.IMREAD_UNCHANGED)
    resized = cv2.resize(raw, (1280, 720), interpolation=cv2.INTER_NEAREST)
    registered = _fraction_near_colour_edges(frame.depth_raw, grey)
    unregistered = _fraction_near_colour_edges(resized, grey)
    assert registered > 0.45
    assert registered > 3 * unregistered
    # Moving the registered depth by 8 pixels loses the alignment in every direction (measured 0.14-0.41).
    for dx, dy in ((8, 0), (-8, 0), (0, 8), (0, -8)):
        moved = np.roll(frame.depth_raw, (dy, dx), axis=(0, 1))
        assert _fraction_near_colour_edges(moved, grey) < registered - 0.1


def test_smaller_output_scales_intrinsics(k4a):
    with AzureKinectSource(str(k4a / "recording.mkv"), width=640) as source:
        frame = source.read()
        assert (source.info.width, source.info.height) == (640, 360)
    assert frame.color.shape == (360, 640, 3) and frame.depth_raw.shape == (360, 640)
    assert frame.intrinsics.fx == pytest.approx(611.80 / 2, abs=0.01)
    assert frame.intrinsics.cx == pytest.approx((639.30 + 0.5) / 2 - 0.5, abs=0.01)
    assert (frame.depth_raw > 0).mean() > 0.55


def test_calibration_modes(k4a):
    data = (k4a / "calibration.json").read_bytes()
    depth, color = parse_calibration(data, (320, 288), (1920, 1080), "x.mkv")  # NFOV binned, 1080p
    assert (depth.fx, depth.cx) == pytest.approx((0.49278 * 512, 0.51297 * 512 - 96 - 0.5), abs=0.01)
    assert (color.fy, color.cy) == pytest.approx((0.63742 * 1440, 0.50662 * 1440 - 180 - 0.5), abs=0.01)
    with pytest.raises(UserError, match="not an Azure Kinect depth mode"):
        parse_calibration(data, (600, 400), (1280, 720), "x.mkv")
    broken = json.loads(data)
    del broken["CalibrationInformation"]["Cameras"][1]["Rt"]
    with pytest.raises(UserError, match="calibration attachment of 'x.mkv' cannot be read"):
        parse_calibration(json.dumps(broken).encode(), (640, 576), (1280, 720), "x.mkv")


def test_fill_small_holes_fills_gaps_not_regions():
    splat = np.full((7, 7), 65535, np.uint16)
    splat[1:6, 1:6] = 1000
    splat[3, 3] = 65535  # a one-pixel gap inside a surface
    splat[2, 2] = 900
    out = fill_small_holes(splat)
    assert out[3, 3] == 900  # the nearest neighbouring depth
    assert out[0, 0] == 0 and out[6, 3] == 0  # outside: fewer than 4 measured neighbours


# -- files remuxed from it: pairing and errors ------------------------------------------------------
def test_colour_frames_pair_with_the_nearest_depth(k4a, tmp_path, caplog):
    period = 33_333
    colour = [i * period for i in range(6)]
    depth = [0, period + 900, 3 * period - 2_000, 4 * period, 5 * period + 25_000]  # none near frame 2; 5 too far
    path = remux(k4a / "recording.mkv", tmp_path / "take.mkv", color_times_us=colour, depth_times_us=depth)
    with caplog.at_level(logging.WARNING), AzureKinectSource(str(path)) as source:
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 3, 4]
    ms = 1.1e-3  # Matroska stores milliseconds here
    assert [f.timestamp for f in frames] == pytest.approx([0, period * 1e-6, 3 * period * 1e-6, 4 * period * 1e-6],
                                                          abs=ms)
    assert source.stream_times(1)[1] == pytest.approx((period + 900) * 1e-6, abs=ms)
    assert source.stream_times(3)[1] == pytest.approx((3 * period - 2_000) * 1e-6, abs=ms)
    assert "2 colour frames had no depth frame" in caplog.text
    assert all(f.depth_raw.shape == (720, 1280) for f in frames)
    np.testing.assert_array_equal(frames[0].depth_raw, frames[3].depth_raw)


def test_not_a_recording_and_missing_parts(k4a, tmp_path):
    text = tmp_path / "notes.mkv"
    text.write_text("not a video")
    with pytest.raises(UserError, match="notes.mkv' cannot be read as a Matroska"):
        open_source(str(text)).open()
    video = remux(k4a / "recording.mkv", tmp_path / "holiday.mkv", with_depth=False, k4a_tags=False)
    with pytest.raises(UserError, match="holiday.mkv' is not an Azure Kinect recording \\(no DEPTH track\\)"):
        open_source(str(video)).open()
    colour_only = remux(k4a / "recording.mkv", tmp_path / "colour.mkv", with_depth=False)
    with pytest.raises(UserError, match="colour.mkv' has no DEPTH track: record it with both depth and colour"):
        AzureKinectSource(str(colour_only)).open()
    uncalibrated = remux(k4a / "recording.mkv", tmp_path / "bare.mkv", calibration=b"")
    with pytest.raises(UserError, match="bare.mkv' has no calibration attachment"):
        AzureKinectSource(str(uncalibrated)).open()
    damaged = remux(k4a / "recording.mkv", tmp_path / "damaged.mkv", calibration=b'{"CalibrationInformation": 1}')
    with pytest.raises(UserError, match="calibration attachment of '.*damaged.mkv' cannot be read"):
        AzureKinectSource(str(damaged)).open()
    with pytest.raises(UserError, match="does not exist"):
        AzureKinectSource(str(tmp_path / "gone.mkv")).open()


@pytest.mark.parametrize("tag", ["NV12", "YUY2", "BGRA"])
def test_uncompressed_colour_formats(tag):
    """k4arecorder's uncompressed colour tracks are converted from the packet bytes (no FFmpeg decoder)."""
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :4] = (200, 40, 10)  # the colour changes between chroma pairs
    rgb[:, 4:] = (10, 60, 220)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if tag == "BGRA":
        data = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA).tobytes()
    else:
        i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
        y, u, v = i420[:24], i420[24:30], i420[30:36]
        if tag == "NV12":
            data = y.tobytes() + np.stack([u, v], axis=1).tobytes()
        else:  # YUY2: Y0 U Y1 V per pair of pixels, chroma of the pair (rows 2k and 2k+1 share I420's)
            yy = y.reshape(4, 6)
            uu, vv = np.repeat(u.reshape(2, 3), 2, axis=0), np.repeat(v.reshape(2, 3), 2, axis=0)
            data = np.stack([yy[:, 0::2], uu, yy[:, 1::2], vv], axis=2).tobytes()
    source = AzureKinectSource("x.mkv")
    source._color_size, source._color_tag = (6, 4), tag
    decoded = source._decode_color(data, 0)
    assert decoded.shape == (4, 6, 3)
    assert np.abs(decoded.astype(int) - rgb).max() <= 6
