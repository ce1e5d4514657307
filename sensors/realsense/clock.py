"""Continuous device time for one stream of a recording whose clock jumps or resets.

A RealSense camera's hardware clock restarts at zero when the camera resets, and a stream can switch
between the hardware and the system clock mid-recording; either way its timestamps jump while the
other stream's do not, and pairing by nearest timestamp would then find no partner for any later
frame. `StreamClock` turns one stream's raw device timestamps into a continuous time line: a step
backwards, or forward far beyond the other stream, is taken as a clock jump and the stream is
re-synchronised so that its frame follows its previous one by one frame period. Steps of dropped
frames (forward, close to the other stream) are kept, so drops still pair correctly.
"""

from __future__ import annotations

from dataclasses import dataclass

FORWARD_JUMP_MS = 1000.0  # ahead of the other stream by more than this: a jump, not dropped frames


@dataclass
class StreamClock:
    """Raw device timestamps (ms) in, continuous timestamps (ms) out; see the module docstring.

    period_ms: the stream's nominal frame period (> 0). `jumps` counts re-synchronisations.
    """

    period_ms: float
    offset_ms: float = 0.0
    jumps: int = 0
    _last_raw: float | None = None
    _last: float | None = None

    @property
    def last_ms(self) -> float | None:
        """The latest continuous timestamp, or None before the first frame."""
        return self._last

    def __call__(self, raw_ms: float, other_last_ms: float | None = None) -> float:
        """Continuous time of a frame stamped `raw_ms`; `other_last_ms`: the other stream's latest
        continuous time (None when unknown), which tells dropped frames from a forward clock jump."""
        if self._last_raw is not None and self._last is not None:
            step = raw_ms - self._last_raw
            backwards = step < -0.5 * self.period_ms
            ahead_of_other = other_last_ms is not None and raw_ms + self.offset_ms > other_last_ms + FORWARD_JUMP_MS
            far_forward = step > FORWARD_JUMP_MS and (other_last_ms is None or ahead_of_other)
            if backwards or far_forward:
                self.offset_ms = self._last + self.period_ms - raw_ms
                self.jumps += 1
        self._last_raw = raw_ms
        self._last = raw_ms + self.offset_ms
        return self._last
