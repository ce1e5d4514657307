"""Where finished frames go besides the screen: the virtual webcam and the recorder.

`Outputs` lives in the engine thread: `set_virtual_camera` / `set_recording` say what is wanted,
`feed(frame, output_rgb, fps, background)` opens what is wanted on the first frame (so sizes come from
the stream) and writes to it (`background`: the frame belongs to the background capture, so a take
that starts with the capture records how many of its first frames show the empty scene), `close()` ends both. Everything that happens is reported as
`EngineEvent`s through the `emit` callback; nothing here raises into the engine loop.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from app import events as ev
from app.events import EngineEvent, describe
from app.recorder import Recorder, RecordOptions
from app.virtual_camera import VirtualCamera, VirtualCameraUnavailable
from sensors.errors import UserError
from sensors.frame import Frame

log = logging.getLogger(__name__)


class Outputs:
    """Virtual camera and recorder of one engine thread. `vcam_backend`: pyvirtualcam backend name or None."""

    def __init__(self, emit: Callable[[EngineEvent], None], vcam_backend: str | None = None) -> None:
        self._emit = emit
        self.vcam_backend = vcam_backend
        self._vcam_wanted = False
        self._vcam: VirtualCamera | None = None
        self._record_wanted: RecordOptions | None = None
        self._recorder: Recorder | None = None

    def set_virtual_camera(self, enabled: bool) -> None:
        self._vcam_wanted = enabled
        if not enabled and self._vcam is not None:
            self._close_vcam()
            self._emit(EngineEvent(ev.VCAM_STOPPED, "Virtual webcam off."))

    def set_recording(self, options: RecordOptions | None) -> None:
        if options is None:
            self.stop_recording()
        else:
            self._record_wanted = options

    def stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        self._record_wanted = None
        if recorder is not None:
            recorder.close()
            where = ", ".join(str(p) for p in recorder.paths)
            self._emit(EngineEvent(ev.RECORDING_STOPPED, f"Saved {recorder.frames} frames to {where}."))

    def feed(self, frame: Frame, output: np.ndarray, fps: float, background: bool = False) -> None:
        """Send `output` (uint8 HxWx3 RGB) to the webcam and `frame` + `output` to the recorder, as wanted."""
        if self._vcam_wanted:
            self._feed_vcam(output, fps)
        if self._record_wanted is not None:
            self._feed_recorder(frame, output, fps, background)

    def close(self) -> None:
        self._close_vcam()
        self.stop_recording()

    # -- virtual camera -------------------------------------------------------------------------------
    def _close_vcam(self) -> None:
        vcam, self._vcam = self._vcam, None
        if vcam is not None:
            vcam.close()

    def _feed_vcam(self, output: np.ndarray, fps: float) -> None:
        h, w = output.shape[:2]
        if self._vcam is not None and (self._vcam.width, self._vcam.height) != (w, h):
            self._close_vcam()  # the source changed size: reopen at the new one
        if self._vcam is None:
            try:
                self._vcam = VirtualCamera(w, h, fps, backend=self.vcam_backend)
            except VirtualCameraUnavailable as exc:
                self._vcam_wanted = False
                self._emit(EngineEvent(ev.VCAM_UNAVAILABLE, f"The virtual webcam cannot start: {exc.reason}", exc.help))
                return
            self._emit(EngineEvent(ev.VCAM_STARTED, f"Virtual webcam on: {self._vcam.device} ({w}x{h}, {fps:g} fps)."))
        try:
            self._vcam.send(output)
        except Exception as exc:  # the device went away, or the backend broke
            self._vcam_wanted = False
            self._close_vcam()
            self._emit(EngineEvent(ev.VCAM_UNAVAILABLE, f"The virtual webcam stopped: {describe(exc)}"))

    # -- recorder -------------------------------------------------------------------------------------
    def _feed_recorder(self, frame: Frame, output: np.ndarray, fps: float, background: bool) -> None:
        wanted = self._record_wanted
        if self._recorder is None:
            try:
                self._recorder = Recorder(wanted, frame.width, frame.height, fps, frame.depth_scale, frame.intrinsics)
            except UserError as exc:
                self._record_wanted = None
                self._emit(EngineEvent(ev.RECORDING_FAILED, str(exc)))
                return
            self._emit(EngineEvent(ev.RECORDING_STARTED, f"Recording to {wanted.folder}."))
        try:
            self._recorder.write(frame, output, background)
        except (UserError, ValueError, OSError) as exc:  # disk full, the stream changed size, ...
            self.stop_recording()
            self._emit(EngineEvent(ev.RECORDING_FAILED, f"Recording stopped: {describe(exc)}"))
