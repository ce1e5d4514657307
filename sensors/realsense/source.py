"""`RealSenseSource`: one `Source` for Intel RealSense cameras and their recordings:

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
from pathlib import Path

import numpy as np

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.realsense.player import POLL_MS, RecordingPlayer
from sensors.realsense.sdk import (
    DepthFilters,
    camera_info_value,
    color_sensor,
    common_modes,
    device_modes,
    import_pyrealsense2,
    parse_realsense_uri,
    recording_extension,
    rs_color_to_rgb,
)
from sensors.source import CameraMode, Source, SourceInfo

logger = logging.getLogger(__name__)

MAX_INDEX_STEP = 300  # recordings: a colour frame number further ahead is a counter leap, not dropped frames
NO_CAMERA_MESSAGE = "No RealSense camera found: connect one to a USB 3 port or give a recording path."


class RealSenseSource(Source):
    """A RealSense camera (`realsense://[SERIAL]`) or recording (`.bag`/`.db3` path); see module doc.

    mode: `CameraMode` (colour and depth size, fps, stall timeout; depth uses the colour size unless
    given); the defaults 640x480 @ 30 work on D415, D435 and D455. filters: `DepthFilters` (off by default).
    real_time: recordings only; False plays every frame in order as fast as it is read (batch),
    True paces frames at recording speed and drops what the reader misses (preview).
    record_to: live only; also write the session to this file. reconnect_attempts: how often a stalled or
    unplugged camera is looked for again (each waits up to `reconnect_wait_s`) before `UserError`.
    Query options in the URI (width, height, fps, depth_width, depth_height, filters, record)
    override the keyword arguments.
    """

    def __init__(
        self,
        uri: str,
        *,
        mode: CameraMode | None = None,
        filters: DepthFilters | None = None,
        real_time: bool = False,
        record_to: str | None = None,
        reconnect_attempts: int = 3,
        reconnect_wait_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.serial, self.path, query = parse_realsense_uri(uri)
        mode = (mode or CameraMode()).with_query(query, uri)
        if "filters" in query:
            filters = DepthFilters.from_names(query["filters"])
        record_to = query.get("record", record_to) or None
        self.mode = mode
        self.width, self.height, self.fps = mode.width, mode.height, mode.fps
        self.depth_width = mode.depth_width or mode.width
        self.depth_height = mode.depth_height or mode.height
        self.timeout_s = mode.timeout_s
        self.filters = filters or DepthFilters()
        self.real_time = real_time
        self.record_to = record_to
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
        self._number_offset: int | None = None  # recordings: colour frame number - frame index
        self._last_index: int | None = None
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
        self._number_offset, self._last_index = None, None
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
                ok, frames = self._pipe.try_wait_for_frames(POLL_MS)
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
        index = self._recorded_index(int(color.get_frame_number())) if self._player is not None else self._index
        frame = Frame(
            color=rgb,
            depth_raw=depth_raw,
            depth_scale=scale,
            timestamp=float(color.get_timestamp()) / 1000.0,
            index=index,
            intrinsics=self._intrinsics or Intrinsics.default_for(rgb.shape[1], rgb.shape[0]),
            host_time=host_time,
        )
        self._index += 1
        return frame

    def _recorded_index(self, frame_number: int) -> int:
        """A recording's frame index: the colour frame's own number counted from the file's first, so
        outputs keep the source's identity and dropped frames leave gaps; a counter that restarts (a
        camera reset) or leaps continues right after the previous index."""
        last = self._last_index
        if self._number_offset is not None and last is not None:
            index = frame_number - self._number_offset
            if last < index <= last + MAX_INDEX_STEP:
                self._last_index = index
                return index
        index = 0 if last is None else last + 1
        self._number_offset, self._last_index = frame_number - index, index
        return index

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
        sensor = color_sensor(rs, self._device)
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
