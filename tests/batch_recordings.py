"""Tiny rgbd-folder recordings for the batch tests (64x48, a few frames each), `run_main` (main.py
in-process) and a file-by-file comparison of output trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sensors.frame import Frame, Intrinsics
from sensors.rgbd_folder import RgbdFolderWriter
from tests.test_cli import run_main  # noqa: F401 (the batch tests' runner)

W, H = 64, 48
BACKGROUND_FRAMES = 6
TEST_FRAMES = 5


def write_recording(path: Path, seed: int, test_frames: int = TEST_FRAMES) -> Path:
    """A textured wall at 2.5 m; test frames add a box at 1 m moving right, with sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    wall = (np.stack([(xx * 3 + seed * 7) % 200, yy * 5 % 200, (xx + yy) % 120], axis=2) + 30).astype(np.float32)
    with RgbdFolderWriter(path, W, H, background_frames=BACKGROUND_FRAMES) as writer:
        for i in range(BACKGROUND_FRAMES + test_frames):
            depth_m = 2.5 + rng.normal(0, 0.005, (H, W))
            image = wall.copy()
            if i >= BACKGROUND_FRAMES:
                left = 10 + 3 * (i - BACKGROUND_FRAMES) + seed % 5
                alpha = np.clip((xx - left) / 2.0, 0, 1) * ((yy > 10) & (xx < left + 24)).astype(np.float32)
                image = alpha[..., None] * np.array([200, 40, 40], np.float32) + (1 - alpha[..., None]) * image
                depth_m = np.where(alpha > 0.5, 1.0 + rng.normal(0, 0.003, (H, W)), depth_m)
            color = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
            writer.write(Frame(color=color, depth_raw=np.round(depth_m * 1000).astype(np.uint16), depth_scale=0.001,
                               timestamp=i / 30, index=i, intrinsics=Intrinsics.default_for(W, H)))
    return path


def tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes (names in `skip` left out)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def assert_same_files(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    """The two trees hold the same files with the same bytes (and at least one alpha PNG)."""
    left, right = tree(a, skip), tree(b, skip)
    assert sorted(left) == sorted(right)
    assert any(name.split("/")[-2:-1] == ["alpha"] for name in left), sorted(left)
    differing = [name for name in left if left[name] != right[name]]
    assert differing == [], differing
