"""Work arrays reused frame after frame by the per-frame hot paths (depth matting, the refiner's crops).

Owns `Scratch`: a fresh multi-megabyte array is page-faulted in on every allocation, which costs as much
as the arithmetic or copy that fills it (about 3x at 640x480), so functions that take a `scratch` keep
their intermediates here instead. Only for arrays that do not outlive the frame, never for results; one
`Scratch` per stream and thread.
"""

from __future__ import annotations

import numpy as np


class Scratch:
    """Named arrays kept between frames. Storage only grows: a shape that varies from frame to frame (the
    refiner's patch count) reuses the largest buffer so far; a new dtype replaces it."""

    def __init__(self) -> None:
        self._store: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A C-contiguous array of `shape` and `dtype` (contents undefined), reusing `name`'s storage."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape))
        flat = self._store.get(name)
        if flat is None or flat.size < n or flat.dtype != dtype:
            flat = self._store[name] = np.empty(n, dtype)
        return flat[:n].reshape(shape)
