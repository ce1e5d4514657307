"""Closed-form matting (Levin, Lischinski & Weiss, CVPR 2006 / PAMI 2008) as a post-matting backend.

Owns `ClosedFormMatting`: solves the matting-Laplacian system through `pymatting.estimate_alpha_cf`
on the trimap's unknown-region bounding box only (plus a margin that holds every 3x3 window touching
an unknown pixel, so the crop gives the same solution as the whole image). Needs no weights.

Cost grows with the number of unknown pixels (pymatting builds the Laplacian only for windows that
touch them), so a narrow unknown band is fast and a wide `band_px` is slow.

pymatting compiles its numba kernels the first time it is imported after installation (about 45 s
on two CPU cores; cached next to the package, or in the user's cache directory when that is not
writable), so it is imported only when this backend first runs.
"""

from __future__ import annotations

import logging

import numpy as np

from engines.matting.post_inputs import UNKNOWN, check_inputs, known_alpha, unknown_box

log = logging.getLogger(__name__)


def _estimate_alpha_cf():
    log.info("loading pymatting (the first use after installing it compiles for about a minute)")
    from pymatting import estimate_alpha_cf

    return estimate_alpha_cf


_MIN_ROOM = 2**23  # factor entries: 64 MB of float64 values and 64 MB of int64 row indices


def _sized_ichol(matrix):
    """pymatting's thresholded incomplete Cholesky preconditioner with storage sized to the system.

    pymatting reserves room for 250 million factor entries by default (two 2 GB arrays, mostly never
    touched) on every solve: fine where memory is overcommitted, a failure under `ulimit -v` or strict
    overcommit. With the fill-in it keeps, the factor held 2.3-3.5x the entries of the unknown pixels'
    Laplacian in a throwaway check (three photographs at 480 rows, a 15-pixel unknown band), so the room
    starts at 8x and grows 4-fold when a factor needs more, up to pymatting's own default. It is at least
    `_MIN_ROOM` entries, so that each array is larger than glibc's largest mmap threshold (32 MB): mapped
    on its own and handed back when freed, as pymatting's default is. Smaller ones came from malloc's arenas,
    which kept them: with post-matting on, the soak of d25badd had RSS about 70 MB above that of 35881b2."""
    from pymatting.preconditioner.ichol import ichol

    room, most = max(8 * matrix.nnz + matrix.shape[0], _MIN_ROOM), int(4e9 / 16)
    while True:
        try:
            return ichol(matrix, max_nnz=min(room, most))
        except ValueError as exc:
            if room >= most or "max_nnz" not in str(exc):
                raise
            room *= 4


class ClosedFormMatting:
    """Closed-form alpha in the trimap's unknown region.

    epsilon: regularisation of the matting Laplacian (pymatting's and the paper's 1e-7).
    radius: window radius (1 = 3x3 windows). rtol / max_iter: conjugate-gradient stopping rule
    (relative residual, iterations); the input alpha is the starting guess.
    """

    name = "closed-form"

    def __init__(self, epsilon: float = 1e-7, radius: int = 1, rtol: float = 1e-6, max_iter: int = 2000) -> None:
        if epsilon <= 0 or radius < 1 or rtol <= 0 or max_iter < 1:
            raise ValueError("need epsilon > 0, radius >= 1, rtol > 0 and max_iter >= 1")
        self.epsilon = float(epsilon)
        self.radius = int(radius)
        self.rtol = float(rtol)
        self.max_iter = int(max_iter)
        self._solver = None

    def refine(self, image_rgb: np.ndarray, alpha: np.ndarray, depth_m: np.ndarray,
               trimap: np.ndarray) -> np.ndarray:
        """Alpha (float32 HxW in [0, 1]): trimap where known, closed-form solution where 0.5.

        Where the crop has only one known label the solution is that constant; with no known
        pixel at all the unknown region keeps the input `alpha`. `depth_m` is not used.
        """
        check_inputs(image_rgb, alpha, trimap)
        trimap = np.asarray(trimap, np.float32)
        out = known_alpha(trimap)
        box = unknown_box(trimap, margin_px=2 * self.radius)
        if box is None:
            return out
        t = trimap[box]
        unknown = t == np.float32(UNKNOWN)
        has_fg, has_bg = bool((t == 1.0).any()), bool((t == 0.0).any())
        crop = out[box]  # a view: writes land in `out`
        if has_fg and has_bg:
            if self._solver is None:
                self._solver = _estimate_alpha_cf()
            image = image_rgb[box].astype(np.float64) * (1.0 / 255.0)
            x0 = np.clip(np.asarray(alpha, np.float64)[box][unknown], 0.0, 1.0)
            solved = self._solver(
                image, t.astype(np.float64), preconditioner=_sized_ichol,
                laplacian_kwargs={"epsilon": self.epsilon, "radius": self.radius},
                cg_kwargs={"x0": x0, "rtol": self.rtol, "maxiter": self.max_iter},
            )
            crop[unknown] = solved[unknown]
        elif has_fg or has_bg:
            crop[unknown] = 1.0 if has_fg else 0.0
        else:
            crop[unknown] = np.clip(np.asarray(alpha, np.float32)[box][unknown], 0.0, 1.0)
        return out
