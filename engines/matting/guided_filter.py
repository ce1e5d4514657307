"""Edge-aware filtering and upsampling with the guided filter (He, Sun and Tang; fast variant).

Owns `guided_filter` (same resolution), `guided_upsample` (coarse map -> colour resolution with
edges that follow the colour image) and `GuidedUpsampler` (the same with reusable full-resolution
buffers, for per-frame use). Box means use `cv2.boxFilter`; the colour guide's 3x3 covariance is
inverted in closed form for all pixels at once.

Fast guided filter: the linear coefficients (a, b) of q = a . I + b are solved at the coarse
resolution against a downsampled guide, box-averaged, upsampled bilinearly and applied to the
full-resolution guide, so the cost at full resolution is one multiply-add per channel.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges handled by reflection (normalised box filter)."""
    return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def _coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Box-averaged (a, b) of the guided filter; guide float32 HxW or HxWx3 in [0, 1], src float32 HxW.

    Returns a (HxW or HxWx3) and b (HxW), float32.
    """
    mean_p = _box(src, radius)
    if guide.ndim == 2:
        mean_i = _box(guide, radius)
        cov_ip = _box(guide * src, radius) - mean_i * mean_p
        var_i = _box(guide * guide, radius) - mean_i * mean_i
        a = cov_ip / (var_i + np.float32(eps))
        b = mean_p - a * mean_i
        return _box(a, radius), _box(b, radius)

    mean_i = _box(guide, radius)  # HxWx3
    cov_ip = _box(guide * src[..., None], radius) - mean_i * mean_p[..., None]
    # Symmetric 3x3 covariance of the guide per pixel, plus eps on the diagonal.
    r, g, bl = guide[..., 0], guide[..., 1], guide[..., 2]
    mr, mg, mb = mean_i[..., 0], mean_i[..., 1], mean_i[..., 2]
    e = np.float32(eps)
    s_rr = _box(r * r, radius) - mr * mr + e
    s_rg = _box(r * g, radius) - mr * mg
    s_rb = _box(r * bl, radius) - mr * mb
    s_gg = _box(g * g, radius) - mg * mg + e
    s_gb = _box(g * bl, radius) - mg * mb
    s_bb = _box(bl * bl, radius) - mb * mb + e
    # Inverse via the adjugate (all entries of a symmetric matrix).
    i_rr = s_gg * s_bb - s_gb * s_gb
    i_rg = s_gb * s_rb - s_rg * s_bb
    i_rb = s_rg * s_gb - s_gg * s_rb
    i_gg = s_rr * s_bb - s_rb * s_rb
    i_gb = s_rb * s_rg - s_rr * s_gb
    i_bb = s_rr * s_gg - s_rg * s_rg
    inv_det = np.float32(1.0) / (s_rr * i_rr + s_rg * i_rg + s_rb * i_rb)
    c_r, c_g, c_b = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    a = np.empty_like(guide)
    a_r = np.multiply(i_rr * c_r + i_rg * c_g + i_rb * c_b, inv_det, out=a[..., 0])
    a_g = np.multiply(i_rg * c_r + i_gg * c_g + i_gb * c_b, inv_det, out=a[..., 1])
    a_b = np.multiply(i_rb * c_r + i_gb * c_g + i_bb * c_b, inv_det, out=a[..., 2])
    b = mean_p - a_r * mr - a_g * mg - a_b * mb
    return _box(a, radius), _box(b, radius)


def _guide_float(guide: np.ndarray, gray: bool) -> np.ndarray:
    g = np.asarray(guide)
    if g.ndim == 3 and gray:
        g = cv2.cvtColor(np.ascontiguousarray(g), cv2.COLOR_RGB2GRAY)
    scale = np.float32(1.0 / 255.0) if g.dtype == np.uint8 else np.float32(1.0)
    return np.ascontiguousarray(g, dtype=np.float32) * scale


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, gray: bool = False) -> np.ndarray:
    """Guided filter at one resolution.

    guide: uint8 (RGB or grey) or float32 in [0, 1], HxW or HxWx3; src: float32 HxW.
    radius: box radius in pixels; eps: regularisation on the [0, 1] guide scale (larger = smoother).
    gray: use the luma of a colour guide. Returns float32 HxW (not clipped).
    """
    g = _guide_float(guide, gray)
    p = np.ascontiguousarray(src, dtype=np.float32)
    if g.shape[:2] != p.shape:
        raise ValueError(f"guide {g.shape[:2]} and src {p.shape} must have the same size")
    a, b = _coefficients(g, p, int(radius), eps)
    if g.ndim == 2:
        return a * g + b
    return (a * g).sum(axis=2) + b


class GuidedUpsampler:
    """Fast guided upsampling with full-resolution buffers kept between calls (one per stream).

    radius: box radius in pixels of the coarse map; eps: regularisation on the [0, 1] guide scale
    (smaller = edges follow the guide more closely); gray: use the luma of a colour guide.
    """

    def __init__(self, radius: int = 2, eps: float = 1e-3, gray: bool = False) -> None:
        if radius < 1 or eps <= 0:
            raise ValueError(f"need radius >= 1 and eps > 0, got {radius}, {eps}")
        self.radius = int(radius)
        self.eps = float(eps)
        self.gray = gray
        self._buffers: dict[str, np.ndarray] = {}
        self._ones = np.ones((1, 3), np.float32)

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = self._buffers.get(name)
        if a is None or a.shape != shape:
            a = self._buffers[name] = np.empty(shape, np.float32)
        return a

    def __call__(
        self,
        low_res_map: np.ndarray,
        guide_rgb_uint8: np.ndarray,
        low_res_guide: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Upsample a coarse map (float32 h x w) to the guide's H x W with edges following the guide.

        guide_rgb_uint8: uint8 HxWx3 RGB (or HxW grey). low_res_guide: optionally the guide already
        downsampled to h x w (uint8, same channels; area averaging recommended), to save the resize.
        Returns float32 HxW, not clipped: into `out` when given, else a new array.
        """
        p = np.ascontiguousarray(low_res_map, dtype=np.float32)
        guide = np.ascontiguousarray(guide_rgb_uint8)
        if guide.dtype != np.uint8 or guide.ndim not in (2, 3) or (guide.ndim == 3 and guide.shape[2] != 3):
            raise ValueError(f"guide must be uint8 HxWx3 RGB or HxW, got {guide.dtype} {guide.shape}")
        if self.gray and guide.ndim == 3:
            guide = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY)
            low_res_guide = None
        height, width = guide.shape[:2]
        h, w = p.shape
        result = out if out is not None else np.empty((height, width), np.float32)
        if (h, w) == (height, width):
            result[...] = guided_filter(guide, p, self.radius, self.eps)
            return result
        if low_res_guide is None:
            low_res_guide = cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA)
        elif low_res_guide.shape != (h, w) + guide.shape[2:]:
            raise ValueError(f"low_res_guide {low_res_guide.shape} does not match the map {p.shape} and guide channels")
        low_guide = low_res_guide.astype(np.float32) * np.float32(1 / 255)
        a, b = _coefficients(low_guide, p, self.radius, self.eps)
        a *= np.float32(1 / 255)  # applied to the uint8 guide below
        size = (width, height)
        b_full = cv2.resize(b, size, dst=self._buffer("b", (height, width)), interpolation=cv2.INTER_LINEAR)
        if guide.ndim == 2:
            a_full = cv2.resize(a, size, dst=self._buffer("a1", (height, width)), interpolation=cv2.INTER_LINEAR)
            cv2.multiply(a_full, guide, dst=result, dtype=cv2.CV_32F)
        else:
            a_full = cv2.resize(a, size, dst=self._buffer("a3", (height, width, 3)), interpolation=cv2.INTER_LINEAR)
            products = cv2.multiply(a_full, guide, dst=self._buffer("products", (height, width, 3)), dtype=cv2.CV_32F)
            cv2.transform(products, self._ones, dst=result)
        cv2.add(result, b_full, dst=result)
        return result


def guided_upsample(
    low_res_map: np.ndarray,
    guide_rgb_uint8: np.ndarray,
    radius: int = 2,
    eps: float = 1e-3,
    gray: bool = False,
    low_res_guide: np.ndarray | None = None,
) -> np.ndarray:
    """Upsample a coarse map (float32 h x w) to the guide's H x W with edges following the guide.

    guide_rgb_uint8: uint8 HxWx3 RGB (or HxW grey). radius: box radius in pixels of the coarse map.
    eps: regularisation on the [0, 1] guide scale. low_res_guide: see `GuidedUpsampler.__call__`.
    Returns float32 HxW (not clipped), a new array. Per-frame callers should keep a `GuidedUpsampler`.
    """
    return GuidedUpsampler(radius, eps, gray)(low_res_map, guide_rgb_uint8, low_res_guide)
