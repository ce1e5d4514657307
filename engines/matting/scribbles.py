"""The user's scribbles: hard foreground / background labels painted on a paused frame where the matte
failed (capture-stage paper sec. 4.2), added to the teacher's labels in the next scene adaptation
(`engines.training.adapt_data.label_take`).

Owns the label values and `paint_stroke`. A scribble map is uint8 HxW holding `SCRIBBLE_NONE`,
`SCRIBBLE_BACKGROUND` or `SCRIBBLE_FOREGROUND` per pixel. No Qt here: the window's dialog
(`app.scribble_dialog`) turns mouse drags into strokes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

SCRIBBLE_NONE, SCRIBBLE_BACKGROUND, SCRIBBLE_FOREGROUND = 0, 1, 2
SCRIBBLE_LABELS = (SCRIBBLE_NONE, SCRIBBLE_BACKGROUND, SCRIBBLE_FOREGROUND)


def paint_stroke(scribbles: np.ndarray, points: Sequence[tuple[float, float]], label: int, radius_px: float) -> None:
    """Paint a stroke in place: discs of `radius_px` at `points` (x, y in pixels of the map) joined by
    lines of the same width. `label` SCRIBBLE_NONE erases. Points outside the map are clipped by the
    drawing. Raises ValueError for a map that is not uint8 HxW or an unknown label."""
    if scribbles.ndim != 2 or scribbles.dtype != np.uint8:
        raise ValueError(f"scribbles must be uint8 HxW, got {scribbles.dtype} {scribbles.shape}")
    if label not in SCRIBBLE_LABELS:
        raise ValueError(f"label must be one of {SCRIBBLE_LABELS}, got {label}")
    if not points:
        return
    r = max(1, int(round(radius_px)))
    pts = [(int(round(x)), int(round(y))) for x, y in points]
    for a, b in zip(pts, pts[1:]):
        cv2.line(scribbles, a, b, int(label), thickness=2 * r + 1)
    for p in pts:
        cv2.circle(scribbles, p, r, int(label), thickness=-1)
