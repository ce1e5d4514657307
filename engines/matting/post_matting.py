"""Optional post-matting (DART section II-D): a depth-derived trimap fed to a trimap-based matting method.

Owns: the trimaps for post-matting (thin wrappers over `engines.matting.depth_bayes`: eq. 12 then eq. 13 from
the refined alpha, or eq. 13 straight from the depth posterior A_D as the paper does for ViTMatte in
Table I), the `PostMatting` interface and its factory, and
`post_matte` / `PostMattingStage`, which the pipeline calls after its backend when post-matting is on.

Backends (imported lazily, so `transformers` / `pymatting` load only when chosen):
- "none": the alpha is returned unchanged;
- "closed-form": Levin et al.'s closed-form matting through pymatting (`engines.matting.post_closed_form`);
- "vitmatte": ViTMatte through transformers, from local weights only (`engines.matting.post_vitmatte`).

Conventions: colour uint8 HxWx3 RGB; alpha float32 HxW in [0, 1]; depth float32 HxW metres
(<= 0 or NaN = unknown); trimap float32 HxW with values {0 (background), 0.5 (unknown), 1 (foreground)}.
Every backend returns a new float32 HxW alpha in [0, 1] that equals the trimap where the trimap is
0 or 1 and is the backend's estimate in the unknown region.

Note on the A_D trimap: with the paper's zeta (0.001 / mm), A_D of eq. 7 never gets near 1 (a pixel
clearly in front of a background 2 m away has A_D = 0.6; an unknown depth exactly P_F = 0.5), so the
paper's thresholds 0.25 / 0.8 leave it without any definite foreground. `trimap_from_depth_posterior`
therefore takes its own thresholds (`high`), and logs a warning when nothing is above the upper one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from engines.matting.background_prior import BackgroundPrior
from engines.config import DepthConfig
from engines.matting.depth_bayes import LikelihoodTables, alpha_posterior_given_depth, make_trimap
from engines.matting.scratch import Scratch
from engines.matting.result import MattingResult
from sensors.errors import UserError


log = logging.getLogger(__name__)

KINDS = ("none", "closed-form", "vitmatte")
TRIMAP_SOURCES = ("alpha", "posterior")


# ---------------------------------------------------------------- trimaps


def trimap_from_alpha(
    alpha: np.ndarray,
    depth_m: np.ndarray,
    prior: BackgroundPrior | LikelihoodTables,
    config: DepthConfig,
    band_px: int = 0,
    scratch: Scratch | None = None,
) -> np.ndarray:
    """The paper's post-matting trimap: eq. 12 (alpha as prior, updated by depth), then eq. 13.

    alpha: float32 HxW in [0, 1] (the refined alpha A_fine). depth_m: float32 HxW metres.
    prior: the background prior (or its `LikelihoodTables`, cheaper per frame) at HxW.
    Thresholds `config.trimap_low` / `config.trimap_high` (0.25 / 0.8), blur `config.blur_sigma_px`;
    `band_px` > 0 widens the unknown band by that many pixels. float32 HxW in {0, 0.5, 1}.
    """
    posterior = alpha_posterior_given_depth(alpha, depth_m, prior, config, scratch=scratch)
    return make_trimap(posterior, config, band_px=band_px, scratch=scratch)


def trimap_from_depth_posterior(
    posterior: np.ndarray,
    config: DepthConfig,
    shape: tuple[int, int],
    band_px: int = 0,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """Eq. 13 applied straight to the depth posterior A_D (how the paper feeds ViTMatte in Table I).

    posterior: float32 h x w in [0, 1], A_D at the working resolution. shape: (H, W) of the colour
    image. A_D is upsampled bilinearly to HxW, then blurred (sigma `config.blur_sigma_px` pixels of
    the working resolution, i.e. scaled by H / h) and thresholded at `low` / `high` (default the
    config's 0.25 / 0.8; see the module note: with the paper's zeta A_D stays below about 0.62, so
    pass e.g. high=0.55 to get definite foreground). `band_px` widens the unknown band (pixels of HxW).
    float32 HxW in {0, 0.5, 1}.
    """
    a = np.ascontiguousarray(posterior, dtype=np.float32)
    height, width = int(shape[0]), int(shape[1])
    if a.shape != (height, width):
        a = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
    scale = height / max(1, posterior.shape[0])
    cfg = replace(config, trimap_low=config.trimap_low if low is None else float(low),
                  trimap_high=config.trimap_high if high is None else float(high))
    trimap = make_trimap(a, cfg, band_px=band_px, blur_sigma_px=config.blur_sigma_px * scale)
    if not (trimap == 1.0).any():
        log.warning("no pixel of the depth posterior is above %.2f: the trimap has no definite foreground",
                    cfg.trimap_high)
    return trimap


# ---------------------------------------------------------------- interface


@runtime_checkable
class PostMatting(Protocol):
    """A trimap-based matting method run after the pipeline's backend."""

    name: str

    def refine(self, image_rgb: np.ndarray, alpha: np.ndarray, depth_m: np.ndarray,
               trimap: np.ndarray) -> np.ndarray:
        """New alpha (float32 HxW in [0, 1]): the trimap where it is 0 or 1, the method's estimate where 0.5.

        image_rgb uint8 HxWx3 RGB; alpha float32 HxW in [0, 1] (the input matte); depth_m float32 HxW
        metres; trimap float32 HxW in {0, 0.5, 1}.
        """
        ...


class NoPostMatting:
    """The "none" backend: the input alpha, unchanged (a float32 copy)."""

    name = "none"

    def refine(self, image_rgb: np.ndarray, alpha: np.ndarray, depth_m: np.ndarray,
               trimap: np.ndarray) -> np.ndarray:
        return np.array(alpha, dtype=np.float32, copy=True)


def make_post_matting(kind: str, vitmatte_dir: str | Path | None = None, device: str | None = None) -> PostMatting:
    """The post-matting backend for `kind` ("none" | "closed-form" | "vitmatte").

    vitmatte_dir: local ViTMatte weights (required for "vitmatte"; see `engines.matting.post_vitmatte`).
    device: torch device for ViTMatte (None: CUDA when available, else CPU).
    """
    if kind == "none":
        return NoPostMatting()
    if kind == "closed-form":
        from engines.matting.post_closed_form import ClosedFormMatting

        return ClosedFormMatting()
    if kind == "vitmatte":
        from engines.matting.post_vitmatte import ViTMatteBackend, missing_weights_message

        if vitmatte_dir is None:
            raise UserError(missing_weights_message(None), 2)
        return ViTMatteBackend(Path(vitmatte_dir), device=device)
    raise UserError(f"Unknown post-matting '{kind}': choose one of {', '.join(KINDS)}.", 2)


# ---------------------------------------------------------------- pipeline stage


def post_matte(
    result: MattingResult,
    color_rgb: np.ndarray,
    depth_m: np.ndarray,
    prior: BackgroundPrior | LikelihoodTables,
    config: DepthConfig,
    backend: PostMatting,
    band_px: int = 0,
    trimap_source: str = "alpha",
    posterior_high: float | None = None,
    scratch: Scratch | None = None,
) -> MattingResult:
    """Run post-matting on one `MattingPipeline.process` result; returns the same object, updated.

    Trimap: "alpha" = eqs. 12-13 from `result.alpha` and the full-resolution depth (`prior` at
    colour resolution: a `BackgroundPrior` or, cheaper per frame, its `LikelihoodTables`);
    "posterior" = eq. 13 on `result.depth_posterior` (A_D), thresholds `config`'s with the upper one
    replaced by `posterior_high` when given. Then `backend.refine`. Sets `result.alpha` (float32
    HxW in [0, 1]) and `result.trimap`, and adds "post_trimap" and "post_<backend>" to
    `result.timings_ms` (milliseconds).
    """
    if trimap_source not in TRIMAP_SOURCES:
        raise UserError(f"Unknown trimap source '{trimap_source}': choose one of {', '.join(TRIMAP_SOURCES)}.", 2)
    start = time.perf_counter()
    if trimap_source == "alpha":
        trimap = trimap_from_alpha(result.alpha, depth_m, prior, config, band_px=band_px, scratch=scratch)
    else:
        if result.depth_posterior is None:
            raise UserError("This matting mode has no depth posterior: use the trimap from the alpha instead.", 2)
        trimap = trimap_from_depth_posterior(result.depth_posterior, config, result.alpha.shape, band_px=band_px,
                                             high=posterior_high)
    middle = time.perf_counter()
    alpha = backend.refine(color_rgb, result.alpha, depth_m, trimap)
    end = time.perf_counter()
    result.alpha = alpha
    result.trimap = trimap
    result.timings_ms["post_trimap"] = (middle - start) * 1e3
    result.timings_ms[f"post_{backend.name}"] = (end - middle) * 1e3
    return result


class PostMattingStage:
    """`post_matte` for a stream of frames: keeps the prior's likelihood tables and scratch buffers.

    backend: from `make_post_matting`. config: the pipeline's DepthConfig. band_px, trimap_source,
    posterior_high: as in `post_matte`.
    """

    def __init__(self, backend: PostMatting, config: DepthConfig, band_px: int = 0, trimap_source: str = "alpha",
                 posterior_high: float | None = None) -> None:
        if trimap_source not in TRIMAP_SOURCES:
            raise UserError(f"Unknown trimap source '{trimap_source}': choose one of {', '.join(TRIMAP_SOURCES)}.", 2)
        if band_px < 0:
            raise UserError(f"The unknown band width must be >= 0 pixels, got {band_px}.", 2)
        self.backend = backend
        self.config = config
        self.band_px = int(band_px)
        self.trimap_source = trimap_source
        self.posterior_high = posterior_high
        self._tables: LikelihoodTables | None = None
        self._scratch = Scratch()

    def set_prior(self, prior: BackgroundPrior) -> None:
        """Precompute the likelihood tables of eq. 12 at the prior's (colour) resolution."""
        self._tables = LikelihoodTables.from_prior(prior)

    def __call__(self, result: MattingResult, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        if self.backend.name == "none":
            return result
        if self._tables is None:
            raise UserError("No background has been captured yet: capture the empty scene first.")
        return post_matte(result, color_rgb, depth_m, self._tables, self.config, self.backend,
                          band_px=self.band_px, trimap_source=self.trimap_source,
                          posterior_high=self.posterior_high, scratch=self._scratch)
