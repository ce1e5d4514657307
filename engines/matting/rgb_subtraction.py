"""Plain RGB background subtraction: the classical baseline that lighting changes and shadows defeat.

alpha = smoothstep of the per-pixel colour distance between the live image and the captured background
colour. It exists so the benchmark can show what depth buys over colour alone. `RgbSubtraction`
holds the captured plate for the pipeline.
"""

from __future__ import annotations

import time

import cv2
import numpy as np


def rgb_subtraction_alpha(
    color_rgb: np.ndarray, background_rgb: np.ndarray, low: float = 0.06, high: float = 0.16, blur_px: int = 5
) -> np.ndarray:
    """Soft alpha in [0, 1] (float32 HxW) from the colour distance of two RGB images.

    color_rgb: uint8 HxWx3 live frame. background_rgb: float32 HxWx3 in [0, 1] or uint8, the captured plate.
    Distances below `low` are background, above `high` foreground (Euclidean RGB distance / sqrt(3)).
    """
    image = color_rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    plate = background_rgb.astype(np.float32)
    if background_rgb.dtype == np.uint8:
        plate *= np.float32(1.0 / 255.0)
    diff = image - plate
    distance = np.sqrt(np.einsum("hwc,hwc->hw", diff, diff) * np.float32(1.0 / 3.0))
    if blur_px > 1:
        distance = cv2.GaussianBlur(distance, (0, 0), blur_px / 3.0)
    t = np.clip((distance - low) / (high - low), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


class RgbSubtraction:
    """`rgb_subtraction_alpha` against the captured plate: `set_prior` keeps the prior's colour mean,
    `process` returns (alpha float32 HxW in [0, 1], milliseconds)."""

    def __init__(self) -> None:
        self._plate: np.ndarray | None = None

    def set_prior(self, prior) -> None:
        self._plate = prior.color_mean

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        alpha = rgb_subtraction_alpha(color_rgb, self._plate)
        return alpha, (time.perf_counter() - start) * 1e3
