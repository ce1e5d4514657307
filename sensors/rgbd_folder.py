"""The project's own recording format, "rgbd-folder" version 1: reader and writer.

    <recording>/meta.json          {"format": "rgbd-folder", "version": 1, "width": W, "height": H,
                                    "fps": 30, "depth_scale": 0.001,
                                    "intrinsics": {"fx": .., "fy": .., "cx": .., "cy": ..},
                                    "background_frames": N (optional: the first N frames show the
                                    empty scene), "depth_max_m": 5.46 (optional),
                                    "frame_count": N (optional, written by RgbdFolderWriter)}
    <recording>/color/000000.png   8-bit RGB, PNG or JPEG (.png/.jpg/.jpeg)
    <recording>/depth/000000.png   16-bit, units of depth_scale metres, 0 = no measurement,
                                   registered to colour
    <recording>/alpha/000000.png   optional ground-truth alpha, 8 or 16 bit

width x height is at most 8192x8192 pixels (checked before anything is allocated), fps at most
10000, depth_scale at most 1. The file number is the frame index; a frame's timestamp is index / fps. Frames are read in file
order. The frame list comes from the files, so a recording whose writer was interrupted (meta.json
written without a frame count) still reads.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.image_header import LIMIT_TEXT, too_large
from sensors.image_io import (
    COLOR_EXTENSIONS,
    FolderLayout,
    FrameFiles,
    ImageFolderSource,
    list_images,
    write_alpha_png,
    write_color,
    write_depth,
)

log = logging.getLogger(__name__)

FORMAT = "rgbd-folder"
VERSION = 1
META = "meta.json"
DIGITS = 6

__all__ = ["RgbdFolderSource", "RgbdFolderWriter", "write_alpha_png", "FORMAT", "VERSION"]


# -- meta.json ------------------------------------------------------------------------------------
def _number(meta: dict, key: str, where: Path, *, integer: bool = False, minimum: float = 0.0,
            strict: bool = True, required: bool = True) -> float | int | None:
    """meta[key] checked to be a finite number > minimum (>= when not strict); None if absent."""
    if key not in meta or meta[key] is None:
        if required:
            raise UserError(f"'{where}' has no \"{key}\" field; it is not a valid {FORMAT} meta file.", 2)
        return None
    value = meta[key]
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    finite = math.isfinite(value) if isinstance(value, float) else isinstance(value, int) and abs(value) < 2**53
    if isinstance(value, bool) or not ok_type or not finite or \
            (value <= minimum if strict else value < minimum):
        kind = "an integer" if integer else "a number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise UserError(f"In '{where}', \"{key}\" must be {kind} {bound}, not {shown}.", 2)
    return value


def _parse_meta(meta_path: Path) -> dict:
    """The validated contents of meta.json: width, height, fps, depth_scale, intrinsics, optional fields."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, UTF-8 or a huge number
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UserError(f"Cannot read '{meta_path}': {reason}.", 2) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise UserError(f"'{meta_path}' is not an {FORMAT} meta file (format is {found!r}).", 2)
    if meta.get("version") != VERSION:
        raise UserError(
            f"'{meta_path}' is {FORMAT} version {meta.get('version')!r}; this program reads version {VERSION}.", 2
        )
    width = _number(meta, "width", meta_path, integer=True)
    height = _number(meta, "height", meta_path, integer=True)
    if too_large(width, height):  # checked before anything of that size is allocated
        raise UserError(f"In '{meta_path}', the frame size {width}x{height} is larger than the limit of "
                        f"{LIMIT_TEXT}.", 2)
    intrinsics_dict = meta.get("intrinsics")
    if intrinsics_dict is None:
        intrinsics = Intrinsics.default_for(width, height)
    elif isinstance(intrinsics_dict, dict):
        fx, fy = (_number(intrinsics_dict, k, meta_path) for k in ("fx", "fy"))
        cx, cy = (_number(intrinsics_dict, k, meta_path, strict=False, minimum=-math.inf) for k in ("cx", "cy"))
        intrinsics = Intrinsics(float(fx), float(fy), float(cx), float(cy))
    else:
        raise UserError(f"In '{meta_path}', \"intrinsics\" must be an object with fx, fy, cx and cy.", 2)
    depth_max = _number(meta, "depth_max_m", meta_path, required=False)
    fps = float(_number(meta, "fps", meta_path))
    depth_scale = float(_number(meta, "depth_scale", meta_path))
    if fps > 10000 or depth_scale > 1.0:
        key, value, bound = ("fps", fps, 10000) if fps > 10000 else ("depth_scale", depth_scale, 1)
        raise UserError(f"In '{meta_path}', \"{key}\" must be at most {bound}, not {value:g}.", 2)
    return {
        "width": width,
        "height": height,
        "fps": fps,
        "depth_scale": depth_scale,
        "intrinsics": intrinsics,
        "background_frames": _number(meta, "background_frames", meta_path, integer=True, strict=False,
                                     required=False),
        "depth_max_m": None if depth_max is None else float(depth_max),
        "frame_count": _number(meta, "frame_count", meta_path, integer=True, strict=False, required=False),
    }


def _numbered(folder: Path, extensions: tuple[str, ...]) -> dict[int, Path]:
    """{file number: path} for files named like 000123.png in `folder`; other names are ignored."""
    files: dict[int, Path] = {}
    for path in list_images(folder, extensions):
        if not path.stem.isdigit():
            continue
        number = int(path.stem)
        if number in files:
            raise UserError(f"'{folder}' has two files for frame {number}: '{files[number].name}' and '{path.name}'.")
        files[number] = path
    return files


# -- reader ---------------------------------------------------------------------------------------
class RgbdFolderSource(ImageFolderSource):
    """Reads an rgbd-folder recording. `start`/`stop` select frame indices `start <= index < stop`."""

    def __init__(self, path: str, start: int = 0, stop: int | None = None) -> None:
        super().__init__(path, start, stop)

    def _scan(self) -> FolderLayout:
        self._require_folder(FORMAT)
        meta_path = self.path / META
        if not meta_path.is_file():
            raise UserError(f"'{self.path}' is not an {FORMAT} recording: it has no {META}.", 2)
        meta = _parse_meta(meta_path)
        for sub in ("color", "depth"):
            if not (self.path / sub).is_dir():
                raise UserError(f"The recording '{self.path}' has no {sub}/ folder.", 2)
        colors = _numbered(self.path / "color", COLOR_EXTENSIONS)
        depths = _numbered(self.path / "depth", (".png",))
        alpha_dir = self.path / "alpha"
        alphas = _numbered(alpha_dir, (".png",)) if alpha_dir.is_dir() else {}
        if colors.keys() != depths.keys():
            unmatched = min(colors.keys() ^ depths.keys())
            raise UserError(
                f"The recording '{self.path}' has {len(colors)} colour and {len(depths)} depth images "
                f"(frame {unmatched} lacks its pair); every frame needs both.",
                2,
            )
        if meta["frame_count"] is not None and meta["frame_count"] != len(colors):
            log.warning("%s: meta.json says %d frames, the folders hold %d; reading the files",
                        self.path, meta["frame_count"], len(colors))
        fps = meta["fps"]
        frames = tuple(
            FrameFiles(index=i, timestamp=i / fps, color=colors[i], depth=depths[i], alpha=alphas.get(i))
            for i in sorted(colors)
        )
        return FolderLayout(
            name=self.path.name,
            width=meta["width"],
            height=meta["height"],
            fps=fps,
            depth_scale=meta["depth_scale"],
            intrinsics=meta["intrinsics"],
            frames=frames,
            background_frames=meta["background_frames"],
            depth_max_m=meta["depth_max_m"],
        )


# -- writer ---------------------------------------------------------------------------------------
class RgbdFolderWriter:
    """Writes frames as an rgbd-folder recording (see the module docstring).

    `path` must be new or an empty folder. `intrinsics=None` takes the first frame's. meta.json is
    written at once (so an interrupted recording can still be read), again when the first frame brings
    the intrinsics or `set_background_frames` is called, and completed by `close()`; each time
    atomically (temp file + rename).
    `color_format` is "png" (lossless; the round trip is bit-exact) or "jpg" (quality 95, smaller
    and faster to write).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float = 30.0,
        depth_scale: float = 0.001,
        intrinsics: Intrinsics | None = None,
        background_frames: int | None = None,
        depth_max_m: float | None = None,
        color_format: str = "png",
    ) -> None:
        if color_format not in ("png", "jpg"):
            raise ValueError(f"color_format must be 'png' or 'jpg', got {color_format!r}")
        if width <= 0 or height <= 0 or fps <= 0 or depth_scale <= 0:
            raise ValueError("width, height, fps and depth_scale must be positive")
        self.path = Path(path).expanduser()
        self.width, self.height = int(width), int(height)
        self.fps = float(fps)
        self.depth_scale = float(depth_scale)
        self.intrinsics = intrinsics
        self.background_frames = background_frames
        self.depth_max_m = depth_max_m
        self.color_format = color_format
        self._indices: set[int] = set()
        self._closed = False
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise UserError(
                f"'{self.path}' already exists and is not an empty folder; choose a new recording folder.", 2
            )
        try:
            (self.path / "color").mkdir(parents=True, exist_ok=True)
            (self.path / "depth").mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create the recording folder '{self.path}': {exc.strerror or exc}.") from exc
        self._alpha_dir_made = False
        self._write_meta(final=False)

    def write(self, frame: Frame) -> None:
        """Write colour, depth and (if present) alpha of `frame` under number `frame.index`."""
        if self._closed:
            raise ValueError("write() on a closed RgbdFolderWriter")
        size = (self.height, self.width)
        if frame.color.shape[:2] != size or frame.depth_raw.shape != size:
            raise ValueError(
                f"frame {frame.index} is {frame.width}x{frame.height}, the recording is {self.width}x{self.height}"
            )
        if not math.isclose(frame.depth_scale, self.depth_scale, rel_tol=1e-9):
            raise ValueError(f"frame depth_scale {frame.depth_scale} differs from the recording's {self.depth_scale}")
        if self.intrinsics is None:  # taken from the first frame: in meta.json at once, not only at close()
            self.intrinsics = frame.intrinsics
            self._write_meta(final=False)
        name = f"{frame.index:0{DIGITS}d}"
        write_depth(self.path / "depth" / f"{name}.png", frame.depth_raw)
        if frame.alpha is not None:
            if not self._alpha_dir_made:
                (self.path / "alpha").mkdir(exist_ok=True)
                self._alpha_dir_made = True
            write_alpha_png(self.path / "alpha" / f"{name}.png", frame.alpha)
        # Colour last: an interrupted write leaves a depth image without colour, which the reader names.
        write_color(self.path / "color" / f"{name}.{self.color_format}", frame.color)
        self._indices.add(frame.index)

    def set_background_frames(self, count: int | None) -> None:
        """Say (in meta.json, at once) that the first `count` frames show the empty scene."""
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError(f"background_frames must be a whole number >= 0, got {count!r}")
        self.background_frames = count
        self._write_meta(final=self._closed)

    def set_fps(self, fps: float) -> None:
        """The recording's frame rate (frames per second, > 0; rounded to 0.01), in meta.json at once.
        For a writer that learns the real rate only at the end (frames came slower than planned)."""
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps = round(float(fps), 2)
        self._write_meta(final=self._closed)

    @property
    def frame_count(self) -> int:
        """Number of distinct frames written so far."""
        return len(self._indices)

    def close(self) -> None:
        """Write the final meta.json (with frame_count). Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._write_meta(final=True)

    def __enter__(self) -> "RgbdFolderWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write_meta(self, final: bool) -> None:
        meta: dict = {
            "format": FORMAT,
            "version": VERSION,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "depth_scale": self.depth_scale,
        }
        if self.intrinsics is not None:
            meta["intrinsics"] = self.intrinsics.as_dict()
        if self.background_frames is not None:
            meta["background_frames"] = int(self.background_frames)
        if self.depth_max_m is not None:
            meta["depth_max_m"] = float(self.depth_max_m)
        if final:
            meta["frame_count"] = self.frame_count
        tmp = self.path / (META + ".tmp")
        try:
            tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.path / META)
        except OSError as exc:
            raise UserError(f"Cannot write '{self.path / META}': {exc.strerror or exc}.") from exc
