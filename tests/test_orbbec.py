"""OrbbecSource without a camera: SDK frames built offline (Frame.create_video_frame) converted and
aligned, colour decoding, the no-device / bad-recording paths, the SDK's log file and device listing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from sensors.errors import UserError
from sensors.frame import Intrinsics

REPO = Path(__file__).resolve().parents[1]


def _sdk_or_skip():
    try:
        import pyorbbecsdk  # noqa: F401
    except ImportError:
        pytest.skip("pyorbbecsdk2 is not installed (pip install --no-deps pyorbbecsdk2)")
    from sensors.orbbec import import_pyorbbecsdk

    return import_pyorbbecsdk()


def call_with_timeout(fn, limit_s: float = 30.0):
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        pytest.fail(f"did not return within {limit_s} s (hang)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def video_frame(ob, kind: str, fmt, width: int, height: int, pixels: np.ndarray, timestamp_us: int = 0,
                intrinsics: tuple | None = None):
    """An SDK colour or depth frame made offline, optionally with intrinsics on its stream profile."""
    frame_type = ob.OBFrameType.DEPTH_FRAME if kind == "depth" else ob.OBFrameType.COLOR_FRAME
    frame = ob.Frame.create_video_frame(frame_type, fmt, width, height)
    frame.update_data(np.ascontiguousarray(pixels).tobytes())
    ob.Frame.set_frame_device_timestamp_us(frame, timestamp_us)
    if intrinsics is not None:
        i = ob.OBCameraIntrinsic()
        i.fx, i.fy, i.cx, i.cy = intrinsics
        i.width, i.height = width, height
        profile = frame.get_stream_profile().as_video_stream_profile()
        profile.set_intrinsic(i)
        profile.set_distortion(ob.OBCameraDistortion())
    return frame.as_depth_frame() if kind == "depth" else frame.as_color_frame()


def test_frames_to_frame_converts_colour_depth_scale_and_time():
    ob = _sdk_or_skip()
    from sensors.orbbec import frames_to_frame

    h, w = 6, 8
    bgr = np.zeros((h, w, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 200, np.arange(w)[None, :] * 10, 7
    depth_units = np.arange(h * w, dtype=np.uint16).reshape(h, w) * 3
    color = video_frame(ob, "color", ob.OBFormat.BGR, w, h, bgr, timestamp_us=2_500_000)
    depth = video_frame(ob, "depth", ob.OBFormat.Y16, w, h, depth_units, timestamp_us=2_400_000)
    depth.set_value_scale(0.5)  # SDK: value * scale = millimetres
    frame = frames_to_frame(color, depth, index=4, intrinsics=Intrinsics(5.0, 6.0, 3.5, 2.5), host_time=12.0)
    np.testing.assert_array_equal(frame.color, bgr[..., ::-1])
    assert frame.color.dtype == np.uint8 and frame.color.flags.c_contiguous
    np.testing.assert_array_equal(frame.depth_raw, depth_units)
    assert frame.depth_scale == pytest.approx(0.0005)
    np.testing.assert_allclose(frame.depth_m(), depth_units * 0.0005, rtol=1e-6)
    assert (frame.timestamp, frame.index, frame.host_time) == (2.5, 4, 12.0)
    assert frame.intrinsics == Intrinsics(5.0, 6.0, 3.5, 2.5)


def test_frames_to_frame_takes_intrinsics_from_the_stream_profile_or_guesses():
    ob = _sdk_or_skip()
    from sensors.orbbec import frames_to_frame

    rgb = np.full((4, 6, 3), 50, np.uint8)
    depth = video_frame(ob, "depth", ob.OBFormat.Y16, 6, 4, np.full((4, 6), 1000, np.uint16))
    with_profile = video_frame(ob, "color", ob.OBFormat.RGB, 6, 4, rgb, intrinsics=(9.0, 9.5, 2.5, 1.5))
    assert frames_to_frame(with_profile, depth, index=0).intrinsics == Intrinsics(9.0, 9.5, 2.5, 1.5)
    bare = video_frame(ob, "color", ob.OBFormat.RGB, 6, 4, rgb)
    assert frames_to_frame(bare, depth, index=0).intrinsics == Intrinsics.default_for(6, 4)
    assert frames_to_frame(bare, depth, index=0).depth_scale == pytest.approx(0.001)  # scale 1 mm


def test_unaligned_or_unsupported_depth_is_rejected():
    ob = _sdk_or_skip()
    from sensors.orbbec import frames_to_frame

    color = video_frame(ob, "color", ob.OBFormat.RGB, 8, 6, np.zeros((6, 8, 3), np.uint8))
    small = video_frame(ob, "depth", ob.OBFormat.Y16, 4, 3, np.zeros((3, 4), np.uint16))
    with pytest.raises(ValueError):
        frames_to_frame(color, small, index=0)
    packed = video_frame(ob, "depth", ob.OBFormat.RLE, 8, 6, np.zeros((6, 8), np.uint16))
    with pytest.raises(UserError):
        frames_to_frame(color, packed, index=0)


def test_align_filter_brings_half_resolution_depth_to_colour():
    ob = _sdk_or_skip()
    from sensors.orbbec import process_frameset

    cw, ch, dw, dh = 16, 12, 8, 6
    color = video_frame(ob, "color", ob.OBFormat.RGB, cw, ch, np.full((ch, cw, 3), 9, np.uint8),
                        timestamp_us=1_000_000, intrinsics=(20.0, 20.0, 7.5, 5.5))
    depth = video_frame(ob, "depth", ob.OBFormat.Y16, dw, dh, np.full((dh, dw), 1500, np.uint16),
                        timestamp_us=1_000_000, intrinsics=(10.0, 10.0, 3.5, 2.5))
    identity = ob.OBExtrinsic()
    identity.rot = np.eye(3, dtype=np.float32)
    identity.transform = np.zeros(3, np.float32)
    depth.get_stream_profile().bind_extrinsic_to(color.get_stream_profile(), identity)
    frameset = ob.Frame.create_frame_set()
    frameset.push_frame(color)
    frameset.push_frame(depth)
    align = ob.AlignFilter(align_to_stream=ob.OBStreamType.COLOR_STREAM)
    frame = process_frameset(frameset, align, index=7, intrinsics=None, host_time=1.0)
    assert frame is not None and frame.index == 7
    assert frame.depth_raw.shape == (ch, cw) and frame.color.shape == (ch, cw, 3)
    interior = frame.depth_raw[2:-2, 2:-2]
    assert np.all(interior == 1500)
    assert frame.intrinsics == Intrinsics(20.0, 20.0, 7.5, 5.5)
    only_color = ob.Frame.create_frame_set()
    only_color.push_frame(video_frame(ob, "color", ob.OBFormat.RGB, cw, ch, np.zeros((ch, cw, 3), np.uint8)))
    assert process_frameset(only_color, ob.AlignFilter(align_to_stream=ob.OBStreamType.COLOR_STREAM), index=0) is None


def test_colour_decoding_of_common_orbbec_formats():
    from sensors.orbbec import ob_color_to_rgb

    h, w = 8, 16
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 180, 90, np.arange(w)[None, :] * 8
    np.testing.assert_array_equal(ob_color_to_rgb(rgb.reshape(-1), w, h, "RGB"), rgb)
    np.testing.assert_array_equal(ob_color_to_rgb(rgb[..., ::-1].reshape(-1), w, h, "BGR"), rgb)
    bgra = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    np.testing.assert_array_equal(ob_color_to_rgb(bgra.reshape(-1), w, h, "BGRA"), rgb)
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    assert np.abs(ob_color_to_rgb(jpeg.reshape(-1), w, h, "MJPG").astype(int) - rgb).max() <= 12
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    assert np.abs(ob_color_to_rgb(i420.reshape(-1), w, h, "I420").astype(int) - rgb).max() <= 12
    yuyv = np.full((h, w, 2), 128, np.uint8)
    assert np.abs(ob_color_to_rgb(yuyv.reshape(-1), w, h, "YUYV").astype(int) - 128).max() <= 2
    with pytest.raises(UserError):
        ob_color_to_rgb(rgb.reshape(-1)[:10], w, h, "RGB")
    with pytest.raises(UserError):
        ob_color_to_rgb(np.zeros(100, np.uint8), w, h, "MJPG")
    with pytest.raises(UserError):
        ob_color_to_rgb(rgb.reshape(-1), w, h, "BA81")


def test_uri_parsing():
    from sensors.orbbec import parse_orbbec_uri

    assert parse_orbbec_uri("orbbec://") == (None, None)
    assert parse_orbbec_uri("orbbec://AY3K123") == ("AY3K123", None)
    assert parse_orbbec_uri("orbbec:///data/rec.bag") == (None, "/data/rec.bag")
    with pytest.raises(UserError):
        parse_orbbec_uri("realsense://")


def test_no_device_and_bad_recordings_are_user_errors(tmp_path):
    ob = _sdk_or_skip()
    from sensors.orbbec import NO_CAMERA_MESSAGE, OrbbecSource
    from sensors.source import open_source

    if ob.Context().query_devices().get_count() > 0:
        pytest.skip("an Orbbec camera is connected")
    with pytest.raises(UserError) as err:
        call_with_timeout(lambda: open_source("orbbec://").open())
    assert str(err.value) == NO_CAMERA_MESSAGE
    junk = tmp_path / "junk.bag"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="junk.bag"):
        call_with_timeout(lambda: OrbbecSource(f"orbbec://{junk}").open())
    with pytest.raises(UserError) as err:
        OrbbecSource(f"orbbec://{tmp_path / 'missing.bag'}").open()
    assert err.value.exit_code == 2


def test_sdk_writes_no_log_folder_and_prints_nothing(tmp_path):
    _sdk_or_skip()
    code = (
        "from sensors.orbbec import OrbbecSource\n"
        "from sensors.errors import UserError\n"
        "try:\n    OrbbecSource('orbbec://').open()\nexcept UserError:\n    pass\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no Log/OrbbecSDK.log.txt


def test_missing_sdk_names_the_pip_package(monkeypatch):
    from sensors import orbbec

    monkeypatch.setitem(sys.modules, "pyorbbecsdk", None)
    orbbec.import_pyorbbecsdk.cache_clear()
    try:
        with pytest.raises(UserError, match="pip install --no-deps pyorbbecsdk2"):
            orbbec.OrbbecSource("orbbec://").open()
    finally:
        orbbec.import_pyorbbecsdk.cache_clear()


def test_device_listing_with_no_cameras_is_empty_and_reports_sdks():
    from sensors.devices import SDKS, list_devices, sdk_status

    status = call_with_timeout(sdk_status)
    assert set(status) == set(SDKS)
    assert all(value == "ok" or "install" in value for value in status.values())
    devices = call_with_timeout(list_devices)
    if devices:
        pytest.skip("a camera is connected")
    assert devices == []


def test_sdk_status_reports_missing_sdks(monkeypatch):
    from sensors import devices, orbbec

    monkeypatch.setitem(sys.modules, "pyrealsense2", None)
    monkeypatch.setitem(sys.modules, "pyorbbecsdk", None)
    orbbec.import_pyorbbecsdk.cache_clear()
    try:
        status = devices.sdk_status()
        assert "pip install pyrealsense2" in status["realsense"]
        assert "pyorbbecsdk2" in status["orbbec"]
        assert devices.list_devices() == []
    finally:
        orbbec.import_pyorbbecsdk.cache_clear()
