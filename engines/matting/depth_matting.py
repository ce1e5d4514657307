"""Depth-only matting: DART's depth posterior turned into a soft, colour-aligned alpha matte.

Owns `DepthMatting` (per-prior constants in `set_prior`, one `process` per frame), and its result
type (speed: `engines.evaluation.speed.measure_depth_stage_ms`).

Per frame, at `config.work_scale` of colour resolution (160x120 for 640x480):
1. depth resized with nearest neighbour (same sampler as the prior: never blends unknown depth),
   colour resized with area averaging;
2. A_D = eqs. 7-8 (`depth_bayes.depth_posterior`);
3. posterior -> foreground evidence e in [0, 1] (`DepthEvidence`, below);
4. the paper's cleaning of the map: Gaussian blur, removal of small foreground regions (and here
   also filling of small background holes), `depth_bayes.clean_posterior` with threshold 0.5;
5. e -> alpha at work resolution: a ramp from 0 at e = 0.25 to 1 at e = 0.75, kept only next to the
   surviving foreground regions (so faint speckle between them cannot leave a haze);
6. fast guided filter with the colour image: upsampled to colour resolution, soft edges that follow
   colour edges; clipped to [0, 1]. The trimap is eq. 13's thresholds applied to this matte.

Step 3, posterior -> evidence: `engines.depth_evidence.DepthEvidence` (A_D calibrated per pixel
between certain background and certain foreground; unknown depth decided by colour change).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from engines.matting.background_prior import BackgroundPrior, check_frame
from engines.config import DepthConfig
from engines.matting.depth_bayes import (
    clean_posterior,
    depth_posterior,
    make_trimap,
    resize_depth,
)
from engines.matting.depth_evidence import DepthEvidence
from engines.matting.scratch import Scratch
from engines.matting.guided_filter import GuidedUpsampler
from sensors.errors import UserError

log = logging.getLogger(__name__)

RAMP_LOW, RAMP_HIGH = 0.25, 0.75  # step 5: evidence -> alpha (also depth fusion's sure thresholds)


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
    evidence: DepthEvidence  # at work resolution (holds the likelihood tables)


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
        w, h = work_size(prior.width, prior.height, self.config.work_scale)
        evidence = DepthEvidence.from_prior(prior.resized(w, h), self.config, self.max_subject_distance_m,
                                            self.color_low, self.color_high)
        self._state = _PriorState(full_shape=prior.shape, work_size=(w, h), evidence=evidence)
        log.debug("depth matting at %dx%d; %.1f%% of the empty scene had no depth", w, h,
                  100.0 * float(np.mean(evidence.usually_invalid)))

    def evidence(self, depth_work: np.ndarray, posterior: np.ndarray, color_work: np.ndarray) -> np.ndarray:
        """Step 3: foreground evidence e in [0, 1] (float32 h x w) from A_D, depth and colour at work res."""
        return self._require_state().evidence(depth_work, posterior, color_work)

    def alpha_work(self, evidence_clean: np.ndarray) -> np.ndarray:
        """Step 5: cleaned evidence -> alpha at work resolution (float32 in [0, 1])."""
        ramp = evidence_clean - np.float32(RAMP_LOW)
        ramp *= np.float32(1.0 / (RAMP_HIGH - RAMP_LOW))
        np.clip(ramp, 0.0, 1.0, out=ramp)
        keep = cv2.dilate((evidence_clean > np.float32(0.5)).view(np.uint8), np.ones((3, 3), np.uint8))
        ramp *= keep
        return ramp

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> DepthMattingResult:
        """Matte one frame: colour uint8 HxWx3 RGB, depth float32 HxW metres (0 = unknown)."""
        s = self._require_state()
        check_frame(color_rgb, depth_m, s.full_shape)
        cfg = self.config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        depth_work = resize_depth(depth_m, *s.work_size)
        color_work = cv2.resize(np.ascontiguousarray(color_rgb), s.work_size, interpolation=cv2.INTER_AREA)
        t1 = time.perf_counter()
        posterior = depth_posterior(depth_work, s.evidence.tables, cfg)
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
