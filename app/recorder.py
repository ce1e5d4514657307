"""Recording what the app produces: the composite as MP4 and/or the raw RGB-D stream.

`Recorder(folder, RecordOptions, width, height, fps, depth_scale, intrinsics)` creates
`folder/composite.mp4` (cv2.VideoWriter, mp4v) and/or `folder/rgbd/` (an rgbd-folder recording the
app and `main.py process` can open again); `write(frame, output_rgb)` adds one frame from the
engine thread; `close()` finishes both. Errors the user can act on raise UserError.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.rgbd_folder import RgbdFolderWriter

log = logging.getLogger(__name__)

COMPOSITE_NAME = "composite.mp4"
RAW_NAME = "rgbd"


@dataclass(frozen=True)
class RecordOptions:
    """What to record and where. `folder` is created; it must not hold an earlier recording."""

    folder: Path
    composite: bool = True
    raw: bool = False


def default_recording_folder(parent: Path) -> Path:
    """parent/recording-YYYYmmdd-HHMMSS (a new name each second)."""
    return Path(parent) / time.strftime("recording-%Y%m%d-%H%M%S")


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
        self._video: cv2.VideoWriter | None = None
        self._raw: RgbdFolderWriter | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create the recording folder '{self.folder}': {exc.strerror or exc}.") from exc
        if options.composite:
            path = self.folder / COMPOSITE_NAME
            if path.exists():
                raise UserError(f"'{path}' already exists: choose a new recording folder.", 2)
            video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps or 30.0), self.size)
            if not video.isOpened():
                raise UserError(f"Cannot write the video '{path}': this OpenCV build has no MP4 encoder.")
            self._video = video
        if options.raw:
            try:
                self._raw = RgbdFolderWriter(self.folder / RAW_NAME, width, height, fps=float(fps or 30.0),
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
            out.append(self.folder / RAW_NAME)
        return out

    def write(self, frame: Frame, output_rgb: np.ndarray | None) -> None:
        """Add one frame: `frame` for the raw stream, `output_rgb` (uint8 HxWx3 RGB) for the video."""
        if self._video is not None and output_rgb is not None:
            image = output_rgb
            if (image.shape[1], image.shape[0]) != self.size:
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            self._video.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if self._raw is not None:
            # Number frames from 0 in the new recording, whatever their index in the source.
            self._raw.write(Frame(color=frame.color, depth_raw=frame.depth_raw, depth_scale=frame.depth_scale,
                                  timestamp=frame.timestamp, index=self.frames, intrinsics=frame.intrinsics,
                                  host_time=frame.host_time))
        self.frames += 1

    def _release_video(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def close(self) -> None:
        """Finish both outputs. Safe to call twice."""
        self._release_video()
        if self._raw is not None:
            self._raw.close()
            self._raw = None
