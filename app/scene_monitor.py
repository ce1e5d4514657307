"""Detects that the empty scene no longer matches the captured background prior.

A frame "looks different" when either
- a large share of all pixels with a valid depth (in the prior and now) lie far from the prior's
  mean depth (the camera was moved or the room rearranged: more than a person could cover), or
- over the pixels the matte calls background (alpha ~ 0), the median |depth - prior mean| is large
  (the background itself drifted; catches modes whose alpha does not come from depth).
`SceneChangeMonitor.update` counts consecutive such frames and reports once when the count reaches
`patience`; it re-arms when the scene looks right again or after `reset` (a new prior).
Work is done on every `stride`-th pixel in both directions (a statistic, not a matte).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.matting.background_prior import BackgroundPrior


@dataclass(frozen=True)
class SceneCheck:
    """One frame's verdict. far_fraction in [0, 1]; background_median_m in metres (nan: no pixels)."""

    far_fraction: float
    background_median_m: float
    different: bool


def check_scene(
    prior: BackgroundPrior,
    depth_m: np.ndarray,
    alpha: np.ndarray,
    *,
    stride: int = 4,
    far_m: float = 0.15,
    far_std_factor: float = 4.0,
    max_far_fraction: float = 0.6,
    max_background_median_m: float = 0.08,
    background_alpha: float = 0.05,
) -> SceneCheck:
    """Compare one frame (depth float32 HxW metres, alpha HxW in [0, 1]) with the prior (same HxW)."""
    s = max(int(stride), 1)
    mean = prior.depth_mean_m[::s, ::s]
    std = prior.depth_std_m[::s, ::s]
    depth = depth_m[::s, ::s]
    a = alpha[::s, ::s]
    valid = (prior.valid_count[::s, ::s] * 2 >= max(prior.n_frames, 1)) & (depth > 0)
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:
        return SceneCheck(0.0, float("nan"), False)
    diff = np.abs(depth - mean)
    tolerance = np.maximum(np.float32(far_std_factor) * std, np.float32(far_m))
    far_fraction = np.count_nonzero(valid & (diff > tolerance)) / n_valid
    background = valid & (a < background_alpha)
    median = float(np.median(diff[background])) if np.any(background) else float("nan")
    different = far_fraction > max_far_fraction or (np.isfinite(median) and median > max_background_median_m)
    return SceneCheck(float(far_fraction), median, bool(different))


class SceneChangeMonitor:
    """Counts consecutive "different" frames; `update` returns True once when `patience` is reached."""

    def __init__(self, patience: int = 90, **check_options) -> None:
        self.patience = int(patience)
        self.check_options = check_options
        self._run = 0
        self._reported = False
        self.last: SceneCheck | None = None

    def reset(self) -> None:
        self._run = 0
        self._reported = False

    def update(self, prior: BackgroundPrior, depth_m: np.ndarray, alpha: np.ndarray) -> bool:
        self.last = check_scene(prior, depth_m, alpha, **self.check_options)
        if not self.last.different:
            self.reset()
            return False
        self._run += 1
        if self._run >= self.patience and not self._reported:
            self._reported = True
            return True
        return False
