"""Image files of recorded folders, and the base class of the folder sources.

Reading and writing go through `cv2.imdecode`/`cv2.imencode` on bytes (fast, and safe with any
path encoding). Readers return project conventions: colour uint8 HxWx3 RGB, depth_raw uint16 HxW,
alpha float32 HxW in [0, 1]. A file that is missing, truncated or of the wrong kind raises
`UserError` naming the file. Before decoding, the size in the file's header is checked against
`image_header.MAX_IMAGE_PIXELS` (8192x8192) and, for a recording's frames, the recording's size; a
PNG's chunk checksums and a frame JPEG's end marker are checked too, so damage is one sentence and
no library prints to the terminal. Writes are atomic (`safe_write.atomic_write_bytes`).

`ImageFolderSource` is what the rgbd-folder, TUM and Redwood readers share: a subclass lists its
frames' files once (`_scan`), the base class reads them in order or by frame index.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.image_header import LIMIT_TEXT, MAX_IMAGE_FILE_BYTES, check_pixels, damage, header_size
from sensors.safe_write import atomic_write_bytes
from sensors.source import Source, SourceInfo

log = logging.getLogger(__name__)

COLOR_EXTENSIONS = (".png", ".jpg", ".jpeg")
JPEG_QUALITY = 95


# -- reading --------------------------------------------------------------------------------------
def _decode(path: Path, what: str, expected: tuple[int, int] | None = None) -> np.ndarray:
    """The image in `path` as cv2 decodes it (channels BGR/BGRA), unchanged in depth and channels.

    Its size is read from the file header first: over `MAX_IMAGE_PIXELS`, or other than `expected`
    (width, height) when given, it is refused before anything is decoded.
    """
    try:
        info = path.stat()
        size = info.st_size
        if not stat.S_ISREG(info.st_mode):  # a pipe or device would block or never end
            raise UserError(f"The {what} image '{path}' is not a regular file.")
        if size > MAX_IMAGE_FILE_BYTES:
            raise UserError(f"The {what} image '{path}' is a {size / 2**20:.0f} MB file, larger than any "
                            f"image within the limit of {LIMIT_TEXT}.")
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in a listed name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"Cannot read the {what} image '{path}': {reason}.") from exc
    raw = data.tobytes()
    header = header_size(raw)
    if header is None:
        raise UserError(f"The {what} image '{path}' is corrupt, truncated or not an image file "
                        "(PNG, JPEG, BMP, WebP or TIFF).")
    check_pixels(header[0], header[1], f"The {what} image '{path}'")
    problem = damage(raw, jpeg_end=expected is not None)  # recording frames: strict
    if problem is not None:
        raise UserError(f"The {what} image '{path}' {problem}.")
    if expected is not None and header != expected:
        raise UserError(f"The image '{path}' is {header[0]}x{header[1]} but the recording is "
                        f"{expected[0]}x{expected[1]}.")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"The {what} image '{path}' is corrupt, truncated or not an image file.")
    return image


def read_color(path: str | Path, expected: tuple[int, int] | None = None) -> np.ndarray:
    """An 8-bit colour image as uint8 HxWx3, RGB order (grey and BGRA files are converted)."""
    path = Path(path)
    image = _decode(path, "colour", expected)
    if image.dtype != np.uint8:
        raise UserError(f"The colour image '{path}' is {image.dtype.itemsize * 8}-bit; expected 8-bit.")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise UserError(f"The colour image '{path}' has {image.shape[2]} channels; expected 3.")


def read_depth(path: str | Path, expected: tuple[int, int] | None = None) -> np.ndarray:
    """A 16-bit single-channel depth image as uint16 HxW (raw sensor units)."""
    path = Path(path)
    image = _decode(path, "depth", expected)
    if image.dtype != np.uint16 or image.ndim != 2:
        kind = f"{image.dtype.itemsize * 8}-bit with {1 if image.ndim == 2 else image.shape[2]} channel(s)"
        raise UserError(f"The depth image '{path}' is {kind}; expected a 16-bit single-channel PNG.")
    return image


def read_alpha(path: str | Path, expected: tuple[int, int] | None = None) -> np.ndarray:
    """An 8- or 16-bit single-channel alpha image as float32 HxW in [0, 1]."""
    path = Path(path)
    image = _decode(path, "alpha", expected)
    if image.ndim == 3:
        image = image[:, :, 0]
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) * np.float32(1.0 / 65535.0)
    raise UserError(f"The alpha image '{path}' is {image.dtype}; expected 8- or 16-bit.")


# -- writing --------------------------------------------------------------------------------------
def _encode_to(path: Path, image: np.ndarray, params: list[int]) -> None:
    """Encode by extension and write atomically (temporary file + rename: never a broken file)."""
    ok, buf = cv2.imencode(path.suffix.lower(), image, params)
    if not ok:
        raise UserError(f"Cannot encode the image '{path}'.")
    atomic_write_bytes(path, buf)


def write_color(path: str | Path, color: np.ndarray) -> None:
    """Write uint8 HxWx3 RGB (or HxWx4 RGBA, PNG only) as PNG (lossless) or JPEG (quality 95), by extension."""
    path = Path(path)
    if color.dtype != np.uint8 or color.ndim != 3 or color.shape[2] not in (3, 4):
        raise ValueError(f"color must be uint8 HxWx3 RGB or HxWx4 RGBA, got {color.dtype} {color.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
    to_bgr = cv2.COLOR_RGB2BGR if color.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
    _encode_to(path, cv2.cvtColor(color, to_bgr), params)


def write_depth(path: str | Path, depth_raw: np.ndarray) -> None:
    """Write uint16 HxW depth as a 16-bit PNG."""
    if depth_raw.dtype != np.uint16 or depth_raw.ndim != 2:
        raise ValueError(f"depth_raw must be uint16 HxW, got {depth_raw.dtype} {depth_raw.shape}")
    _encode_to(Path(path), depth_raw, [])


def write_alpha_png(path: str | Path, alpha: np.ndarray) -> None:
    """Write alpha (float HxW in [0, 1], clipped) as an 8-bit PNG, rounded to the nearest of 256 levels."""
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be HxW, got shape {alpha.shape}")
    alpha8 = np.clip(np.rint(np.asarray(alpha, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    _encode_to(Path(path), alpha8, [])


# -- folder sources -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameFiles:
    """The files of one recorded frame. `timestamp` (of the colour image) and `depth_timestamp` in
    seconds from the start of the recording; `depth_timestamp` None: the same as `timestamp`."""

    index: int
    timestamp: float
    color: Path
    depth: Path
    alpha: Path | None = None
    depth_timestamp: float | None = None


@dataclass(frozen=True)
class FolderLayout:
    """What a folder source finds when it opens: frame size, units and the files in frame order."""

    name: str
    width: int
    height: int
    fps: float
    depth_scale: float  # metres per depth unit
    intrinsics: Intrinsics
    frames: tuple[FrameFiles, ...]
    background_frames: int | None = None
    depth_max_m: float | None = None


class ImageFolderSource(Source):
    """A `Source` over a folder of colour/depth image files; subclasses implement `_scan`.

    `start`/`stop` select the frames with `start <= frame.index < stop` (frame indices, which equal
    file positions in folders numbered from 0). `read_frame(index)` reads any frame of the
    recording directly. Problems with a single file are raised when that frame is read, so the
    frames before it are delivered. `load_alpha = False` leaves ground-truth alpha/ files unopened.
    """

    def __init__(self, path: str, start: int = 0, stop: int | None = None) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.start = start
        self.stop = stop
        self._layout: FolderLayout | None = None
        self._by_index: dict[int, FrameFiles] = {}
        self._selected: list[FrameFiles] = []
        self._pos = 0
        self.load_alpha = True  # False: ground-truth alpha/ files are never opened (`process` needs none)

    def _scan(self) -> FolderLayout:
        """List the recording's frames (raise `UserError` if the folder is not readable as one)."""
        raise NotImplementedError

    def _require_folder(self, kind: str) -> None:
        if not self.path.exists():
            raise UserError(f"The {kind} folder '{self.path}' does not exist.", 2)
        if not self.path.is_dir():
            raise UserError(f"'{self.path}' is not a folder; expected a {kind} folder.", 2)

    @property
    def layout(self) -> FolderLayout:
        """Frame size, units and files of the whole recording (opens the source)."""
        self.open()
        assert self._layout is not None
        return self._layout

    def _open(self) -> SourceInfo:
        layout = self._scan()
        if not layout.frames:
            raise UserError(f"The recording '{self.path}' contains no frames.", 2)
        self._layout = layout
        self._by_index = {f.index: f for f in layout.frames}
        stop = self.stop if self.stop is not None else float("inf")
        self._selected = [f for f in layout.frames if self.start <= f.index < stop]
        self._pos = 0
        return SourceInfo(
            name=layout.name,
            width=layout.width,
            height=layout.height,
            fps=layout.fps,
            live=False,
            frame_count=len(self._selected),
            background_frames=layout.background_frames,
            depth_max_m=layout.depth_max_m,
        )

    def _read(self) -> Frame | None:
        if self._pos >= len(self._selected):
            return None
        files = self._selected[self._pos]
        self._pos += 1
        return self._load(files)

    def _close(self) -> None:
        self._pos = 0

    def skip_to(self, index: int) -> None:
        self.open()
        while self._pos < len(self._selected) and self._selected[self._pos].index < index:
            self._pos += 1

    def __len__(self) -> int:
        """Number of frames this source delivers (after `start`/`stop`)."""
        self.open()
        return len(self._selected)

    @property
    def indices(self) -> list[int]:
        """Frame indices of the whole recording, in order (ignores `start`/`stop`)."""
        return [f.index for f in self.layout.frames]

    def read_frame(self, index: int) -> Frame:
        """The frame with `frame.index == index`, read directly (does not move the iterator)."""
        self.open()
        files = self._by_index.get(index)
        if files is None:
            raise IndexError(f"{self.path} has no frame {index}")
        return self._load(files)

    def stream_times(self, index: int) -> tuple[float | None, float | None]:
        """(colour, depth) timestamps in seconds of frame `index`, (None, None) for an unknown index."""
        files = self._by_index.get(index)
        if files is None:
            return None, None
        depth_t = files.timestamp if files.depth_timestamp is None else files.depth_timestamp
        return files.timestamp, depth_t

    def _check_size(self, image: np.ndarray, path: Path) -> None:
        layout = self._layout
        assert layout is not None
        h, w = image.shape[:2]
        if (w, h) != (layout.width, layout.height):
            raise UserError(
                f"The image '{path}' is {w}x{h} but the recording '{self.path}' is "
                f"{layout.width}x{layout.height}."
            )

    def _load(self, files: FrameFiles) -> Frame:
        layout = self._layout
        assert layout is not None
        size = (layout.width, layout.height)
        color = read_color(files.color, size)
        self._check_size(color, files.color)
        depth_raw = read_depth(files.depth, size)
        self._check_size(depth_raw, files.depth)
        alpha = None
        if files.alpha is not None and self.load_alpha:
            alpha = read_alpha(files.alpha, size)
            self._check_size(alpha, files.alpha)
        return Frame(
            color=color,
            depth_raw=depth_raw,
            depth_scale=layout.depth_scale,
            timestamp=files.timestamp,
            index=files.index,
            intrinsics=layout.intrinsics,
            alpha=alpha,
        )


def without_ground_truth(source: Source) -> Source:
    """`source` with ground-truth alpha files left unopened (`ImageFolderSource.load_alpha = False`; other
    sources have none): for everything that is not an evaluation, which must neither see the truth nor
    spend time decoding it, nor stop on a damaged alpha file. Returns `source`."""
    if isinstance(source, ImageFolderSource):
        source.load_alpha = False
    return source


def list_images(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files in `folder` with one of `extensions` (lower-case, with dot), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
