"""Orbbec cameras (Femto, Gemini, Astra 2, ...) through pyorbbecsdk2, and the SDK's own `.bag` files.

    orbbec://                 the first camera found
    orbbec://SERIAL           that camera
    orbbec:///path/rec.bag    a recording made by the Orbbec SDK / viewer (played at recording speed)

Depth is aligned to colour in software (`AlignFilter` to the colour stream), converted by the pure
function `frames_to_frame` into a `Frame`: colour RGB uint8 HxWx3, `depth_raw` uint16 with
`depth_scale` metres per unit (the SDK's scale is millimetres per unit), the colour intrinsics, the
device timestamp in seconds and `host_time`.

The SDK writes a `Log/` folder into the working directory and prints a line on import unless told
otherwise; `import_pyorbbecsdk` silences both (file logging off, console only for errors).
Orbbec `.bag` files are not RealSense `.bag` files: plain `.bag` paths go to `sensors.realsense.source`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.source import CameraMode, Source, SourceInfo

logger = logging.getLogger(__name__)

NO_CAMERA_MESSAGE = "No Orbbec camera found: connect one to a USB 3 port or give a recording path."
_POLL_MS = 100

# Depth pixel formats that are plain 16-bit values (some devices use fewer of the 16 bits).
_DEPTH_16BIT = {"Y16", "Z16", "Y10", "Y11", "Y12", "Y14"}


@functools.lru_cache(maxsize=1)
def import_pyorbbecsdk():
    """The pyorbbecsdk module with its file log off; `UserError` naming the pip package if missing.

    The native library prints "load extensions from ..." to stdout when it loads; that line is
    dropped by pointing file descriptor 1 at /dev/null for the import.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable stdout descriptor: import without hiding anything
        saved = devnull = None
    try:
        if devnull is not None:
            os.dup2(devnull, 1)
        import pyorbbecsdk as ob
    except ImportError as exc:
        raise UserError(
            "Orbbec support needs the pyorbbecsdk2 package: install it with 'pip install --no-deps pyorbbecsdk2'."
        ) from exc
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
    try:
        ob.Context.set_logger_to_file(ob.OBLogLevel.NONE, "")  # no ./Log/OrbbecSDK.log.txt
        ob.Context.set_logger_to_console(ob.OBLogLevel.ERROR)
    except (AttributeError, RuntimeError) as exc:
        logger.debug("Could not configure the Orbbec SDK logger: %s", exc)
    return ob


def _sdk_errors() -> tuple[type[BaseException], ...]:
    """What the SDK raises: RuntimeError for most calls, its own OBError (an Exception) for others."""
    ob = import_pyorbbecsdk()
    return (RuntimeError, getattr(ob, "OBError", RuntimeError))


def _format_name(fmt) -> str:
    """"RGB" for OBFormat.RGB, a plain string unchanged."""
    return (getattr(fmt, "name", None) or str(fmt)).rsplit(".", 1)[-1].upper()


def ob_color_to_rgb(data: np.ndarray, width: int, height: int, format_name: str) -> np.ndarray:
    """Decode an Orbbec colour buffer to RGB uint8 HxWx3.

    data: the frame's bytes (uint8, any shape); format_name: OBFormat name ("RGB", "BGR", "RGBA",
    "BGRA", "YUYV"/"YUY2", "UYVY", "NV12", "NV21", "I420", "MJPG").
    """
    buf = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    fmt = format_name.upper()
    try:
        if fmt == "RGB":
            return buf[: height * width * 3].reshape(height, width, 3).copy()
        if fmt == "BGR":
            return cv2.cvtColor(buf[: height * width * 3].reshape(height, width, 3), cv2.COLOR_BGR2RGB)
        if fmt in ("RGBA", "BGRA"):
            code = cv2.COLOR_RGBA2RGB if fmt == "RGBA" else cv2.COLOR_BGRA2RGB
            return cv2.cvtColor(buf[: height * width * 4].reshape(height, width, 4), code)
        if fmt in ("YUYV", "YUY2", "UYVY"):
            code = cv2.COLOR_YUV2RGB_UYVY if fmt == "UYVY" else cv2.COLOR_YUV2RGB_YUY2
            return cv2.cvtColor(buf[: height * width * 2].reshape(height, width, 2), code)
        if fmt in ("NV12", "NV21", "I420"):
            code = {"NV12": cv2.COLOR_YUV2RGB_NV12, "NV21": cv2.COLOR_YUV2RGB_NV21, "I420": cv2.COLOR_YUV2RGB_I420}[fmt]
            return cv2.cvtColor(buf[: height * width * 3 // 2].reshape(height * 3 // 2, width), code)
        if fmt == "MJPG":
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if bgr is None:
                raise UserError("An Orbbec colour frame could not be decoded (damaged MJPG data).")
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    except ValueError as exc:  # buffer smaller than the frame size says
        raise UserError(
            f"An Orbbec {fmt} colour frame is shorter than {width}x{height}: the stream is damaged."
        ) from exc
    raise UserError(f"Orbbec colour format {fmt} is not supported: choose an RGB, YUYV or MJPG colour mode.")


def intrinsics_from_ob(intrinsic) -> Intrinsics | None:
    """`Intrinsics` from an OBCameraIntrinsic, or None when it is empty (fx <= 0)."""
    if intrinsic is None or float(intrinsic.fx) <= 0 or float(intrinsic.fy) <= 0:
        return None
    return Intrinsics(fx=float(intrinsic.fx), fy=float(intrinsic.fy), cx=float(intrinsic.cx), cy=float(intrinsic.cy))


def frames_to_frame(
    color_frame,
    depth_frame,
    *,
    index: int,
    intrinsics: Intrinsics | None = None,
    host_time: float | None = None,
) -> Frame:
    """Convert an SDK colour frame and a depth frame already aligned to it into a `Frame`.

    color_frame: pyorbbecsdk VideoFrame/ColorFrame in any format `ob_color_to_rgb` reads.
    depth_frame: pyorbbecsdk DepthFrame, 16-bit values, same width/height as colour; its
    `get_depth_scale()` is millimetres per unit, so `Frame.depth_scale` = that / 1000 (metres).
    intrinsics: the colour camera's; when None, taken from the colour frame's stream profile, else
    a default guess. timestamp: the colour frame's device timestamp in seconds. host_time defaults
    to `time.monotonic()` now.
    """
    host = time.monotonic() if host_time is None else host_time
    w, h = int(color_frame.get_width()), int(color_frame.get_height())
    rgb = ob_color_to_rgb(np.asanyarray(color_frame.get_data()), w, h, _format_name(color_frame.get_format()))
    dw, dh = int(depth_frame.get_width()), int(depth_frame.get_height())
    depth_fmt = _format_name(depth_frame.get_format())
    if depth_fmt not in _DEPTH_16BIT:
        raise UserError(f"Orbbec depth format {depth_fmt} is not supported: choose a Y16 depth mode.")
    if (dw, dh) != (rgb.shape[1], rgb.shape[0]):
        raise ValueError(f"depth {dw}x{dh} is not aligned to colour {rgb.shape[1]}x{rgb.shape[0]}")
    raw = np.asanyarray(depth_frame.get_data()).reshape(-1)
    depth_raw = np.frombuffer(raw.tobytes()[: dw * dh * 2], dtype="<u2").reshape(dh, dw).copy()
    scale_mm = float(depth_frame.get_depth_scale()) or 1.0
    if intrinsics is None:
        try:
            intrinsics = intrinsics_from_ob(color_frame.get_stream_profile().as_video_stream_profile().get_intrinsic())
        except (AttributeError, *_sdk_errors()):
            intrinsics = None
    return Frame(
        color=rgb,
        depth_raw=depth_raw,
        depth_scale=float(f"{scale_mm * 0.001:.7g}"),
        timestamp=int(color_frame.get_timestamp_us()) / 1e6,
        index=index,
        intrinsics=intrinsics or Intrinsics.default_for(w, h),
        host_time=host,
    )


def process_frameset(frameset, align_filter, *, index: int, intrinsics: Intrinsics | None = None,
                     host_time: float | None = None) -> Frame | None:
    """Align an SDK FrameSet's depth to its colour with `align_filter` (an `AlignFilter` to the colour
    stream) and convert it with `frames_to_frame`; None when colour or depth is missing."""
    host = time.monotonic() if host_time is None else host_time
    aligned = align_filter.process(frameset)
    aligned = aligned.as_frame_set() if aligned is not None else None
    color = aligned.get_color_frame() if aligned is not None else None
    depth = aligned.get_depth_frame() if aligned is not None else None
    if color is None or depth is None:
        return None
    return frames_to_frame(color, depth, index=index, intrinsics=intrinsics, host_time=host)


def parse_orbbec_uri(uri: str) -> tuple[str | None, str | None]:
    """(serial, recording path) of "orbbec://[SERIAL]" or "orbbec:///path/file.bag"."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "orbbec":
        raise UserError(f"'{uri}' is not an Orbbec source: use orbbec://[SERIAL] or orbbec:///path/recording.bag.", 2)
    rest = rest.split("?", 1)[0]
    if rest.lower().endswith(".bag"):
        return None, rest
    return (rest.strip("/") or None), None


class OrbbecSource(Source):
    """An Orbbec camera or Orbbec `.bag` recording (see module doc) with depth aligned to colour.

    mode: `CameraMode` (also from the URI query, e.g. orbbec://?width=1280&height=720): colour mode (RGB
    preferred; other formats are decoded); depth uses depth_width x depth_height when given, else the
    SDK's default depth mode at `fps`; timeout_s: longest wait for one frameset before `UserError`.
    """

    def __init__(self, uri: str, *, mode: CameraMode | None = None) -> None:
        super().__init__()
        self.uri = uri
        self.serial, self.path = parse_orbbec_uri(uri)
        query = {k.lower(): v[-1] for k, v in parse_qs(uri.partition("?")[2]).items()}
        mode = (mode or CameraMode()).with_query(query, uri)
        self.mode = mode
        self.width, self.height, self.fps = mode.width, mode.height, mode.fps
        self.depth_width, self.depth_height = mode.depth_width, mode.depth_height
        self.timeout_s = mode.timeout_s
        self.state = "closed"
        self._ob = None
        self._ctx = None
        self._device = None
        self._playback = None
        self._pipeline = None
        self._align = None
        self._intrinsics: Intrinsics | None = None
        self._index = 0

    def _open(self) -> SourceInfo:
        ob = self._ob = import_pyorbbecsdk()
        # Keep one Context alive for the whole session: with none alive, the SDK 2.x can hang
        # when a PlaybackDevice is created.
        self._ctx = ob.Context()
        self._index = 0
        info = self._open_file() if self.path is not None else self._open_live()
        self._align = ob.AlignFilter(align_to_stream=ob.OBStreamType.COLOR_STREAM)
        self.state = "streaming"
        return info

    def _open_file(self) -> SourceInfo:
        ob = self._ob
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise UserError(f"Orbbec recording '{self.path}' does not exist: give an Orbbec .bag file.", 2)
        try:
            self._playback = ob.PlaybackDevice(str(path))
            self._device = self._playback
            pipeline = ob.Pipeline(self._playback)
            config = ob.Config()
            sensors = self._playback.get_sensor_list()
            types = {sensors.get_type_by_index(i) for i in range(sensors.get_count())}
            for needed, label in ((ob.OBSensorType.COLOR_SENSOR, "colour"), (ob.OBSensorType.DEPTH_SENSOR, "depth")):
                if needed not in types:
                    raise UserError(f"'{path.name}' has no {label} stream: record both depth and colour.")
                config.enable_stream(needed)
            config.set_frame_aggregate_output_mode(ob.OBFrameAggregateOutputMode.FULL_FRAME_REQUIRE)
            pipeline.start(config)
        except _sdk_errors() as exc:
            logger.debug("Orbbec SDK could not open %s: %s", path, exc)
            raise UserError(
                f"'{path.name}' is not a readable Orbbec recording (corrupt, truncated or another format): "
                "check the file."
            ) from exc
        self._pipeline = pipeline
        self._intrinsics = self._camera_intrinsics()
        return SourceInfo(name=path.name, width=self.width, height=self.height, fps=float(self.fps), live=False)

    def _open_live(self) -> SourceInfo:
        ob = self._ob
        devices = self._ctx.query_devices()
        count = devices.get_count()
        if count == 0:
            raise UserError(NO_CAMERA_MESSAGE)
        try:
            device = devices.get_device_by_serial_number(self.serial) if self.serial else devices.get_device_by_index(0)
        except _sdk_errors() as exc:
            found = ", ".join(devices.get_device_serial_number_by_index(i) for i in range(count))
            raise UserError(
                f"No Orbbec camera with serial {self.serial} is connected (found: {found}): "
                "check the serial or omit it."
            ) from exc
        self._device = device
        info = device.get_device_info()
        name = f"{info.get_name()} {info.get_serial_number()}"
        pipeline = ob.Pipeline(device)
        config = ob.Config()
        color_profile = self._pick_profile(pipeline, ob.OBSensorType.COLOR_SENSOR, self.width, self.height,
                                           (ob.OBFormat.RGB, ob.OBFormat.UNKNOWN_FORMAT), name)
        depth_profile = self._pick_profile(pipeline, ob.OBSensorType.DEPTH_SENSOR, self.depth_width or 0,
                                           self.depth_height or 0, (ob.OBFormat.Y16, ob.OBFormat.UNKNOWN_FORMAT), name)
        config.enable_stream(color_profile)
        config.enable_stream(depth_profile)
        config.set_frame_aggregate_output_mode(ob.OBFrameAggregateOutputMode.FULL_FRAME_REQUIRE)
        try:
            pipeline.enable_frame_sync()
        except _sdk_errors() as exc:
            logger.debug("Orbbec frame sync unavailable: %s", exc)
        try:
            pipeline.start(config)
        except _sdk_errors() as exc:
            raise UserError(
                f"The Orbbec camera {name} could not start {self.width}x{self.height} @ {self.fps} fps "
                f"({str(exc).rstrip('.')}): reconnect it to a USB 3 port and try again."
            ) from exc
        self._pipeline = pipeline
        self._intrinsics = intrinsics_from_ob(color_profile.get_intrinsic()) or self._camera_intrinsics()
        return SourceInfo(name=name, width=color_profile.get_width(), height=color_profile.get_height(),
                          fps=float(color_profile.get_fps()), live=True)

    def _pick_profile(self, pipeline, sensor_type, width: int, height: int, formats, name: str):
        profiles = pipeline.get_stream_profile_list(sensor_type)
        for fmt in formats:
            try:
                profile = profiles.get_video_stream_profile(width, height, fmt, self.fps)
            except _sdk_errors():
                continue
            if profile is not None:
                return profile
        video = [profiles.get_stream_profile_by_index(i).as_video_stream_profile() for i in range(profiles.get_count())]
        offered = sorted({f"{p.get_width()}x{p.get_height()}@{p.get_fps()}" for p in video})
        kind = "colour" if sensor_type == self._ob.OBSensorType.COLOR_SENSOR else "depth"
        size = f"{width}x{height}" if width else "its default size"
        raise UserError(f"The Orbbec camera {name} has no {kind} mode {size} @ {self.fps} fps: pick one of "
                        f"{', '.join(offered[:8]) or 'none'}.", 2)

    def _camera_intrinsics(self) -> Intrinsics | None:
        try:
            return intrinsics_from_ob(self._pipeline.get_camera_param().rgb_intrinsic)
        except (AttributeError, *_sdk_errors()):
            return None

    def _read(self) -> Frame | None:
        if self.state == "ended":
            return None
        ob = self._ob
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                frames = self._pipeline.wait_for_frames(_POLL_MS)
            except _sdk_errors() as exc:
                logger.warning("Orbbec: %s", exc)
                frames = None
            frame = None if frames is None else process_frameset(
                frames, self._align, index=self._index, intrinsics=self._intrinsics
            )
            if frame is not None:
                self._index += 1
                return frame
            if self._playback is not None and self._playback.get_playback_status() == ob.OBPlaybackStatus.STOPPED:
                self.state = "ended"
                return None
            if time.monotonic() > deadline:
                self.state = "disconnected"
                raise UserError(
                    "The Orbbec camera stopped sending frames (unplugged?): "
                    "check its USB 3 cable and port, then start again."
                )

    def lock_exposure_and_white_balance(self) -> bool:
        """Turn off colour auto exposure and auto white balance; False for recordings (logged)."""
        return self._set_auto(False)

    def unlock_exposure_and_white_balance(self) -> bool:
        """Turn colour auto exposure and auto white balance back on; False for recordings."""
        return self._set_auto(True)

    def _set_auto(self, enabled: bool) -> bool:
        if not self._is_open or self._playback is not None or self._device is None:
            logger.info("Orbbec %s: exposure/white balance cannot change for a recording or closed camera", self.uri)
            return False
        ob = self._ob
        done = False
        props = ob.OBPropertyID
        for prop in (props.OB_PROP_COLOR_AUTO_EXPOSURE_BOOL, props.OB_PROP_COLOR_AUTO_WHITE_BALANCE_BOOL):
            try:
                if self._device.is_property_supported(prop, ob.OBPermissionType.PERMISSION_WRITE):
                    self._device.set_bool_property(prop, enabled)
                    done = True
            except _sdk_errors() as exc:
                logger.warning("Orbbec: cannot set %s: %s", prop, exc)
        return done

    def _close(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except _sdk_errors() as exc:
                logger.debug("Orbbec pipeline.stop: %s", exc)
        self._pipeline = None
        self._align = None
        self._device = None
        self._playback = None
        self._ctx = None
        self.state = "closed"
