"""Intel RealSense cameras and their recordings (ROS1 `.bag`, ROS2 `.db3`) through pyrealsense2.

`RealSenseSource` is one `Source` for both:

    realsense://                 the first camera found
    realsense://SERIAL           that camera
    realsense://?width=1280&height=720&fps=15&filters=spatial,temporal,hole_filling&record=out.db3
    path/to/file.bag | .db3      a recording (played frame by frame unless `real_time=True`)

Every `Frame` has colour as RGB uint8 HxWx3, depth aligned to colour (`rs.align(rs.stream.color)`)
as uint16 `depth_raw` with `depth_scale` metres per unit, the colour camera's intrinsics, the device
timestamp in seconds and `host_time = time.monotonic()` when the frameset reached the host.

Cameras stream through `rs.pipeline`; recordings through `RecordingPlayer`, which reads the
playback sensors and pairs depth with colour by device time (the pipeline's syncer mis-pairs them
when one stream runs ahead in the file).

Live sessions can be recorded at the same time with `record_to="session.db3"` (pyrealsense2 2.58+
writes ROS2 `.db3`, older SDKs `.bag`: `recording_extension()`); `record_frames` does only that.

Faults the user can act on (no camera, USB 2 link, unplugged camera, corrupt file, missing SDK)
raise `UserError` with one sentence; nothing here waits without a time limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.source import Source, SourceInfo

logger = logging.getLogger(__name__)

NO_CAMERA_MESSAGE = "No RealSense camera found: connect one to a USB 3 port or give a recording path."
_POLL_MS = 100  # how long one wait for a frameset may block before faults are re-checked
_END_GRACE_S = 0.5  # recordings: quiet time after the file was read before its end is declared


@dataclass(frozen=True)
class DepthFilters:
    """Optional librealsense post-processing of depth, applied before alignment; all off by default.

    spatial: edge-preserving smoothing (`rs.spatial_filter`) with `spatial_alpha` in (0, 1] and
    `spatial_delta` in depth units; temporal: smoothing over frames (`rs.temporal_filter`) with
    `temporal_alpha` and `temporal_delta`; hole_filling: fills zero pixels (`rs.hole_filling_filter`,
    `hole_filling_mode` 0 = fill from left, 1 = farthest of the neighbours, 2 = nearest).
    """

    spatial: bool = False
    temporal: bool = False
    hole_filling: bool = False
    spatial_alpha: float = 0.5
    spatial_delta: float = 20.0
    temporal_alpha: float = 0.4
    temporal_delta: float = 20.0
    hole_filling_mode: int = 1

    @staticmethod
    def from_names(names: str) -> "DepthFilters":
        """Parse "spatial,temporal,hole_filling" (any subset, comma separated; "" = none)."""
        wanted = {n.strip().lower().replace("-", "_") for n in names.split(",") if n.strip()}
        known = {"spatial", "temporal", "hole_filling"}
        unknown = wanted - known
        if unknown:
            raise UserError(
                f"Unknown RealSense depth filter(s) {', '.join(sorted(unknown))}: "
                "use spatial, temporal or hole_filling.",
                2,
            )
        return DepthFilters(**{name: True for name in wanted})

    @property
    def any(self) -> bool:
        return self.spatial or self.temporal or self.hole_filling


def import_pyrealsense2():
    """The pyrealsense2 module, or `UserError` naming the pip package (or libusb) when it cannot load."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        if "libusb" in str(exc):
            raise UserError(
                "pyrealsense2 cannot load libusb: install it with 'apt-get install libusb-1.0-0' (Debian/Ubuntu)."
            ) from exc
        raise UserError(
            "RealSense support needs the pyrealsense2 package: install it with 'pip install pyrealsense2'."
        ) from exc
    return rs


def parse_realsense_uri(uri: str) -> tuple[str | None, str | None, dict[str, str]]:
    """Split a source string into (serial, recording path, query options).

    "realsense://" -> (None, None, {}); "realsense://123?fps=15" -> ("123", None, {"fps": "15"});
    "rec.db3" -> (None, "rec.db3", {}). The serial is None when any camera will do.
    """
    if "://" not in uri:
        return None, uri, {}
    scheme, rest = uri.split("://", 1)
    if scheme.lower() != "realsense":
        raise UserError(f"'{uri}' is not a RealSense source: use realsense://[SERIAL] or a .bag/.db3 path.", 2)
    rest, _, query = rest.partition("?")
    options = {k.lower(): v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    serial = rest.strip("/") or None
    return serial, None, options


def rs_color_to_rgb(data: np.ndarray, format_name: str) -> np.ndarray:
    """Colour pixels of a RealSense frame as RGB uint8 HxWx3.

    data: the frame's pixels as numpy (HxWx3 for rgb8/bgr8, HxWx4 for rgba8/bgra8, HxWx2 or HxW
    uint16 for yuyv/uyvy); format_name: `str(rs.format.X)` or just "rgb8", "bgr8", ... .
    """
    fmt = format_name.rsplit(".", 1)[-1].lower()
    if fmt == "rgb8":
        return np.array(data, dtype=np.uint8, copy=True)  # the SDK reuses its buffers
    if fmt == "bgr8":
        return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    if fmt == "rgba8":
        return cv2.cvtColor(data, cv2.COLOR_RGBA2RGB)
    if fmt == "bgra8":
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    if fmt in ("yuyv", "uyvy"):
        packed = np.ascontiguousarray(data).view(np.uint8).reshape(data.shape[0], -1, 2)
        code = cv2.COLOR_YUV2RGB_YUY2 if fmt == "yuyv" else cv2.COLOR_YUV2RGB_UYVY
        return cv2.cvtColor(packed, code)
    raise UserError(f"RealSense colour format '{fmt}' is not supported: record colour as rgb8, bgr8 or yuyv.")


def recording_extension() -> str:
    """The file type the installed pyrealsense2 records: ".db3" (ROS2) from 2.58 on, else ".bag"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(part) for part in version("pyrealsense2").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return ".db3"
    return ".db3" if (major, minor) >= (2, 58) else ".bag"


def record_frames(path: str, frames: int, uri: str = "realsense://", **options) -> int:
    """Record `frames` framesets from a live camera to `path` (.db3 with pyrealsense2 >= 2.58).

    Returns how many framesets were read while recording. `options` go to `RealSenseSource`.
    """
    with RealSenseSource(uri, record_to=path, **options) as source:
        count = 0
        while count < frames and source.read() is not None:
            count += 1
    return count


class RealSenseSource(Source):
    """A RealSense camera (`realsense://[SERIAL]`) or recording (`.bag`/`.db3` path); see module doc.

    width, height, fps: colour mode (depth uses the same unless depth_width/depth_height are given);
    the defaults 640x480 @ 30 work on D415, D435 and D455. filters: `DepthFilters` (off by default).
    real_time: recordings only; False plays every frame in order as fast as it is read (batch),
    True paces frames at recording speed and drops what the reader misses (preview).
    record_to: live only; also write the session to this file. timeout_s: longest wait for one
    frameset before the camera counts as stalled. reconnect_attempts: how often a stalled or
    unplugged camera is looked for again (each waits up to `reconnect_wait_s`) before `UserError`.
    Query options in the URI (width, height, fps, depth_width, depth_height, filters, record)
    override the keyword arguments.
    """

    def __init__(
        self,
        uri: str,
        *,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        depth_width: int | None = None,
        depth_height: int | None = None,
        filters: DepthFilters | None = None,
        real_time: bool = False,
        record_to: str | None = None,
        timeout_s: float = 5.0,
        reconnect_attempts: int = 3,
        reconnect_wait_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.serial, self.path, query = parse_realsense_uri(uri)
        try:
            width = int(query.get("width", width))
            height = int(query.get("height", height))
            fps = int(query.get("fps", fps))
            depth_width = int(query["depth_width"]) if "depth_width" in query else depth_width
            depth_height = int(query["depth_height"]) if "depth_height" in query else depth_height
        except ValueError as exc:
            raise UserError(
                f"'{uri}' has a non-numeric width, height or fps: use e.g. ?width=640&height=480&fps=30.", 2
            ) from exc
        if "filters" in query:
            filters = DepthFilters.from_names(query["filters"])
        record_to = query.get("record", record_to) or None
        self.width, self.height, self.fps = width, height, fps
        self.depth_width = depth_width or width
        self.depth_height = depth_height or height
        self.filters = filters or DepthFilters()
        self.real_time = real_time
        self.record_to = record_to
        self.timeout_s = timeout_s
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_wait_s = reconnect_wait_s
        self.state = "closed"  # closed | streaming | reconnecting | disconnected | ended
        self._rs = None
        self._pipe = None
        self._ctx = None
        self._device = None
        self._player: RecordingPlayer | None = None
        self._align = None
        self._filters: list = []
        self._index = 0
        self._removed = threading.Event()
        self._fallback_scale = 0.001
        self._intrinsics: Intrinsics | None = None
        self._model = "RealSense"

    @property
    def live(self) -> bool:
        return self.path is None

    # -- opening ---------------------------------------------------------------------------------
    def _open(self) -> SourceInfo:
        rs = self._rs = import_pyrealsense2()
        self._align = rs.align(rs.stream.color)
        self._filters = self._make_filters(rs)
        self._index = 0
        info = self._open_file() if self.path is not None else self._open_live()
        self.state = "streaming"
        return info

    def _make_filters(self, rs) -> list:
        chain = []
        f = self.filters
        if f.spatial:
            spatial = rs.spatial_filter()
            spatial.set_option(rs.option.filter_smooth_alpha, f.spatial_alpha)
            spatial.set_option(rs.option.filter_smooth_delta, f.spatial_delta)
            chain.append(spatial)
        if f.temporal:
            temporal = rs.temporal_filter()
            temporal.set_option(rs.option.filter_smooth_alpha, f.temporal_alpha)
            temporal.set_option(rs.option.filter_smooth_delta, f.temporal_delta)
            chain.append(temporal)
        if f.hole_filling:
            chain.append(rs.hole_filling_filter(int(f.hole_filling_mode)))
        return chain

    def _open_file(self) -> SourceInfo:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise UserError(f"RealSense recording '{self.path}' does not exist: give a .bag or .db3 file.", 2)
        player = RecordingPlayer(self._rs, path, real_time=self.real_time)
        self._player = player
        self._set_stream_facts(player.color_profile, player.depth_sensor)
        pace = "real time" if self.real_time else "every frame"
        logger.info("Playing %s (%.1f s, %s)", path, player.duration_s, pace)
        return SourceInfo(
            name=path.name,
            width=player.color_profile.width(),
            height=player.color_profile.height(),
            fps=float(player.color_profile.fps()),
            live=False,
            frame_count=None,
        )

    def _find_streams(self, profile):
        rs = self._rs
        color = depth = None
        for stream in profile.get_streams():
            if not stream.is_video_stream_profile():
                continue
            if stream.stream_type() == rs.stream.color and color is None:
                color = stream.as_video_stream_profile()
            elif stream.stream_type() == rs.stream.depth and depth is None:
                depth = stream.as_video_stream_profile()
        return color, depth

    def _set_stream_facts(self, color, depth_sensor) -> None:
        """Colour intrinsics and the depth sensor's scale (used when a frame carries no units)."""
        i = color.get_intrinsics()
        self._intrinsics = Intrinsics(fx=float(i.fx), fy=float(i.fy), cx=float(i.ppx), cy=float(i.ppy))
        try:
            self._fallback_scale = float(depth_sensor.as_depth_sensor().get_depth_scale())
        except (RuntimeError, AttributeError):
            self._fallback_scale = 0.001

    def _make_context(self):
        """The librealsense context that finds cameras (a seam for tests)."""
        return self._rs.context()

    def _make_pipeline(self):
        """A pipeline on `self._ctx` (a seam for tests)."""
        return self._rs.pipeline(self._ctx)

    def _find_device(self):
        """The wanted camera (by serial, else the first one), or UserError when there is none."""
        rs = self._rs
        self._ctx = self._ctx or self._make_context()
        devices = list(self._ctx.query_devices())
        if not devices:
            raise UserError(NO_CAMERA_MESSAGE)
        if self.serial is None:
            return devices[0]
        for dev in devices:
            if camera_info_value(rs, dev, "serial_number") == self.serial:
                return dev
        found = ", ".join(camera_info_value(rs, d, "serial_number") or "?" for d in devices)
        raise UserError(
            f"No RealSense camera with serial {self.serial} is connected (found: {found}): check the serial or omit it."
        )

    def _open_live(self) -> SourceInfo:
        rs = self._rs
        device = self._find_device()
        self._device = device
        self.serial = camera_info_value(rs, device, "serial_number")
        self._model = camera_info_value(rs, device, "name") or "RealSense"
        self._check_mode(device)
        try:
            self._ctx.set_devices_changed_callback(self._on_devices_changed)
        except (AttributeError, RuntimeError) as exc:  # older SDKs: rely on timeouts alone
            logger.debug("No devices-changed callback: %s", exc)
        self._start_live()
        return SourceInfo(
            name=f"{self._model} {self.serial}",
            width=self.width,
            height=self.height,
            fps=float(self.fps),
            live=True,
        )

    def _check_mode(self, device) -> None:
        """UserError when the camera does not offer the requested depth + colour mode (USB 2 explained)."""
        rs = self._rs
        offered = device_modes(rs, device)
        want_depth = ("depth", self.depth_width, self.depth_height, self.fps)
        want_color = ("color", self.width, self.height, self.fps)
        if want_depth in offered and want_color in offered:
            return
        usb = camera_info_value(rs, device, "usb_type_descriptor") or ""
        pairs = common_modes(offered)
        choices = ", ".join(f"{w}x{h}@{f}" for w, h, f in pairs[:6]) or "none"
        mode = f"{self.width}x{self.height} @ {self.fps} fps"
        if usb.startswith("2"):
            raise UserError(
                f"The {self._model} is on a USB {usb} link, which cannot carry {mode} depth and colour: "
                f"plug it into a USB 3 port with a USB 3 cable, or pick a mode it offers now ({choices})."
            )
        raise UserError(f"The {self._model} does not offer {mode} for both depth and colour: pick one of {choices}.", 2)

    def _start_live(self) -> None:
        rs = self._rs
        config = rs.config()
        config.enable_device(self.serial)
        config.enable_stream(rs.stream.depth, self.depth_width, self.depth_height, rs.format.z16, self.fps)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        if self.record_to:
            target = Path(self.record_to).expanduser()
            wanted = recording_extension()
            if target.suffix.lower() != wanted:
                raise UserError(f"Cannot record to '{target.name}': this pyrealsense2 writes {wanted} files.", 2)
            target.parent.mkdir(parents=True, exist_ok=True)
            config.enable_record_to_file(str(target))
        pipe = self._make_pipeline()
        try:
            profile = pipe.start(config)
        except RuntimeError as exc:
            message = str(exc)
            if self.record_to and ("extension" in message or "record" in message.lower()):
                raise UserError(f"Cannot record to '{self.record_to}': {message.rstrip('.')}.") from exc
            raise UserError(
                f"The {self._model} ({self.serial}) could not start {self.width}x{self.height} @ {self.fps} fps "
                f"({message.rstrip('.')}): reconnect it to a USB 3 port and try again."
            ) from exc
        self._pipe = pipe
        self._removed.clear()
        color, _depth = self._find_streams(profile)
        self._device = profile.get_device()
        try:
            depth_sensor = self._device.first_depth_sensor()
        except RuntimeError:
            depth_sensor = None
        self._set_stream_facts(color, depth_sensor)

    def _on_devices_changed(self, event) -> None:
        try:
            if self._device is not None and event.was_removed(self._device):
                logger.warning("RealSense %s was unplugged", self.serial)
                self._removed.set()
        except RuntimeError:
            self._removed.set()

    # -- reading ---------------------------------------------------------------------------------
    def _read(self) -> Frame | None:
        if self.state == "ended":
            return None
        if self.state == "disconnected":
            self._raise_disconnected()
        deadline = time.monotonic() + self.timeout_s
        while True:
            frames = self._next_file_frameset() if self._player is not None else self._next_live_frameset()
            if frames is None:
                self.state = "ended"
                return None
            frame = self._to_frame(frames, time.monotonic())
            if frame is not None:
                return frame
            if time.monotonic() > deadline:  # framesets keep coming without depth or without colour
                source = "recording" if self._player is not None else "camera"
                raise UserError(f"The RealSense {source} delivers colour or depth alone: record or stream both.")

    def _next_file_frameset(self):
        return self._player.next_frameset(self.timeout_s)

    def _next_live_frameset(self):
        frames = self._wait_live(self.timeout_s)
        if frames is not None:
            return frames
        for attempt in range(1, self.reconnect_attempts + 1):
            self.state = "reconnecting"
            logger.warning("RealSense %s stopped sending frames; reconnecting (%d/%d)", self.serial, attempt,
                           self.reconnect_attempts)
            self._stop_pipe()
            if not self._wait_for_device(self.reconnect_wait_s):
                continue
            try:
                self._start_live()
            except UserError as exc:
                logger.warning("Reconnect failed: %s", exc)
                continue
            frames = self._wait_live(self.timeout_s)
            if frames is not None:
                self.state = "streaming"
                return frames
        self._stop_pipe()
        self._raise_disconnected()

    def _raise_disconnected(self):
        self.state = "disconnected"
        raise UserError(
            f"The RealSense camera {self.serial or ''} stopped sending frames and did not come back: "
            "check its USB 3 cable and port, then start again."
        )

    def _wait_live(self, timeout_s: float):
        """A frameset within `timeout_s`, or None on timeout, unplug or SDK error."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._removed.is_set():
            try:
                ok, frames = self._pipe.try_wait_for_frames(_POLL_MS)
            except RuntimeError as exc:
                logger.warning("RealSense %s: %s", self.serial, exc)
                return None
            if ok:
                return frames
        return None

    def _wait_for_device(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                for dev in self._ctx.query_devices():
                    if camera_info_value(self._rs, dev, "serial_number") == self.serial:
                        self._device = dev
                        return True
            except RuntimeError:
                pass
            time.sleep(0.25)
        return False

    def _to_frame(self, frames, host_time: float) -> Frame | None:
        """Filter, align and convert one frameset; None when it lacks colour or depth."""
        if not frames.get_color_frame() or not frames.get_depth_frame():
            return None
        for block in self._filters:
            frames = block.process(frames).as_frameset()
        frames = self._align.process(frames)
        color = frames.get_color_frame()
        depth = frames.get_depth_frame()
        if not color or not depth:
            return None
        rgb = rs_color_to_rgb(np.asanyarray(color.get_data()), str(color.get_profile().format()))
        depth_raw = np.array(depth.get_data(), dtype=np.uint16, copy=True)
        try:
            scale = float(f"{float(depth.get_units()):.7g}") or self._fallback_scale
        except RuntimeError:
            scale = self._fallback_scale
        frame = Frame(
            color=rgb,
            depth_raw=depth_raw,
            depth_scale=scale,
            timestamp=float(color.get_timestamp()) / 1000.0,
            index=self._index,
            intrinsics=self._intrinsics or Intrinsics.default_for(rgb.shape[1], rgb.shape[0]),
            host_time=host_time,
        )
        self._index += 1
        return frame

    # -- camera controls -------------------------------------------------------------------------
    def lock_exposure_and_white_balance(self) -> bool:
        """Turn off colour auto exposure and auto white balance (after background capture).

        Returns True when the camera took the settings; False for recordings (nothing to lock, a
        note is logged) or sensors without these options. Note: D400 colour sensors switch to the
        manual exposure value when auto exposure is turned off (they cannot report the auto value).
        """
        return self._set_auto(False)

    def unlock_exposure_and_white_balance(self) -> bool:
        """Turn colour auto exposure and auto white balance back on; False for recordings."""
        return self._set_auto(True)

    def _set_auto(self, enabled: bool) -> bool:
        action = "unlock" if enabled else "lock"
        if not self._is_open or self._player is not None or self._device is None:
            logger.info("RealSense %s exposure/white balance: nothing to %s for a recording or closed camera",
                        self.uri, action)
            return False
        rs = self._rs
        sensor = _color_sensor(rs, self._device)
        if sensor is None:
            logger.info("RealSense %s has no colour sensor options to %s", self.serial, action)
            return False
        done = False
        for option in (rs.option.enable_auto_exposure, rs.option.enable_auto_white_balance):
            try:
                if sensor.supports(option):
                    sensor.set_option(option, 1.0 if enabled else 0.0)
                    done = True
            except RuntimeError as exc:
                logger.warning("RealSense %s: cannot set %s: %s", self.serial, option, exc)
        logger.info("RealSense %s auto exposure and white balance %s", self.serial, "on" if enabled else "off")
        return done

    # -- closing ---------------------------------------------------------------------------------
    def _stop_pipe(self) -> None:
        if self._pipe is not None:
            try:
                self._pipe.stop()
            except RuntimeError as exc:
                logger.debug("pipeline.stop: %s", exc)
            self._pipe = None

    def _close(self) -> None:
        self._stop_pipe()
        if self._player is not None:
            self._player.close()
        self._player = None
        self._device = None
        if self._ctx is not None:
            try:
                self._ctx.set_devices_changed_callback(lambda event: None)
            except (AttributeError, RuntimeError):
                pass
        self._ctx = None
        self.state = "closed"


class RecordingPlayer:
    """Plays the depth and colour streams of a RealSense `.bag` / `.db3` and pairs them by timestamp.

    It reads the playback device's sensors directly instead of through `rs.pipeline`: the
    pipeline's syncer pairs every colour frame with the latest depth frame when one stream runs
    ahead of the other in the file (or on a busy machine), and it drops a file's first frameset.
    Each colour frame is paired with the depth frame nearest in device time (within 0.6 of the
    slower stream's frame period); colour frames without such a depth frame are skipped.

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
                return None
            frame = self._take(_POLL_MS / 1000.0)
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
            pending.append(frame)
            if len(pending) > self.MAX_PENDING:
                pending.popleft()

    def _pair(self):
        """(depth, colour) for the oldest colour frame whose nearest depth frame is known, else None."""
        depths, colors = self._depths, self._colors
        if colors and depths and self._same_clock is None:
            self._same_clock = colors[0].get_frame_timestamp_domain() == depths[0].get_frame_timestamp_domain()
            if not self._same_clock:
                logger.warning("%s: depth and colour use different clocks; pairing them in order", self.path.name)
        while colors:
            if not depths:
                if self._file_read:
                    colors.clear()
                return None
            if not self._same_clock:
                return depths.popleft(), colors.popleft()
            tc = colors[0].get_timestamp()
            while len(depths) >= 2 and depths[1].get_timestamp() <= tc:
                depths.popleft()
            if depths[-1].get_timestamp() < tc and not self._file_read:
                return None  # a later depth frame may still be nearer
            nearest = min(list(depths)[:2], key=lambda d: abs(d.get_timestamp() - tc))
            color = colors.popleft()
            if abs(nearest.get_timestamp() - tc) <= self.max_gap_ms:
                return nearest, color
            logger.debug("%s: colour frame at %.1f ms has no depth frame near it", self.path.name, tc)
        return None

    def _compose(self, depth, color):
        self._pending = (depth, color)
        try:
            self._composer.invoke(depth)
            ok, frames = self._composed.try_wait_for_frame(int(_POLL_MS * 10))
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


# -- helpers shared with sensors.devices ---------------------------------------------------------
def camera_info_value(rs, device, name: str) -> str | None:
    key = getattr(rs.camera_info, name)
    try:
        return device.get_info(key) if device.supports(key) else None
    except RuntimeError:
        return None


def _color_sensor(rs, device):
    """The sensor that streams colour (the RGB camera; the stereo module on a D405), or None."""
    try:
        return device.first_color_sensor()
    except RuntimeError:
        pass
    for sensor in device.query_sensors():
        try:
            if any(p.stream_type() == rs.stream.color for p in sensor.get_stream_profiles()):
                return sensor
        except RuntimeError:
            continue
    return None


def device_modes(rs, device) -> set[tuple[str, int, int, int]]:
    """{("depth" | "color", width, height, fps)} offered as depth z16 / colour rgb8 by a device."""
    modes: set[tuple[str, int, int, int]] = set()
    for sensor in device.query_sensors():
        try:
            profiles = sensor.get_stream_profiles()
        except RuntimeError:
            continue
        for p in profiles:
            if not p.is_video_stream_profile():
                continue
            v = p.as_video_stream_profile()
            if p.stream_type() == rs.stream.depth and p.format() == rs.format.z16:
                modes.add(("depth", v.width(), v.height(), p.fps()))
            elif p.stream_type() == rs.stream.color and p.format() == rs.format.rgb8:
                modes.add(("color", v.width(), v.height(), p.fps()))
    return modes


def common_modes(modes: set[tuple[str, int, int, int]]) -> list[tuple[int, int, int]]:
    """(width, height, fps) offered for both depth and colour, largest and fastest first."""
    depth = {m[1:] for m in modes if m[0] == "depth"}
    color = {m[1:] for m in modes if m[0] == "color"}
    return sorted(depth & color, key=lambda m: (m[0] * m[1], m[2]), reverse=True)
