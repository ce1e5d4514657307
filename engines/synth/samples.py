"""Training samples from the generator: one plate/test pair per call (`random_sample`), an endless
stream over shared backgrounds (`sample_stream`) and `render_frame` (a given foreground and alpha over
a plate, with the capture conditions of a scene). Used by `engines.training.data`.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from engines.synth.room import BackgroundScene, CameraPose
from engines.synth.look import SubjectLayer, sample_look, sample_pose
from engines.synth.subject import render_person
from engines.synth.textures import (
    TextureBank,
    luminance,
    srgb_to_linear,
)
from engines.synth.scene import Capture, SceneCamera, SceneConfig, camouflage, place_subject, sample_conditions, draw_background
from sensors.frame import Intrinsics


# -- training samples -----------------------------------------------------------------------------
def _as_dict(plate: Capture, test: Capture) -> dict:
    return {
        "image": test.color.astype(np.float32) / np.float32(255.0),
        "background": plate.color.astype(np.float32) / np.float32(255.0),
        "depth_m": test.depth_m,
        "background_depth_m": plate.depth_m,
        "alpha": test.alpha.astype(np.float32),
        "foreground": test.foreground,
    }


def _sample_on(rng: np.random.Generator, config: SceneConfig, bank: TextureBank, background: BackgroundScene) -> dict:
    """A training sample on a given background: new person, pose, camera conditions and noise."""
    width = background.width
    look = sample_look(rng, bank, hair_strands=config.hair_strands, veil_prob=config.veil_prob,
                       tex_size=int(np.clip(160 * width / 640, 64, 160)))
    ref = float(np.percentile(luminance(background.radiance[::2, ::2]), 97))
    brightness = max(ref, 0.2) / 0.75 * rng.uniform(0.7, 1.2)
    u = rng.uniform(0.3, 0.7) * width if rng.random() < 0.85 else rng.choice([-0.08, 1.08]) * width
    z, sit_m = place_subject(rng, background, look, float(np.clip(u, 0, width)), config.subject_distance_m)
    motion = (float(rng.normal(0, 1.5)) * width / 640, float(rng.normal(0, 0.4))) if config.motion_blur else (0, 0)
    if rng.random() < config.camouflage_prob:
        look = camouflage(rng, look, background, u)
    subject = render_person(look, sample_pose(rng, u, z, None, motion, sit_m), background, rng, brightness)
    camera = SceneCamera(background, sample_conditions(rng, config))
    return _as_dict(camera.background_frame(rng), camera.test_frame(rng, subject))


def random_sample(rng: np.random.Generator, height: int, width: int, bank: TextureBank | None = None,
                  config: SceneConfig | None = None) -> dict:
    """One training sample from a fresh random scene (see the module docstring for the keys).

    rng: the only source of randomness (same state -> same sample). bank: reuse one per process
    (None builds one from config.shared_dir, which reads the photos again). config: effect
    strengths (its size, frame counts and seed are ignored). About 50 ms at 320x240 on one CPU
    core, most of it rendering the room; `sample_stream` reuses rooms and is faster.
    About 15 % of subjects are entering (cut by the image border).
    """
    config = config or SceneConfig()
    bank = bank if bank is not None else TextureBank(config.shared_dir, use_real=config.real_textures)
    background = draw_background(rng, config, bank, height, width, augment_plate=True)
    return _sample_on(rng, config, bank, background)


def sample_stream(rng: np.random.Generator, height: int, width: int, bank: TextureBank | None = None,
                  config: SceneConfig | None = None, samples_per_background: int = 4) -> Iterator[dict]:
    """Endless training samples like `random_sample`, each background reused for
    `samples_per_background` samples (different person, pose, lighting change and noise each)."""
    config = config or SceneConfig()
    bank = bank if bank is not None else TextureBank(config.shared_dir, use_real=config.real_textures)
    while True:
        background = draw_background(rng, config, bank, height, width, augment_plate=True)
        for _ in range(max(int(samples_per_background), 1)):
            yield _sample_on(rng, config, bank, background)


def render_frame(rng: np.random.Generator, foreground: np.ndarray, alpha: np.ndarray,
                 foreground_depth_m: np.ndarray, background: np.ndarray, background_depth_m: np.ndarray,
                 config: SceneConfig | None = None, intrinsics: Intrinsics | None = None) -> dict:
    """Apply the capture model to given arrays and return a sample dict (module docstring).

    foreground, background: HxWx3 RGB, uint8 or float in [0, 1] (sRGB-encoded, as photographed).
    alpha: HxW float in [0, 1]. foreground_depth_m: HxW metres of the subject (<= 0 or non-finite
    where unknown: those subject pixels return no depth). background_depth_m: HxW metres, 0 = hole.
    Semi-transparent pixels (alpha < 0.5) show the background's depth, thin ones may drop out.
    A random sensor and lighting change are drawn from `config` (default strengths).
    """
    config = config or SceneConfig()
    h, w = alpha.shape
    intr = intrinsics or Intrinsics.default_for(w, h)

    def to_unit(img: np.ndarray) -> np.ndarray:
        img = np.asarray(img)
        return img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)

    bg_depth = np.where(np.isfinite(background_depth_m) & (background_depth_m > 0), background_depth_m, 0)
    bg_depth = bg_depth.astype(np.float32)
    holes = (bg_depth <= 0).astype(np.uint8)
    ring = cv2.dilate(holes, np.ones((3, 3), np.uint8)) > holes
    scene = BackgroundScene(srgb_to_linear(to_unit(background)), bg_depth,
                            np.where(ring, 0.3, 0.01).astype(np.float32), intr, CameraPose(1.3, 0.1), "arrays")
    a = np.clip(alpha.astype(np.float32), 0, 1)
    fg_known = np.isfinite(foreground_depth_m) & (foreground_depth_m > 0)
    solid = a >= 0.5
    depth = np.where(solid & fg_known, foreground_depth_m, np.inf).astype(np.float32)
    dropout = np.where(solid & ~fg_known, 1.0, 0.0).astype(np.float32)
    dropout = np.where((a > 0.05) & ~solid, 0.5, dropout).astype(np.float32)
    if solid.any() and fg_known[solid].any():
        ys, xs = np.nonzero(solid)
        zc = float(np.median(foreground_depth_m[solid & fg_known]))
        center = np.array([(xs.mean() - intr.cx) * zc / intr.fx, (ys.mean() - intr.cy) * zc / intr.fy, zc])
    else:
        center = np.array([0.0, 0.0, 1.5])
    subject = SubjectLayer(srgb_to_linear(to_unit(foreground)), a, depth, dropout, a, center)
    camera = SceneCamera(scene, sample_conditions(rng, config))
    return _as_dict(camera.background_frame(rng), camera.test_frame(rng, subject))
