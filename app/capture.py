"""Background capture as a small state machine: countdown, then N frames into a prior builder.

`BackgroundCapture(total, countdown_s, started_at)`; the engine thread calls `step(color, depth_m,
now)` for every frame (True once `total` frames are in) and finally `finish(depth_config)` for the
prior and the validation report (`validate_capture`: a static scene, and nobody standing in it or
passing through, see `engines.matting.plate_check`; a report that is not ok becomes CAPTURE_FAILED
with "Capture again" / "Use anyway"). `progress(now)` is what the GUI shows. No Qt, no threads here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.matting.background_prior import BackgroundPrior, BackgroundPriorBuilder, CaptureReport, validate_capture
from engines.config import DepthConfig

COUNTDOWN = "countdown"
COLLECTING = "collecting"


@dataclass(frozen=True)
class CaptureProgress:
    """phase: "countdown" or "collecting"; seconds_left of the countdown; collected of total frames."""

    phase: str
    seconds_left: float
    collected: int
    total: int

    @property
    def fraction(self) -> float:
        return self.collected / self.total if self.total else 1.0


class BackgroundCapture:
    """Collects `total` frames after `countdown_s` seconds (times from time.monotonic())."""

    def __init__(self, total: int, countdown_s: float, started_at: float) -> None:
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        self.total = int(total)
        self.collect_from = started_at + max(float(countdown_s), 0.0)
        self.builder: BackgroundPriorBuilder | None = None

    @property
    def collected(self) -> int:
        return 0 if self.builder is None else self.builder.count

    def collecting(self, now: float) -> bool:
        return now >= self.collect_from

    def progress(self, now: float) -> CaptureProgress:
        if not self.collecting(now):
            return CaptureProgress(COUNTDOWN, self.collect_from - now, 0, self.total)
        return CaptureProgress(COLLECTING, 0.0, self.collected, self.total)

    def step(self, color_rgb: np.ndarray, depth_m: np.ndarray, now: float) -> bool:
        """Add the frame (uint8 HxWx3 RGB, float32 HxW metres) once the countdown is over; True when done.

        A frame of another size than the first one restarts the collection (the camera changed mode).
        """
        if not self.collecting(now):
            return False
        h, w = depth_m.shape
        if self.builder is None or (self.builder.height, self.builder.width) != (h, w):
            self.builder = BackgroundPriorBuilder(h, w)
        self.builder.add(color_rgb, depth_m)
        return self.builder.count >= self.total

    def finish(self, config: DepthConfig) -> tuple[BackgroundPrior, CaptureReport]:
        """The prior (DART eq. 4) and the verdict on the capture; needs at least one frame."""
        if self.builder is None:
            raise ValueError("no frame was captured")
        report = validate_capture(self.builder, min_frames=min(10, self.total))
        return self.builder.build(config), report


def set_camera_auto(source, enabled: bool) -> None:
    """Turn a source's auto exposure and white balance on or off where it offers that (RealSense, Orbbec);
    other sources (recordings, folders, None) are left alone. Raises what the camera SDK raises."""
    name = "unlock_exposure_and_white_balance" if enabled else "lock_exposure_and_white_balance"
    method = getattr(source, name, None)
    if callable(method):
        method()
