"""Training data: a pre-generated pool of synthetic RGB-D samples and BGMv2-style augmentation.

Owns `SamplePool` (compact uint8 / uint16 arrays in memory, optional .npz cache), `build_pool`
(draws samples from `engines.synth.sample_stream`), `AugmentConfig` and `augment_sample` (on-the-fly
augmentation of one sample, BGMv2 appendix D), `make_batch` (a batch of augmented samples as float32
NCHW torch tensors at full and base resolution), and the per-sample depth prior used for DART's
depth posterior during training (`sample_prior`).

Storage per sample (H x W full resolution):
    image, background, foreground: uint8 HxWx3 RGB (the generator already quantises to 8 bits);
    depth_mm, background_depth_mm: uint16 HxW millimetres, 0 = no measurement;
    alpha: uint8 HxW, alpha * 255 rounded.

Augmentation (the generator already models the sensor, lighting change, exposure change and the
subject's cast shadow between the background plate and the image; these add BGMv2's extra ones):
- horizontal flip of everything (p = 0.5);
- zoom: a random crop of 1/s of the frame (s uniform in [1, `zoom_max`]) resized back to the full size
  (p = `zoom_p`); trained at 320x240 with c = 4, the base network then also sees subjects at the pixel
  scale of a 640x480 frame at c = 4 (the app's), with the detail of native pixels at base resolution;
- background misalignment: the captured plate (colour and depth) warped by a small random affine
  (shift +-`shift_px`, rotation +-`rotate_deg`, scale 1 +- `scale`) (p = `misalign_p`), as if the
  camera moved slightly after the background capture;
- an extra soft shadow: a blurred random ellipse darkening the image behind the subject (p = `shadow_p`);
- colour jitter of the image (and with it the ground-truth foreground): per-channel gain, brightness,
  contrast, saturation (p = `jitter_p`); the plate gets its own, weaker jitter;
- Gaussian noise on image and plate (p = `noise_p`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

KEYS_U8 = ("image", "background", "foreground", "alpha")
KEYS_U16 = ("depth_mm", "background_depth_mm")
MM_PER_M = 1000.0


@dataclass
class SamplePool:
    """N training samples at one full resolution (see the module docstring for dtypes).

    image, background, foreground: uint8 (N, H, W, 3); alpha: uint8 (N, H, W);
    depth_mm, background_depth_mm: uint16 (N, H, W).
    """

    image: np.ndarray
    background: np.ndarray
    foreground: np.ndarray
    alpha: np.ndarray
    depth_mm: np.ndarray
    background_depth_mm: np.ndarray

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the samples."""
        return int(self.image.shape[1]), int(self.image.shape[2])

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Sample `i` as float32 arrays: images RGB [0, 1], alpha [0, 1], depths in metres (0 = unknown)."""
        return {
            "image": self.image[i].astype(np.float32) / np.float32(255.0),
            "background": self.background[i].astype(np.float32) / np.float32(255.0),
            "foreground": self.foreground[i].astype(np.float32) / np.float32(255.0),
            "alpha": self.alpha[i].astype(np.float32) / np.float32(255.0),
            "depth_m": self.depth_mm[i].astype(np.float32) / np.float32(MM_PER_M),
            "background_depth_m": self.background_depth_mm[i].astype(np.float32) / np.float32(MM_PER_M),
        }

    def subset(self, index: np.ndarray) -> SamplePool:
        return SamplePool(*(getattr(self, k)[index] for k in KEYS_U8[:3] + ("alpha",) + KEYS_U16))

    def save(self, path: str | Path) -> Path:
        """Write the pool as an uncompressed .npz (plain arrays, no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{k: getattr(self, k) for k in KEYS_U8 + KEYS_U16})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SamplePool:
        with np.load(str(path), allow_pickle=False) as data:
            return cls(**{k: data[k] for k in KEYS_U8 + KEYS_U16})


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _mm(depth_m: np.ndarray) -> np.ndarray:
    d = np.nan_to_num(np.asarray(depth_m, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(d * MM_PER_M + 0.5, 0, 65535).astype(np.uint16)


def pool_from_samples(samples: list[dict]) -> SamplePool:
    """Pack sample dicts (`engines.synth.scene` format: float32, metres) into a `SamplePool`."""
    return SamplePool(
        image=np.stack([_u8(s["image"]) for s in samples]),
        background=np.stack([_u8(s["background"]) for s in samples]),
        foreground=np.stack([_u8(s["foreground"]) for s in samples]),
        alpha=np.stack([_u8(s["alpha"]) for s in samples]),
        depth_mm=np.stack([_mm(s["depth_m"]) for s in samples]),
        background_depth_mm=np.stack([_mm(s["background_depth_m"]) for s in samples]),
    )


def build_pool(
    n: int,
    height: int,
    width: int,
    seed: int = 0,
    samples_per_background: int = 4,
    scene_config=None,
    bank=None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SamplePool:
    """Draw `n` samples of `height` x `width` from `engines.synth.sample_stream` (deterministic per seed).

    bank: a `TextureBank` to reuse (None builds one). scene_config: `engines.synth.SceneConfig` effect
    strengths. About 50 ms per 320x240 sample on one core.
    """
    from engines.synth.samples import sample_stream
    from engines.synth.scene import SceneConfig
    from engines.synth.textures import TextureBank

    config = scene_config or SceneConfig()
    bank = bank if bank is not None else TextureBank(config.shared_dir, use_real=config.real_textures)
    stream = sample_stream(np.random.default_rng(seed), height, width, bank, config, samples_per_background)
    pool = SamplePool(
        image=np.zeros((n, height, width, 3), np.uint8),
        background=np.zeros((n, height, width, 3), np.uint8),
        foreground=np.zeros((n, height, width, 3), np.uint8),
        alpha=np.zeros((n, height, width), np.uint8),
        depth_mm=np.zeros((n, height, width), np.uint16),
        background_depth_mm=np.zeros((n, height, width), np.uint16),
    )
    for i in range(n):
        s = next(stream)
        pool.image[i], pool.background[i], pool.foreground[i] = _u8(s["image"]), _u8(s["background"]), _u8(s["foreground"])
        pool.alpha[i] = _u8(s["alpha"])
        pool.depth_mm[i], pool.background_depth_mm[i] = _mm(s["depth_m"]), _mm(s["background_depth_m"])
        if on_progress is not None and ((i + 1) % 100 == 0 or i + 1 == n):
            on_progress(i + 1, n)
    return pool


def load_or_build_pool(path: str | Path | None, n: int, height: int, width: int, seed: int = 0,
                       on_progress: Callable[[int, int], None] | None = None) -> SamplePool:
    """The pool cached at `path` if it exists with at least `n` samples of this size, else build (and cache)."""
    if path is not None and Path(path).is_file():
        pool = SamplePool.load(path)
        if len(pool) >= n and pool.size == (height, width):
            log.info("loaded %d cached samples from %s", len(pool), path)
            return pool.subset(np.arange(n)) if len(pool) > n else pool
        log.info("cached pool %s does not fit (%d samples of %s); rebuilding", path, len(pool), pool.size)
    pool = build_pool(n, height, width, seed, on_progress=on_progress)
    if path is not None:
        pool.save(path)
    return pool


# ------------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the on-the-fly augmentations (module docstring)."""

    flip_p: float = 0.5
    zoom_p: float = 0.5
    zoom_max: float = 2.2
    misalign_p: float = 0.3
    shift_px: float = 3.0  # at 640 px width; scaled with the sample width
    rotate_deg: float = 1.0
    scale: float = 0.01
    shadow_p: float = 0.2
    shadow_strength: tuple[float, float] = (0.15, 0.45)
    jitter_p: float = 0.7
    gain: float = 0.12  # per-channel gain 1 +- gain
    brightness: float = 0.08
    contrast: float = 0.15
    saturation: float = 0.2
    plate_jitter: float = 0.3  # the plate's jitter strengths relative to the image's
    noise_p: float = 0.4
    noise_std: float = 0.015

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all (evaluation, tests)."""
        return cls(flip_p=0.0, zoom_p=0.0, misalign_p=0.0, shadow_p=0.0, jitter_p=0.0, noise_p=0.0)


def _jitter(rng: np.random.Generator, images: list[np.ndarray], cfg: AugmentConfig, strength: float) -> None:
    """The same random colour jitter applied in place to every float32 HxWx3 image in `images`."""
    gain = 1.0 + rng.uniform(-cfg.gain, cfg.gain, 3).astype(np.float32) * strength
    bright = np.float32(rng.uniform(-cfg.brightness, cfg.brightness) * strength)
    contrast = np.float32(1.0 + rng.uniform(-cfg.contrast, cfg.contrast) * strength)
    sat = np.float32(1.0 + rng.uniform(-cfg.saturation, cfg.saturation) * strength)
    for img in images:
        img *= gain
        gray = img.mean(axis=2, keepdims=True)
        img -= gray
        img *= sat
        img += (gray - np.float32(0.5)) * contrast + np.float32(0.5) + bright
        np.clip(img, 0.0, 1.0, out=img)


def _affine(rng: np.random.Generator, h: int, w: int, cfg: AugmentConfig) -> np.ndarray:
    shift = cfg.shift_px * w / 640.0
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), rng.uniform(-cfg.rotate_deg, cfg.rotate_deg),
                                1.0 + rng.uniform(-cfg.scale, cfg.scale))
    m[:, 2] += rng.uniform(-shift, shift, 2)
    return m


def _shadow(rng: np.random.Generator, h: int, w: int, cfg: AugmentConfig) -> np.ndarray:
    """A multiplicative soft shadow field (HxWx1 float32 in (0, 1]) from a blurred random ellipse."""
    mask = np.zeros((h, w), np.float32)
    center = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
    axes = (int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.5) * h))
    cv2.ellipse(mask, center, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    sigma = max(1.0, rng.uniform(0.02, 0.08) * w)
    k = 2 * int(math.ceil(2.5 * sigma)) + 1
    mask = cv2.GaussianBlur(mask, (k, k), sigma)
    return (1.0 - np.float32(rng.uniform(*cfg.shadow_strength)) * mask)[..., None]


def augment_sample(sample: dict[str, np.ndarray], rng: np.random.Generator, cfg: AugmentConfig) -> dict[str, np.ndarray]:
    """One augmented copy of a float32 sample dict (`SamplePool.sample` format); the input is not modified."""
    s = {k: v.copy() for k, v in sample.items()}
    h, w = s["alpha"].shape
    if rng.random() < cfg.flip_p:
        s = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in s.items()}
    if rng.random() < cfg.zoom_p:
        scale = rng.uniform(1.0, cfg.zoom_max)
        ch, cw = max(4, int(round(h / scale))), max(4, int(round(w / scale)))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        for k, v in s.items():
            interp = cv2.INTER_NEAREST if k.endswith("depth_m") else cv2.INTER_LINEAR
            s[k] = cv2.resize(np.ascontiguousarray(v[y0:y0 + ch, x0:x0 + cw]), (w, h), interpolation=interp)
    if rng.random() < cfg.misalign_p:
        m = _affine(rng, h, w, cfg)
        s["background"] = cv2.warpAffine(s["background"], m, (w, h), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REFLECT)
        s["background_depth_m"] = cv2.warpAffine(s["background_depth_m"], m, (w, h), flags=cv2.INTER_NEAREST,
                                                 borderMode=cv2.BORDER_REFLECT)
    if rng.random() < cfg.shadow_p:
        # only the background part of the image darkens (the shadow falls behind the subject)
        shade = _shadow(rng, h, w, cfg)
        a = s["alpha"][..., None]
        s["image"] = s["image"] * (a + (1.0 - a) * shade)
    if rng.random() < cfg.jitter_p:
        _jitter(rng, [s["image"], s["foreground"]], cfg, 1.0)
        if rng.random() < 0.5:
            _jitter(rng, [s["background"]], cfg, cfg.plate_jitter)
    if rng.random() < cfg.noise_p:
        for key in ("image", "background"):
            noise = rng.normal(0.0, cfg.noise_std * rng.uniform(0.3, 1.0), s[key].shape).astype(np.float32)
            s[key] = np.clip(s[key] + noise, 0.0, 1.0)
    s["foreground"] *= (s["alpha"] > 0)[..., None]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in s.items()}


def sample_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one training step: a pure function of (seed, step, stream), so a
    resumed run draws exactly the batches an uninterrupted run would."""
    return np.random.default_rng([int(seed), int(stream), int(step)])


@dataclass
class Batch:
    """float32 NCHW numpy arrays of one batch.

    Full resolution (H, W): image, background, foreground (N,3,H,W) RGB [0,1]; alpha (N,1,H,W);
    depth_m, background_depth_m (N,1,H,W) metres (0 = unknown).
    Base resolution (H/c, W/c, area-averaged colour and alpha, nearest-sampled depth): the same with
    the suffix `_small`.
    """

    full: dict[str, np.ndarray]
    small: dict[str, np.ndarray]


def _nchw(arrays: list[np.ndarray]) -> np.ndarray:
    a = np.stack(arrays)
    return np.ascontiguousarray(a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2))


def make_batch(pool: SamplePool, rng: np.random.Generator, batch_size: int, downsample: int,
               augment: AugmentConfig, index: np.ndarray | None = None) -> Batch:
    """`batch_size` augmented samples drawn from `pool` with `rng` (or the given `index`)."""
    from engines.matting.depth_bayes import resize_depth

    idx = rng.integers(0, len(pool), batch_size) if index is None else np.asarray(index)
    h, w = pool.size
    hs, ws = h // downsample, w // downsample
    full: dict[str, list] = {}
    small: dict[str, list] = {}
    for i in idx:
        s = augment_sample(pool.sample(int(i)), rng, augment)
        for k, v in s.items():
            full.setdefault(k, []).append(v)
            if k.endswith("depth_m"):
                small.setdefault(k, []).append(resize_depth(v, ws, hs))
            else:
                small.setdefault(k, []).append(cv2.resize(v, (ws, hs), interpolation=cv2.INTER_AREA))
    return Batch({k: _nchw(v) for k, v in full.items()}, {k: _nchw(v) for k, v in small.items()})


# ------------------------------------------------------------------------------------- depth prior


def sample_prior(background_depth_m: np.ndarray, background_rgb: np.ndarray, depth_config, noise_k: float = 0.0015):
    """A `BackgroundPrior` from one background depth capture, as a multi-frame capture would give it.

    background_depth_m: float32 HxW metres (0 = unknown); background_rgb: float32 HxWx3 in [0, 1].
    Mean = the captured depth; std = the sensor noise model noise_k * z^2 (what a capture's sample std
    measures for the synthetic sensor), floored like eq. 4 (`std_floor_ratio` * mean, 1 mm); pixels
    without depth get eq. 4's fallback (mean d_max, std psi * d_max) and a valid count of 0.
    """
    from engines.matting.background_prior import DEFAULT_MIN_STD_M, BackgroundPrior

    d = np.asarray(background_depth_m, np.float32)
    valid = d > 0
    d_max = np.float32(depth_config.d_max_m)
    mean = np.where(valid, d, d_max).astype(np.float32)
    std = np.where(valid, np.float32(noise_k) * mean * mean, np.float32(depth_config.psi) * d_max)
    floor = np.maximum(np.float32(depth_config.std_floor_ratio) * mean, np.float32(DEFAULT_MIN_STD_M))
    return BackgroundPrior(
        depth_mean_m=mean,
        depth_std_m=np.maximum(std, floor).astype(np.float32),
        valid_count=valid.astype(np.int32),
        color_mean=np.ascontiguousarray(background_rgb, np.float32),
        n_frames=1,
    )


def depth_posterior_batch(depth_m: np.ndarray, background_depth_m: np.ndarray, depth_config,
                          noise_k: float = 0.0015) -> np.ndarray:
    """A_D (eqs. 7-8) for a batch: depths (N, 1, h, w) metres -> (N, 1, h, w) float32 in [0, 1]."""
    from engines.matting.depth_bayes import depth_posterior

    out = np.empty(depth_m.shape, np.float32)
    for i in range(depth_m.shape[0]):
        bg = background_depth_m[i, 0]
        prior = sample_prior(bg, np.zeros(bg.shape + (3,), np.float32), depth_config, noise_k)
        out[i, 0] = depth_posterior(depth_m[i, 0], prior, depth_config)
    return out
