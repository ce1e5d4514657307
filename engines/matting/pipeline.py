"""`MattingPipeline`: the one place that knows the order of the engine's stages.

It holds the captured background prior, runs the matting backend chosen by `EngineConfig.mode`, the
optional edge refinement against the plate (`EngineConfig.edge_refine`), then the stages every mode
shares (`gate_smooth`: depth gate, motion-aware temporal smoothing), and reports per-stage milliseconds. The GUI worker and the
headless `process` command use it unchanged.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from engines.matting.background_prior import BackgroundPrior
from engines.config import EngineConfig
from engines.matting.depth_matting import DepthMatting
from engines.matting.edge_refine import EdgeRefiner
from engines.matting.gate_smooth import MotionAwareSmoother, depth_gate
from engines.matting.post_matting import PostMattingStage, make_post_matting
from engines.matting.rgb_subtraction import RgbSubtraction
from engines.matting.result import MattingResult
from sensors.errors import UserError

MODES = ("dart", "depth", "rgb", "rgb-subtract")
DEFAULT_MODE = "dart"  # the best real-time mode on the semi-real suite (README, Figures)


class MattingBackend:
    """Every mode's matting behind one shape: `set_prior(prior)` once per background, then
    `process(color_rgb, depth_m) -> MattingResult` per frame.

    matting: the mode's engine (`DepthMatting`, `NetworkMatting`, `RgbSubtraction`), which has
    `set_prior` and `process`; to_result: turns what its `process` returns into a `MattingResult`.
    """

    def __init__(self, matting, to_result: Callable[[object], MattingResult]) -> None:
        self.matting = matting
        self.to_result = to_result

    def set_prior(self, prior: BackgroundPrior) -> None:
        self.matting.set_prior(prior)

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        return self.to_result(self.matting.process(color_rgb, depth_m))


def _depth_result(result) -> MattingResult:
    return MattingResult(alpha=result.alpha, trimap=result.trimap, depth_posterior=result.posterior,
                         timings_ms=dict(result.timings_ms))


def _network_result(result) -> MattingResult:
    return MattingResult(alpha=result.alpha, depth_posterior=result.depth_posterior, error_map=result.error_map,
                         timings_ms=dict(result.timings_ms), refined_patches=int(np.count_nonzero(result.selected)))


def _rgb_subtraction_result(result: tuple[np.ndarray, float]) -> MattingResult:
    alpha, ms = result
    return MattingResult(alpha=alpha, timings_ms={"rgb_subtract": ms})


def make_backend(config: EngineConfig) -> MattingBackend:
    """The backend of `config.mode` (one of `MODES`); `UserError` (exit code 2) for an unknown mode."""
    if config.mode in ("dart", "rgb"):
        from engines.matting.dart_matting import NetworkMatting, PatchBudget  # loads onnxruntime only when needed
        from engines.matting.depth_fusion import FusionConfig

        matting = NetworkMatting(
            config.model_dir,
            variant=config.mode,
            config=config.depth,
            use_error_map_correction=config.error_map_correction,
            use_depth_refiner=config.depth_refiner,
            refiner=config.refiner,
            k=config.refine_patches,
            student_file=config.student_file,
            depth_fusion=FusionConfig() if config.depth_fusion else None,
            patch_budget=None if config.patch_budget_ms is None else PatchBudget(config.patch_budget_ms),
            intra_op_threads=config.network_threads,
            overlap=config.overlap_stages,
        )
        return MattingBackend(matting, _network_result)
    if config.mode == "depth":
        return MattingBackend(DepthMatting(config.depth), _depth_result)
    if config.mode == "rgb-subtract":
        return MattingBackend(RgbSubtraction(), _rgb_subtraction_result)
    raise UserError(f"Unknown mode '{config.mode}': choose one of {', '.join(MODES)}.", 2)


class MattingPipeline:
    """Background prior + matting backend + optional post-matting + shared post-stages, for one stream."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._backend = make_backend(config)
        self._edge = EdgeRefiner() if config.edge_refine else None
        self._post = None
        if config.post != "none":
            backend = make_post_matting(config.post, config.vitmatte_dir)
            self._post = PostMattingStage(backend, config.depth, band_px=config.post_band_px)
        self.prior: BackgroundPrior | None = None
        smoothing = config.temporal_smoothing
        self._smoother = MotionAwareSmoother(smoothing) if smoothing > 0.0 else None

    @property
    def has_prior(self) -> bool:
        return self.prior is not None

    def set_prior(self, prior: BackgroundPrior) -> None:
        self.prior = prior
        self._backend.set_prior(prior)
        if self._edge is not None:
            self._edge.set_plate(prior.color_mean, prior.depth_mean_m, prior.depth_std_m)
        if self._post is not None:
            self._post.set_prior(prior)
        if self._smoother is not None:
            self._smoother.reset()

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        """Matte one frame: colour uint8 HxWx3 RGB, depth float32 HxW metres (0 = unknown); `matte`, then
        `finish`. Raises `UserError` before a background is captured or for a frame of another size."""
        return self.finish(self.matte(color_rgb, depth_m), color_rgb, depth_m)

    def matte(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        """The first half of `process`: the matting backend's result (arguments and errors as there)."""
        if self.prior is None:
            raise UserError("No background has been captured yet: capture the empty scene first.")
        expected = self.prior.depth_mean_m.shape
        if color_rgb.shape[:2] != expected or depth_m.shape != expected:
            raise UserError(
                f"Frame size {color_rgb.shape[1]}x{color_rgb.shape[0]} does not match the captured background "
                f"({expected[1]}x{expected[0]}): capture the background again at this resolution."
            )
        return self._backend.process(color_rgb, depth_m)

    def finish(self, result: MattingResult, color_rgb: np.ndarray, depth_m: np.ndarray) -> MattingResult:
        """The second half of `process` on `matte`'s result for the same frame: edge refinement,
        post-matting, the depth gate and temporal smoothing (stateful: call it in frame order). The live
        app runs it on a thread of its own in the network modes, beside `matte` of the next frame.
        Returns `result`, updated."""
        if self._edge is not None:
            start = time.perf_counter()
            result.alpha = self._edge(color_rgb, result.alpha, depth_m)
            result.timings_ms["edge"] = (time.perf_counter() - start) * 1e3
        if self._post is not None:
            self._post(result, color_rgb, depth_m)
        start = time.perf_counter()
        alpha = np.asarray(result.alpha, dtype=np.float32)
        gate = self.config.max_subject_distance_m
        if gate is not None:
            alpha = depth_gate(alpha, depth_m, gate)
        if self._smoother is not None:
            alpha = self._smoother(alpha, color_rgb)
        result.alpha = alpha
        result.timings_ms["gate_smooth"] = (time.perf_counter() - start) * 1e3
        return result
