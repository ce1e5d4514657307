"""The `Source` interface every sensor implements, and `open_source`, which picks one from a URI.

A source is opened, yields `Frame`s in order and is closed; it is a context manager and an iterator:

    with open_source("recording_dir") as source:
        for frame in source:
            ...

Sources register themselves with `register_source` under a URI scheme ("realsense") or a
predicate on a path (a folder layout, a file extension). Modules that need an SDK are imported
lazily by `open_source`, so a missing SDK only matters when it is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from sensors.errors import UserError
from sensors.frame import Frame


@dataclass(frozen=True)
class CameraMode:
    """The stream settings every camera source takes (RealSense, Orbbec).

    width, height, fps: the colour mode (pixels, frames per second); depth_width / depth_height: the
    depth mode (None: the source's default, for RealSense the colour size); timeout_s: the longest
    wait for one frameset before the camera counts as stalled (seconds).
    """

    width: int = 640
    height: int = 480
    fps: int = 30
    depth_width: int | None = None
    depth_height: int | None = None
    timeout_s: float = 5.0

    def with_query(self, query: dict[str, str], uri: str) -> "CameraMode":
        """This mode with the URI's query options (width, height, fps, depth_width, depth_height) applied.

        Raises `UserError` (exit code 2) when one of them is not a whole number.
        """
        names = ("width", "height", "fps", "depth_width", "depth_height")
        try:
            changes = {name: int(query[name]) for name in names if name in query}
        except ValueError as exc:
            raise UserError(
                f"'{uri}' has a non-numeric width, height or fps: use e.g. ?width=640&height=480&fps=30.", 2
            ) from exc
        return replace(self, **changes)


@dataclass(frozen=True)
class SourceInfo:
    """What a source knows about itself before the first frame."""

    name: str
    width: int
    height: int
    fps: float
    live: bool
    frame_count: int | None = None  # None when unknown or unbounded (live cameras)
    background_frames: int | None = None  # recordings: the first N frames show the empty scene
    depth_max_m: float | None = None


class Source:
    """Base class: subclasses implement `_open`, `_read` and `_close`.

    `_read` returns the next `Frame`, or None at the end of a recording. Errors the user can act on
    are raised as `UserError`.
    """

    def __init__(self) -> None:
        self._is_open = False

    # -- to implement -------------------------------------------------------------------------
    def _open(self) -> SourceInfo:
        raise NotImplementedError

    def _read(self) -> Frame | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    # -- public API ---------------------------------------------------------------------------
    def open(self) -> SourceInfo:
        if not self._is_open:
            self.info = self._open()
            self._is_open = True
        return self.info

    def read(self) -> Frame | None:
        if not self._is_open:
            self.open()
        return self._read()

    def skip_to(self, index: int) -> None:
        """Move past the frames whose index is below `index` without decoding them, where the source can
        (recordings of image files); other sources still deliver them and the caller drops them."""

    def close(self) -> None:
        if self._is_open:
            self._is_open = False
            self._close()

    def __enter__(self) -> "Source":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame


SourceFactory = Callable[[str], Source]

# Registry: URI scheme -> (module, factory name); path predicate -> (module, factory name).
_SCHEMES: dict[str, tuple[str, str]] = {}
_PATH_KINDS: list[tuple[Callable[[Path], bool], str, str]] = []


def register_scheme(scheme: str, module: str, factory: str) -> None:
    """Make `open_source("<scheme>://...")` call `module.factory(uri)` (module imported lazily)."""
    _SCHEMES[scheme] = (module, factory)


def register_path_kind(matches: Callable[[Path], bool], module: str, factory: str) -> None:
    """Make `open_source(path)` call `module.factory(path)` for paths where `matches(path)`."""
    _PATH_KINDS.append((matches, module, factory))


def _load(module: str, factory: str) -> SourceFactory:
    return getattr(importlib.import_module(module), factory)


def open_source(uri: str) -> Source:
    """A closed `Source` for a URI ("realsense://SERIAL", "orbbec://") or a path (folder, .bag, .db3, .mkv)."""
    if "://" in uri:
        scheme = uri.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
            raise UserError(f"Unknown source '{uri}': use a recording path or one of {known}.", 2)
        return _load(*_SCHEMES[scheme])(uri)
    path = Path(uri).expanduser()
    if not path.exists():
        raise UserError(f"'{uri}' does not exist: give a recording folder, a .bag/.db3/.mkv file or a camera URI.", 2)
    for matches, module, factory in _PATH_KINDS:
        if matches(path):
            return _load(module, factory)(str(path))
    raise UserError(
        f"'{uri}' is not a recording this program can read: expected an rgbd-folder (meta.json), a TUM "
        "RGB-D folder (rgb.txt and depth.txt), a Redwood folder (color/, rgb/ or image/ beside depth/), a "
        "RealSense .bag/.db3 file or an Azure Kinect .mkv file.",
        2,
    )


def _is_realsense_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".bag", ".db3")


def _is_rgbd_folder(path: Path) -> bool:
    return (path / "meta.json").is_file()


def _is_tum_folder(path: Path) -> bool:
    return (path / "rgb.txt").is_file() and (path / "depth.txt").is_file()


def _is_redwood_folder(path: Path) -> bool:
    colour = any((path / name).is_dir() for name in ("color", "rgb", "image"))
    return colour and (path / "depth").is_dir() and not (path / "meta.json").exists()


def _is_azure_kinect_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".mkv"


register_scheme("realsense", "sensors.realsense.source", "RealSenseSource")
register_scheme("orbbec", "sensors.orbbec", "OrbbecSource")
register_path_kind(_is_realsense_file, "sensors.realsense.source", "RealSenseSource")
register_path_kind(_is_rgbd_folder, "sensors.rgbd_folder", "RgbdFolderSource")
register_path_kind(_is_tum_folder, "sensors.tum_folder", "TumFolderSource")
register_path_kind(_is_redwood_folder, "sensors.redwood_folder", "RedwoodFolderSource")
register_path_kind(_is_azure_kinect_file, "sensors.azure_kinect", "AzureKinectSource")
