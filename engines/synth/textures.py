"""Textures for the synthetic RGB-D scenes: crops of real photos when available, procedural otherwise.

Owns `TextureBank` (the photos a generator may crop from, loaded once and passed explicitly) and the
procedural fallback used when `../shared` is absent (CI, users' clones). All textures are float32
HxWx3 RGB in [0, 1], sRGB-encoded; `srgb_to_linear`/`linear_to_srgb` convert for shading.

Real sources (read-only, never shipped):
- `data/tum_frame/TUM_color.png` + `TUM_depth.png` (TUM RGB-D, CC BY 4.0; metres = value / 5000),
  also offered whole as a real background plate with its registered depth;
- `data/redwood_synthetic/color_*.jpg` (Open3D test data, MIT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.image_io import read_color, read_depth

log = logging.getLogger(__name__)

TUM_DEPTH_PER_M = 5000.0
TUM_FOCAL_PX = 525.0  # TUM / Open3D sample frame, 640x480
GAMMA = 2.2


def default_shared_dir() -> Path:
    """`../shared` next to the repository root (absent in users' clones)."""
    return Path(__file__).resolve().parents[3] / "shared"


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """sRGB-encoded float in [0, 1] -> linear float32 (gamma 2.2 approximation)."""
    return np.power(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0), np.float32(GAMMA))


def linear_to_srgb(image: np.ndarray) -> np.ndarray:
    """Linear float -> sRGB-encoded float32 in [0, 1] (clipped)."""
    return np.power(np.clip(image, 0.0, 1.0).astype(np.float32), np.float32(1.0 / GAMMA))


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 709 luminance of an HxWx3 RGB float image (same encoding as the input)."""
    return image @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


# -- procedural building blocks -------------------------------------------------------------------
def gaussian_field(rng: np.random.Generator, height: int, width: int, cell_px: float) -> np.ndarray:
    """Smooth zero-mean, unit-variance random field (float32 HxW) with features about `cell_px` wide."""
    gh = max(2, int(np.ceil(height / max(cell_px, 1.0))) + 2)
    gw = max(2, int(np.ceil(width / max(cell_px, 1.0))) + 2)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    std = float(field.std())
    return (field - field.mean()) / (std if std > 1e-6 else 1.0)


def fractal_noise(rng: np.random.Generator, height: int, width: int, base_cell_px: float = 64.0,
                  octaves: int = 4, persistence: float = 0.5) -> np.ndarray:
    """Sum of `octaves` smooth fields, rescaled to float32 HxW in [0, 1]."""
    total = np.zeros((height, width), np.float32)
    amp, cell = 1.0, base_cell_px
    for _ in range(octaves):
        total += np.float32(amp) * gaussian_field(rng, height, width, cell)
        amp *= persistence
        cell = max(cell / 2.0, 1.0)
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / np.float32(max(hi - lo, 1e-6))


def random_color(rng: np.random.Generator, sat: tuple[float, float] = (0.05, 0.7),
                 val: tuple[float, float] = (0.2, 0.95)) -> np.ndarray:
    """One RGB colour (float32 (3,), sRGB in [0, 1]) with random hue and the given saturation/value ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return rgb[0, 0].astype(np.float32) / 255.0


def _lerp_colors(t: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    return c1[None, None, :] + t[:, :, None] * (c2 - c1)[None, None, :]


def procedural_texture(rng: np.random.Generator, height: int, width: int, kind: str | None = None) -> np.ndarray:
    """A procedural texture, float32 HxWx3 sRGB in [0, 1].

    kind: "noise", "stripes", "plaid", "wood", "bricks", "gradient" or None (random).
    """
    kinds = ("noise", "stripes", "plaid", "wood", "bricks", "gradient")
    kind = kind or kinds[int(rng.integers(len(kinds)))]
    c1, c2 = random_color(rng), random_color(rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    grain = fractal_noise(rng, height, width, base_cell_px=rng.uniform(8, 48), octaves=3)
    if kind == "noise":
        t = fractal_noise(rng, height, width, base_cell_px=rng.uniform(16, 128))
        tex = _lerp_colors(t, c1, c2)
    elif kind in ("stripes", "plaid"):
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(6, 40)
        coord = xx * np.cos(theta) + yy * np.sin(theta)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * coord / period)
        if rng.random() < 0.5:
            t = (t > rng.uniform(0.3, 0.7)).astype(np.float32)
            t = cv2.GaussianBlur(t, (0, 0), 0.7)
        if kind == "plaid":
            coord2 = -xx * np.sin(theta) + yy * np.cos(theta)
            t2 = 0.5 + 0.5 * np.sin(2 * np.pi * coord2 / rng.uniform(6, 40))
            t = 0.5 * t + 0.5 * t2
        tex = _lerp_colors(t, c1, c2)
    elif kind == "wood":
        warp = fractal_noise(rng, height, width, base_cell_px=rng.uniform(32, 96)) * rng.uniform(10, 40)
        theta = rng.uniform(-0.2, 0.2) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
        coord = xx * np.cos(theta) + yy * np.sin(theta) + warp
        t = (0.5 + 0.5 * np.sin(2 * np.pi * coord / rng.uniform(5, 15))) ** 2
        base = np.array([rng.uniform(0.45, 0.75), rng.uniform(0.28, 0.5), rng.uniform(0.12, 0.3)], np.float32)
        tex = _lerp_colors(t, base, base * rng.uniform(0.55, 0.8))
    elif kind == "bricks":
        bh = rng.uniform(8, 20)
        bw = bh * rng.uniform(2.0, 3.0)
        row = np.floor(yy / bh)
        xs = xx + (row % 2) * bw / 2
        fy, fx = yy / bh - row, xs / bw - np.floor(xs / bw)
        mortar = ((fy < 0.1) | (fx < 0.04)).astype(np.float32)
        brick_id = (row * 131 + np.floor(xs / bw) * 17) % 7 / 7.0
        brick = _lerp_colors(brick_id.astype(np.float32) * 0.5 + grain * 0.5, c1, c1 * 0.75)
        mortar_c = np.full(3, rng.uniform(0.55, 0.85), np.float32)
        tex = brick * (1 - mortar[:, :, None]) + mortar_c * mortar[:, :, None]
    else:  # gradient
        theta = rng.uniform(0, 2 * np.pi)
        coord = xx * np.cos(theta) + yy * np.sin(theta)
        t = (coord - coord.min()) / max(float(np.ptp(coord)), 1.0)
        tex = _lerp_colors(t, c1, c2)
    tex = tex * (0.85 + 0.3 * grain[:, :, None])
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def recolor(texture: np.ndarray, tint: np.ndarray, amount: float) -> np.ndarray:
    """Move `texture` (sRGB float HxWx3) toward `tint` times its own luminance by `amount` in [0, 1]."""
    lum = luminance(texture)[:, :, None]
    target = np.clip(lum * tint[None, None, :] / max(float(luminance(tint[None, None, :])[0, 0]), 0.05), 0, 1)
    return np.clip((1 - amount) * texture + amount * target, 0.0, 1.0).astype(np.float32)


def hair_texture(rng: np.random.Generator, height: int, width: int, color: np.ndarray) -> np.ndarray:
    """Streaky hair-like texture (float32 HxWx3 sRGB): vertical strands of varying brightness around `color`."""
    streaks = rng.standard_normal((max(2, height // 24), max(2, width // 2)), dtype=np.float32)
    streaks = cv2.resize(streaks, (width, height), interpolation=cv2.INTER_CUBIC)
    t = np.clip(0.5 + 0.25 * streaks, 0, 1)
    return np.clip(color[None, None, :] * (0.6 + 0.8 * t[:, :, None]), 0, 1).astype(np.float32)


# -- the bank -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RealPlate:
    """A real background plate: colour uint8 HxWx3 RGB and registered depth in metres (0 = hole)."""

    color: np.ndarray
    depth_m: np.ndarray
    focal_px: float
    name: str


class TextureBank:
    """The photos textures are cropped from, loaded once.

    shared_dir: folder laid out like `../shared` (None = `default_shared_dir()`); when it holds no
    usable photo, or `use_real` is False, every texture is procedural. Unreadable files are logged
    and skipped. Create one per generator/training process and pass it down (no hidden cache).
    """

    def __init__(self, shared_dir: str | Path | None = None, use_real: bool = True) -> None:
        self.shared_dir = Path(shared_dir) if shared_dir is not None else default_shared_dir()
        self.photos: list[np.ndarray] = []
        self.plate: RealPlate | None = None
        if use_real:
            self._load()
        log.debug("texture bank: %d photos, real plate %s", len(self.photos), self.plate is not None)

    @property
    def has_real(self) -> bool:
        return bool(self.photos)

    def _load(self) -> None:
        data = self.shared_dir / "data"
        tum_color = data / "tum_frame" / "TUM_color.png"
        tum_depth = data / "tum_frame" / "TUM_depth.png"
        paths = [tum_color] + sorted((data / "redwood_synthetic").glob("color_*.jpg"))[:3]
        for path in paths:
            if path.is_file():
                try:
                    self.photos.append(read_color(path))
                except UserError as exc:
                    log.warning("skipping texture source: %s", exc)
        if tum_color.is_file() and tum_depth.is_file() and self.photos:
            try:
                depth = read_depth(tum_depth).astype(np.float32) / np.float32(TUM_DEPTH_PER_M)
                color = read_color(tum_color)
                if depth.shape == color.shape[:2]:
                    self.plate = RealPlate(color, depth, TUM_FOCAL_PX * color.shape[1] / 640.0, "TUM RGB-D")
            except UserError as exc:
                log.warning("no real background plate: %s", exc)

    def photo_crop(self, rng: np.random.Generator, height: int, width: int,
                   scale: tuple[float, float] = (0.08, 0.5)) -> np.ndarray:
        """A random crop of a real photo resized to HxW, flipped/colour-jittered (float32 sRGB)."""
        photo = self.photos[int(rng.integers(len(self.photos)))]
        ph, pw = photo.shape[:2]
        side = rng.uniform(*scale) * min(ph, pw)
        aspect = width / max(height, 1)
        ch = int(np.clip(side / np.sqrt(aspect), 8, ph))
        cw = int(np.clip(side * np.sqrt(aspect), 8, pw))
        y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        crop = photo[y0:y0 + ch, x0:x0 + cw]
        interp = cv2.INTER_AREA if ch > height else cv2.INTER_CUBIC
        tex = cv2.resize(crop, (width, height), interpolation=interp).astype(np.float32) / 255.0
        if rng.random() < 0.5:
            tex = tex[:, ::-1]
        if rng.random() < 0.3:
            tex = tex[::-1]
        gains = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        grey = luminance(tex)[:, :, None]
        sat = np.float32(rng.uniform(0.5, 1.2))
        tex = (grey + sat * (tex - grey)) * gains
        return np.clip(np.ascontiguousarray(tex), 0.0, 1.0).astype(np.float32)

    def texture(self, rng: np.random.Generator, height: int, width: int, real_prob: float = 0.6) -> np.ndarray:
        """A surface texture (walls, furniture, posters): a photo crop with probability `real_prob`."""
        if self.photos and rng.random() < real_prob:
            return self.photo_crop(rng, height, width)
        return procedural_texture(rng, height, width)

    def cloth(self, rng: np.random.Generator, height: int, width: int, tint: np.ndarray | None = None) -> np.ndarray:
        """A clothing texture (float32 sRGB): the pattern of a small photo crop blown up (fabric-like
        blotches) or of a procedural pattern, carried by a random (or given) cloth colour."""
        if self.photos and rng.random() < 0.6:
            pattern = self.photo_crop(rng, height, width, scale=(0.04, 0.15))
        else:
            pattern = procedural_texture(rng, height, width, kind=("noise", "stripes", "plaid")[int(rng.integers(3))])
        tint = random_color(rng, sat=(0.1, 0.8), val=(0.1, 0.9)) if tint is None else tint
        lum = luminance(pattern)
        contrast = np.float32(rng.uniform(0.2, 0.8))
        tex = tint[None, None, :] * (1.0 + contrast * (lum / max(float(lum.mean()), 1e-3) - 1.0))[:, :, None]
        keep = np.float32(rng.uniform(0.0, 0.35))  # some of the pattern's own colours
        tex = (1 - keep) * tex + keep * pattern
        weave = gaussian_field(rng, height, width, 1.5)
        return np.clip(tex * (1.0 + 0.04 * weave[:, :, None]), 0.0, 1.0).astype(np.float32)
