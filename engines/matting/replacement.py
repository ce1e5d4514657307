"""The replacement background for a user's choice, including a video.

`open_replacement(spec, width, height)` is the one factory: a video file (`VideoBackground`, played
one frame per composited frame and looped) or any still choice of `engines.matting.compositing`
(colour, image, blur, checker). Videos are decoded with PyAV (FFmpeg), so every container and codec
FFmpeg reads works (MP4/H.264, WebM/VP9, MOV, MKV, AVI...). Used by the window (`app.backgrounds`)
and by `main.py process --replace`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.matting.compositing import (
    CHECKER_CELL_PX,
    DEFAULT_BLUR_SIGMA_PX,
    Background,
    fit_background,
    is_video,
    make_background,
)
from sensors.errors import UserError


class VideoBackground:
    """Frames of a video, looping at its end, fitted (scaled and centre-cropped) to the frame size.

    `render(image_rgb, depth_m=None, focus_m=None)` -> uint8 (H, W, 3) RGB at image_rgb's size; each
    call advances the video by one frame. Raises UserError (one sentence) when the file is missing
    (exit code 2), cannot be decoded, or has no video frames.
    """

    uses_camera_image = False
    is_static = False

    def __init__(self, path: str | Path) -> None:
        import av  # imported here so that other backgrounds never load FFmpeg

        self.path = Path(str(path).strip()).expanduser()
        if not self.path.is_file():
            raise UserError(f"The background video '{path}' does not exist.", 2)
        self._av = av
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.FFmpegError, OSError, IndexError) as exc:
            raise UserError(f"The background video '{path}' cannot be read ({type(exc).__name__}): use an MP4, "
                            "WebM or MOV video.") from None
        self._stream.thread_type = "AUTO"
        self._frames = self._decode()
        self._last: np.ndarray | None = None
        first = self._next_rgb()
        if first is None:
            self.close()
            raise UserError(f"The background video '{path}' has no frames that can be decoded.")
        self._pending = first  # the check decoded the first frame: show it first

    def _decode(self):
        try:
            for frame in self._container.decode(self._stream):
                yield frame.to_ndarray(format="rgb24")
        except self._av.FFmpegError:
            return  # a damaged tail: loop over what decoded

    def _next_rgb(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        if frame is None and self._last is not None:  # the end: from the start again
            try:
                self._container.seek(0, stream=self._stream)
            except self._av.FFmpegError:
                return self._last
            self._frames = self._decode()
            frame = next(self._frames, None)
        if frame is not None:
            self._last = frame
        return self._last

    def render(self, image_rgb: np.ndarray, depth_m: np.ndarray | None = None,
               focus_m: float | None = None) -> np.ndarray:
        h, w = np.asarray(image_rgb).shape[:2]
        frame, self._pending = (self._pending, None) if self._pending is not None else (self._next_rgb(), None)
        return fit_background(frame, w, h)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def open_replacement(spec: str, width: int, height: int, blur_sigma_px: float = DEFAULT_BLUR_SIGMA_PX,
                     checker_cell_px: int = CHECKER_CELL_PX) -> VideoBackground | Background:
    """The background for a user's choice at width x height: a `VideoBackground` for a video file, else
    `compositing.make_background` (see `parse_background_spec` for the choices). Both render with
    `render(image_rgb, depth_m=None, focus_m=None)`. Raises UserError with one sentence when invalid."""
    if is_video(spec):
        return VideoBackground(spec)
    return make_background(spec, width, height, blur_sigma_px, checker_cell_px)
