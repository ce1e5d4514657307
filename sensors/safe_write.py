"""Output files that are never left half-written, and file-system errors as one sentence.

`atomic_write_bytes(path, data)` writes to a hidden temporary file in the same folder
(`.NAME.<random>.tmp`) and renames it over `path` (`os.replace`): a reader, a crash, SIGKILL or a
full disk sees either the old file or the complete new one, never a 0-byte or truncated file. An
existing symbolic link at `path` is replaced by the file, never followed. Data is not fsync'ed (a
power cut may still lose recent files; a killed process does not).

`AppendOnlyCsv` is a CSV table written the same way: the header replaces any old file atomically,
then each row is appended with a single `write()`, so a killed run leaves whole rows only.

Every `OSError` becomes a `UserError` (exit 1) whose one sentence names the path and the cause in
words (`os_error_sentence`).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from pathlib import Path

from sensors.errors import UserError

TEMP_SUFFIX = ".tmp"
# The calls that create files and put bytes in them (tests replace them to simulate a full disk,
# a read-only mount or a permission problem, which root does not see).
_os_open = os.open
_OUR_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # the names _temp_name gives
_os_write = os.write

_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENOENT: "its folder does not exist",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file would be too large for this file system",
}


def os_error_sentence(doing: str, path: Path | str, exc: OSError) -> str:
    """'Cannot write 'out/alpha/000006.png': the disk is full (No space left on device).'"""
    cause = _CAUSES.get(exc.errno or -1)
    detail = exc.strerror or str(exc) or type(exc).__name__
    reason = f"{cause} ({detail})" if cause else detail
    return f"Cannot {doing} '{path}': {reason}."


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename (see the module)."""
    path = Path(path)
    tmp = _temp_name(path)
    fd = -1
    try:
        # 0o666 & ~umask like an ordinary file; O_EXCL|O_NOFOLLOW: never an existing file or link.
        fd = _os_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        view = memoryview(data).cast("B")
        while view:
            written = _os_write(fd, view)
            view = view[written:]
        closing, fd = fd, -1  # forget it first: a signal between the two must not close it twice
        os.close(closing)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise UserError(os_error_sentence("write", path, exc)) from exc
    finally:  # also on KeyboardInterrupt / SIGTERM: no temporary file is left behind
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files a killed run left in `folder` (`.NAME.<hex>.tmp`); how many were removed."""
    removed = 0
    try:
        for entry in folder.glob(f".*{TEMP_SUFFIX}"):
            if _OUR_TEMP.match(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink()
                removed += 1
    except OSError:
        pass
    return removed


def prepare_output_folder(folder: Path, root: Path | None = None) -> None:
    """Create `folder` (and parents) and check a file can be written in it; UserError (exit 1) if not.

    When `root` is given, `folder` must not be a symbolic link that leads out of `root`.
    """
    try:
        if root is not None and folder.is_symlink():
            target = folder.resolve()
            if not target.is_relative_to(root.resolve()):
                raise UserError(f"'{folder}' is a link to '{target}', outside '{root}': "
                                "remove the link or choose another output folder.")
        if folder.exists() and not folder.is_dir():
            raise UserError(f"Cannot write into '{folder}': it is a file, not a folder; choose another output folder.")
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(os_error_sentence("create the folder", folder, exc)) from exc
    remove_stale_temps(folder)
    probe = _temp_name(folder / "write-test")
    try:
        fd = _os_open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(os_error_sentence("write into", folder, exc)) from exc


class AppendOnlyCsv:
    """A CSV file written header-first (atomically) and then one whole row per `write()` call."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        atomic_write_bytes(path, (",".join(header) + "\n").encode())
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise UserError(os_error_sentence("write", path, exc)) from exc

    def write(self, row: list[object]) -> None:
        line = (",".join("" if v is None else str(v) for v in row) + "\n").encode()
        try:
            written = _os_write(self._fd, line)
            if written != len(line):  # a partial row (disk full): cut it off again
                os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - written)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            raise UserError(os_error_sentence("write", self.path, exc)) from exc

    def close(self) -> None:
        if self._fd >= 0:
            closing, self._fd = self._fd, -1
            os.close(closing)
