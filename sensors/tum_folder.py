"""Reader for TUM RGB-D benchmark folders (`rgb.txt`, `depth.txt`, `rgb/`, `depth/`).

`rgb.txt` and `depth.txt` list "timestamp path" per line ('#' starts a comment); paths are relative
to the folder. Each colour image is paired with the depth image nearest in time, within 0.02 s;
colour images without one are dropped. Depth PNGs hold metres * 5000 (depth_scale 0.0002).
Frame timestamps are seconds since the first paired colour image; fps is estimated from them.
Intrinsics: the "ROS default" set TUM recommends for its registered 640x480 images
(fx = fy = 525, cx = 319.5, cy = 239.5), or `Intrinsics.default_for` at other sizes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from sensors.errors import UserError
from sensors.frame import Intrinsics
from sensors.image_io import FolderLayout, FrameFiles, ImageFolderSource, read_color

log = logging.getLogger(__name__)

TUM_DEPTH_SCALE = 1.0 / 5000.0  # metres per depth unit
MAX_PAIR_DT_S = 0.02
DEFAULT_FPS = 30.0
ROS_DEFAULT_640x480 = Intrinsics(fx=525.0, fy=525.0, cx=319.5, cy=239.5)


def read_tum_list(path: Path) -> tuple[np.ndarray, list[str]]:
    """Timestamps (float64 seconds, file order) and relative paths from a TUM `rgb.txt`/`depth.txt`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read '{path}': {exc}.", 2) from exc
    stamps: list[float] = []
    names: list[str] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) < 2:
                raise ValueError
            stamps.append(float(parts[0]))
            if not math.isfinite(stamps[-1]):
                raise ValueError
        except ValueError:
            raise UserError(f"Line {number} of '{path}' is not \"timestamp path\": {line!r}.", 2) from None
        names.append(parts[1])
    return np.asarray(stamps, dtype=np.float64), names


def associate(rgb_t: np.ndarray, depth_t: np.ndarray, max_dt: float = MAX_PAIR_DT_S) -> list[tuple[int, int]]:
    """(rgb position, depth position) pairs: each colour time with the nearest depth time within max_dt.

    rgb_t, depth_t: float64 seconds, any order. Colour times with no depth within `max_dt` are left
    out; the pairs follow the order of `rgb_t`.
    """
    if rgb_t.size == 0 or depth_t.size == 0:
        return []
    order = np.argsort(depth_t, kind="stable")
    sorted_t = depth_t[order]
    after = np.searchsorted(sorted_t, rgb_t)  # first depth time >= colour time, in [0, n]
    left = np.clip(after - 1, 0, sorted_t.size - 1)
    right = np.clip(after, 0, sorted_t.size - 1)
    take_left = np.abs(rgb_t - sorted_t[left]) <= np.abs(sorted_t[right] - rgb_t)
    nearest = np.where(take_left, left, right)
    dt = np.abs(sorted_t[nearest] - rgb_t)
    keep = np.flatnonzero(dt <= max_dt)
    return [(int(i), int(order[nearest[i]])) for i in keep]


class TumFolderSource(ImageFolderSource):
    """Reads a TUM RGB-D folder. `start`/`stop` select frame indices (positions of the paired frames)."""

    def _scan(self) -> FolderLayout:
        self._require_folder("TUM RGB-D")
        lists = {}
        for name in ("rgb.txt", "depth.txt"):
            if not (self.path / name).is_file():
                raise UserError(f"'{self.path}' is not a TUM RGB-D folder: it has no {name}.", 2)
            lists[name] = read_tum_list(self.path / name)
        rgb_t, rgb_names = lists["rgb.txt"]
        depth_t, depth_names = lists["depth.txt"]
        pairs = associate(rgb_t, depth_t)
        if len(pairs) < len(rgb_t):
            log.warning("%s: %d of %d colour images have no depth within %.2f s and are skipped",
                        self.path, len(rgb_t) - len(pairs), len(rgb_t), MAX_PAIR_DT_S)
        if not pairs:
            raise UserError(
                f"The TUM folder '{self.path}' has no colour image with a depth image within {MAX_PAIR_DT_S} s.", 2
            )
        t0 = rgb_t[pairs[0][0]]
        frames = tuple(
            FrameFiles(index=k, timestamp=float(rgb_t[i] - t0), color=self.path / rgb_names[i],
                       depth=self.path / depth_names[j], depth_timestamp=float(depth_t[j] - t0))
            for k, (i, j) in enumerate(pairs)
        )
        height, width = read_color(frames[0].color).shape[:2]
        steps = np.diff([f.timestamp for f in frames])
        steps = steps[steps > 0]
        fps = float(1.0 / np.median(steps)) if steps.size else DEFAULT_FPS
        intrinsics = ROS_DEFAULT_640x480 if (width, height) == (640, 480) else Intrinsics.default_for(width, height)
        return FolderLayout(
            name=self.path.name,
            width=width,
            height=height,
            fps=fps,
            depth_scale=TUM_DEPTH_SCALE,
            intrinsics=intrinsics,
            frames=frames,
        )
