"""Alpha-matte error metrics: SAD, MSE, gradient error and connectivity error.

Definitions follow the alpha-matting benchmark (Rhemann et al., CVPR 2009, alphamatting.com) as
implemented by the Deep Image Matting evaluation code, which the BGMv2 and DART papers report:

- SAD  = sum |pred - gt|                                   (alpha in [0, 1])
- MSE  = mean (pred - gt)^2
- Grad = sum (|grad pred| - |grad gt|)^2, gradients from first-order Gaussian derivative filters
         (sigma 1.4, the 2-D filter scaled to unit L2 norm, edges replicated)
- Conn = sum |phi(pred) - phi(gt)|, phi from the thresholded largest 4-connected region (see `conn`).

All metrics are computed over the whole image unless a boolean `mask` (HxW) is given, in which case
only the pixels where `mask` is true count (MSE is then the mean over those pixels); the benchmark
code's "unknown region of the trimap" is such a mask. `evaluate` reports the DART paper's scaling:
SAD/1000, MSE*1000, Grad/1000, Conn/1000.

Inputs are HxW alpha mattes, float in [0, 1] or uint8 in 0..255 (divided by 255).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import cv2
import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

METRIC_NAMES = ("SAD", "MSE", "Grad", "Conn")
GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_MIN_DISTANCE = 0.15  # d_i below this counts as fully connected (phi_i = 1)


# -- input handling -------------------------------------------------------------------------------
def as_alpha(alpha: np.ndarray, name: str = "alpha") -> np.ndarray:
    """`alpha` as float64 HxW in [0, 1]: uint8 is divided by 255, floats are taken as they are."""
    a = np.asarray(alpha)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be an HxW alpha matte, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be float in [0, 1] or uint8 in 0..255, got {a.dtype}")
    return a.astype(np.float64, copy=False)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = as_alpha(pred, "pred")
    g = as_alpha(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got pred {p.shape} and gt {g.shape}")
    return p, g


def _mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask must have the alpha's shape {shape}, got {m.shape}")
    return m


def _total(error_map: np.ndarray, mask: np.ndarray | None) -> float:
    return float(error_map.sum() if mask is None else error_map[mask].sum())


# -- SAD / MSE ------------------------------------------------------------------------------------
def sad(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sum of absolute differences of two HxW alpha mattes (alpha in [0, 1]), unscaled."""
    p, g = _pair(pred, gt)
    return _total(np.abs(p - g), _mask(mask, p.shape))


def mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error of two HxW alpha mattes (alpha in [0, 1]); 0.0 for an empty mask."""
    p, g = _pair(pred, gt)
    m = _mask(mask, p.shape)
    count = p.size if m is None else int(m.sum())
    return _total((p - g) ** 2, m) / count if count else 0.0


# -- gradient error -------------------------------------------------------------------------------
def gaussian_derivative_kernels(sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The separable factors (g, dg) of the x-derivative filter hx = outer(g, dg) / ||outer(g, dg)||.

    g is the sampled Gaussian (along y), dg its first derivative (along x), both of length
    2 * halfsize + 1 with halfsize = ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma 0.01))) (9 taps for
    sigma 1.4). The returned g is already divided by the 2-D norm, so hx = outer(g, dg) exactly and
    the y filter is its transpose.
    """
    epsilon = 1e-2
    halfsize = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * epsilon))))
    u = np.arange(-halfsize, halfsize + 1, dtype=np.float64)
    g = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))
    dg = -u * g / sigma**2
    norm = np.linalg.norm(g) * np.linalg.norm(dg)  # == Frobenius norm of outer(g, dg)
    return g / norm, dg


def gradient_magnitude(alpha: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """|grad alpha| (float64 HxW) from the normalised Gaussian derivative filters, edges replicated.

    Convolution (not correlation), as in the reference; the sign does not affect the magnitude.
    """
    a = as_alpha(alpha)
    g, dg = gaussian_derivative_kernels(sigma)
    gx = ndimage.convolve1d(ndimage.convolve1d(a, g, axis=0, mode="nearest"), dg, axis=1, mode="nearest")
    gy = ndimage.convolve1d(ndimage.convolve1d(a, dg, axis=0, mode="nearest"), g, axis=1, mode="nearest")
    return np.hypot(gx, gy)


def grad(
    pred: np.ndarray, gt: np.ndarray, sigma: float = GRAD_SIGMA, mask: np.ndarray | None = None
) -> float:
    """Gradient error: sum of (|grad pred| - |grad gt|)^2 (alpha in [0, 1]), unscaled."""
    p, g = _pair(pred, gt)
    diff = gradient_magnitude(p, sigma) - gradient_magnitude(g, sigma)
    return _total(diff**2, _mask(mask, p.shape))


# -- connectivity error ---------------------------------------------------------------------------
def _largest_component(region: np.ndarray) -> np.ndarray:
    """Boolean HxW: the largest 4-connected component of `region` (all false if it is empty).

    Ties are broken by the component met first in row-major order.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros(region.shape, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def connectivity_levels(pred: np.ndarray, gt: np.ndarray, step: float = CONN_STEP) -> np.ndarray:
    """l_i (float64 HxW): the last threshold at which pixel i still belongs to the source region.

    For thresholds t_k = k * step (k = 1..n, t_n = 1) the source region is the largest 4-connected
    component of (pred >= t_k) & (gt >= t_k). A pixel first missing from it at t_k gets
    l = t_{k-1}; a pixel in it at every threshold gets l = 1. (At t_0 = 0 every pixel is connected.)
    """
    p, g = _pair(pred, gt)
    n = int(round(1.0 / step))
    if n < 1 or not math.isclose(n * step, 1.0, rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"step must divide 1 into whole steps (e.g. 0.1), got {step}")
    thresholds = np.arange(n + 1) / n  # exact decimal values: 3/10 == 0.3, unlike 3 * 0.1
    levels = np.full(p.shape, -1.0)
    for k in range(1, n + 1):
        source = _largest_component((p >= thresholds[k]) & (g >= thresholds[k]))
        levels[(levels < 0) & ~source] = thresholds[k - 1]
    levels[levels < 0] = 1.0
    return levels


def _phi(alpha: np.ndarray, levels: np.ndarray) -> np.ndarray:
    d = alpha - levels
    return np.where(d >= CONN_MIN_DISTANCE, 1.0 - d, 1.0)


def conn(pred: np.ndarray, gt: np.ndarray, step: float = CONN_STEP, mask: np.ndarray | None = None) -> float:
    """Connectivity error: sum |phi_pred - phi_gt| (unscaled).

    phi_i = 1 - d_i if d_i >= 0.15 else 1, with d_i = alpha_i - l_i and l_i from
    `connectivity_levels` (one source region, shared by pred and gt).
    """
    p, g = _pair(pred, gt)
    levels = connectivity_levels(p, g, step)
    return _total(np.abs(_phi(p, levels) - _phi(g, levels)), _mask(mask, p.shape))


# -- reports --------------------------------------------------------------------------------------
def evaluate(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """All four metrics scaled as the DART paper reports them.

    Returns {"SAD": sad / 1000, "MSE": mse * 1000, "Grad": grad / 1000, "Conn": conn / 1000}.
    """
    p, g = _pair(pred, gt)
    return {
        "SAD": sad(p, g, mask) / 1000.0,
        "MSE": mse(p, g, mask) * 1000.0,
        "Grad": grad(p, g, mask=mask) / 1000.0,
        "Conn": conn(p, g, mask=mask) / 1000.0,
    }


def mean_metrics(results: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per-key mean of metric dicts (e.g. `evaluate` results of the frames of a test set).

    Keys are those of the first dict; every dict must have them. Raises ValueError when empty.
    """
    items = list(results)
    if not items:
        raise ValueError("mean_metrics needs at least one result")
    keys = list(items[0].keys())
    for i, item in enumerate(items):
        missing = [k for k in keys if k not in item]
        if missing:
            raise ValueError(f"result {i} lacks the metric(s) {', '.join(missing)}")
    return {k: float(np.mean([item[k] for item in items])) for k in keys}
