"""RealSenseSource without a camera: real recordings made by pyrealsense2's software_device + recorder
(ROS2 .db3 from the installed SDK, a committed ROS1 .bag from pyrealsense2 2.55), corrupt files, the
no-camera path, and the live path driven by a software device behind a stand-in pipeline."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sensors.errors import UserError
from sensors.frame import Intrinsics
from sensors.source import open_source

rs = pytest.importorskip("pyrealsense2")

from sensors.realsense.sdk import DepthFilters, parse_realsense_uri, recording_extension, rs_color_to_rgb  # noqa: E402
from sensors.realsense.source import NO_CAMERA_MESSAGE, RealSenseSource  # noqa: E402
from sensors.source import CameraMode  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_spec = importlib.util.spec_from_file_location("rs_make_fixtures", FIXTURES / "make_fixtures.py")
mf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mf)

HANG_LIMIT_S = 30.0  # generous: a hang is a failure, slowness on a busy machine is not


def call_with_timeout(fn, limit_s: float = HANG_LIMIT_S):
    """fn() in a daemon thread; fails the test instead of hanging when it does not return in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        pytest.fail(f"did not return within {limit_s} s (hang)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def read_all(source) -> list:
    frames = []
    with source:
        while (frame := source.read()) is not None:
            frames.append(frame)
        assert source.read() is None  # stays at the end
    return frames


def frame_number(frame) -> int:
    """The recorded frame k, encoded by make_fixtures as R = 20 k (k < 13)."""
    return int(frame.color[0, 0, 0]) // 20


def check_fixture_frames(frames, count: int = mf.FRAMES) -> None:
    # Every frameset, first to last, in order (rs.pipeline would miss the first one at times).
    assert [frame_number(f) for f in frames] == list(range(count))
    for i, f in enumerate(frames):
        k = frame_number(f)
        assert f.index == i
        assert f.color.dtype == np.uint8 and f.color.shape == (mf.HEIGHT, mf.WIDTH, 3)
        np.testing.assert_array_equal(f.color, mf.expected_color(k))
        assert f.depth_raw.dtype == np.uint16 and f.depth_raw.shape == (mf.HEIGHT, mf.WIDTH)
        np.testing.assert_array_equal(f.depth_raw, mf.expected_depth_mm(k))
        assert f.depth_scale == pytest.approx(0.001, rel=1e-6)
        np.testing.assert_allclose(f.depth_m(), mf.expected_depth_mm(k) / 1000.0, rtol=1e-6)
        assert f.intrinsics == Intrinsics(*mf.COLOR_INTRINSICS)
        assert f.timestamp == pytest.approx(k / mf.FPS, abs=1e-6)
        assert f.host_time > 0


# -- recordings ----------------------------------------------------------------------------------
def test_committed_db3_fixture_plays_through_open_source():
    source = open_source(str(FIXTURES / "realsense_64x48.db3"))
    assert isinstance(source, RealSenseSource)
    info = source.open()
    assert (info.width, info.height, info.fps, info.live) == (mf.WIDTH, mf.HEIGHT, 30.0, False)
    check_fixture_frames(call_with_timeout(lambda: read_all(source)))


def test_committed_ros1_bag_from_sdk_2_55_plays():
    check_fixture_frames(call_with_timeout(lambda: read_all(RealSenseSource(str(FIXTURES / "realsense_64x48.bag")))))


def test_fresh_recording_aligns_lower_resolution_depth_to_colour(tmp_path):
    path = mf.write_realsense_recording(tmp_path / "rec.db3", frames=6, depth_width=32, depth_height=24)
    frames = call_with_timeout(lambda: read_all(RealSenseSource(str(path))))
    assert [frame_number(f) for f in frames] == list(range(6))
    box = np.zeros((mf.HEIGHT, mf.WIDTH), bool)
    box[14:34, 18:46] = True  # the subject box (12:36, 16:48) less a 2-pixel margin for resampled edges
    background = np.ones_like(box)
    background[8:40, 12:52] = False
    for f in frames:
        k = frame_number(f)
        assert f.depth_raw.shape == (mf.HEIGHT, mf.WIDTH)  # depth now at colour resolution
        assert np.all(f.depth_raw[box] == 1000 + 10 * k)
        assert np.all(f.depth_raw[background & (f.depth_raw > 0)] == 2000)
        assert np.mean(f.depth_raw[background] == 2000) > 0.9


def test_hole_filling_filter_runs_only_when_asked(tmp_path):
    path = mf.write_realsense_recording(tmp_path / "holes.db3", frames=4, hole=True)
    plain = call_with_timeout(lambda: read_all(RealSenseSource(str(path))))
    filled = call_with_timeout(lambda: read_all(RealSenseSource(str(path), filters=DepthFilters(hole_filling=True))))
    assert plain and filled
    assert all(np.count_nonzero(f.depth_raw[:8, :8] == 0) > 0 for f in plain)
    assert all(np.count_nonzero(f.depth_raw == 0) == 0 for f in filled)
    assert all(np.all(f.depth_raw[2:4, 2:4] == 2000) for f in filled)  # filled from the background


def test_depth_and_colour_are_paired_by_time_even_when_one_stream_runs_ahead(tmp_path):
    # Move every colour message 0.2 s later in the file: all depth frames are played first. The
    # frames' device timestamps are unchanged, so each colour frame must still get its own depth.
    path = tmp_path / "skewed.db3"
    path.write_bytes((FIXTURES / "realsense_64x48.db3").read_bytes())
    with sqlite3.connect(path) as db:
        ids = [row[0] for row in db.execute("SELECT id FROM topics WHERE name LIKE '%/Color_0/image/%'")]
        assert ids
        marks = ",".join("?" * len(ids))
        db.execute(f"UPDATE messages SET timestamp = timestamp + 200000000 WHERE topic_id IN ({marks})", ids)
    db.close()
    check_fixture_frames(call_with_timeout(lambda: read_all(RealSenseSource(str(path)))))


def test_slow_reader_gets_every_frame_and_early_close_does_not_hang(tmp_path):
    path = mf.write_realsense_recording(tmp_path / "long.db3", frames=24)

    def slow_read():
        frames = []
        with RealSenseSource(str(path)) as source:
            while (frame := source.read()) is not None:
                frames.append((int(frame.depth_raw[24, 32]) - 1000) // 10)  # the box depth encodes k
                time.sleep(0.02)  # the SDK must wait for us instead of dropping frames
        return frames

    assert call_with_timeout(slow_read) == list(range(24))

    def read_two_and_close():
        source = RealSenseSource(str(path))
        with source:
            first = [source.read(), source.read()]
        return first

    assert all(f is not None for f in call_with_timeout(read_two_and_close))


def test_real_time_playback_ends_in_order():
    frames = call_with_timeout(lambda: read_all(RealSenseSource(str(FIXTURES / "realsense_64x48.db3"), real_time=True)))
    ks = [frame_number(f) for f in frames]
    assert 1 <= len(ks) <= mf.FRAMES and ks == sorted(set(ks))


@pytest.mark.parametrize("kind", ["random.db3", "random.bag", "truncated.db3", "truncated.bag", "empty.db3"])
def test_corrupt_or_truncated_recording_is_a_user_error(tmp_path, kind):
    name, ext = kind.split(".")
    path = tmp_path / f"broken.{ext}"
    if name == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes())
    elif name == "truncated":
        data = (FIXTURES / f"realsense_64x48.{ext}").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"")
    source = RealSenseSource(str(path))
    with pytest.raises(UserError) as err:
        call_with_timeout(lambda: read_all(source))
    assert "broken." + ext in str(err.value) and str(err.value).count(". ") == 0  # one sentence


def test_missing_recording_is_a_usage_error(tmp_path):
    with pytest.raises(UserError) as err:
        RealSenseSource(str(tmp_path / "nope.db3")).open()
    assert err.value.exit_code == 2


def test_lock_exposure_is_a_noop_for_recordings():
    with RealSenseSource(str(FIXTURES / "realsense_64x48.db3")) as source:
        assert source.lock_exposure_and_white_balance() is False
        assert source.unlock_exposure_and_white_balance() is False


# -- no camera, no SDK, parsing ------------------------------------------------------------------
def test_no_camera_is_a_user_error():
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense camera is connected")
    with pytest.raises(UserError) as err:
        call_with_timeout(lambda: open_source("realsense://").open())
    assert str(err.value) == NO_CAMERA_MESSAGE


def test_missing_sdk_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # makes `import pyrealsense2` fail
    with pytest.raises(UserError, match="pip install pyrealsense2"):
        RealSenseSource("realsense://").open()


def test_uri_parsing_and_query_options():
    assert parse_realsense_uri("realsense://") == (None, None, {})
    assert parse_realsense_uri("realsense://012345") == ("012345", None, {})
    assert parse_realsense_uri("x/y.bag") == (None, "x/y.bag", {})
    src = RealSenseSource("realsense://77?width=1280&height=720&fps=15&filters=spatial,hole-filling")
    assert (src.serial, src.width, src.height, src.fps) == ("77", 1280, 720, 15)
    assert (src.depth_width, src.depth_height) == (1280, 720)
    assert src.filters == DepthFilters(spatial=True, hole_filling=True)
    with pytest.raises(UserError):
        DepthFilters.from_names("median")
    with pytest.raises(UserError):
        RealSenseSource("realsense://?fps=fast")


def test_colour_formats_convert_to_rgb():
    rgb = mf.expected_color(3, 8, 4)
    np.testing.assert_array_equal(rs_color_to_rgb(rgb[..., ::-1].copy(), "format.bgr8"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(rs_color_to_rgb(rgba, "rgba8"), rgb)
    grey = np.full((4, 8, 2), 128, np.uint8)  # YUYV with Y = U = V = 128 -> mid grey
    out = rs_color_to_rgb(grey.view(np.uint16).reshape(4, 8), "format.yuyv")
    assert out.shape == (4, 8, 3) and np.all(np.abs(out.astype(int) - 128) <= 2)
    with pytest.raises(UserError):
        rs_color_to_rgb(rgb, "format.raw10")


# -- live path: a software device stands in for the camera --------------------------------------
class SoftwareCamera:
    """A pyrealsense2 software_device with depth z16 + colour rgb8 sensors and colour AE/AWB options."""

    def __init__(self, usb: str = "3.2", width: int = 64, height: int = 48, fps: int = 30, serial: str = "999"):
        self.width, self.height, self.serial = width, height, serial
        self.connected = True
        self.stalled = False  # connected but sending nothing
        self.recover_on_restart = False  # a stall ends when the pipeline is started again
        self.starts = 0
        dev = self.dev = rs.software_device()
        dev.register_info(rs.camera_info.name, "Intel RealSense D435 (software)")
        dev.register_info(rs.camera_info.serial_number, serial)
        dev.register_info(rs.camera_info.usb_type_descriptor, usb)
        self.depth_sensor = dev.add_sensor("Stereo Module")
        self.color_sensor = dev.add_sensor("RGB Camera")
        self.depth_profile = self._add(self.depth_sensor, rs.stream.depth, rs.format.z16, 2, 0, fps)
        self.color_profile = self._add(self.color_sensor, rs.stream.color, rs.format.rgb8, 3, 1, fps)
        self.depth_sensor.add_read_only_option(rs.option.depth_units, 0.001)
        for option in (rs.option.enable_auto_exposure, rs.option.enable_auto_white_balance):
            self.color_sensor.add_option(option, rs.option_range(0, 1, 1, 1), True)
        identity = rs.extrinsics()
        identity.rotation = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
        identity.translation = [0.0, 0.0, 0.0]
        self.depth_profile.register_extrinsics_to(self.color_profile, identity)
        self.syncer = rs.syncer()
        self._k = 0

    def _add(self, sensor, stream, fmt, bpp, uid, fps):
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = (
            stream, 0, uid, self.width, self.height, fps, bpp, fmt)
        vs.intrinsics = mf._intrinsics(rs, self.width, self.height, *mf.COLOR_INTRINSICS)
        return sensor.add_video_stream(vs)

    def push(self) -> None:
        k = self._k
        self._k += 1
        for sensor, profile, pixels, bpp in (
            (self.depth_sensor, self.depth_profile, mf.expected_depth_mm(k % 13, self.width, self.height), 2),
            (self.color_sensor, self.color_profile, mf.expected_color(k % 13, self.width, self.height), 3),
        ):
            f = rs.software_video_frame()
            f.pixels = np.ascontiguousarray(pixels)
            f.stride, f.bpp, f.timestamp = self.width * bpp, bpp, k * 33.3
            f.domain, f.frame_number = rs.timestamp_domain.hardware_clock, k
            f.profile = profile.as_video_stream_profile()
            if bpp == 2:
                f.depth_units = 0.001
            sensor.on_video_frame(f)


class FakeContext:
    def __init__(self, camera: SoftwareCamera):
        self.camera = camera

    def query_devices(self):
        return [self.camera.dev] if self.camera.connected else []

    def set_devices_changed_callback(self, callback) -> None:
        self.callback = callback


class FakeProfile:
    def __init__(self, camera: SoftwareCamera):
        self.camera = camera

    def get_streams(self):
        return [self.camera.depth_profile, self.camera.color_profile]

    def get_device(self):
        return self.camera.dev


class FakePipeline:
    """pipeline.start/try_wait_for_frames/stop over the software sensors and a syncer."""

    def __init__(self, camera: SoftwareCamera):
        self.camera = camera

    def start(self, config):
        cam = self.camera
        if not cam.connected:
            raise RuntimeError("No device connected")
        cam.starts += 1
        if cam.recover_on_restart:
            cam.stalled = False
        cam.depth_sensor.open(cam.depth_profile)
        cam.color_sensor.open(cam.color_profile)
        cam.depth_sensor.start(cam.syncer)
        cam.color_sensor.start(cam.syncer)
        return FakeProfile(cam)

    def try_wait_for_frames(self, timeout_ms: int):
        cam = self.camera
        if cam.connected and not cam.stalled:
            cam.push()
            return cam.syncer.try_wait_for_frames(timeout_ms)
        time.sleep(timeout_ms / 1000.0)
        return False, None

    def stop(self) -> None:
        cam = self.camera
        for sensor in (cam.depth_sensor, cam.color_sensor):
            sensor.stop()
            sensor.close()


class SoftwareCameraSource(RealSenseSource):
    camera: SoftwareCamera

    def _make_context(self):
        return FakeContext(self.camera)

    def _make_pipeline(self):
        return FakePipeline(self.camera)


def software_source(camera: SoftwareCamera, width: int = 640, height: int = 480, fps: int = 30,
                    timeout_s: float = 5.0, **kwargs) -> SoftwareCameraSource:
    mode = CameraMode(width=width, height=height, fps=fps, timeout_s=timeout_s)
    source = SoftwareCameraSource("realsense://", mode=mode, **kwargs)
    source.camera = camera
    return source


def test_live_frames_carry_rgb_depth_scale_intrinsics_and_times():
    source = software_source(SoftwareCamera(), width=64, height=48)
    with source:
        assert source.info.live and source.info.name.endswith("999")
        frames = [call_with_timeout(source.read) for _ in range(3)]
    assert [f.index for f in frames] == [0, 1, 2]
    for f in frames:
        k = frame_number(f)
        np.testing.assert_array_equal(f.color, mf.expected_color(k))
        np.testing.assert_array_equal(f.depth_raw, mf.expected_depth_mm(k))
        assert f.depth_scale == pytest.approx(0.001)
        assert f.intrinsics == Intrinsics(*mf.COLOR_INTRINSICS)
        assert 0 < f.host_time <= time.monotonic()
    assert source.state == "closed"


def test_usb2_link_that_cannot_carry_the_mode_says_so():
    source = software_source(SoftwareCamera(usb="2.1"))  # asks for 640x480 @ 30, offers 64x48 only
    with pytest.raises(UserError) as err:
        source.open()
    message = str(err.value)
    assert "USB 2.1" in message and "USB 3" in message and "64x48@30" in message


def test_mode_the_camera_lacks_is_a_usage_error():
    source = software_source(SoftwareCamera(usb="3.2"), fps=60, width=64, height=48)
    with pytest.raises(UserError) as err:
        source.open()
    assert err.value.exit_code == 2 and "64x48@30" in str(err.value)


def test_unplugged_camera_raises_after_bounded_reconnects():
    camera = SoftwareCamera()
    source = software_source(camera, width=64, height=48, timeout_s=0.3, reconnect_attempts=2, reconnect_wait_s=0.2)
    with source:
        assert call_with_timeout(source.read) is not None
        camera.connected = False
        with pytest.raises(UserError, match="stopped sending frames"):
            call_with_timeout(source.read)
        assert source.state == "disconnected"
        with pytest.raises(UserError):
            source.read()  # stays disconnected, no new waits
    assert camera.starts == 1


def test_stalled_camera_reconnects_and_streams_again():
    camera = SoftwareCamera()
    source = software_source(camera, width=64, height=48, timeout_s=0.3, reconnect_attempts=2, reconnect_wait_s=0.5)
    with source:
        assert call_with_timeout(source.read) is not None
        camera.stalled = camera.recover_on_restart = True
        frame = call_with_timeout(source.read)
        assert frame is not None and frame.index == 1
        assert source.state == "streaming" and camera.starts == 2


def test_lock_and_unlock_exposure_and_white_balance():
    camera = SoftwareCamera()
    source = software_source(camera, width=64, height=48)
    auto = (rs.option.enable_auto_exposure, rs.option.enable_auto_white_balance)
    with source:
        assert source.lock_exposure_and_white_balance() is True
        assert [camera.color_sensor.get_option(o) for o in auto] == [0.0, 0.0]
        assert source.unlock_exposure_and_white_balance() is True
        assert [camera.color_sensor.get_option(o) for o in auto] == [1.0, 1.0]


def test_recording_a_live_session_needs_the_sdks_file_type(tmp_path):
    assert recording_extension() == mf.sdk_extension()
    wrong = ".bag" if recording_extension() == ".db3" else ".db3"
    source = software_source(SoftwareCamera(), width=64, height=48, record_to=str(tmp_path / f"session{wrong}"))
    with pytest.raises(UserError) as err:
        source.open()
    assert err.value.exit_code == 2 and recording_extension() in str(err.value)
