"""Keeps native libraries' messages out of the user's terminal during headless commands.

libjpeg ("Corrupt JPEG data: ..."), libpng, OpenCV (`[ WARN:0@1.2] ...`) and the RealSense SDK write
straight to file descriptor 2, around the one sentence the program says about the same problem.
`native_messages_to(path)` points descriptor 2 at `path` (or nowhere) for the duration of a command
while Python's own `sys.stderr` (the program's sentences, warnings, logging) stays on the terminal;
on exit descriptor 2 is restored. `main.py --log FILE` keeps those messages and the program's debug
log in FILE; `--debug` leaves everything on the terminal.
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sensors.errors import UserError


def _real_stderr_fd() -> int | None:
    """The descriptor behind `sys.stderr`, or None when it is not a file (a test's capture)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@contextmanager
def native_messages_to(path: Path | None) -> Iterator[None]:
    """Within the block, whatever native code writes to descriptor 2 goes to `path` (appended; None:
    discarded); Python's `sys.stderr` keeps writing to the terminal. Raises UserError when `path`
    cannot be opened for writing."""
    try:
        target = os.open(path if path is not None else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as error:
        raise UserError(f"Cannot write the log file '{path}' ({error.strerror}): choose another --log path.", 2) from None
    sys.stderr.flush()
    saved_fd = os.dup(2)
    previous_stderr = sys.stderr
    if _real_stderr_fd() == 2:  # Python's stderr is descriptor 2 itself: give it its own copy of the terminal
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved_fd), "wb", buffering=0), encoding=previous_stderr.encoding,
                                      errors="backslashreplace", line_buffering=True, write_through=True)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        if sys.stderr is not previous_stderr:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = previous_stderr
        os.dup2(saved_fd, 2)
        os.close(saved_fd)


class _CurrentStderr:
    """A stream that writes to whatever `sys.stderr` is at the moment (it changes inside the block)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(debug: bool, log_path: Path | None) -> None:
    """Warnings (all records with `debug`) to the terminal's stderr; with `log_path`, every record down to
    debug level also appended to that file. Replaces handlers a previous call installed. Raises UserError
    (exit 2) when `log_path` cannot be opened."""
    import logging

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_native_log", False)]:
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(_CurrentStderr())
    console.setLevel(logging.DEBUG if debug else logging.WARNING)
    handlers: list[logging.Handler] = [console]
    if log_path is not None:
        try:
            handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
        except OSError as error:
            raise UserError(f"Cannot write the log file '{log_path}' ({error.strerror}): choose another --log path.",
                            2) from None
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._native_log = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug or log_path is not None else logging.WARNING)
