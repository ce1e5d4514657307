"""`Frame`: one RGB-D capture (colour, registered depth, timing and intrinsics)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the colour camera, in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float

    @staticmethod
    def default_for(width: int, height: int) -> "Intrinsics":
        """A plausible guess (about 60 degrees horizontal field of view) when a source has none."""
        f = 0.866 * width
        return Intrinsics(fx=f, fy=f, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)

    def as_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}


@dataclass
class Frame:
    """One RGB-D frame.

    color: uint8 HxWx3, RGB order.
    depth_raw: uint16 HxW, registered to colour, in units of `depth_scale` metres; 0 = no measurement.
    depth_scale: metres per depth unit (0.001 for millimetres).
    timestamp: device timestamp in seconds (recording time for files).
    index: frame number within its source, starting at 0.
    host_time: `time.monotonic()` when the frame reached the host (set by live sources and the queue).
    alpha: optional ground-truth alpha (float32 HxW in [0, 1]) from recordings that carry one.
    """

    color: np.ndarray
    depth_raw: np.ndarray
    depth_scale: float
    timestamp: float
    index: int
    intrinsics: Intrinsics
    host_time: float = 0.0
    alpha: np.ndarray | None = field(default=None, repr=False)

    @property
    def height(self) -> int:
        return int(self.color.shape[0])

    @property
    def width(self) -> int:
        return int(self.color.shape[1])

    def depth_m(self) -> np.ndarray:
        """Depth in metres as float32; 0 where there is no measurement."""
        return self.depth_raw.astype(np.float32) * np.float32(self.depth_scale)
