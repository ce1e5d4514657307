"""Recording what the app produces: the composite as H.264 MP4 and/or the raw RGB-D stream.

A take is a folder named by its start time, `Recording 2026-11-30 14-05-12` (`default_recording_folder`;
" (2)", " (3)" ... when that name is taken), holding `composite.mp4` and/or `RGB-D 2026-11-30 14-05-12/`
(an rgbd-folder recording the app and `main.py process` can open again; the source list shows its
dated name). `Recorder(RecordOptions, width, height, fps, depth_scale, intrinsics)` creates both;
`write(frame, output_rgb, background=False)` adds one frame from the engine thread; `close()` finishes both.

The video is H.264 (libx264 through PyAV, yuv420p, +faststart), which browsers and editors play; an odd
width or height loses its last column or row (yuv420p needs even sizes). Each frame is stamped with the
time it was written (millisecond time base, variable frame rate), so a take lasts as long as it was
recorded even when the engine ran slower than the camera; the raw recording's meta.json gets the rate
its frames were actually written at. The raw recording's meta.json
holds width, height, fps, depth_scale and intrinsics from the start, and `background_frames` when the
take began with the background capture (the frames written with `background=True` before any other),
so `process` builds the background from them. Errors the user can act on raise UserError.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.rgbd_folder import RgbdFolderWriter

log = logging.getLogger(__name__)

COMPOSITE_NAME = "composite.mp4"
TAKE_PREFIX = "Recording "
RAW_PREFIX = "RGB-D "
VIDEO_CODEC = "libx264"
VIDEO_OPTIONS = {"crf": "20", "preset": "veryfast"}  # near-transparent quality, light on the engine thread
TIME_BASE = Fraction(1, 1000)  # video timestamps in milliseconds


@dataclass(frozen=True)
class RecordOptions:
    """What to record and where. `folder` is created; it must not hold an earlier recording."""

    folder: Path
    composite: bool = True
    raw: bool = False


def default_recording_folder(parent: Path, now: float | None = None) -> Path:
    """parent/'Recording YYYY-MM-DD HH-MM-SS' (local time), with ' (2)', ' (3)', ... if that exists."""
    name = TAKE_PREFIX + time.strftime("%Y-%m-%d %H-%M-%S", time.localtime(now))
    folder, n = Path(parent) / name, 1
    while folder.exists():
        n += 1
        folder = Path(parent) / f"{name} ({n})"
    return folder


def raw_folder(folder: Path) -> Path:
    """The raw RGB-D recording of the take `folder`: 'RGB-D <date time>' (its own name, not 'rgbd')."""
    folder = Path(folder)
    stamp = folder.name.removeprefix(TAKE_PREFIX)
    return folder / (RAW_PREFIX + stamp)


def _even(n: int) -> int:
    return max(2, int(n) // 2 * 2)


class H264Writer:
    """An H.264 MP4 (yuv420p) of uint8 RGB frames of one size, through PyAV. UserError if it cannot start."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        try:
            import av
        except ImportError as exc:
            raise UserError(f"Cannot write the video '{path}': PyAV is not installed ({exc}); "
                            "run 'pip install -r requirements.txt'.") from exc
        self.size = (_even(width), _even(height))
        try:
            self._container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
        except (OSError, av.FFmpegError) as exc:
            raise UserError(f"Cannot write the video '{path}': {getattr(exc, 'strerror', None) or exc}.") from exc
        try:
            self._stream = self._container.add_stream(VIDEO_CODEC, rate=Fraction(float(fps or 30.0)).limit_denominator(1001),
                                                      options=dict(VIDEO_OPTIONS))
            self._stream.width, self._stream.height = self.size
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.time_base = TIME_BASE
        except (av.FFmpegError, ValueError) as exc:
            self._container.close()
            raise UserError(f"Cannot write the video '{path}': this PyAV build has no H.264 encoder ({exc}).") from exc
        self._av = av
        self.frames = 0
        self._start_s: float | None = None
        self._last_pts = -1

    def write(self, rgb: np.ndarray, now_s: float | None = None) -> None:
        """Add one frame shown at `now_s` (seconds on any clock that only goes forward; default:
        `time.monotonic()`); the first frame is at 0."""
        w, h = self.size
        if rgb.shape[1] < w or rgb.shape[0] < h or rgb.shape[1] > w + 1 or rgb.shape[0] > h + 1:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)  # the stream changed size
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        now_s = time.monotonic() if now_s is None else float(now_s)
        if self._start_s is None:
            self._start_s = now_s
        frame.pts = self._last_pts = max(self._last_pts + 1, round((now_s - self._start_s) / TIME_BASE))
        frame.time_base = TIME_BASE
        try:
            self._container.mux(self._stream.encode(frame))
        except self._av.FFmpegError as exc:  # disk full, ...: one sentence for the window
            raise UserError(f"Cannot write the video: {getattr(exc, 'strerror', None) or exc}.") from exc
        self.frames += 1

    def close(self) -> None:
        try:
            self._container.mux(self._stream.encode(None))  # flush the encoder's delayed frames
        finally:
            self._container.close()


class Recorder:
    """Writes composite MP4 and/or raw RGB-D frames of one fixed size."""

    def __init__(self, options: RecordOptions, width: int, height: int, fps: float, depth_scale: float,
                 intrinsics: Intrinsics | None) -> None:
        if not (options.composite or options.raw):
            raise UserError("Choose what to record: the composite video, the raw RGB-D stream, or both.", 2)
        self.options = options
        self.folder = Path(options.folder)
        self.size = (int(width), int(height))
        self.frames = 0
        self.background_frames = 0  # leading frames of the take that show the empty scene
        self._first_s: float | None = None
        self._last_s: float | None = None
        self._leading = True
        self._video: H264Writer | None = None
        self._raw: RgbdFolderWriter | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create the recording folder '{self.folder}': {exc.strerror or exc}.") from exc
        if options.composite:
            path = self.folder / COMPOSITE_NAME
            if path.exists():
                raise UserError(f"'{path}' already exists: choose a new recording folder.", 2)
            self._video = H264Writer(path, width, height, fps)
        if options.raw:
            try:
                self._raw = RgbdFolderWriter(raw_folder(self.folder), width, height, fps=float(fps or 30.0),
                                             depth_scale=depth_scale, intrinsics=intrinsics)
            except UserError:
                self._release_video()
                raise

    @property
    def paths(self) -> list[Path]:
        out = []
        if self.options.composite:
            out.append(self.folder / COMPOSITE_NAME)
        if self.options.raw:
            out.append(raw_folder(self.folder))
        return out

    def write(self, frame: Frame, output_rgb: np.ndarray | None, background: bool = False) -> None:
        """Add one frame: `frame` for the raw stream, `output_rgb` (uint8 HxWx3 RGB) for the video.

        background: the frame is one of the background capture's (the empty scene); the leading run
        of such frames becomes the raw recording's `background_frames`."""
        if self._leading and not background:
            self._leading = False
            if self._raw is not None and self.background_frames:
                self._raw.set_background_frames(self.background_frames)
        elif self._leading:
            self.background_frames += 1
        now_s = time.monotonic()
        self._first_s = now_s if self._first_s is None else self._first_s
        self._last_s = now_s
        if self._video is not None and output_rgb is not None:
            self._video.write(output_rgb, now_s)
        if self._raw is not None:
            # Number frames from 0 in the new recording, whatever their index in the source.
            self._raw.write(Frame(color=frame.color, depth_raw=frame.depth_raw, depth_scale=frame.depth_scale,
                                  timestamp=frame.timestamp, index=self.frames, intrinsics=frame.intrinsics,
                                  host_time=frame.host_time))
        self.frames += 1

    def _release_video(self) -> None:
        video, self._video = self._video, None
        if video is not None:
            video.close()

    def close(self) -> None:
        """Finish both outputs. Safe to call twice."""
        try:
            self._release_video()
        finally:
            raw, self._raw = self._raw, None
            if raw is not None:  # a take of background frames only: all empty scene, meta leaves it unsaid
                if self.frames >= 2 and self._last_s > self._first_s:
                    measured = (self.frames - 1) / (self._last_s - self._first_s)
                    if measured < 0.9 * raw.fps:  # frames came slower than the camera's rate: say how fast
                        raw.set_fps(measured)
                raw.close()
