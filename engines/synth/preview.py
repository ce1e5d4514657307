"""Preview images of generated scenes (docs/synth_preview.png, `write_preview`): colourised
depth, what plain RGB subtraction keeps, and a grid of scenes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.synth.scene import SceneConfig, generate_scene
from sensors.frame import Frame


# -- preview --------------------------------------------------------------------------------------
def colorize_depth(depth_m: np.ndarray, max_m: float = 5.5) -> np.ndarray:
    """Depth (metres, 0 = none) as uint8 HxWx3 RGB: turbo colours near-to-far, holes black."""
    scaled = np.clip(depth_m / np.float32(max_m) * 255.0, 0, 255).astype(np.uint8)
    rgb = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)[:, :, ::-1].copy()
    rgb[depth_m <= 0] = 0
    return rgb


def rgb_subtraction_view(test: Frame, background: Frame, threshold: int = 25) -> np.ndarray:
    """What plain RGB background subtraction sees, uint8 HxWx3: white = subject found, red = false
    positive on the background (alpha = 0), blue = subject missed; |difference| > threshold levels."""
    flagged = np.abs(test.color.astype(np.int16) - background.color.astype(np.int16)).max(axis=2) > threshold
    alpha = test.alpha if test.alpha is not None else np.zeros(flagged.shape, np.float32)
    view = np.zeros(flagged.shape + (3,), np.uint8)
    view[flagged & (alpha >= 0.5)] = (255, 255, 255)
    view[flagged & (alpha == 0)] = (230, 40, 40)
    view[~flagged & (alpha >= 0.5)] = (40, 60, 200)
    return view


def preview_image(seeds: tuple[int, ...] = (0, 3, 18, 21), width: int = 320, height: int = 240,
                  shared_dir: str | None = None, n_background: int = 3, n_test: int = 3,
                  tile_scale: float = 1.0) -> np.ndarray:
    """Contact sheet, uint8 RGB: one row per seed with the first background frame, the last test
    frame, `rgb_subtraction_view` of the two, the test depth (turbo, holes black) and the alpha.
    Scenes render at width x height; tiles are resized by `tile_scale`."""
    rows = []
    for seed in seeds:
        config = SceneConfig(width=width, height=height, n_background=n_background, n_test=n_test, seed=seed,
                             shared_dir=shared_dir)
        frames = list(generate_scene(config))
        bg, test = frames[0], frames[-1]
        alpha = np.repeat((np.clip(test.alpha, 0, 1) * 255).astype(np.uint8)[:, :, None], 3, axis=2)
        tiles = [bg.color, test.color, rgb_subtraction_view(test, bg), colorize_depth(test.depth_m()), alpha]
        if tile_scale != 1.0:
            size = (max(int(round(width * tile_scale)), 1), max(int(round(height * tile_scale)), 1))
            tiles = [cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in tiles]
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1))
    return np.concatenate(rows, axis=0)


def write_preview(path: str | Path, **kwargs) -> Path:
    """Write `preview_image(**kwargs)` as a maximally compressed PNG; returns the path."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(preview_image(**kwargs), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError(f"cannot encode the preview for {path}")
    buf.tofile(path)
    return path
