"""Foreground colour estimation: "blur fusion" (Forte & Pitie 2021, "Approximate Fast Foreground
Colour Estimation", ICIP).

Where alpha is soft (hair, motion blur, edges) the camera pixel is I = a F + (1 - a) B, so using I
as the foreground colour drags the old background's colour into the new composite. Blur fusion
recovers an approximate F from I and a in two cheap passes, each

    F_hat = blur(F a) / blur(a)                   (local foreground mean, weighted by a)
    B_hat = blur(B (1 - a)) / blur(1 - a)         (local background mean, weighted by 1 - a)
    F     = F_hat + a (I - a F_hat - (1 - a) B_hat)

first with a large box (F = B = I to start), then with a small one on the first pass's F and B_hat.
When a clean background plate is known (fixed-background matting), it is used directly as B_hat
instead of the blurred estimate.

Speed (the method is memory-bound at video sizes), by default:
- the first pass's box means are computed on `first_pass_scale`-times downscaled copies (a box of
  ksize / scale there averages what the full-size box would) and upsampled; its correction step
  uses the full-resolution a and I;
- the first pass's correction and the second pass run only inside the bounding box of the soft
  pixels (0 < a < 1) plus a margin. Outside it alpha is 0 or 1, where F = I is exact (a = 1) or
  irrelevant (a = 0), so F is set to I there;
- work buffers live in `ForegroundEstimator` between frames (no per-frame page faults).
`first_pass_scale=1` runs the paper's method unchanged on the whole image.

Images are RGB, float32 in [0, 1] (uint8 0..255 is accepted and converted); alpha float HxW in [0, 1].
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from engines.matting.compositing import alpha_f32
from engines.matting.post_inputs import mask_box

log = logging.getLogger(__name__)

LARGE_KSIZE = 91  # box size of the first pass, pixels (the paper uses 90; odd keeps the box centred)
SMALL_KSIZE = 7  # box size of the second pass, pixels (the paper uses 6)
FIRST_PASS_SCALE = 4  # the first pass's box means are computed at 1/4 of the resolution
_EPS = np.float32(1e-5)


def _as_rgb_float(image: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be HxWx3 RGB, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) * np.float32(1.0 / 255.0)
    return img.astype(np.float32, copy=False)


class _Buffers:
    """float32 work arrays (h x w alpha, h x w x 3 the rest) that are C-contiguous views of storage
    kept between frames.

    Fresh multi-megabyte arrays are page-faulted in on every allocation, which at 640x480 costs as
    much as the arithmetic, and numpy is several times slower on strided crops than on contiguous
    arrays; so every crop size gets contiguous views of the front of the same storage.
    """

    _NAMES3 = ("image", "alpha", "one_minus_alpha", "blur_alpha", "f_hat", "b_hat", "tmp", "f")

    def __init__(self, storage: dict[str, np.ndarray], h: int, w: int):
        n = h * w
        self.shape = (h, w, 3)
        self.alpha1 = storage["alpha1"][:n].reshape(h, w)
        self.blur_alpha1 = storage["blur_alpha1"][:n].reshape(h, w)
        for name in self._NAMES3:
            setattr(self, name, storage[name][: 3 * n].reshape(h, w, 3))

    @classmethod
    def storage(cls, pixels: int) -> dict[str, np.ndarray]:
        """Flat float32 storage for images of up to `pixels` pixels."""
        store = {name: np.empty(pixels, np.float32) for name in ("alpha1", "blur_alpha1")}
        store.update({name: np.empty(3 * pixels, np.float32) for name in cls._NAMES3})
        return store

    def set_alpha(self, alpha: np.ndarray) -> None:
        """Store alpha (float32 HxW in [0, 1]), repeated over 3 channels, and 1 - alpha."""
        np.copyto(self.alpha1, alpha)
        cv2.merge((self.alpha1, self.alpha1, self.alpha1), dst=self.alpha)
        np.subtract(1.0, self.alpha, out=self.one_minus_alpha)


def _correct(image: np.ndarray, f_hat: np.ndarray, b_hat: np.ndarray, buf: _Buffers) -> None:
    """buf.f = clip(F_hat + a (I - a F_hat - (1 - a) B_hat), 0, 1), all HxWx3 float32."""
    a, oma, tmp, f = buf.alpha, buf.one_minus_alpha, buf.tmp, buf.f
    np.multiply(a, f_hat, out=tmp)
    np.subtract(image, tmp, out=f)
    np.multiply(oma, b_hat, out=tmp)
    f -= tmp
    f *= a
    f += f_hat
    np.clip(f, 0.0, 1.0, out=f)


def _pass(
    image: np.ndarray, f_init: np.ndarray, b_init: np.ndarray, buf: _Buffers, ksize: int, b_known: bool
) -> np.ndarray:
    """One full-resolution blur-fusion pass into `buf.f`; fills `buf.b_hat` unless `b_known`.

    `buf.alpha` / `buf.one_minus_alpha` hold a and 1 - a repeated over 3 channels (same-shape
    products: numpy broadcasting of HxWx1 is several times slower). `f_init` may be `buf.f` and
    `b_init` may be `buf.b_hat`: both are read before those buffers are written. Returns B_hat.
    """
    box = (ksize, ksize)
    a, oma, blur_a, f_hat, tmp = buf.alpha, buf.one_minus_alpha, buf.blur_alpha, buf.f_hat, buf.tmp
    cv2.blur(buf.alpha1, box, dst=buf.blur_alpha1)  # one channel, then repeated: cheaper than 3
    cv2.merge((buf.blur_alpha1, buf.blur_alpha1, buf.blur_alpha1), dst=blur_a)
    np.multiply(f_init, a, out=tmp)
    cv2.blur(tmp, box, dst=f_hat)
    np.add(blur_a, _EPS, out=tmp)
    np.divide(f_hat, tmp, out=f_hat)  # F_hat = blur(F a) / blur(a)
    if b_known:
        b_hat = b_init
    else:
        b_hat = buf.b_hat
        np.multiply(b_init, oma, out=tmp)
        cv2.blur(tmp, box, dst=b_hat)
        np.subtract(1.0 + _EPS, blur_a, out=tmp)  # blur(1 - a) = 1 - blur(a)
        np.divide(b_hat, tmp, out=b_hat)  # B_hat = blur(B (1 - a)) / blur(1 - a)
    _correct(image, f_hat, b_hat, buf)
    return b_hat


def _upsample_crop(
    low: np.ndarray, full_hw: tuple[int, int], rows: slice, cols: slice, dst: np.ndarray
) -> None:
    """dst = the (rows, cols) crop of `low` bilinearly resized to full_hw (as cv2.resize samples it)."""
    sy = low.shape[0] / full_hw[0]
    sx = low.shape[1] / full_hw[1]
    # source = (dst + offset + 0.5) * s - 0.5, the pixel-centre convention of cv2.resize
    m = np.array([[sx, 0.0, (cols.start + 0.5) * sx - 0.5], [0.0, sy, (rows.start + 0.5) * sy - 0.5]])
    cv2.warpAffine(
        low, m, (dst.shape[1], dst.shape[0]), dst=dst,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )


def _low_res_means(
    image: np.ndarray,
    alpha: np.ndarray,
    b_init: np.ndarray | None,
    scale: int,
    ksize: int,
    box: tuple[slice, slice],
    scratch: _Buffers,
    f_hat: np.ndarray,
    b_hat: np.ndarray,
) -> None:
    """The first pass's F_hat (and B_hat unless `b_init` is None) on the crop `box`, into
    `f_hat` / `b_hat` (crop-sized, contiguous).

    The products I a and B (1 - a) are area-averaged down by `scale`, the box of about
    ksize / scale is applied there and the smooth means are upsampled bilinearly.
    `scratch`: full-size buffers; only its `alpha` and `tmp` are used.
    """
    h, w = image.shape[:2]
    low_size = (-(-w // scale), -(-h // scale))
    k = _low_res_kernel(ksize, scale)
    kbox = (k, k)
    a_low = cv2.resize(alpha, low_size, interpolation=cv2.INTER_AREA)
    blur_a = cv2.blur(a_low, kbox)
    blur_a3 = cv2.merge((blur_a, blur_a, blur_a))
    # products at full resolution, then averaged: averaging I and a separately first loses thin
    # strands (hair) whose colour is what this is for
    a3, tmp = scratch.alpha, scratch.tmp
    cv2.merge((alpha, alpha, alpha), dst=a3)
    np.multiply(image, a3, out=tmp)
    fa_low = cv2.resize(tmp, low_size, interpolation=cv2.INTER_AREA)
    f_low = cv2.blur(fa_low, kbox)
    f_low /= blur_a3 + _EPS
    rows, cols = box
    _upsample_crop(f_low, (h, w), rows, cols, f_hat)
    if b_init is not None:
        np.subtract(1.0, a3, out=a3)
        np.multiply(b_init, a3, out=tmp)
        b_low = cv2.blur(cv2.resize(tmp, low_size, interpolation=cv2.INTER_AREA), kbox)
        b_low /= (1.0 + _EPS) - blur_a3
        _upsample_crop(b_low, (h, w), rows, cols, b_hat)


def _low_res_kernel(ksize: int, scale: int) -> int:
    """The odd box size at 1/scale resolution that averages about what `ksize` does at full resolution."""
    return max(1, 2 * int(round(ksize / scale / 2)) + 1)


def _soft_box(alpha: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Row and column slices of the soft pixels' (0 < a < 1) bounding box grown by `margin`."""
    return mask_box((alpha > 0.0) & (alpha < 1.0), margin)


class ForegroundEstimator:
    """Two-pass blur fusion that keeps its work buffers between calls (use one per video stream).

    large_ksize / small_ksize: box sizes of the two passes, pixels at full resolution.
    first_pass_scale: integer downscale factor for the first pass's box means; 1 = the paper's
    method on the whole image (no low-resolution means, no soft-region cropping).
    """

    def __init__(
        self,
        large_ksize: int = LARGE_KSIZE,
        small_ksize: int = SMALL_KSIZE,
        first_pass_scale: int = FIRST_PASS_SCALE,
    ):
        if large_ksize < 1 or small_ksize < 1:
            raise ValueError(f"box sizes must be >= 1, got {large_ksize} and {small_ksize}")
        if first_pass_scale < 1:
            raise ValueError(f"first_pass_scale must be >= 1, got {first_pass_scale}")
        self.large_ksize = int(large_ksize)
        self.small_ksize = int(small_ksize)
        self.first_pass_scale = int(first_pass_scale)
        self._storage: dict[str, np.ndarray] | None = None

    def __call__(
        self,
        image_rgb: np.ndarray,
        alpha: np.ndarray,
        background_rgb: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """F as float32 HxWx3 RGB in [0, 1]; arguments as in `estimate_foreground`.

        out: optional float32 HxWx3 array to write F into (returned); else a new array.
        """
        image = _as_rgb_float(image_rgb, "image_rgb")
        if out is None:
            out = np.empty(image.shape, np.float32)
        elif out.shape != image.shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {image.shape}, got {out.dtype} {out.shape}")
        region = self.soft_region(image, alpha, background_rgb)
        if region is None or region[0] != (slice(0, image.shape[0]), slice(0, image.shape[1])):
            np.copyto(out, image)  # F = I where alpha is 0 or 1 throughout the small box
        if region is not None:
            out[region[0]] = region[1]
        return out

    def soft_region(
        self, image_rgb: np.ndarray, alpha: np.ndarray, background_rgb: np.ndarray | None = None
    ) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """F where it differs from the image: (box, float32 F of the box, in [0, 1]) with box the row and
        column slices of the soft pixels (0 < a < 1) grown by the small box; F = I outside it. None when
        alpha is 0 or 1 everywhere. Arguments as in `estimate_foreground`; only the box and the margin
        the first pass's large box needs around it are read, so a small subject costs little. The array
        is a work buffer, valid until the next call."""
        shape = np.shape(image_rgb)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"image_rgb must be HxWx3 RGB, got shape {shape}")
        h, w = shape[:2]
        a = alpha_f32(alpha, (h, w))
        if background_rgb is not None and np.shape(background_rgb) != shape:
            raise ValueError(f"background_rgb must match the image {shape}, got {np.shape(background_rgb)}")
        if self._storage is None or self._storage["alpha1"].size != h * w:
            self._storage = _Buffers.storage(h * w)
        known = background_rgb is not None
        scale = self.first_pass_scale
        if scale == 1 or min(h, w) < 2 * scale:  # the paper's method, whole image
            image = _as_rgb_float(image_rgb, "image_rgb")
            buf = _Buffers(self._storage, h, w)
            buf.set_alpha(a)
            b_init = image if not known else _as_rgb_float(background_rgb, "background_rgb")
            b1 = _pass(image, image, b_init, buf, self.large_ksize, known)
            _pass(image, buf.f, b1, buf, self.small_ksize, known)
            return (slice(0, h), slice(0, w)), buf.f

        box = _soft_box(a, self.small_ksize)
        if box is None:
            return None
        # the first pass's means need the large box's reach around `box` (in whole low-resolution pixels,
        # so the low-resolution grid is the whole image's and the means equal those of the whole image)
        reach = (_low_res_kernel(self.large_ksize, scale) // 2 + 2) * scale
        region = tuple(slice(max(0, (b.start - reach) // scale * scale), min(n, -(-(b.stop + reach) // scale) * scale))
                       for b, n in zip(box, (h, w)))
        inner = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))
        rh, rw = (r.stop - r.start for r in region)
        image = _as_rgb_float(image_rgb[region], "image_rgb")
        scratch = _Buffers(self._storage, rh, rw)
        buf = _Buffers(self._storage, box[0].stop - box[0].start, box[1].stop - box[1].start)
        b_means = None if known else image
        _low_res_means(image, a[region], b_means, scale, self.large_ksize, inner, scratch, buf.f_hat, buf.b_hat)
        np.copyto(buf.image, image[inner])
        buf.set_alpha(a[box])
        b1 = _as_rgb_float(background_rgb[box], "background_rgb") if known else buf.b_hat
        _correct(buf.image, buf.f_hat, b1, buf)  # the first pass's F on the crop
        _pass(buf.image, buf.f, b1, buf, self.small_ksize, known)
        return box, buf.f


def estimate_foreground(
    image_rgb: np.ndarray,
    alpha: np.ndarray,
    background_rgb: np.ndarray | None = None,
    large_ksize: int = LARGE_KSIZE,
    small_ksize: int = SMALL_KSIZE,
    first_pass_scale: int = FIRST_PASS_SCALE,
) -> np.ndarray:
    """Approximate foreground colours F (float32 HxWx3 RGB in [0, 1]) by two-pass blur fusion.

    image_rgb: HxWx3 RGB, float32 in [0, 1] or uint8. alpha: HxW in [0, 1] (float, or uint8 0..255).
    background_rgb: optional clean background plate (HxWx3, same conventions); when given it is the
    background estimate in both passes, which removes the background's colour more exactly.
    large_ksize / small_ksize: box sizes of the two passes, pixels at this resolution;
    first_pass_scale: downscale factor of the large first pass (1 = exactly the paper's method).
    Where alpha is 1, F equals the image; where alpha is 0, F is unspecified (the image away from
    the subject's edges). For video keep one `ForegroundEstimator` (it reuses its buffers).
    """
    return ForegroundEstimator(large_ksize, small_ksize, first_pass_scale)(image_rgb, alpha, background_rgb)
