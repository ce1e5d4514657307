"""Depth-sure fusion for DART: the network decides only what the depth evidence cannot.

Trained on synthetic people, the student leaves holes inside real textures (plush, flowers, a plant) and
calls changed background (a cast shadow, a lighting change) foreground; the depth evidence, which rests on
geometry, is right in both places. It is wrong, or has nothing to say, elsewhere: on the subject's
outline (1/4-resolution depth, misregistration, flying pixels) and where depth is missing (hair, dark or
shiny parts, the stereo occlusion shadow). (Where the subject touches the background, within the depth
noise, the evidence is low and the pixel counts as background: depth cannot tell.) So, before the
error map selects patches (DART eqs. 9-10), the coarse alpha A_raw is overruled where depth is sure:

    A = 1 on `SureRegions.foreground`, A = 0 on `SureRegions.background`, A_raw elsewhere,

and the selection map is zeroed there, so the refiner's k patches all go to the band depth cannot judge.
A step beyond the paper (which only uses depth to pick patches); `EngineConfig.depth_fusion` turns it off
for the ablation row "dart, no depth fusion".

Sure regions come from the calibrated evidence e (`engines.matting.depth_evidence`), cleaned like the
depth-only matte (blur, small-region removal), at the base network's resolution h x w:
- foreground: cleaned e >= `sure_foreground` where the live depth is valid;
- background: cleaned e <= `sure_background` where the empty scene had depth: the live depth at the
  background's own depth, or live depth missing (an IR shadow, a dropout) while the colour matches the
  plate (e is then the colour change). Where the empty scene had no depth either (a window, a black
  screen) e says nothing and the network decides.
The ramp between the thresholds (the depth matte's own, 0.25-0.75) is the outline band the network
decides; `margin_px` can widen it by eroding both regions (default 0: worse on the semi-real suite).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engines.config import DepthConfig
from engines.matting.depth_bayes import clean_posterior
from engines.matting.depth_matting import RAMP_HIGH, RAMP_LOW


@dataclass(frozen=True)
class FusionConfig:
    """sure_foreground / sure_background: cleaned evidence thresholds in [0, 1] (default: the ends of the
    depth matte's evidence -> alpha ramp); margin_px: erosion of both regions in pixels of the base
    resolution (1 px = 4 px at 640x480)."""

    sure_foreground: float = RAMP_HIGH
    sure_background: float = RAMP_LOW
    margin_px: int = 0


@dataclass(frozen=True, eq=False)
class SureRegions:
    """Where depth decides, bool h x w each (disjoint)."""

    foreground: np.ndarray
    background: np.ndarray


def sure_regions(evidence: np.ndarray, depth_small: np.ndarray, usually_invalid: np.ndarray,
                 depth_config: DepthConfig, config: FusionConfig = FusionConfig()) -> SureRegions:
    """Sure foreground and background from the evidence at base resolution.

    evidence: float32 h x w in [0, 1] (`DepthEvidence.__call__`); depth_small: float32 h x w metres, 0 =
    unknown; usually_invalid: bool h x w, the empty scene had no depth there (`DepthEvidence`).
    """
    clean = clean_posterior(evidence, depth_config, threshold=0.5, fill_background_holes=False)
    valid = depth_small > 0
    foreground = (clean >= np.float32(config.sure_foreground)) & valid
    background = (clean <= np.float32(config.sure_background)) & ~usually_invalid
    if config.margin_px > 0:
        kernel = np.ones((2 * config.margin_px + 1,) * 2, np.uint8)
        foreground = cv2.erode(foreground.view(np.uint8), kernel).view(bool)
        background = cv2.erode(background.view(np.uint8), kernel, borderValue=1).view(bool)
    return SureRegions(foreground, background)


def overrule_alpha(alpha: np.ndarray, sure: SureRegions) -> None:
    """In place: the coarse alpha (float32 h x w) set to 1 / 0 on the sure foreground / background."""
    alpha[sure.foreground] = 1.0
    alpha[sure.background] = 0.0


def mask_selection(selection: np.ndarray, sure: SureRegions) -> np.ndarray:
    """The selection map (float32 h x w) with 0 on the sure regions (a new array)."""
    return np.where(sure.foreground | sure.background, np.float32(0.0), selection).astype(np.float32, copy=False)
