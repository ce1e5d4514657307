"""Where captured background priors live: one .npz per camera or recording, and beside it the networks
adapted to that scene ("Adapt to me", `app.adapt_worker`): `root/<scene key>.models/`, and the frames
the user marked with scribbles for the next adaptation: `root/<scene key>.scribbles.npz`.

`SceneStore(root)` keeps `root/<scene key>.npz`. The key of a camera URI ("realsense://123") is the
sanitised URI; the key of a recording is its folder/file name plus a short hash of its absolute
path, so two recordings called "take1" in different folders get different priors. No Qt here: the
app passes the root (QStandardPaths AppDataLocation/scenes by default).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np

from engines.matting.background_prior import BackgroundPrior
from sensors.errors import UserError

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SCRIBBLE_KEYS = ("color", "depth_mm", "scribbles")  # the arrays of <scene key>.scribbles.npz
MAX_SCRIBBLE_FRAMES = 8


def scene_key(source_uri: str) -> str:
    """A file-name-safe, stable key for a source URI or recording path."""
    if "://" in source_uri:
        scheme, rest = source_uri.split("://", 1)
        text = f"{scheme}_{rest}" if rest else scheme
        return _UNSAFE.sub("_", text).strip("._") or "camera"
    path = Path(source_uri).expanduser().resolve()
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:8]
    name = _UNSAFE.sub("_", path.name).strip("._") or "recording"
    return f"{name}-{digest}"


class SceneStore:
    """Saves and restores the background prior of each source under `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, source_uri: str) -> Path:
        return self.root / f"{scene_key(source_uri)}.npz"

    def has(self, source_uri: str) -> bool:
        return self.path_for(source_uri).is_file()

    def save(self, source_uri: str, prior: BackgroundPrior) -> Path:
        """Write the prior (atomic); raises UserError when the folder is not writable. Scribbles marked
        over the previous background are dropped (their frames show the old scene)."""
        path = self.path_for(source_uri)
        self._drop_scribbles(source_uri)  # first: a crash between the two must not pair old marks with a new prior
        prior.save(path)
        log.info("saved the background of %s to %s", source_uri, path)
        return path

    def load(self, source_uri: str, shape: tuple[int, int] | None = None) -> BackgroundPrior | None:
        """The stored prior for this source, or None when there is none, it is unreadable, or its
        height x width differs from `shape` (the camera now streams another resolution)."""
        path = self.path_for(source_uri)
        if not path.is_file():
            return None
        try:
            prior = BackgroundPrior.load(path)
        except UserError as exc:
            log.warning("ignoring the stored background: %s", exc)
            return None
        if shape is not None and prior.shape != tuple(shape):
            log.info("stored background %s is %dx%d, the source %dx%d: ignoring it",
                     path, prior.width, prior.height, shape[1], shape[0])
            return None
        return prior

    def forget(self, source_uri: str) -> None:
        """Drop the stored background, the scribbles and the networks adapted to it."""
        self.path_for(source_uri).unlink(missing_ok=True)
        self._drop_scribbles(source_uri)
        shutil.rmtree(self.models_dir(source_uri), ignore_errors=True)

    # -- the user's scribbles, for the next adaptation ------------------------------------------------
    def scribbles_path(self, source_uri: str) -> Path:
        return self.root / f"{scene_key(source_uri)}.scribbles.npz"

    def _drop_scribbles(self, source_uri: str) -> None:
        path = self.scribbles_path(source_uri)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"Could not remove the old marks {path} ({exc.strerror}): check the folder's "
                            "permissions.") from None

    def load_scribbles(self, source_uri: str) -> dict[str, np.ndarray] | None:
        """The marked frames: {"color": uint8 (N, H, W, 3), "depth_mm": uint16 (N, H, W), "scribbles":
        uint8 (N, H, W)}, or None when there are none or the file is unreadable (logged)."""
        path = self.scribbles_path(source_uri)
        if not path.is_file():
            return None
        try:
            with np.load(str(path), allow_pickle=False) as data:
                frames = {key: data[key] for key in SCRIBBLE_KEYS}
        except Exception as exc:  # noqa: BLE001 - a damaged zip raises BadZipFile, zlib.error, EOFError...
            log.warning("ignoring the stored scribbles %s: %s", path, exc)
            return None
        color, depth_mm, scribbles = (frames[key] for key in SCRIBBLE_KEYS)
        dtypes = (color.dtype, depth_mm.dtype, scribbles.dtype) == (np.uint8, np.uint16, np.uint8)
        if (not dtypes or color.ndim != 4 or color.shape[3] != 3 or depth_mm.shape != color.shape[:3]
                or scribbles.shape != color.shape[:3]):
            log.warning("ignoring the stored scribbles %s: their arrays disagree", path)
            return None
        return frames

    def add_scribbles(self, source_uri: str, color: np.ndarray, depth_m: np.ndarray, scribbles: np.ndarray) -> int:
        """Keep one marked frame (color uint8 HxWx3 RGB, depth_m float32 HxW metres, scribbles uint8 HxW of
        `engines.matting.scribbles` labels) beside the scene's background, after those kept before (the
        oldest go beyond `MAX_SCRIBBLE_FRAMES`); frames of another size replace the old ones. Written
        atomically; raises UserError when the folder is not writable. Returns the number of frames kept."""
        from sensors.safe_write import atomic_write_bytes

        depth_mm = np.clip(np.nan_to_num(depth_m) * 1000.0 + 0.5, 0, 65535).astype(np.uint16)
        new = {"color": color[None], "depth_mm": depth_mm[None], "scribbles": scribbles.astype(np.uint8)[None]}
        old = self.load_scribbles(source_uri)
        if old is not None and old["color"].shape[1:] == color.shape:
            new = {key: np.concatenate([old[key], new[key]])[-MAX_SCRIBBLE_FRAMES:] for key in SCRIBBLE_KEYS}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **new)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.scribbles_path(source_uri), buffer.getbuffer())
        return len(new["color"])

    # -- networks adapted to the scene ---------------------------------------------------------------
    def models_dir(self, source_uri: str) -> Path:
        return self.root / f"{scene_key(source_uri)}.models"

    def take_path(self, source_uri: str) -> Path:
        """Where the take of an adaptation waits for the adapting process (deleted afterwards)."""
        return self.root / f"{scene_key(source_uri)}.take.npz"

    def adapted_models(self, source_uri: str) -> Path | None:
        """The scene's adapted model folder when it holds a complete set (student and DART refiner)."""
        folder = self.models_dir(source_uri)
        if all((folder / name).is_file() for name in ("student.onnx", "refiner_dart.onnx")):
            return folder
        return None

    def install_models(self, source_uri: str, staging: Path) -> Path:
        """Make the finished model folder `staging` the scene's (renames: the old set stays complete until
        the new one is in place). Returns the scene's model folder."""
        target = self.models_dir(source_uri)
        old = target.with_suffix(".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        log.info("adapted networks of %s installed in %s", source_uri, target)
        return target
