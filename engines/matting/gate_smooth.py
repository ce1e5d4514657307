"""The stages every mode shares after matting: the depth gate and temporal smoothing.

`depth_gate(alpha, depth_m, max_distance_m)`: pixels farther than the gate are background. Pixels with
no depth (0 or NaN, common on a subject's outline: invalid edge pixels, flying pixels, shadows) are not
passed through as subject when every valid depth around them (a 9x9 window at 640x480, scaled with the
width) is beyond the gate, so a far subject leaves no glowing outline; next to a near subject, or with
no valid depth around at all, the matte decides. The gate is softened over one pixel on the near side
(no aliasing); everything beyond it is exactly 0.

`MotionAwareSmoother`: alpha_t = (1 - w) * alpha + w * alpha_{t-1} per pixel, with w = s where the image
is still and w -> 0 where it changed since the previous frame (grey-level difference above `motion`),
so flicker is smoothed where the subject stands still and a moving subject leaves no trail.

Conventions: alpha float32 HxW in [0, 1]; depth float32 HxW metres (<= 0 or NaN = no depth); colour
uint8 HxWx3 RGB.
"""

from __future__ import annotations

import cv2
import numpy as np


def depth_gate(alpha: np.ndarray, depth_m: np.ndarray, max_distance_m: float) -> np.ndarray:
    """A new alpha with everything beyond `max_distance_m` (and depthless pixels surrounded by it) set to 0."""
    depth = np.nan_to_num(depth_m, nan=0.0)
    valid = (depth > 0).astype(np.float32)
    far = (depth > np.float32(max_distance_m)).astype(np.float32)
    size = max(5, 2 * int(round(4 * depth.shape[1] / 640.0)) + 1)
    far_count = cv2.boxFilter(far, -1, (size, size), normalize=False)
    near_count = cv2.boxFilter(valid - far, -1, (size, size), normalize=False)
    undecided = valid == 0
    far[undecided] = ((far_count[undecided] > 0) & (near_count[undecided] == 0)).astype(np.float32)
    near = 1.0 - far
    keep = cv2.multiply(cv2.blur(near, (3, 3)), near)  # softened inwards only: beyond the gate stays 0
    return cv2.multiply(alpha, keep)


class MotionAwareSmoother:
    """Temporal smoothing that does not trail; see the module docstring.

    strength: s in [0, 1), the weight of the previous alpha where the image is still.
    motion: grey-level change ([0, 1] units) at which a pixel counts as moving (weight 0).
    """

    def __init__(self, strength: float, motion: float = 0.06) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"temporal smoothing must be in [0, 1), got {strength}")
        self.strength = float(strength)
        self.motion = float(motion)
        self._alpha: np.ndarray | None = None
        self._grey: np.ndarray | None = None

    def reset(self) -> None:
        self._alpha = self._grey = None

    def __call__(self, alpha: np.ndarray, color_rgb: np.ndarray) -> np.ndarray:
        """The smoothed alpha (float32 HxW); the first frame, or a frame of another size, passes unchanged."""
        grey = cv2.cvtColor(color_rgb, cv2.COLOR_RGB2GRAY)
        grey = cv2.blur(grey, (3, 3))  # sensor noise is not motion
        out = alpha
        if self._alpha is not None and self._alpha.shape == alpha.shape and self.strength > 0.0:
            change = cv2.absdiff(grey, self._grey).astype(np.float32) * np.float32(1.0 / 255.0)
            weight = cv2.max(cv2.subtract(1.0, cv2.multiply(change, 1.0 / self.motion)), 0.0)
            weight = cv2.multiply(weight, self.strength)
            out = cv2.add(alpha, cv2.multiply(weight, cv2.subtract(self._alpha, alpha)))
        self._alpha, self._grey = out, grey
        return out
