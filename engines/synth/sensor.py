"""Sensor and lighting effects of the synthetic RGB-D scenes.

Owns the depth camera model (`DepthSensor`, `sense_depth`): noise with std k*z^2, disparity and
millimetre quantisation, dropouts on dark/glossy/thin surfaces, invalid pixels along depth
discontinuities, flying pixels, the occlusion shadow of a stereo/structured-light camera and a
depth-to-colour misregistration; and the colour camera (`Exposure`, `encode`, `add_color_noise`):
exposure gain, white balance and gamma, signal-dependent noise. Also the lighting changes applied
between the background capture and the test frames: `lighting_field` (a lamp switched on plus a
gradient) and `cast_shadow` (the subject's soft shadow on the background).

Depths are float32 metres (0 = no measurement); images float32 RGB in [0, 1]; radiance linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import ndtri

from engines.synth.textures import gaussian_field
from sensors.frame import Intrinsics


# -- depth camera ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DepthSensor:
    """Depth camera parameters.

    noise_k: depth noise std = noise_k * z^2 (metres, z in metres).
    baseline_m: projector (or second imager) offset; sets the occlusion shadow width and the
        disparity quantisation; 0 disables both.
    shadow_side: -1 = invalid band on the left of near objects (projector to the right), +1 = right.
    disparity_step_px: subpixel disparity resolution (0 = continuous).
    edge_dropout: probability of losing a pixel on a depth discontinuity (per frame).
    flying_pixels: probability that a partly covered subject edge pixel reads a mixed depth.
    random_dropout: per-frame probability of a random hole anywhere.
    shift_px: depth-to-colour misregistration (dx, dy) in whole pixels.
    native_width_px: width the sensor measures at; frames of another width are resized captures,
        so disparity quantisation uses the focal length scaled to this width.
    """

    noise_k: float = 0.0015
    baseline_m: float = 0.05
    shadow_side: int = -1
    disparity_step_px: float = 1.0 / 16.0
    edge_dropout: float = 0.5
    flying_pixels: float = 0.3
    random_dropout: float = 0.002
    depth_min_m: float = 0.2
    depth_max_m: float = 5.46
    shift_px: tuple[int, int] = (0, 0)
    depth_scale: float = 0.001
    native_width_px: int = 640  # the sensor's own resolution: disparity steps are in its pixels


class NormalSampler:
    """Standard-normal float32 samples from a 65536-entry quantile table: about 3x faster than
    `Generator.standard_normal` (tails cut at 4.2 sigma). Build one per scene and reuse it."""

    def __init__(self) -> None:
        self.table = ndtri((np.arange(65536, dtype=np.float64) + 0.5) / 65536.0).astype(np.float32)

    def __call__(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return self.table[rng.integers(0, 65536, shape, dtype=np.uint16)]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], normal: NormalSampler | None) -> np.ndarray:
    return normal(rng, shape) if normal is not None else rng.standard_normal(shape, dtype=np.float32)


def correlated_uniform(rng: np.random.Generator, height: int, width: int, cell_px: float,
                       smooth_weight: float = 0.85, normal: NormalSampler | None = None) -> np.ndarray:
    """Roughly uniform [0, 1] random field (float32 HxW) with blobs about `cell_px` wide:
    thresholding it with a probability map gives holes of about that probability that look like
    real depth holes (a logistic approximation of the normal CDF, max error 0.01)."""
    fine = _normal(rng, (height, width), normal)
    coarse = gaussian_field(rng, height, width, cell_px)
    b = np.float32(np.sqrt(max(1.0 - smooth_weight ** 2, 0.0)))
    g = np.float32(smooth_weight) * coarse + b * fine
    return 1.0 / (1.0 + np.exp(np.float32(-1.702) * g))


def occlusion_shadow(depth_m: np.ndarray, fx: float, baseline_m: float, side: int = -1) -> np.ndarray:
    """Pixels the projector (or second imager) cannot see: bool HxW.

    A pixel at column u with disparity d = fx * b / z lands at u - side' * d in the other view; it is
    hidden when a pixel further along the baseline lands beyond it (a running min/max along rows).
    Pixels with depth 0 count as far away. Objects at z_f in front of a background at z_b leave an
    invalid band of fx * b * (1/z_f - 1/z_b) pixels on the `side` of the object.
    """
    if baseline_m <= 0:
        return np.zeros(depth_m.shape, bool)
    with np.errstate(divide="ignore"):
        disp = np.where(depth_m > 0, np.float32(fx * baseline_m) / depth_m, 0).astype(np.float32)
    cols = np.arange(depth_m.shape[1], dtype=np.float32)[None, :]
    if side < 0:
        proj = cols - disp
        later = np.minimum.accumulate(proj[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([later[:, 1:], np.full((depth_m.shape[0], 1), np.inf, np.float32)], axis=1)
        return proj > nxt + 0.5
    proj = cols + disp
    earlier = np.maximum.accumulate(proj, axis=1)
    prev = np.concatenate([np.full((depth_m.shape[0], 1), -np.inf, np.float32), earlier[:, :-1]], axis=1)
    return proj < prev - 0.5


def discontinuities(depth_m: np.ndarray, rel_jump: float = 0.04) -> np.ndarray:
    """bool HxW: valid pixels whose 3x3 neighbourhood spans a depth jump > rel_jump * depth."""
    valid = depth_m > 0
    big = np.float32(1e4)
    hi = cv2.dilate(np.where(valid, depth_m, 0).astype(np.float32), np.ones((3, 3), np.uint8))
    lo = cv2.erode(np.where(valid, depth_m, big).astype(np.float32), np.ones((3, 3), np.uint8))
    return valid & ((hi - lo) > np.float32(rel_jump) * depth_m)


def shift_image(image: np.ndarray, dx: int, dy: int, fill: float = 0.0) -> np.ndarray:
    """`image` moved by (dx, dy) whole pixels, uncovered border filled with `fill`."""
    if dx == 0 and dy == 0:
        return image
    out = np.full_like(image, fill)
    h, w = image.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = image[ys, xs]
    return out


def sense_depth(rng: np.random.Generator, depth_true_m: np.ndarray, dropout: np.ndarray, sensor: DepthSensor,
                fx: float, normal: NormalSampler | None = None) -> np.ndarray:
    """One depth capture of a scene with true depth `depth_true_m` (0 = surface returns nothing).

    dropout: float32 HxW per-pixel probability of losing the measurement this frame.
    Returns float32 HxW metres, quantised to `sensor.depth_scale`, 0 = no measurement.
    """
    h, w = depth_true_m.shape
    z = depth_true_m.astype(np.float32)
    valid = z > 0
    invalid = ~valid | occlusion_shadow(z, fx, sensor.baseline_m, sensor.shadow_side)
    if sensor.edge_dropout > 0:
        edge = discontinuities(z)
        ring = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~edge & valid
        u = rng.random((h, w), dtype=np.float32)
        invalid |= (edge & (u < sensor.edge_dropout)) | (ring & (u < 0.3 * sensor.edge_dropout))
    scale = max(w / 640.0, 0.25)
    holes = correlated_uniform(rng, h, w, 6.0 * scale, normal=normal) < dropout
    holes |= rng.random((h, w), dtype=np.float32) < np.float32(sensor.random_dropout)
    invalid |= holes
    # Noise: mostly independent per pixel, partly correlated (the matching window smears it).
    noise = 0.8 * _normal(rng, (h, w), normal) + 0.6 * gaussian_field(rng, h, w, 4.0 * scale)
    zn = z + np.float32(sensor.noise_k) * z * z * noise
    if sensor.baseline_m > 0 and sensor.disparity_step_px > 0:
        fb = np.float32(fx * sensor.native_width_px / w * sensor.baseline_m)
        step = np.float32(sensor.disparity_step_px)
        with np.errstate(divide="ignore", invalid="ignore"):
            disp = np.maximum(np.round(fb / np.maximum(zn, 1e-3) / step) * step, step)
            zn = fb / disp
    invalid |= (zn < sensor.depth_min_m) | (zn > sensor.depth_max_m)
    s = np.float32(sensor.depth_scale)
    out = np.where(invalid, 0, np.rint(zn / s) * s).astype(np.float32)
    return shift_image(out, *sensor.shift_px)


def to_depth_raw(depth_m: np.ndarray, depth_scale: float = 0.001) -> np.ndarray:
    """Metres (0 = none) -> uint16 depth units, clipped to the uint16 range."""
    return np.clip(np.rint(depth_m / np.float32(depth_scale)), 0, 65535).astype(np.uint16)


# -- colour camera --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exposure:
    """Colour camera response: out = (gain * wb * radiance) ** (1 / gamma), clipped to [0, 1].

    read_noise: std of additive noise (fraction of full scale); shot_noise: std grows as
    sqrt(value) * shot_noise.
    """

    gain: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 2.2
    read_noise: float = 2.0 / 255.0
    shot_noise: float = 4.0 / 255.0


def gamma_table(gamma: float) -> np.ndarray:
    """float32 table of (i / 65535) ** (1 / gamma) for i in 0..65535 (see `encode`)."""
    return np.power(np.linspace(0.0, 1.0, 65536, dtype=np.float32), np.float32(1.0 / gamma))


def encode(radiance: np.ndarray, exposure: Exposure, table: np.ndarray | None = None) -> np.ndarray:
    """Linear radiance HxWx3 -> encoded float32 image in [0, 1] (table lookup, 65536 levels).

    table: `gamma_table(exposure.gamma)`, when the caller keeps one.
    """
    lut = gamma_table(exposure.gamma) if table is None else table
    scale = np.asarray(exposure.white_balance, np.float32) * np.float32(exposure.gain * 65535.0)
    idx = np.clip(radiance * scale, 0, 65535).astype(np.uint16)
    return lut[idx]


def add_color_noise(rng: np.random.Generator, image: np.ndarray, exposure: Exposure,
                    normal: NormalSampler | None = None) -> np.ndarray:
    """Signal-dependent sensor noise on an encoded image; result float32 in [0, 1]."""
    std = np.sqrt(np.float32(exposure.read_noise ** 2) + np.float32(exposure.shot_noise ** 2) * image)
    noisy = image + std * _normal(rng, image.shape, normal)
    return np.clip(noisy, 0.0, 1.0)


def quantize8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


# -- lighting changes -----------------------------------------------------------------------------
def _points(depth_m: np.ndarray, intrinsics: Intrinsics, fill_m: float):
    h, w = depth_m.shape
    z = np.where(depth_m > 0, depth_m, np.float32(fill_m)).astype(np.float32)
    u = (np.arange(w, dtype=np.float32) - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx)
    v = (np.arange(h, dtype=np.float32) - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy)
    return u[None, :] * z, v[:, None] * z, z


def lighting_field(depth_m: np.ndarray, intrinsics: Intrinsics, lamp_cam: np.ndarray, spot: float,
                   ramp: float, ramp_angle: float, fill_m: float = 3.0) -> np.ndarray:
    """Multiplicative change of scene illumination, float32 HxW (>= 0.3).

    1 + spot * (light of a lamp at `lamp_cam`, camera frame, falling off with distance, scaled to
    at most 1 over the image) + ramp * (a linear gradient in [-1, 1] across the image along
    `ramp_angle`). Depth 0 is read as `fill_m`.
    """
    h, w = depth_m.shape
    x, y, z = _points(depth_m, intrinsics, fill_m)
    d2 = (x - lamp_cam[0]) ** 2 + (y - lamp_cam[1]) ** 2 + (z - lamp_cam[2]) ** 2
    lamp = 1.0 / (1.0 + d2 / np.float32(4.0))
    lamp /= max(float(lamp.max()), 1e-6)
    uu = (np.arange(w, dtype=np.float32) / max(w - 1, 1) * 2 - 1)[None, :]
    vv = (np.arange(h, dtype=np.float32) / max(h - 1, 1) * 2 - 1)[:, None]
    grad = (np.cos(ramp_angle) * uu + np.sin(ramp_angle) * vv) / np.float32(np.sqrt(2.0))
    return np.maximum(1.0 + np.float32(spot) * lamp + np.float32(ramp) * grad, 0.3).astype(np.float32)


def cast_shadow(caster: np.ndarray, depth_m: np.ndarray, intrinsics: Intrinsics, subject_cam: np.ndarray,
                lamp_cam: np.ndarray, fill_m: float = 3.0) -> np.ndarray:
    """Soft shadow of the subject on the background, float32 HxW in [0, 1] (1 = fully shadowed).

    The subject is treated as a flat cut-out (`caster`, its opacity) at depth subject_cam[2], lit
    by parallel light along lamp -> subject. Each background pixel at depth zb looks up the caster
    where its shadow ray crosses the subject's depth; the penumbra widens with zb - z_subject.
    """
    h, w = depth_m.shape
    direction = np.asarray(subject_cam, np.float64) - np.asarray(lamp_cam, np.float64)
    if direction[2] <= 0.05:
        return np.zeros((h, w), np.float32)
    lx, ly = direction[0] / direction[2], direction[1] / direction[2]
    zs = float(subject_cam[2])
    zb = np.where(depth_m > 0, depth_m, np.float32(fill_m)).astype(np.float32)
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    u = np.arange(w, dtype=np.float32)[None, :]
    v = np.arange(h, dtype=np.float32)[:, None]
    ratio = zb / np.float32(zs)
    map_x = (np.float32(cx) + (u - np.float32(cx)) * ratio - np.float32(fx * lx / zs) * (zb - np.float32(zs)))
    map_y = (np.float32(cy) + (v - np.float32(cy)) * ratio - np.float32(fy * ly / zs) * (zb - np.float32(zs)))
    hard = cv2.remap(caster.astype(np.float32), map_x.astype(np.float32), map_y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    hard = np.where(zb > zs + 0.05, hard, 0).astype(np.float32)
    scale = max(w / 640.0, 0.25)
    near = cv2.GaussianBlur(hard, (0, 0), 2.0 * scale)
    small = cv2.resize(hard, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
    far = cv2.resize(cv2.GaussianBlur(small, (0, 0), max(3.0 * scale, 0.6)), (w, h), interpolation=cv2.INTER_LINEAR)
    weight = np.clip((zb - np.float32(zs)) / np.float32(1.5), 0, 1)
    return np.clip((1 - weight) * near + weight * far, 0, 1).astype(np.float32)
