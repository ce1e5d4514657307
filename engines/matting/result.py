"""`MattingResult`: what the matting pipeline produced for one frame (alpha, trimap, posterior, error map,
per-stage milliseconds), shared by the backends, post-matting, the batch writer and the app."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MattingResult:
    """What one frame produced. Maps other than `alpha` are None where the mode has no such stage.

    alpha: float32 HxW in [0, 1] at colour resolution.
    trimap: float32 HxW with values {0, 0.5, 1}.
    depth_posterior: float32 at the working (1/4) resolution: A_D of DART eq. 8.
    error_map: float32 at the working resolution: the fused E_RGBD of eq. 10 (network modes).
    timings_ms: stage name -> milliseconds for this frame.
    refined_patches: how many patches the refiner recomputed (cells of its H/4 x W/4 selection grid;
    network modes; 0 elsewhere).
    """

    alpha: np.ndarray
    trimap: np.ndarray | None = None
    depth_posterior: np.ndarray | None = None
    error_map: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    refined_patches: int = 0

    def trimap_or_thresholds(self) -> np.ndarray:
        """The mode's trimap, or for a mode without one (the network modes) eq. 13's thresholds applied to
        `alpha` (float32 HxW, values {0, 0.5, 1}), made on demand for writing or showing it."""
        if self.trimap is not None:
            return self.trimap
        from engines.config import DepthConfig
        from engines.matting.depth_bayes import make_trimap

        return make_trimap(self.alpha, DepthConfig())
