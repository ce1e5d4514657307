"""Reader for Redwood-style folders: `color/` and `depth/` images paired by sorted file name.

Colour is 8-bit JPEG or PNG; depth is a 16-bit PNG in millimetres (depth_scale 0.001). There is no
meta file: fps is taken as 30 and frame i has timestamp i / 30. Intrinsics come from a
`camera*.json` in the folder (Open3D PinholeCameraIntrinsic JSON: "width", "height",
"intrinsic_matrix" as 9 column-major values) when there is one, else `Intrinsics.default_for`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sensors.errors import UserError
from sensors.frame import Intrinsics
from sensors.image_io import COLOR_EXTENSIONS, FolderLayout, FrameFiles, ImageFolderSource, list_images, read_color

log = logging.getLogger(__name__)

REDWOOD_DEPTH_SCALE = 0.001  # millimetres
DEFAULT_FPS = 30.0


def read_open3d_intrinsics(path: Path) -> tuple[int, int, Intrinsics]:
    """(width, height, intrinsics) from an Open3D PinholeCameraIntrinsic JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        m = [float(v) for v in data["intrinsic_matrix"]]
        width, height = int(data["width"]), int(data["height"])
        if len(m) != 9:
            raise ValueError("intrinsic_matrix needs 9 values")
    except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise UserError(
            f"Cannot read camera intrinsics from '{path}' (expected Open3D's width, height and "
            f"intrinsic_matrix): {exc}.",
            2,
        ) from exc
    # Column-major 3x3: [fx, 0, 0, 0, fy, 0, cx, cy, 1].
    return width, height, Intrinsics(fx=m[0], fy=m[4], cx=m[6], cy=m[7])


class RedwoodFolderSource(ImageFolderSource):
    """Reads a Redwood-style folder. `start`/`stop` select frame indices (positions in name order)."""

    def _scan(self) -> FolderLayout:
        self._require_folder("Redwood")
        for sub in ("color", "depth"):
            if not (self.path / sub).is_dir():
                raise UserError(f"'{self.path}' is not a Redwood folder: it has no {sub}/ folder.", 2)
        colors = list_images(self.path / "color", COLOR_EXTENSIONS)
        depths = list_images(self.path / "depth", (".png",))
        if len(colors) != len(depths):
            raise UserError(
                f"The Redwood folder '{self.path}' has {len(colors)} colour and {len(depths)} depth images; "
                "every frame needs both.",
                2,
            )
        frames = tuple(
            FrameFiles(index=i, timestamp=i / DEFAULT_FPS, color=c, depth=d)
            for i, (c, d) in enumerate(zip(colors, depths))
        )
        if not frames:
            raise UserError(f"The Redwood folder '{self.path}' contains no frames.", 2)
        height, width = read_color(frames[0].color).shape[:2]
        intrinsics = Intrinsics.default_for(width, height)
        cameras = sorted(self.path.glob("camera*.json"))
        if cameras:
            cam_w, cam_h, cam = read_open3d_intrinsics(cameras[0])
            if (cam_w, cam_h) == (width, height):
                intrinsics = cam
            else:
                log.warning("%s is for %dx%d images, the frames are %dx%d; using default intrinsics",
                            cameras[0], cam_w, cam_h, width, height)
        return FolderLayout(
            name=self.path.name,
            width=width,
            height=height,
            fps=DEFAULT_FPS,
            depth_scale=REDWOOD_DEPTH_SCALE,
            intrinsics=intrinsics,
            frames=frames,
        )
