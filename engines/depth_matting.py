"""Depth-only matting: DART's depth posterior turned into a soft, colour-aligned alpha matte.

Owns `DepthMatting` (per-prior constants in `set_prior`, one `process` per frame), its result type,
and `measure_depth_stage_ms` (the speed benchmark of the depth stages).

Per frame, at `config.work_scale` of colour resolution (160x120 for 640x480):
1. depth resized with nearest neighbour (same sampler as the prior: never blends unknown depth),
   colour resized with area averaging;
2. A_D = eqs. 7-8 (`depth_bayes.depth_posterior`);
3. posterior -> foreground evidence e in [0, 1] (below);
4. the paper's cleaning of the map: Gaussian blur, removal of small foreground regions (and here
   also filling of small background holes), `depth_bayes.clean_posterior` with threshold 0.5;
5. e -> alpha at work resolution: a ramp from 0 at e = 0.25 to 1 at e = 0.75, kept only next to the
   surviving foreground regions (so faint speckle between them cannot leave a haze);
6. fast guided filter with the colour image: upsampled to colour resolution, soft edges that follow
   colour edges; clipped to [0, 1]. The trimap is eq. 13's thresholds applied to this matte.

Step 3, posterior -> evidence. With the paper's zeta (0.001 / mm) A_D is far from 0/1: a pixel clearly
in front of a background 2 m away gets A_D = 0.6, a background pixel at its mean depth (std 2 cm)
about 0.07, and an unknown depth exactly P_F = 0.5. So A_D itself is no matte. Each pixel's posterior
is mapped linearly between the values it takes for certain background (d = background mean) and for
certain foreground (pB(d) = 0), both precomputed per pixel from the prior:
    e = clip((A_D - A_bg_ref) / (A_fg_ref - A_bg_ref), 0, 1).
Pixels whose depth is behind the empty scene (pF = 0: cannot be the subject) or beyond
`max_subject_distance_m` get e = 0. For unknown depth the paper's answer (P_F, maps to e ~ 0.8) would
turn every IR shadow and sensor dropout into foreground, so the depth-only matte decides those pixels
differently: where the empty scene had no depth in most capture frames either (windows, black or
shiny surfaces, out of range) nothing changed and e = 0; elsewhere (hair, dark clothes, a subject
closer than the sensor's minimum range, or an IR shadow) e is the colour change against the captured
background plate: a smoothstep of the RGB distance from `color_low` (e = 0) to `color_high` (e = 1).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from engines.background_prior import BackgroundPrior, BackgroundPriorBuilder
from engines.config import DepthConfig
from engines.depth_bayes import (
    LikelihoodTables,
    Scratch,
    alpha_posterior_given_depth,
    clean_posterior,
    depth_posterior,
    depth_residual,
    fuse_error_maps,
    make_trimap,
    resize_depth,
    zeta_per_m,
)
from engines.guided_filter import GuidedUpsampler
from sensors.errors import UserError

log = logging.getLogger(__name__)

_USUALLY_INVALID_FRACTION = 0.5  # a pixel "had no depth" in the empty scene below this valid share
_RAMP_LOW, _RAMP_HIGH = 0.25, 0.75  # step 5: evidence -> alpha


@dataclass
class DepthMattingResult:
    """One frame's depth-only matte.

    alpha: float32 HxW in [0, 1] at colour resolution (1 = subject).
    posterior: float32 h x w, A_D of eq. 8 at the working resolution (raw, before cleaning).
    evidence: float32 h x w in [0, 1], the cleaned foreground evidence (steps 3-4).
    trimap: float32 HxW with values {0, 0.5, 1} (eq. 13's thresholds applied to `alpha`).
    timings_ms: stage name -> milliseconds for this frame.
    """

    alpha: np.ndarray
    posterior: np.ndarray
    evidence: np.ndarray
    trimap: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class _PriorState:
    """Everything `process` needs from a prior, computed once in `set_prior`."""

    full_shape: tuple[int, int]
    work_size: tuple[int, int]  # (width, height)
    tables: LikelihoodTables  # at work resolution
    a_bg_ref: np.ndarray  # posterior at d = background mean
    inv_range: np.ndarray  # 1 / (A_fg_ref - A_bg_ref)
    usually_invalid: np.ndarray  # bool: the empty scene had no depth here in most frames
    plate: np.ndarray  # float32 h x w x 3, background colour in [0, 1] at work resolution


def work_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) of the working resolution for a colour resolution and `work_scale`."""
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


class DepthMatting:
    """Depth-only matting against a captured background prior.

    config: DART depth parameters. max_subject_distance_m: optional depth gate (farther = background).
    guided_radius (pixels at work resolution) and guided_eps ([0, 1] colour scale): the guided filter.
    color_low / color_high: RGB distance ([0, 1] units, Euclidean / sqrt(3)) at which an unknown-depth
    pixel's colour change starts / fully counts as foreground.
    """

    def __init__(
        self,
        config: DepthConfig,
        max_subject_distance_m: float | None = None,
        guided_radius: int = 1,
        guided_eps: float = 1e-3,
        color_low: float = 0.06,
        color_high: float = 0.16,
    ) -> None:
        if not 0.0 < config.work_scale <= 1.0:
            raise UserError(f"work_scale must be in (0, 1], got {config.work_scale}.", 2)
        if not 0.0 <= color_low < color_high:
            raise ValueError(f"need 0 <= color_low < color_high, got {color_low}, {color_high}")
        self.config = config
        self.max_subject_distance_m = max_subject_distance_m
        self._upsampler = GuidedUpsampler(guided_radius, guided_eps)
        self._scratch = Scratch()
        self.color_low = float(color_low)
        self.color_high = float(color_high)
        self._state: _PriorState | None = None

    @property
    def has_prior(self) -> bool:
        return self._state is not None

    def set_prior(self, prior: BackgroundPrior) -> None:
        """Precompute the per-prior constants (downsampled prior, likelihood tables, references)."""
        cfg = self.config
        w, h = work_size(prior.width, prior.height, cfg.work_scale)
        prior_work = prior.resized(w, h)
        tables = LikelihoodTables.from_prior(prior_work)
        fg, bg, zeta = np.float32(cfg.prior_fg), np.float32(1.0 - cfg.prior_fg), np.float32(zeta_per_m(cfg))
        top = fg * (tables.inv_mean + zeta)
        a_fg_ref = top / (fg * tables.inv_mean + zeta)
        a_bg_ref = top / (fg * tables.inv_mean + bg * tables.pb_peak + zeta)
        inv_range = np.float32(1.0) / np.maximum(a_fg_ref - a_bg_ref, np.float32(1e-3))
        self._state = _PriorState(
            full_shape=prior.shape,
            work_size=(w, h),
            tables=tables,
            a_bg_ref=a_bg_ref.astype(np.float32),
            inv_range=inv_range.astype(np.float32),
            usually_invalid=tables.valid_fraction < np.float32(_USUALLY_INVALID_FRACTION),
            plate=np.ascontiguousarray(prior_work.color_mean, dtype=np.float32),
        )
        log.debug("depth matting at %dx%d; %.1f%% of the empty scene had no depth", w, h,
                  100.0 * float(np.mean(self._state.usually_invalid)))

    def evidence(self, depth_work: np.ndarray, posterior: np.ndarray, color_work: np.ndarray) -> np.ndarray:
        """Step 3: foreground evidence e in [0, 1] (float32 h x w) from A_D, depth and colour at work res.

        color_work: uint8 h x w x 3 RGB, the frame downsampled to the working resolution.
        """
        s = self._require_state()
        e = posterior - s.a_bg_ref
        e *= s.inv_range
        np.clip(e, 0.0, 1.0, out=e)
        not_subject = depth_work > s.tables.mean_m
        if self.max_subject_distance_m is not None:
            not_subject |= depth_work > np.float32(self.max_subject_distance_m)
        e[not_subject] = 0.0
        unknown = ~(depth_work > 0)
        if unknown.any():
            e[unknown] = 0.0
            changed = unknown & ~s.usually_invalid
            if changed.any():
                diff = color_work[changed].astype(np.float32) * np.float32(1.0 / 255.0) - s.plate[changed]
                distance = np.sqrt((diff * diff).mean(axis=1))
                t = np.clip((distance - self.color_low) / (self.color_high - self.color_low), 0.0, 1.0)
                e[changed] = t * t * (3.0 - 2.0 * t)
        return e

    def alpha_work(self, evidence_clean: np.ndarray) -> np.ndarray:
        """Step 5: cleaned evidence -> alpha at work resolution (float32 in [0, 1])."""
        ramp = evidence_clean - np.float32(_RAMP_LOW)
        ramp *= np.float32(1.0 / (_RAMP_HIGH - _RAMP_LOW))
        np.clip(ramp, 0.0, 1.0, out=ramp)
        keep = cv2.dilate((evidence_clean > np.float32(0.5)).view(np.uint8), np.ones((3, 3), np.uint8))
        ramp *= keep
        return ramp

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> DepthMattingResult:
        """Matte one frame: colour uint8 HxWx3 RGB, depth float32 HxW metres (0 = unknown)."""
        s = self._require_state()
        if color_rgb.dtype != np.uint8 or color_rgb.ndim != 3 or color_rgb.shape[2] != 3:
            raise ValueError(f"colour must be uint8 HxWx3 RGB, got {color_rgb.dtype} {color_rgb.shape}")
        if color_rgb.shape[:2] != s.full_shape or depth_m.shape != s.full_shape:
            raise UserError(
                f"Frame size {color_rgb.shape[1]}x{color_rgb.shape[0]} does not match the captured background "
                f"({s.full_shape[1]}x{s.full_shape[0]}): capture the background again at this resolution."
            )
        cfg = self.config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        depth_work = resize_depth(depth_m, *s.work_size)
        color_work = cv2.resize(np.ascontiguousarray(color_rgb), s.work_size, interpolation=cv2.INTER_AREA)
        t1 = time.perf_counter()
        posterior = depth_posterior(depth_work, s.tables, cfg)
        t2 = time.perf_counter()
        e = self.evidence(depth_work, posterior, color_work)
        e = clean_posterior(e, cfg, threshold=0.5, fill_background_holes=True)
        t3 = time.perf_counter()
        alpha = self._upsampler(self.alpha_work(e), color_rgb, low_res_guide=color_work)
        cv2.max(alpha, 0.0, dst=alpha)
        cv2.min(alpha, 1.0, dst=alpha)
        t4 = time.perf_counter()
        trimap = make_trimap(alpha, cfg, scratch=self._scratch)
        t5 = time.perf_counter()
        timings["downsample"] = (t1 - t0) * 1e3
        timings["posterior"] = (t2 - t1) * 1e3
        timings["clean"] = (t3 - t2) * 1e3
        timings["upsample"] = (t4 - t3) * 1e3
        timings["trimap"] = (t5 - t4) * 1e3
        return DepthMattingResult(alpha=alpha, posterior=posterior, evidence=e, trimap=trimap, timings_ms=timings)

    def _require_state(self) -> _PriorState:
        if self._state is None:
            raise UserError("No background has been captured yet: capture the empty scene first.")
        return self._state


def _synthetic_scene(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background depth, frame depth with a box in front, colour) for the benchmark; metres, RGB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = (2.5 + 0.5 * xx / width).astype(np.float32)
    frame = background.copy()
    box = (np.abs(xx - width / 2) < width / 6) & (np.abs(yy - height / 2) < height / 3)
    frame[box] = 1.2
    frame += rng.normal(0.0, 0.005, frame.shape).astype(np.float32)
    frame[rng.random(frame.shape) < 0.05] = 0.0
    color = np.where(box[..., None], 200, 60).astype(np.uint8).repeat(3, axis=2)
    return background, frame, color


def measure_depth_stage_ms(width: int = 640, height: int = 480, n: int = 100, config: DepthConfig | None = None,
                           seed: int = 0) -> dict[str, float]:
    """Median milliseconds of DART's depth stages on synthetic arrays.

    Stages: "prior_update" (one `BackgroundPriorBuilder.add`, full resolution), "posterior" (nearest
    downsampling + eqs. 7-8 + cleaning at work resolution), "fusion" (eqs. 9-10 at work resolution),
    "trimap" (eq. 12 + eq. 13 at full resolution); "total" is their sum. "depth_matting" (one whole
    `DepthMatting.process`, guided upsampling included) is reported separately, outside "total".
    """
    cfg = config or DepthConfig()
    rng = np.random.default_rng(seed)
    background, frame, color = _synthetic_scene(width, height, rng)
    builder = BackgroundPriorBuilder(height, width)
    for _ in range(3):
        noisy = background + rng.normal(0.0, 0.005, background.shape).astype(np.float32)
        builder.add(color, noisy)
    prior = builder.build(cfg)
    w, h = work_size(width, height, cfg.work_scale)
    tables_work = LikelihoodTables.from_prior(prior.resized(w, h))
    tables_full = LikelihoodTables.from_prior(prior)
    alpha_raw = rng.random((h, w), dtype=np.float32)
    error_rgb = rng.random((h, w), dtype=np.float32)
    alpha_fine = rng.random((height, width), dtype=np.float32)
    matting = DepthMatting(cfg)
    matting.set_prior(prior)
    scratch = Scratch()

    stages = {name: [] for name in ("prior_update", "posterior", "fusion", "trimap", "depth_matting")}
    posterior = None
    for _ in range(max(1, n)):
        t0 = time.perf_counter()
        builder.add(color, frame)
        t1 = time.perf_counter()
        posterior = clean_posterior(depth_posterior(resize_depth(frame, w, h), tables_work, cfg), cfg)
        t2 = time.perf_counter()
        fuse_error_maps(depth_residual(posterior, alpha_raw), error_rgb, cfg.beta)
        t3 = time.perf_counter()
        make_trimap(alpha_posterior_given_depth(alpha_fine, frame, tables_full, cfg, scratch=scratch), cfg,
                    scratch=scratch)
        t4 = time.perf_counter()
        matting.process(color, frame)
        t5 = time.perf_counter()
        stages["prior_update"].append(t1 - t0)
        stages["posterior"].append(t2 - t1)
        stages["fusion"].append(t3 - t2)
        stages["trimap"].append(t4 - t3)
        stages["depth_matting"].append(t5 - t4)
    result = {name: float(np.median(values)) * 1e3 for name, values in stages.items()}
    result["total"] = sum(result[k] for k in ("prior_update", "posterior", "fusion", "trimap"))
    return result
