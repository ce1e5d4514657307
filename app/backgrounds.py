"""The replacement background the app composites over: `engines.matting.compositing` backgrounds plus video.

`make_replacement(spec, blur_sigma_px)` checks the user's choice at once (UserError with one
sentence) and returns an object with `render(color_rgb, depth_m, focus_m=None)` -> uint8 HxWx3 RGB
at the frame's size. Specs: an image path, a video path (.mp4/.avi/.mov/.mkv/.webm/.m4v, looped),
"#RRGGBB" or a colour name, "blur" (depth-aware blur of the real background, sigma in pixels),
"checker". `subject_focus_m` estimates the distance the depth-aware blur keeps sharp.
`Compositor` puts a matted frame over the chosen background (foreground colours by blur fusion).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from engines.matting.compositing import (
    VIDEO_EXTENSIONS,
    Background,
    composite,
    is_video,
    parse_background_spec,
)
from engines.matting.foreground import ForegroundEstimator
from engines.matting.beside import run_beside, settled
from engines.matting.replacement import VideoBackground

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
BUILTIN_SPECS = ("blur", "checker")
__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "Compositor", "is_video", "make_replacement", "subject_focus_m"]


class _LazyBackground:
    """An `engines.compositing.Background` built at the first frame's size (static ones are cached)."""

    def __init__(self, spec: str, blur_sigma_px: float) -> None:
        self.spec = parse_background_spec(spec, blur_sigma_px=blur_sigma_px)  # raises UserError
        self.uses_camera_image = self.spec.kind == "blur"
        if self.spec.kind == "image":  # read the file now so a broken image is reported at once
            self._background: Background | None = Background(self.spec, 64, 48)
        else:
            self._background = None

    def render(self, color_rgb: np.ndarray, depth_m: np.ndarray | None = None,
               focus_m: float | None = None) -> np.ndarray:
        if self._background is None:
            h, w = color_rgb.shape[:2]
            self._background = Background(self.spec, w, h)
        return self._background.render(color_rgb, depth_m, focus_m)


def make_replacement(spec: str, blur_sigma_px: float = 12.0):
    """The background to composite over for a user's choice; UserError if it cannot be used."""
    text = str(spec).strip()
    if is_video(text):
        return VideoBackground(text)
    return _LazyBackground(text, blur_sigma_px)


def subject_focus_m(depth_m: np.ndarray, alpha: np.ndarray, stride: int = 4) -> float | None:
    """Median depth (metres) of the subject (alpha > 0.5, valid depth), sampled every `stride` pixels."""
    d = depth_m[::stride, ::stride]
    a = alpha[::stride, ::stride]
    sample = d[(a > 0.5) & (d > 0)]
    return float(np.median(sample)) if sample.size >= 16 else None


class Compositor:
    """Turns a matted frame into the output image over the chosen replacement background.

    Engine-thread object: `set_background` (raises UserError for an unusable choice and keeps the
    previous one), `set_plate` (the captured background's colour plate, used by foreground
    estimation and to remove the subject before blurring the real background), `compose`, `close`.

    render_beside (settable between frames): render the replacement background on a helper thread of its
    own (started at the first such frame, ended by `close`) while the caller's thread estimates the
    foreground (the two are independent and each a few milliseconds), so a frame's compositing takes the
    longer of them instead of their sum; the output is the same either way.
    """

    def __init__(self, render_beside: bool = False) -> None:
        self._background = make_replacement("checker")
        self._plate: np.ndarray | None = None  # float32 HxWx3 RGB in [0, 1]
        self._plate_u8: np.ndarray | None = None
        self._foreground = ForegroundEstimator()
        self.render_beside = render_beside
        self._beside: ThreadPoolExecutor | None = None

    def set_background(self, spec: str, blur_sigma_px: float = 12.0) -> None:
        background = make_replacement(spec, blur_sigma_px)
        old, self._background = self._background, background
        close = getattr(old, "close", None)
        if callable(close):
            close()

    def set_plate(self, color_mean: np.ndarray) -> None:
        """color_mean: the prior's float32 HxWx3 RGB plate in [0, 1]."""
        self._plate = color_mean
        self._plate_u8 = np.clip(color_mean * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def compose(self, color_rgb: np.ndarray, depth_m: np.ndarray, alpha: np.ndarray,
                timings: dict[str, float] | None = None) -> np.ndarray:
        """uint8 HxWx3 RGB: alpha * F + (1 - alpha) * new background (F by blur fusion against the plate).

        color_rgb uint8 HxWx3 RGB, depth_m float32 HxW metres, alpha float32 HxW in [0, 1]; stage
        milliseconds are added to `timings` when given: "background" (rendering it, on whichever thread)
        and "composite" (foreground estimation, waiting for the background if it was rendered beside, and
        the blend). Raises what the background's rendering raises, after it has ended.
        """
        plate, plate_u8, replacement = self._plate, self._plate_u8, self._background
        plate_fits = plate is not None and plate.shape == color_rgb.shape

        def render() -> tuple[np.ndarray, float]:
            begin = time.perf_counter()
            source = color_rgb
            if plate_fits and getattr(replacement, "uses_camera_image", False):
                # Blur the real background without the subject: put the captured plate where the subject is,
                # so the blur does not smear the subject's colours into a halo around it.
                source = cv2.blendLinear(plate_u8, color_rgb, alpha, 1.0 - alpha)
            return replacement.render(source, depth_m, subject_focus_m(depth_m, alpha)), time.perf_counter() - begin

        if self.render_beside and self._beside is None:
            self._beside = ThreadPoolExecutor(1, thread_name_prefix="Background")
        rendering = run_beside(self._beside if self.render_beside else None, render)
        with settled(rendering):  # the helper reads this frame's arrays until it is done
            middle = time.perf_counter()
            # F differs from the camera image only where alpha is soft: estimated there, in 8 bits
            foreground = color_rgb
            soft = self._foreground.soft_region(color_rgb, alpha, plate if plate_fits else None)
            if soft is not None:
                box, f_box = soft
                foreground = color_rgb.copy()
                foreground[box] = cv2.convertScaleAbs(f_box, alpha=255.0)  # rounded; F >= 0, so abs is a no-op
            background, render_s = rendering.result()
        output = composite(color_rgb, alpha, background, foreground)
        if timings is not None:  # "background": the render's own time, wherever it ran
            timings["background"] = render_s * 1e3
            timings["composite"] = (time.perf_counter() - middle) * 1e3
        return output

    def close(self) -> None:
        """Closes the background (a video file) and the helper thread; call once, when done composing."""
        if self._beside is not None:
            self._beside.shutdown(wait=True)
            self._beside = None
        close = getattr(self._background, "close", None)
        if callable(close):
            close()
