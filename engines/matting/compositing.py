"""Compositing a matted subject over a new background, and the backgrounds themselves.

Conventions: colour images are RGB uint8 HxWx3 unless stated; alpha is float32 HxW in [0, 1]
(1 = subject); depth is `depth_m` float32 HxW in metres with 0 or NaN for unknown; sizes are given
as (width, height) in pixels. Everything is vectorised (cv2 / numpy), no per-pixel Python loops.

- `composite`: out = a F + (1 - a) B, F = the estimated foreground (engines.matting.foreground) or the image.
- backgrounds: `solid_background`, `fit_background` (an image resized to cover and centre-cropped),
  `blurred_background` (the camera image blurred, optionally more with distance), `checkerboard`.
- `rgba_foreground`: the subject with straight (not premultiplied) alpha, for export.
- `make_background(spec, width, height)`: parses a user's background choice ("blur", "blur:SIGMA",
  "#RRGGBB", a colour name, "checker", "checker:CELL" or an image path) into a `Background` that
  renders per-frame background images; static ones are built once and cached.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.image_io import read_color

log = logging.getLogger(__name__)

DEFAULT_BLUR_SIGMA_PX = 12.0  # blur background strength: Gaussian sigma, pixels at the frame size
MAX_BLUR_SIGMA_PX = 200.0
CHECKER_CELL_PX = 16
DEPTH_MAP_SCALE = 4  # depth-aware blur computes its blur amount at 1/4 resolution
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")  # played by `replacement.VideoBackground`
CHECKER_LIGHT = 204  # grey levels of the checkerboard cells
CHECKER_DARK = 128

NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),  # chroma-key green
    "blue": (0, 0, 255),  # chroma-key blue
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}

_HEX_COLOR = re.compile(r"#([0-9a-fA-F]{6})")


# -- validation helpers ---------------------------------------------------------------------------
def _check_size(width: int, height: int) -> tuple[int, int]:
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise ValueError(f"width and height must be positive integers, got {width}x{height}")
    return int(width), int(height)


def _check_rgb8(image: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be uint8 HxWx3 RGB, got {img.dtype} {img.shape}")
    return img


def alpha_f32(alpha: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """alpha as float32 HxW clipped to [0, 1] (uint8 0..255 accepted)."""
    a = np.asarray(alpha)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.shape != hw:
        raise ValueError(f"alpha must be HxW matching the image {hw}, got {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.clip(a, 0.0, 1.0).astype(np.float32, copy=False)


def _rgb8(image: np.ndarray, name: str) -> np.ndarray:
    """uint8 HxWx3 from uint8, or from float in [0, 1] (scaled by 255, rounded, saturated)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be HxWx3 RGB, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got {img.dtype}")
    return cv2.convertScaleAbs(img.astype(np.float32, copy=False), alpha=255.0)  # F >= 0, so abs is a no-op


# -- compositing ----------------------------------------------------------------------------------
def composite(
    image_rgb: np.ndarray,
    alpha: np.ndarray,
    background_rgb: np.ndarray,
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """out = a F + (1 - a) B as uint8 HxWx3 RGB (rounded).

    image_rgb: uint8 HxWx3, the camera image (F when `foreground` is None).
    alpha: float32 HxW in [0, 1] (clipped; uint8 0..255 accepted).
    background_rgb: uint8 HxWx3 of the same size.
    foreground: optional estimated foreground colours, float32 HxWx3 in [0, 1] (as
    `engines.foreground.estimate_foreground` returns) or uint8.
    """
    image = _check_rgb8(image_rgb, "image_rgb")
    background = _check_rgb8(background_rgb, "background_rgb")
    if background.shape != image.shape:
        raise ValueError(f"background_rgb must match the image shape {image.shape}, got {background.shape}")
    a = alpha_f32(alpha, image.shape[:2])
    fg = image
    if foreground is not None:
        fg = _rgb8(foreground, "foreground")
        if fg.shape != image.shape:
            raise ValueError(f"foreground must match the image shape {image.shape}, got {fg.shape}")
    # blendLinear: (w1 * src1 + w2 * src2) / (w1 + w2), per pixel, rounded and saturated
    return cv2.blendLinear(fg, background, a, 1.0 - a)


def rgba_foreground(foreground_rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 HxWx4 RGBA: the foreground colours with alpha * 255 (rounded) as straight alpha.

    foreground_rgb: uint8 HxWx3 RGB, or float in [0, 1]. alpha: float HxW in [0, 1] (or uint8).
    """
    fg = _rgb8(foreground_rgb, "foreground_rgb")
    a = alpha_f32(alpha, fg.shape[:2])
    a8 = cv2.convertScaleAbs(a, alpha=255.0)
    return cv2.merge((fg[:, :, 0], fg[:, :, 1], fg[:, :, 2], a8))


# -- backgrounds ----------------------------------------------------------------------------------
def parse_color(text: str) -> tuple[int, int, int]:
    """'#RRGGBB' (hex, either case, surrounding spaces ignored) -> (r, g, b) ints in 0..255.

    Raises ValueError for anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"a colour must be a string like '#00FF00', got {type(text).__name__}")
    match = _HEX_COLOR.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a colour of the form #RRGGBB (e.g. #00FF00)")
    value = int(match.group(1), 16)
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def solid_background(color: tuple[int, int, int], width: int, height: int) -> np.ndarray:
    """uint8 height x width x 3 filled with `color` (r, g, b), each in 0..255."""
    width, height = _check_size(width, height)
    if len(color) != 3 or any(int(c) != c or not 0 <= c <= 255 for c in color):
        raise ValueError(f"color must be three integers in 0..255, got {color}")
    return np.full((height, width, 3), tuple(int(c) for c in color), dtype=np.uint8)


def fit_background(image_rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image_rgb` (uint8 HxWx3) scaled to cover width x height, aspect kept, then centre-cropped."""
    image = _check_rgb8(image_rgb, "image_rgb")
    width, height = _check_size(width, height)
    ih, iw = image.shape[:2]
    if (iw, ih) == (width, height):
        return image.copy()
    scale = max(width / iw, height / ih)
    new_w = max(width, int(round(iw * scale)))
    new_h = max(height, int(round(ih * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    x0 = (new_w - width) // 2
    y0 = (new_h - height) // 2
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width])


def checkerboard(width: int, height: int, cell: int = CHECKER_CELL_PX) -> np.ndarray:
    """uint8 height x width x 3 grey checkerboard with square cells of `cell` pixels (top-left light)."""
    width, height = _check_size(width, height)
    if int(cell) != cell or cell < 1:
        raise ValueError(f"cell must be a positive integer, got {cell}")
    rows = (np.arange(height) // cell) & 1
    cols = (np.arange(width) // cell) & 1
    dark = (rows[:, None] ^ cols[None, :]).astype(bool)
    grey = np.where(dark, np.uint8(CHECKER_DARK), np.uint8(CHECKER_LIGHT))
    return np.repeat(grey[:, :, None], 3, axis=2)


def gaussian_blur(image_rgb: np.ndarray, sigma_px: float) -> np.ndarray:
    """A fast approximate Gaussian blur of uint8 HxWx3 with `sigma_px` (pixels) for large sigmas.

    Small sigmas use cv2.GaussianBlur directly; larger ones are blurred on an area-downscaled copy
    (down by about sigma / 3) and upsampled bilinearly, which costs about the same for any sigma.
    """
    image = _check_rgb8(image_rgb, "image_rgb")
    if sigma_px < 0.3:
        return image.copy()
    small = _blur_downscaled(image, sigma_px)
    if small.shape == image.shape:
        return small
    return cv2.resize(small, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


def _blur_downscaled(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """`gaussian_blur` before its final upsampling: uint8 at 1/factor of the size (factor = sigma / 3,
    1 to 8; at factor 1 the image's own size); sigma_px >= 0.3."""
    factor = int(min(8, max(1, sigma_px // 3)))
    if factor == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    # the area average already blurs by about factor / sqrt(12) pixels
    low_sigma = math.sqrt(max(sigma_px**2 - factor**2 / 12.0, 0.25)) / factor
    return cv2.GaussianBlur(small, (0, 0), low_sigma, borderType=cv2.BORDER_REPLICATE)


def defocus_amount(depth_m: np.ndarray, focus_m: float) -> np.ndarray:
    """Blur amount t (float32 HxW in [0, 1]) of a thin lens focused at `focus_m` metres.

    The circle of confusion grows as |1 - focus / depth|; t = min(1, 2 |1 - focus / depth|) reaches
    full strength at twice the focus distance (and at half of it). Unknown depth (0, NaN, < 0) -> 1.
    """
    d = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = 2.0 * np.abs(1.0 - np.float32(focus_m) / d)
    t = np.where(valid, np.minimum(t, 1.0), 1.0)
    return t.astype(np.float32, copy=False)


def _default_focus_m(depth_m: np.ndarray) -> float | None:
    """The 10th percentile of the valid depths (a stand-in for the nearest large surface)."""
    sample = np.asarray(depth_m, dtype=np.float32)
    sample = sample[np.isfinite(sample) & (sample > 0)]
    return float(np.percentile(sample, 10)) if sample.size else None


def blurred_background(
    image_rgb: np.ndarray,
    strength: float = DEFAULT_BLUR_SIGMA_PX,
    depth_m: np.ndarray | None = None,
    focus_m: float | None = None,
) -> np.ndarray:
    """The camera image blurred as a background (uint8 HxWx3 RGB).

    strength: Gaussian sigma in pixels at full strength (0 = unblurred).
    depth_m: optional float depth in metres, any size (0/NaN unknown; sampled to the image). With
    depth the blur grows with distance from `focus_m` (see `defocus_amount`) by blending three
    precomputed levels (sharp, half, full strength); unknown depth gets full strength.
    focus_m: metres that stay sharp, e.g. the subject's distance; None = the 10th percentile of the
    valid depths.
    """
    image = _check_rgb8(image_rgb, "image_rgb")
    if not 0 <= strength <= MAX_BLUR_SIGMA_PX:
        raise ValueError(f"strength must be a sigma in 0..{MAX_BLUR_SIGMA_PX:g} pixels, got {strength}")
    if depth_m is None:
        return gaussian_blur(image, strength)
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth_m must be HxW, got shape {depth.shape}")
    if focus_m is not None and not focus_m > 0:
        raise ValueError(f"focus_m must be positive, got {focus_m}")
    h, w = image.shape[:2]
    # the blur amount is smooth: compute it at 1/4 resolution (nearest depth samples, so unknown
    # depth is not averaged with known), soften it there and upsample it bilinearly
    low = (max(1, w // DEPTH_MAP_SCALE), max(1, h // DEPTH_MAP_SCALE))
    depth_low = cv2.resize(depth, low, interpolation=cv2.INTER_NEAREST)
    if focus_m is None:
        focus_m = _default_focus_m(depth_low)
        if focus_m is None:  # no valid depth at all
            return gaussian_blur(image, strength)
    if strength < 0.3:  # every level is the sharp image
        return image.copy()
    t = cv2.blur(defocus_amount(depth_low, focus_m), (3, 3))
    # piecewise linear over the levels: t in [0, .5] mixes sharp/half, t in [.5, 1] half/full, i.e.
    # u * (v * full + (1 - v) * half) + (1 - u) * sharp with u = min(2t, 1) and v = max(2t - 1, 0).
    # The two blurred levels are smooth, so they are mixed at the half level's low resolution and
    # upsampled once; only the mix with the sharp image is done at full resolution.
    half = image if strength / 2.0 < 0.3 else _blur_downscaled(image, strength / 2.0)
    low_hw = (half.shape[1], half.shape[0])
    full = cv2.resize(_blur_downscaled(image, strength), low_hw, interpolation=cv2.INTER_LINEAR)
    v = cv2.resize(np.maximum(2.0 * t - 1.0, 0.0), low_hw, interpolation=cv2.INTER_LINEAR)
    blurred = cv2.resize(cv2.blendLinear(full, half, v, 1.0 - v), (w, h), interpolation=cv2.INTER_LINEAR)
    u = cv2.resize(np.minimum(2.0 * t, 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.blendLinear(blurred, image, u, 1.0 - u)


# -- user background choice -----------------------------------------------------------------------
_SPEC_HELP = (
    "a colour like #00FF00 or green, 'blur', 'blur:SIGMA', 'checker', 'checker:CELL', an image or a video file"
)


def is_video(spec: str | Path) -> bool:
    """True when `spec` names a file with a video extension (the file need not exist)."""
    return Path(str(spec).strip()).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class BackgroundSpec:
    """A parsed background choice.

    kind: "blur" (the camera image blurred), "color", "checker", "image" or "video" (rendered by
    `engines.matting.replacement`). color: (r, g, b) for "color". path: the file for "image" / "video".
    blur_sigma_px: blur strength for "blur". checker_cell_px: cell size for "checker".
    """

    kind: str
    color: tuple[int, int, int] | None = None
    path: Path | None = None
    blur_sigma_px: float = DEFAULT_BLUR_SIGMA_PX
    checker_cell_px: int = CHECKER_CELL_PX


def _spec_number(spec: str, text: str, kind: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise UserError(f"Background '{spec}': the {kind} must be a number from {low:g} to {high:g}.", 2)
    return value


def parse_background_spec(
    spec: str, blur_sigma_px: float = DEFAULT_BLUR_SIGMA_PX, checker_cell_px: int = CHECKER_CELL_PX
) -> BackgroundSpec:
    """Parse a user's background choice; raises UserError (exit code 2) with one sentence if invalid.

    Accepted: "blur" / "blur:SIGMA" (pixels), "#RRGGBB", a name from NAMED_COLORS, "checker" /
    "checker:CELL" (pixels), or the path of an image or video file (which must exist). Names win over
    files of the same name (write ./green to use a file called green).
    """
    text = str(spec).strip()
    lower = text.lower()
    if not text:
        raise UserError(f"The background is empty; give {_SPEC_HELP}.", 2)
    if lower == "blur" or lower.startswith("blur:"):
        sigma = blur_sigma_px
        if ":" in lower:
            sigma = _spec_number(text, lower.split(":", 1)[1], "blur sigma", 0.0, MAX_BLUR_SIGMA_PX)
        return BackgroundSpec("blur", blur_sigma_px=sigma, checker_cell_px=checker_cell_px)
    if lower in ("checker", "checkerboard") or lower.startswith("checker:"):
        cell = checker_cell_px
        if ":" in lower:
            cell = int(_spec_number(text, lower.split(":", 1)[1], "checker cell size", 1, 4096))
        return BackgroundSpec("checker", blur_sigma_px=blur_sigma_px, checker_cell_px=cell)
    if text.startswith("#"):
        try:
            color = parse_color(text)
        except ValueError:
            message = f"The background colour '{text}' is not of the form #RRGGBB (e.g. #00FF00)."
            raise UserError(message, 2) from None
        return BackgroundSpec("color", color, blur_sigma_px=blur_sigma_px, checker_cell_px=checker_cell_px)
    if lower in NAMED_COLORS:
        return BackgroundSpec(
            "color", NAMED_COLORS[lower], blur_sigma_px=blur_sigma_px, checker_cell_px=checker_cell_px
        )
    path = Path(text).expanduser()
    if not path.is_file():
        if path.is_dir():
            what = "is a folder, not an image file"
        elif not path.suffix and "/" not in text and "\\" not in text:  # meant as a colour name
            what = f"is not a colour name ({', '.join(sorted(set(NAMED_COLORS) - {'grey'}))}) nor a file"
        else:
            what = "does not exist"
        raise UserError(f"The background '{text}' {what}; give {_SPEC_HELP}.", 2)
    kind = "video" if is_video(path) else "image"
    return BackgroundSpec(kind, path=path, blur_sigma_px=blur_sigma_px, checker_cell_px=checker_cell_px)


class Background:
    """Renders the background for each frame at a given size.

    Colour, checker and image backgrounds are built once per size (an image file is read once and
    resized once) and returned as the same read-only array every frame; "blur" is computed from
    each frame's image (and depth).
    """

    def __init__(self, spec: BackgroundSpec, width: int, height: int):
        self.spec = spec
        self.width, self.height = _check_size(width, height)
        self._source: np.ndarray | None = None  # the image file's pixels, read once
        self._static: np.ndarray | None = None
        if spec.kind == "image":
            try:
                self._source = read_color(spec.path)
            except UserError as error:  # "The colour image ..." reads like a recording's frame here
                raise UserError(str(error).replace("The colour image", "The background image", 1), error.exit_code) from None
            log.info("background image %s is %dx%d", spec.path, self._source.shape[1], self._source.shape[0])
        if spec.kind != "blur":
            self._static = self._build(self.width, self.height)

    def _build(self, width: int, height: int) -> np.ndarray:
        spec = self.spec
        if spec.kind == "color":
            assert spec.color is not None
            out = solid_background(spec.color, width, height)
        elif spec.kind == "checker":
            out = checkerboard(width, height, spec.checker_cell_px)
        elif spec.kind == "image":
            assert self._source is not None
            out = fit_background(self._source, width, height)
        else:
            raise ValueError(f"unknown background kind {spec.kind!r}")
        out.flags.writeable = False
        return out

    @property
    def is_static(self) -> bool:
        """True when the background does not depend on the frame (everything but "blur")."""
        return self.spec.kind != "blur"

    def render(
        self,
        image_rgb: np.ndarray | None = None,
        depth_m: np.ndarray | None = None,
        focus_m: float | None = None,
    ) -> np.ndarray:
        """The background (uint8 HxWx3 RGB) for this frame.

        image_rgb: the frame's colour image (uint8 HxWx3); required for "blur". When given, the
        result has its size (a static background is rebuilt once if the frame size changed),
        else width x height. depth_m / focus_m: depth-aware blur, see `blurred_background`.
        Static results are read-only arrays shared between calls.
        """
        if self.spec.kind == "blur":
            if image_rgb is None:
                raise ValueError("a blur background needs the frame's image_rgb")
            return blurred_background(image_rgb, self.spec.blur_sigma_px, depth_m, focus_m)
        assert self._static is not None
        if image_rgb is not None:
            h, w = np.asarray(image_rgb).shape[:2]
            if (w, h) != (self.width, self.height):
                log.info("background resized from %dx%d to %dx%d", self.width, self.height, w, h)
                self.width, self.height = w, h
                self._static = self._build(w, h)
        return self._static


def make_background(
    spec: str | BackgroundSpec,
    width: int,
    height: int,
    blur_sigma_px: float = DEFAULT_BLUR_SIGMA_PX,
    checker_cell_px: int = CHECKER_CELL_PX,
) -> Background:
    """A `Background` for a user's choice (see `parse_background_spec`) at width x height pixels.

    Raises UserError with one sentence for an invalid choice or an unreadable image file.
    """
    if not isinstance(spec, BackgroundSpec):
        spec = parse_background_spec(spec, blur_sigma_px, checker_cell_px)
    if spec.kind == "video":
        raise ValueError("a video background is made by engines.matting.replacement.open_replacement")
    return Background(spec, width, height)
