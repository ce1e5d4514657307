"""`MattingPipeline`: the one place that knows the order of the engine's stages.

It holds the captured background prior, runs the matting backend chosen by `EngineConfig.mode`,
then the stages every mode shares (depth gate, temporal smoothing), and reports per-stage
milliseconds. The GUI worker and the headless `process` command use it unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from engines.background_prior import BackgroundPrior
from engines.config import EngineConfig
from engines.depth_matting import DepthMatting
from engines.post_matting import PostMattingStage, make_post_matting
from engines.rgb_subtraction import rgb_subtraction_alpha
from sensors.errors import UserError

MODES = ("dart", "depth", "rgb", "rgb-subtract")


@dataclass
class MattingResult:
    """What one frame produced. Maps other than `alpha` are None where the mode has no such stage.

    alpha: float32 HxW in [0, 1] at colour resolution.
    trimap: float32 HxW with values {0, 0.5, 1}.
    depth_posterior: float32 at the working (1/4) resolution: A_D of DART eq. 8.
    error_map: float32 at the working resolution: the fused E_RGBD of eq. 10 (network modes).
    timings_ms: stage name -> milliseconds for this frame.
    """

    alpha: np.ndarray
    trimap: np.ndarray | None = None
    depth_posterior: np.ndarray | None = None
    error_map: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class _RgbSubtractionBackend:
    """Adapter giving plain colour subtraction the backend interface."""

    def __init__(self) -> None:
        self._plate: np.ndarray | None = None

    def set_prior(self, prior: BackgroundPrior) -> None:
        self._plate = prior.color_mean

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        start = time.perf_counter()
        alpha = rgb_subtraction_alpha(color_rgb, self._plate)
        return MattingResult(alpha=alpha, timings_ms={"rgb_subtract": (time.perf_counter() - start) * 1e3})


class _DepthBackend:
    """Adapter for DART's depth-only matting (posterior -> clean -> guided upsampling)."""

    def __init__(self, config: EngineConfig) -> None:
        self._matting = DepthMatting(config.depth)

    def set_prior(self, prior: BackgroundPrior) -> None:
        self._matting.set_prior(prior)

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        result = self._matting.process(color_rgb, depth_m)
        return MattingResult(
            alpha=result.alpha,
            trimap=result.trimap,
            depth_posterior=result.posterior,
            timings_ms=dict(result.timings_ms),
        )


class _NetworkBackend:
    """Adapter for the network modes: DART (student + Bayesian fusion + RGB-D refiner) and BGMv2 RGB."""

    def __init__(self, config: EngineConfig) -> None:
        from engines.dart_matting import NetworkMatting

        self._matting = NetworkMatting(
            config.model_dir,
            variant=config.mode,
            config=config.depth,
            use_error_map_correction=config.error_map_correction,
            use_depth_refiner=config.depth_refiner,
            refiner=config.refiner,
            k=config.refine_patches,
            student_file=config.student_file,
        )

    def set_prior(self, prior: BackgroundPrior) -> None:
        self._matting.set_prior(prior)

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        result = self._matting.process(color_rgb, depth_m)
        return MattingResult(
            alpha=result.alpha,
            depth_posterior=result.depth_posterior,
            error_map=result.error_map,
            timings_ms=dict(result.timings_ms),
        )


def _make_backend(config: EngineConfig):
    if config.mode in ("dart", "rgb"):
        return _NetworkBackend(config)
    if config.mode == "depth":
        return _DepthBackend(config)
    if config.mode == "rgb-subtract":
        return _RgbSubtractionBackend()
    raise UserError(f"Unknown mode '{config.mode}': choose one of {', '.join(MODES)}.", 2)


class MattingPipeline:
    """Background prior + matting backend + optional post-matting + shared post-stages, for one stream."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._backend = _make_backend(config)
        self._post = None
        if config.post != "none":
            backend = make_post_matting(config.post, config.vitmatte_dir)
            self._post = PostMattingStage(backend, config.depth, band_px=config.post_band_px)
        self.prior: BackgroundPrior | None = None
        self._previous_alpha: np.ndarray | None = None

    @property
    def has_prior(self) -> bool:
        return self.prior is not None

    def set_prior(self, prior: BackgroundPrior) -> None:
        self.prior = prior
        self._backend.set_prior(prior)
        if self._post is not None:
            self._post.set_prior(prior)
        self._previous_alpha = None

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        """Matte one frame: colour uint8 HxWx3 RGB, depth float32 HxW metres (0 = unknown)."""
        if self.prior is None:
            raise UserError("No background has been captured yet: capture the empty scene first.")
        expected = self.prior.depth_mean_m.shape
        if color_rgb.shape[:2] != expected or depth_m.shape != expected:
            raise UserError(
                f"Frame size {color_rgb.shape[1]}x{color_rgb.shape[0]} does not match the captured background "
                f"({expected[1]}x{expected[0]}): capture the background again at this resolution."
            )
        result = self._backend.process(color_rgb, depth_m)
        if self._post is not None:
            self._post(result, color_rgb, depth_m)
        start = time.perf_counter()
        alpha = result.alpha
        gate = self.config.max_subject_distance_m
        if gate is not None:
            alpha = np.where(depth_m > gate, np.float32(0.0), alpha)
        smoothing = self.config.temporal_smoothing
        if smoothing > 0.0 and self._previous_alpha is not None:
            alpha = (1.0 - smoothing) * alpha + smoothing * self._previous_alpha
        self._previous_alpha = alpha
        result.alpha = alpha.astype(np.float32, copy=False)
        result.timings_ms["gate_smooth"] = (time.perf_counter() - start) * 1e3
        return result
