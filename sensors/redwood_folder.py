"""Reader for Redwood-style folders: colour and depth images in two sub-folders, paired by frame.

The layouts Redwood datasets are downloaded in: `color/` + `depth/` (e.g. Open3D's Redwood
living-room sequences, names 00000.jpg), `rgb/` + `depth/` (the Redwood 3D scans, names
`FRAME-TIMESTAMP.jpg` with the timestamp in microseconds, e.g. 0000001-000000033366.jpg) and
`image/` + `depth/` (the Redwood indoor LiDAR-RGBD scenes, names 000001.jpg). When the names are
numbers (optionally `-TIMESTAMP`), colour and depth are paired by frame number, else by sorted name.
Colour is 8-bit JPEG or PNG; depth is a 16-bit PNG in millimetres (depth_scale 0.001). Frame
indices are positions in that order, from 0. Timestamps come from the names when they carry them
(fps from their median spacing), else frame i has timestamp i / 30. Intrinsics come from a
`camera*.json` in the folder (Open3D PinholeCameraIntrinsic JSON: "width", "height",
"intrinsic_matrix" as 9 column-major values) when there is one, else `Intrinsics.default_for`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from sensors.errors import UserError
from sensors.frame import Intrinsics
from sensors.image_io import COLOR_EXTENSIONS, FolderLayout, FrameFiles, ImageFolderSource, list_images, read_color

log = logging.getLogger(__name__)

REDWOOD_DEPTH_SCALE = 0.001  # millimetres
DEFAULT_FPS = 30.0
COLOR_FOLDERS = ("color", "rgb", "image")  # in order of preference when a folder has several
_NUMBERED = re.compile(r"^(\d+)(?:-(\d+))?$")  # 00042 or 0000042-000001400000 (frame-microseconds)

Pair = tuple[Path, Path, int | None, int | None]  # colour, depth, colour µs, depth µs


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


def _numbers(paths: list[Path]) -> list[tuple[int, int | None]] | None:
    """(frame number, timestamp in microseconds or None) per file when every name is numbered, else None."""
    found = [_NUMBERED.match(p.stem) for p in paths]
    if not all(found):
        return None
    return [(int(m.group(1)), None if m.group(2) is None else int(m.group(2))) for m in found]


def _pair(folder: Path, colors: list[Path], depths: list[Path]) -> list[Pair]:
    """One entry per frame: by frame number when every name is numbered (and unique), else by name order."""
    cn, dn = _numbers(colors), _numbers(depths)
    if cn is None or dn is None or len({n for n, _ in cn}) < len(cn) or len({n for n, _ in dn}) < len(dn):
        if len(colors) != len(depths):
            raise UserError(f"The Redwood folder '{folder}' has {len(colors)} colour and {len(depths)} depth "
                            "images; every frame needs both.", 2)
        return [(c, d, None, None) for c, d in zip(colors, depths)]
    by_c = {n: (p, t) for p, (n, t) in zip(colors, cn)}
    by_d = {n: (p, t) for p, (n, t) in zip(depths, dn)}
    if by_c.keys() != by_d.keys():
        lone = min(by_c.keys() ^ by_d.keys())
        raise UserError(f"The Redwood folder '{folder}' has {len(colors)} colour and {len(depths)} depth images "
                        f"(frame {lone} lacks its pair); every frame needs both.", 2)
    return [(by_c[n][0], by_d[n][0], by_c[n][1], by_d[n][1]) for n in sorted(by_c)]


def _times(pairs: list[Pair]) -> tuple[list[float], list[float | None], float]:
    """Colour and depth timestamps (seconds from the first colour frame) and fps, from the names when usable."""
    stamps = [c for _, _, c, _ in pairs]
    if len(pairs) > 1 and None not in stamps:
        steps = np.diff(np.asarray(stamps, dtype=np.float64))
        step = float(np.median(steps))
        if np.all(steps > 0) and 1e3 <= step <= 1e6:  # microseconds: 1 to 1000 frames a second
            t0 = stamps[0]
            depth = [None if d is None else (d - t0) * 1e-6 for _, _, _, d in pairs]
            return [(c - t0) * 1e-6 for c in stamps], depth, 1e6 / step
    return [i / DEFAULT_FPS for i in range(len(pairs))], [None] * len(pairs), DEFAULT_FPS


class RedwoodFolderSource(ImageFolderSource):
    """Reads a Redwood-style folder. `start`/`stop` select frame indices (positions in frame order)."""

    def _scan(self) -> FolderLayout:
        self._require_folder("Redwood")
        sub = next((name for name in COLOR_FOLDERS if (self.path / name).is_dir()), None)
        if sub is None or not (self.path / "depth").is_dir():
            missing = "depth/" if sub is not None else "color/, rgb/ or image/"
            raise UserError(f"'{self.path}' is not a Redwood folder: it has no {missing} folder (expected "
                            "color/, rgb/ or image/ beside depth/).", 2)
        colors = list_images(self.path / sub, COLOR_EXTENSIONS)
        depths = list_images(self.path / "depth", (".png",))
        pairs = _pair(self.path, colors, depths)
        times, depth_times, fps = _times(pairs)
        frames = tuple(
            FrameFiles(index=i, timestamp=t, color=c, depth=d, depth_timestamp=dt)
            for i, ((c, d, _, _), t, dt) in enumerate(zip(pairs, times, depth_times))
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
            fps=fps,
            depth_scale=REDWOOD_DEPTH_SCALE,
            intrinsics=intrinsics,
            frames=frames,
        )
