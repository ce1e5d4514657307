"""What every post-matting backend shares: the trimap's unknown value, input checks, the known part of
the alpha and the crop box around the unknown region (so backends solve only where it matters;
`mask_box` also serves foreground estimation and edge refinement).

Conventions: colour uint8 HxWx3 RGB; alpha float32 HxW in [0, 1]; trimap float32 HxW with values
{0 (background), `UNKNOWN` = 0.5, 1 (foreground)}.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = 0.5  # the trimap's value for the unknown region


def mask_box(mask: np.ndarray, margin_px: int, multiple: int = 1) -> tuple[slice, slice] | None:
    """Row and column slices of the bounding box of `mask` (bool HxW), grown by `margin_px` and clipped to
    the image. With `multiple` > 1 the box is grown further (centred, inside the image) until each side
    is a multiple of it, where the image allows. None when `mask` has no True pixel. Shared by the
    post-matting backends, foreground estimation and edge refinement (each works on a crop only)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        _grow(int(rows[0]) - margin_px, int(rows[-1]) + 1 + margin_px, h, multiple),
        _grow(int(cols[0]) - margin_px, int(cols[-1]) + 1 + margin_px, w, multiple),
    )


def unknown_box(trimap: np.ndarray, margin_px: int, multiple: int = 1) -> tuple[slice, slice] | None:
    """`mask_box` of the trimap's unknown region (trimap == 0.5)."""
    return mask_box(trimap == np.float32(UNKNOWN), margin_px, multiple)


def _grow(start: int, stop: int, size: int, multiple: int) -> slice:
    """[start, stop) clipped to [0, size), then widened to a multiple of `multiple` where size allows."""
    start, stop = max(0, start), min(size, stop)
    if multiple > 1:
        target = min(size, -(-(stop - start) // multiple) * multiple)
        extra = target - (stop - start)
        start = max(0, start - extra // 2)
        stop = start + target
        if stop > size:
            start, stop = size - target, size
    return slice(start, stop)


def check_inputs(image_rgb: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> None:
    """ValueError unless image is uint8 HxWx3 and alpha / trimap are HxW."""
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3 RGB, got {image_rgb.dtype} {image_rgb.shape}")
    hw = image_rgb.shape[:2]
    if np.shape(alpha) != hw or np.shape(trimap) != hw:
        raise ValueError(f"alpha {np.shape(alpha)} and trimap {np.shape(trimap)} must match the image {hw}")


def known_alpha(trimap: np.ndarray) -> np.ndarray:
    """float32 HxW: 1 where the trimap is foreground, 0 elsewhere (unknown pixels are filled later)."""
    return (np.asarray(trimap) == np.float32(1.0)).astype(np.float32)
