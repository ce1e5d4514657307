"""DART's Bayesian depth stages as pure, vectorised functions (paper sections II-B and II-D).

Owns: the likelihoods of eqs. 5-6, the depth posterior A_D of eqs. 7-8 and its cleaning, the
error-map fusion of eqs. 9-10, the depth-aware alpha posterior of eq. 12 and the trimap of eq. 13.

Units. Depth is in metres (float32; <= 0 or NaN = unknown), so the likelihoods are densities in 1/m.
The paper works in millimetres (d_max = 5460), so its zeta = 0.001 is a density in 1/mm.
`DepthConfig.zeta` keeps the paper's number and unit (1/mm); `zeta_per_m` converts it
(x 1000). Because every term of eqs. 7 and 12 is then a density in the same unit, the
posterior is exactly the paper's. Example (P_F = 0.5, mean 2 m): a pixel clearly in front of
the background has A_D = 0.5 * (0.5 + 1) / (0.25 + 1) = 0.6 (the same 0.6 in millimetres:
0.5 * (0.0005 + 0.001) / (0.00025 + 0.001)); an unknown-depth pixel has exactly 0.5.

Typos in the printed equations, and what is implemented instead:
- Eq. 7 prints P_F(d) in both denominator terms and the posterior itself in the numerator. The
  intended Bayes rule, with zeta added so that a pixel with pF = pB = 0 (unknown depth) gets P_F:
      A_D = (P_F * pF(d) + zeta * P_F) / (P_F * pF(d) + P_B * pB(d) + zeta)
- Eq. 12 prints P_F(d) in both denominator terms (which would cancel the depth evidence). The
  intended rule, with the same zeta so an unknown-depth pixel keeps its prior alpha A:
      A' = (pF(d) * A + zeta * A) / (pF(d) * A + pB(d) * (1 - A) + zeta)

Shapes: every map of one call has the same HxW (the posterior runs at 1/4 of colour resolution,
the base network's resolution; eq. 12 and the trimap at colour resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import ndtr

from engines.matting.background_prior import BackgroundPrior
from engines.config import DepthConfig
from engines.matting.scratch import Scratch

MM_PER_M = 1000.0
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_EXP_FLOOR = -87.0


def zeta_per_m(config: DepthConfig) -> float:
    """`config.zeta` (a density in 1/mm, the paper's unit) as a density in 1/m."""
    return float(config.zeta) * MM_PER_M


def _as_depth(depth_m: np.ndarray) -> np.ndarray:
    return np.asarray(depth_m, dtype=np.float32)


def _check_same_shape(**maps: np.ndarray) -> None:
    shapes = {name: np.shape(a) for name, a in maps.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("maps must have the same shape: " + ", ".join(f"{k}={v}" for k, v in shapes.items()))


def resize_depth(depth_m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of a depth map (never blends valid with unknown or across edges).

    Same sampler as `BackgroundPrior.resized`, so both stay aligned. float32 in, float32 out.
    """
    depth = np.ascontiguousarray(depth_m, dtype=np.float32)
    if depth.shape == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def _buffer(scratch: Scratch | None, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    return np.empty(shape, dtype) if scratch is None else scratch.get(name, shape, dtype)


# ---------------------------------------------------------------- eqs. 5-6: likelihoods


def truncation_normaliser(mean_m: np.ndarray, std_m: np.ndarray) -> np.ndarray:
    """Mass of N(mean, std) on [0, inf): Phi(mean / std). Eq. 6's pdf is divided by this (footnote 3)."""
    mean = np.asarray(mean_m, np.float64)
    std = np.asarray(std_m, np.float64)
    return ndtr(mean / std).astype(np.float32)


def foreground_likelihood(depth_m: np.ndarray, mean_m: np.ndarray) -> np.ndarray:
    """Eq. 5: P(d | F) = 1 / mean on (0, mean], else 0. Density in 1/m, float32, same shape."""
    depth = _as_depth(depth_m)
    mean = np.asarray(mean_m, np.float32)
    _check_same_shape(depth_m=depth, mean_m=mean)
    inside = (depth > 0) & (depth <= mean)
    return np.where(inside, np.float32(1.0) / mean, np.float32(0.0)).astype(np.float32)


def background_likelihood(depth_m: np.ndarray, mean_m: np.ndarray, std_m: np.ndarray) -> np.ndarray:
    """Eq. 6: P(d | B) = normal(mean, std) truncated to [0, inf) and renormalised; 0 where d <= 0.

    Density in 1/m, float32, same shape as the inputs.
    """
    depth = _as_depth(depth_m)
    mean = np.asarray(mean_m, np.float32)
    std = np.asarray(std_m, np.float32)
    _check_same_shape(depth_m=depth, mean_m=mean, std_m=std)
    z = (depth - mean) / std
    pdf = np.float32(_INV_SQRT_2PI) / std * np.exp(np.float32(-0.5) * z * z)
    pdf /= truncation_normaliser(mean, std)
    return np.where(depth > 0, pdf, np.float32(0.0)).astype(np.float32)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class LikelihoodTables:
    """Per-pixel constants of eqs. 5-6 from one prior, computed once (not per frame).

    All float32 HxW: mean_m (metres), inv_mean (1/m), pb_peak (1/m: the truncated normal's density
    at its mean, 1 / (sqrt(2 pi) std Phi(mean/std))), neg_inv_two_var (-1 / (2 std^2), 1/m^2),
    valid_fraction (share of capture frames with a valid depth).
    """

    mean_m: np.ndarray
    inv_mean: np.ndarray
    pb_peak: np.ndarray
    neg_inv_two_var: np.ndarray
    valid_fraction: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean_m.shape)

    @classmethod
    def from_prior(cls, prior: BackgroundPrior) -> LikelihoodTables:
        mean = prior.depth_mean_m.astype(np.float32)
        std = prior.depth_std_m.astype(np.float32)
        return cls(
            mean_m=mean,
            inv_mean=(np.float32(1.0) / mean).astype(np.float32),
            pb_peak=(np.float32(_INV_SQRT_2PI) / std / truncation_normaliser(mean, std)).astype(np.float32),
            neg_inv_two_var=(np.float32(-0.5) / (std * std)).astype(np.float32),
            valid_fraction=prior.valid_fraction(),
        )


def _tables(prior: BackgroundPrior | LikelihoodTables) -> LikelihoodTables:
    return prior if isinstance(prior, LikelihoodTables) else LikelihoodTables.from_prior(prior)


def likelihoods(
    depth_m: np.ndarray, prior: BackgroundPrior | LikelihoodTables, scratch: Scratch | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pF, pB) of eqs. 5 and 6 for a depth map at the prior's resolution, float32 1/m.

    New arrays, or with `scratch` arrays that the next call with the same scratch overwrites.
    """
    t = _tables(prior)
    depth = _as_depth(depth_m)
    _check_same_shape(depth_m=depth, prior=t.mean_m)
    shape = depth.shape
    valid = np.greater(depth, 0, out=_buffer(scratch, "valid", shape, bool))
    in_front = np.less_equal(depth, t.mean_m, out=_buffer(scratch, "in_front", shape, bool))
    np.logical_and(in_front, valid, out=in_front)
    p_f = np.multiply(t.inv_mean, in_front, out=_buffer(scratch, "p_f", shape))
    p_b = np.subtract(depth, t.mean_m, out=_buffer(scratch, "p_b", shape))
    np.multiply(p_b, p_b, out=p_b)
    np.multiply(p_b, t.neg_inv_two_var, out=p_b)
    cv2.patchNaNs(p_b, _EXP_FLOOR)  # NaN depth is unknown too: its pB must end up 0, not NaN
    # exp(-87) ~ 1.6e-38 is the smallest normal float32; denormal results make cv2.exp 10-30x slower.
    cv2.max(p_b, _EXP_FLOOR, dst=p_b)
    cv2.exp(p_b, dst=p_b)
    np.multiply(p_b, t.pb_peak, out=p_b)
    np.multiply(p_b, valid, out=p_b)
    return p_f, p_b


def _gaussian_blur(a: np.ndarray, sigma: float, dst: np.ndarray | None = None) -> np.ndarray:
    """Gaussian blur of a float32 map with a kernel of +-3 sigma (into `dst` or a new array)."""
    k = 2 * int(math.ceil(3.0 * sigma)) + 1
    return cv2.GaussianBlur(a, (k, k), float(sigma), dst=dst, borderType=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------- eqs. 7-8: depth posterior


def depth_posterior(depth_m: np.ndarray, prior: BackgroundPrior | LikelihoodTables, config: DepthConfig) -> np.ndarray:
    """Eqs. 7-8: A_D, the foreground posterior of every pixel given its depth (float32 HxW in [0, 1]).

    A_D = (P_F pF(d) + zeta P_F) / (P_F pF(d) + P_B pB(d) + zeta), zeta in 1/m (`zeta_per_m`).
    An unknown depth (d <= 0) gives exactly P_F. `prior` must have the depth map's resolution
    (pass `LikelihoodTables` to reuse the per-prior constants across frames).
    """
    p_f, p_b = likelihoods(depth_m, prior)
    fg = np.float32(config.prior_fg)
    bg = np.float32(1.0 - config.prior_fg)
    zeta = np.float32(zeta_per_m(config))
    numerator = p_f * fg
    denominator = numerator + p_b * bg
    denominator += zeta
    numerator += zeta * fg
    return numerator / denominator


def clean_posterior(
    posterior: np.ndarray,
    config: DepthConfig,
    threshold: float | None = None,
    fill_background_holes: bool = False,
) -> np.ndarray:
    """The paper's post-processing of A_D: Gaussian blur, then small-region removal.

    Blur with sigma `config.blur_sigma_px` (pixels of this map). Foreground = blurred > `threshold`
    (default `config.prior_fg`: depth evidence favours the foreground over the prior). 8-connected
    foreground components smaller than `config.min_region_fraction` of the image are set to 0
    (background). With `fill_background_holes`, background components that small are set to 1.
    Returns float32 HxW in [0, 1] (a new array).
    """
    a = np.ascontiguousarray(posterior, dtype=np.float32)
    if config.blur_sigma_px > 0:
        blurred = _gaussian_blur(a, config.blur_sigma_px)
    else:
        blurred = a.copy()
    level = config.prior_fg if threshold is None else threshold
    min_area = config.min_region_fraction * a.size
    if min_area <= 1:
        return blurred
    mask = (blurred > np.float32(level)).view(np.uint8)
    blurred[_small_components(mask, min_area)] = 0.0
    if fill_background_holes:
        mask = (blurred <= np.float32(level)).view(np.uint8)
        blurred[_small_components(mask, min_area)] = 1.0
    return blurred


def _small_components(mask_u8: np.ndarray, min_area: float) -> np.ndarray:
    """Boolean map of the 8-connected components of a 0/1 mask with area < min_area."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask_u8, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return np.zeros(mask_u8.shape, bool)
    small = stats[:, cv2.CC_STAT_AREA] < min_area
    small[0] = False  # label 0 is the complement of the mask
    return small[labels]


# ---------------------------------------------------------------- eqs. 9-10: error maps


def depth_residual(posterior: np.ndarray, alpha_raw: np.ndarray) -> np.ndarray:
    """Eq. 9: E_D = |A_D - A_raw| (float32, both at the base network's 1/4 resolution)."""
    a_d = np.asarray(posterior, np.float32)
    a_raw = np.asarray(alpha_raw, np.float32)
    _check_same_shape(posterior=a_d, alpha_raw=a_raw)
    return np.abs(a_d - a_raw)


def fuse_error_maps(error_depth: np.ndarray, error_rgb: np.ndarray, beta: float) -> np.ndarray:
    """Eq. 10: E_RGBD = beta * E_D + (1 - beta) * E_RGB (float32, same shapes)."""
    e_d = np.asarray(error_depth, np.float32)
    e_rgb = np.asarray(error_rgb, np.float32)
    _check_same_shape(error_depth=e_d, error_rgb=e_rgb)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    return (np.float32(beta) * e_d + np.float32(1.0 - beta) * e_rgb).astype(np.float32, copy=False)


# ---------------------------------------------------------------- eqs. 12-13: trimap


def alpha_posterior_given_depth(
    alpha_prior: np.ndarray,
    depth_m: np.ndarray,
    prior: BackgroundPrior | LikelihoodTables,
    config: DepthConfig,
    out: np.ndarray | None = None,
    scratch: Scratch | None = None,
) -> np.ndarray:
    """Eq. 12 (intended form): the refined alpha A (in [0, 1]) as a per-pixel prior, updated by depth.

    A' = (pF(d) A + zeta A) / (pF(d) A + pB(d) (1 - A) + zeta): unknown depth keeps A exactly.
    float32 HxW in [0, 1] (into `out` when given); `prior` at the depth map's resolution.
    """
    a = np.asarray(alpha_prior, np.float32)
    if out is not None and (np.may_share_memory(out, a) or np.may_share_memory(out, depth_m)):
        raise ValueError("out must not share memory with alpha_prior or depth_m")
    p_f, p_b = likelihoods(depth_m, prior, scratch)
    _check_same_shape(alpha_prior=a, depth_m=p_f)
    zeta = np.float32(zeta_per_m(config))
    # numerator A (pF + zeta); denominator A (pF - pB) + pB + zeta
    numerator = np.add(p_f, zeta, out=out if out is not None else np.empty(a.shape, np.float32))
    np.multiply(numerator, a, out=numerator)
    np.subtract(p_f, p_b, out=p_f)
    np.multiply(p_f, a, out=p_f)
    np.add(p_f, p_b, out=p_f)
    np.add(p_f, zeta, out=p_f)
    np.divide(numerator, p_f, out=numerator)
    return numerator


def make_trimap(
    posterior: np.ndarray,
    config: DepthConfig,
    band_px: int = 0,
    blur_sigma_px: float | None = None,
    out: np.ndarray | None = None,
    scratch: Scratch | None = None,
) -> np.ndarray:
    """Eq. 13: Gaussian blur, then two thresholds -> float32 trimap with values {0, 0.5, 1}.

    blurred <= config.trimap_low -> 0 (background); > config.trimap_high -> 1 (foreground);
    in (low, high] -> 0.5 (unknown). Blur sigma defaults to `config.blur_sigma_px` pixels of this
    map. `band_px` > 0 widens the unknown region by dilating it with a disc of that radius.
    Result into `out` when given, else a new array.
    """
    a = np.ascontiguousarray(posterior, dtype=np.float32)
    shape = a.shape
    sigma = config.blur_sigma_px if blur_sigma_px is None else blur_sigma_px
    blurred = _gaussian_blur(a, sigma, _buffer(scratch, "trimap_blur", shape)) if sigma > 0 else a
    above_high = _buffer(scratch, "trimap_high", shape)
    trimap = out if out is not None else np.empty(shape, np.float32)
    cv2.threshold(blurred, float(config.trimap_low), 0.5, cv2.THRESH_BINARY, dst=trimap)
    cv2.threshold(blurred, float(config.trimap_high), 0.5, cv2.THRESH_BINARY, dst=above_high)
    cv2.add(trimap, above_high, dst=trimap)
    if band_px > 0:
        unknown = cv2.compare(trimap, 0.5, cv2.CMP_EQ)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
        band = cv2.dilate(unknown, kernel)
        trimap[band > 0] = 0.5
    return trimap
