"""Real-time edge refinement against the known background plate: the halo of a coarse matte removed on
its boundary band, at camera rate.

A depth matte is computed at 1/4 resolution from a sensor whose edges are blurred, shifted and shadowed,
so it calls a band of background around the subject foreground (a halo) and cuts hair. Inside a band
around the coarse matte's boundary this stage re-estimates alpha from colour, using the one thing a
background-replacement setup always has: the captured plate B. With I = alpha F + (1 - alpha) B (the
compositing equation, as in BGMv2 sec. 3 and DART sec. II-A), and F estimated locally from nearby
pixels that the coarse matte is sure are subject (normalised convolution),

    alpha_c = <I - B', F - B'> / |F - B'|^2,    clipped to [0, 1]

(the least-squares alpha of one pixel along the line from B' to F). B' = g * B is the plate under the
frame's lighting: a per-channel gain g fitted on pixels the coarse matte is sure are background
(exposure and white-balance changes between capture and now). Where F and B' are close in colour the
equation is ill-conditioned, so the result is blended with the coarse alpha by the confidence
c = d^2 / (d^2 + `sep2`), d = |F - B'|:

    alpha = c * alpha_c + (1 - c) * alpha_coarse    on the band, alpha_coarse elsewhere.

Inside the subject, a pixel that matches the plate's colour while the subject's colour nearby does not
is a see-through hole (between arm and body, in hair) and its alpha is lowered. A subject part that
happens to have the background's colour (camouflage: dark trousers against a dark sofa) looks the same
in colour, but depth tells them apart: with the prior's background depth given (`set_plate`), pixels
whose measured depth lies clearly in front of the background (by `solid_margin_m` or 4 prior standard
deviations, whichever is larger) are never opened.

Work is done on the band's bounding box only, with vectorised OpenCV/numpy (no per-pixel Python).
Conventions: colour uint8 HxWx3 RGB; plate float32 HxWx3 RGB in [0, 1]; alpha float32 HxW in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engines.matting.post_inputs import mask_box


@dataclass(frozen=True)
class EdgeRefineConfig:
    """band_px: half-width of the band around the coarse boundary (pixels at 640x480; scaled with the width).
    sigma_px: Gaussian scale of the foreground-colour estimate (pixels at 640x480).
    sep2: squared colour separation ([0, 1] RGB units) at which the colour estimate gets weight 0.5.
    whole / match: inside the subject, a pixel within `match` of the plate's colour (where the local
    subject colour is far from the plate's) is see-through background: its alpha is lowered.
    Defaults chosen on 20 frames of the semi-real suite (README, "Real-time edges"); a handful of values
    were tried, so that suite is slightly optimistic for this stage.
    """

    band_px: int = 6
    sigma_px: float = 6.0
    sep2: float = 0.005
    whole: bool = True  # also open see-through holes inside the subject (pixels that match the plate)
    match: float = 0.10  # colour distance ([0, 1] RGB, Euclidean / sqrt(3)) under which a pixel matches the plate
    solid_margin_m: float = 0.10  # depth in front of the background by more than this: subject, never a hole


class EdgeRefiner:
    """Refines a coarse alpha on its boundary band against a background plate; see the module docstring."""

    def __init__(self, config: EdgeRefineConfig = EdgeRefineConfig()) -> None:
        self.config = config
        self._plate: np.ndarray | None = None
        self._solid_below_m: np.ndarray | None = None

    def set_plate(self, plate_rgb: np.ndarray, background_depth_m: np.ndarray | None = None,
                  background_std_m: np.ndarray | None = None) -> None:
        """plate_rgb: float32 HxWx3 RGB in [0, 1] (the prior's `color_mean`). background_depth_m /
        background_std_m: float32 HxW metres (the prior's `depth_mean_m` / `depth_std_m`; 0 or
        non-finite = unknown), or None to judge interior holes by colour alone."""
        self._plate = np.ascontiguousarray(plate_rgb, dtype=np.float32)
        self._solid_below_m = None
        if background_depth_m is not None:
            depth = np.nan_to_num(np.asarray(background_depth_m, dtype=np.float32), nan=0.0, posinf=0.0)
            std = np.zeros_like(depth) if background_std_m is None else np.asarray(background_std_m, np.float32)
            margin = np.maximum(np.float32(self.config.solid_margin_m), np.float32(4.0) * std)
            self._solid_below_m = np.where(depth > 0, depth - margin, np.float32(0.0)).astype(np.float32)

    def __call__(self, color_rgb: np.ndarray, alpha: np.ndarray, depth_m: np.ndarray | None = None) -> np.ndarray:
        """A new float32 HxW alpha in [0, 1]; `alpha` is not modified. depth_m: float32 HxW metres
        registered to colour (0 = unknown), used with the background depth given to `set_plate`.
        ValueError on mismatched shapes."""
        plate = self._plate
        if plate is None or plate.shape[:2] != alpha.shape or color_rgb.shape[:2] != alpha.shape:
            raise ValueError("edge refinement needs a plate, colour and alpha of one size")
        if depth_m is not None and depth_m.shape != alpha.shape:
            raise ValueError("edge refinement needs depth of the alpha's size")
        h, w = alpha.shape
        scale = w / 640.0
        band_px = max(1, int(round(self.config.band_px * scale)))
        pad = 3 * int(round(self.config.sigma_px * scale)) + 1
        # Everything below works on a crop: the sure subject's box grown by the band and the colour estimate's
        # reach (`pad`), which holds the band's box grown by `pad`, so the result is that of the whole frame.
        x, y, bw, bh = cv2.boundingRect(cv2.compare(alpha, 0.5, cv2.CMP_GT))
        if bw == 0:
            return alpha.copy()
        m = band_px + pad
        crop = (slice(max(0, y - m), min(h, y + bh + m)), slice(max(0, x - m), min(w, x + bw + m)))
        sure_fg = cv2.compare(alpha[crop], 0.5, cv2.CMP_GT)  # 0 / 255
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
        outer = cv2.dilate(sure_fg, kernel)
        inner = cv2.erode(sure_fg, kernel)
        band = outer > inner
        # The band's box; a frame that is all subject has no band, only its interior.
        local = mask_box(band, pad) or mask_box(outer > 0, pad)
        box = tuple(slice(c.start + b.start, c.start + b.stop) for c, b in zip(crop, local))
        inner = inner[local]

        image = np.multiply(color_rgb[box], np.float32(1.0 / 255.0), dtype=np.float32)
        gain = self._gain(color_rgb, plate, outer, (crop[0].start, crop[1].start))
        plate_box = cv2.multiply(plate[box], (float(gain[0]), float(gain[1]), float(gain[2]), 0.0))
        image_minus_bg = cv2.subtract(image, plate_box)
        distance = cv2.sqrt(cv2.multiply(_channel_sum(cv2.multiply(image_minus_bg, image_minus_bg)), 1.0 / 3.0))
        plate_like = cv2.max(cv2.subtract(1.0, cv2.multiply(distance, 1.0 / self.config.match)), 0.0)
        # Subject colour samples: sure-subject pixels that do not look like the plate (see-through holes).
        samples = cv2.multiply(cv2.min(inner, 1).astype(np.float32), cv2.subtract(1.0, plate_like))
        fg, weight = _local_foreground(image, samples, max(0.5, self.config.sigma_px * scale))
        fg_minus_bg = cv2.subtract(fg, plate_box)
        sep2 = _channel_sum(cv2.multiply(fg_minus_bg, fg_minus_bg))
        alpha_c = cv2.divide(_channel_sum(cv2.multiply(image_minus_bg, fg_minus_bg)), cv2.max(sep2, 1e-6))
        cv2.min(cv2.max(alpha_c, 0.0, dst=alpha_c), 1.0, dst=alpha_c)
        separated = cv2.divide(sep2, cv2.add(sep2, self.config.sep2))  # colour separation of F from B' in [0, 1)
        near_subject = cv2.min(cv2.multiply(weight, 4.0), 1.0)  # no sure subject nearby: keep the coarse alpha
        confidence = cv2.multiply(separated, near_subject)
        confidence[~band[local]] = 0.0
        out = alpha.copy()
        coarse = out[box]
        if self.config.whole:  # interior: lower alpha only where the pixel is explained by the plate
            background_like = cv2.multiply(plate_like, separated)
            background_like[inner == 0] = 0.0
            if depth_m is not None and self._solid_below_m is not None:  # measured in front of the room
                d = depth_m[box]
                background_like[(d > 0) & (d < self._solid_below_m[box])] = 0.0
            coarse -= cv2.multiply(background_like, coarse)
        coarse += cv2.multiply(confidence, cv2.subtract(alpha_c, coarse))
        return out

    @staticmethod
    def _gain(color_rgb: np.ndarray, plate: np.ndarray, outer: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """Per-channel gain (float32, 3) mapping the plate to this frame's lighting, fitted by least squares
        on a grid of pixels away from the subject (`outer`: uint8, non-zero near it, a crop of the frame
        whose top-left pixel is `origin` = (row, column)); 1 when too few are left."""
        step = max(1, color_rgb.shape[1] // 80)
        h, w = color_rgb.shape[:2]
        keep = np.ones((-(-h // step), -(-w // step)), bool)
        y0, x0 = origin
        gy, gx = -(-y0 // step), -(-x0 // step)  # the first grid row and column inside the crop
        near = outer[gy * step - y0::step, gx * step - x0::step]
        keep[gy:gy + near.shape[0], gx:gx + near.shape[1]] = near == 0
        if keep.sum() < 50:
            return np.ones(3, np.float32)
        image = color_rgb[::step, ::step][keep].astype(np.float32) * np.float32(1.0 / 255.0)
        bg = plate[::step, ::step][keep]
        gain = (image * bg).sum(axis=0) / np.maximum((bg * bg).sum(axis=0), np.float32(1e-6))
        return np.clip(gain, 0.5, 2.0).astype(np.float32)


def _local_foreground(image: np.ndarray, samples: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Foreground colour F near each pixel: the Gaussian-weighted mean of the subject's colour samples
    (`samples`: float32 HxW weights in [0, 1]; normalised convolution), computed at 1/4 resolution (F
    varies slowly) and upsampled bilinearly.
    Returns (F float32 HxWx3, weight float32 HxW: the Gaussian mass of samples nearby, in [0, 1])."""
    h, w = samples.shape
    small = (max(1, w // 4), max(1, h // 4))
    weight = cv2.resize(samples, small, interpolation=cv2.INTER_AREA)
    colour = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    sigma_small = max(0.5, sigma / 4.0)
    mass = cv2.GaussianBlur(weight, (0, 0), sigma_small)
    fg = cv2.GaussianBlur(colour * weight[..., None], (0, 0), sigma_small)
    fg /= np.maximum(mass, np.float32(1e-4))[..., None]
    return (cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR),
            cv2.resize(mass, (w, h), interpolation=cv2.INTER_LINEAR))


_ONES = np.ones((1, 3), np.float32)


def _channel_sum(x: np.ndarray) -> np.ndarray:
    """float32 HxW: the sum of the three channels of float32 HxWx3 `x` (a per-pixel dot product's last step)."""
    return cv2.transform(x, _ONES)
