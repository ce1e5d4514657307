"""Calibrated foreground evidence from DART's depth posterior A_D (eqs. 7-8), shared by the depth-only
matte (`engines.matting.depth_matting`) and DART's error-map correction (`engines.matting.dart_matting`).

With the paper's zeta (0.001 / mm) A_D is far from 0/1: a pixel clearly in front of a background 2 m
away gets A_D = 0.6, a background pixel at its mean depth (std 2 cm) about 0.07, and an unknown depth
exactly P_F = 0.5. So |A_D - A_raw| (eq. 9) is about 0.4 on every correctly matted subject pixel and
does not single out the student's mistakes, and A_D itself is no matte. `DepthEvidence` maps each
pixel's posterior linearly between the values it takes for certain background (d = background mean)
and for certain foreground (pB(d) = 0), both precomputed per pixel from the prior:
    e = clip((A_D - A_bg_ref) / (A_fg_ref - A_bg_ref), 0, 1).
Pixels whose depth is behind the empty scene (pF = 0: cannot be the subject) or beyond
`max_subject_distance_m` get e = 0. For unknown depth the paper's answer (P_F, maps to e ~ 0.8) would
turn every IR shadow and sensor dropout into foreground, so those pixels are decided differently: where
the empty scene had no depth in most capture frames either (windows, black or shiny surfaces, out of
range) nothing changed and e = 0; elsewhere (hair, dark clothes, a subject closer than the sensor's
minimum range, or an IR shadow) e is the colour change against the captured background plate: a
smoothstep of the RGB distance from `color_low` (e = 0) to `color_high` (e = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.matting.background_prior import BackgroundPrior
from engines.config import DepthConfig
from engines.matting.depth_bayes import LikelihoodTables, zeta_per_m

USUALLY_INVALID_FRACTION = 0.5  # a pixel "had no depth" in the empty scene below this valid share


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class DepthEvidence:
    """Per-prior constants of the evidence map at one working resolution; call it once per frame.

    tables: likelihood tables of the prior (for `depth_bayes.depth_posterior`).
    a_bg_ref: A_D at d = background mean; inv_range: 1 / (A_fg_ref - A_bg_ref).
    usually_invalid: bool, the empty scene had no depth here in most frames.
    plate: float32 h x w x 3 background colour in [0, 1].
    """

    tables: LikelihoodTables
    a_bg_ref: np.ndarray
    inv_range: np.ndarray
    usually_invalid: np.ndarray
    plate: np.ndarray
    max_subject_distance_m: float | None = None
    color_low: float = 0.06
    color_high: float = 0.16

    @classmethod
    def from_prior(cls, prior_work: BackgroundPrior, config: DepthConfig, max_subject_distance_m: float | None = None,
                   color_low: float = 0.06, color_high: float = 0.16) -> DepthEvidence:
        """Constants for a prior already resized to the working resolution."""
        if not 0.0 <= color_low < color_high:
            raise ValueError(f"need 0 <= color_low < color_high, got {color_low}, {color_high}")
        tables = LikelihoodTables.from_prior(prior_work)
        fg, bg, zeta = np.float32(config.prior_fg), np.float32(1.0 - config.prior_fg), np.float32(zeta_per_m(config))
        top = fg * (tables.inv_mean + zeta)
        a_fg_ref = top / (fg * tables.inv_mean + zeta)
        a_bg_ref = top / (fg * tables.inv_mean + bg * tables.pb_peak + zeta)
        inv_range = np.float32(1.0) / np.maximum(a_fg_ref - a_bg_ref, np.float32(1e-3))
        return cls(
            tables=tables,
            a_bg_ref=a_bg_ref.astype(np.float32),
            inv_range=inv_range.astype(np.float32),
            usually_invalid=tables.valid_fraction < np.float32(USUALLY_INVALID_FRACTION),
            plate=np.ascontiguousarray(prior_work.color_mean, dtype=np.float32),
            max_subject_distance_m=max_subject_distance_m,
            color_low=float(color_low),
            color_high=float(color_high),
        )

    def __call__(self, depth_work: np.ndarray, posterior: np.ndarray, color_work: np.ndarray) -> np.ndarray:
        """Evidence e in [0, 1] (float32 h x w) from depth (metres), A_D and colour at working resolution.

        color_work: h x w x 3 RGB, uint8 or float in [0, 1].
        """
        e = posterior - self.a_bg_ref
        e *= self.inv_range
        np.clip(e, 0.0, 1.0, out=e)
        not_subject = depth_work > self.tables.mean_m
        if self.max_subject_distance_m is not None:
            not_subject |= depth_work > np.float32(self.max_subject_distance_m)
        e[not_subject] = 0.0
        unknown = ~(depth_work > 0)
        if unknown.any():
            e[unknown] = 0.0
            changed = unknown & ~self.usually_invalid
            if changed.any():
                color = color_work[changed].astype(np.float32)
                if color_work.dtype == np.uint8:
                    color *= np.float32(1.0 / 255.0)
                diff = color - self.plate[changed]
                distance = np.sqrt((diff * diff).mean(axis=1))
                t = np.clip((distance - self.color_low) / (self.color_high - self.color_low), 0.0, 1.0)
                e[changed] = t * t * (3.0 - 2.0 * t)
        return e
