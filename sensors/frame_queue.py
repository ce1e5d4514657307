"""`FrameQueue`: a reader thread that pulls frames from a `Source` into a small bounded queue.

    with FrameQueue(open_source(uri), mode="latest") as frames:
        for frame in frames:          # or frames.get(timeout=...)
            ...

Modes: "latest" (live cameras) drops the OLDEST queued frame when the queue is full, so the
consumer always gets recent frames, and counts the drops; "every" (batch processing of files)
makes the reader wait for room instead, so no frame is lost. `pace=True` releases frames at the
source's fps (file preview at recording speed).

Every frame gets `host_time = time.monotonic()` when it is captured (unless the source set one);
`stats()` reports counts and the capture-to-consume latency. An exception raised by the source
is re-raised by `get` after the frames queued before it. The queue owns the source: the reader
thread closes it when it ends. `close()` (also called by the context manager, including on
Ctrl-C) stops the thread within its timeout even if the consumer stopped reading.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator

from sensors.frame import Frame
from sensors.image_io import without_ground_truth
from sensors.source import Source, SourceInfo, open_source

log = logging.getLogger(__name__)

MODES = ("latest", "every")
LATENCY_WINDOW = 30  # frames in the running latency median
_WAIT_S = 0.1  # longest single wait of the reader on a full queue (it is also woken by close/get)


@dataclass(frozen=True)
class QueueStats:
    """Counts since start and latency (ms, capture to `get`); latency is None before the first frame."""

    received: int  # frames read from the source
    delivered: int  # frames returned by get()
    dropped: int  # frames discarded because the queue was full ("latest" mode)
    latency_ms_last: float | None
    latency_ms_median: float | None  # median of the last LATENCY_WINDOW frames
    running: bool  # the reader thread is alive
    error: str | None  # the source's exception, as text, once it has raised one


class FrameQueue:
    """Reads `source` on a daemon thread into a queue of at most `maxsize` frames.

    mode: "latest" (drop the oldest frame when full) or "every" (the reader waits when full).
    pace: release frames no faster than `source.info.fps`.
    skip_below: frames whose index is below it are neither paced nor queued (a recording's empty-scene
    frames once its background is captured), nor decoded where the source can skip (`Source.skip_to`);
    may be changed while the reader runs: frames queued before are then not delivered either.
    """

    def __init__(self, source: Source, maxsize: int = 2, mode: str = "latest", pace: bool = False,
                 skip_below: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.source = source
        self.maxsize = maxsize
        self.mode = mode
        self.pace = pace
        self.skip_below = skip_below
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False  # the reader has stopped: end of stream, error or close
        self._error: BaseException | None = None
        self._error_text: str | None = None
        self._closed = False
        self._received = 0
        self._delivered = 0
        self._dropped = 0
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> SourceInfo:
        """Open the source (in this thread, so its errors raise here) and start the reader."""
        if self._closed:
            raise RuntimeError("FrameQueue is closed")
        info = self.source.open()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="FrameQueue-reader", daemon=True)
            self._thread.start()
        return info

    def close(self, timeout: float = 1.0) -> None:
        """Stop the reader (waiting up to `timeout` s for it) and drop queued frames. Safe to call twice."""
        self._closed = True
        self._stop.set()
        with self._cond:
            self._frames.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            self.source.close()
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("frame reader still blocked in the source after %.1f s; it will stop when the source returns",
                        timeout)

    def __enter__(self) -> "FrameQueue":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- consumer -------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None at the end of the stream (or after close).

        Blocks up to `timeout` seconds (None: until a frame or the end) and raises TimeoutError
        when none came. Re-raises the source's exception once the frames read before it are consumed.
        """
        if self._thread is None and not self._closed:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._drop_skipped():
                if self._closed:
                    return None
                if self._finished:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no frame within {timeout} s")
                self._cond.wait(remaining)
            frame = self._frames.popleft()
            self._delivered += 1
            self._latencies_ms.append((time.monotonic() - frame.host_time) * 1000.0)
            self._cond.notify_all()  # room for a waiting reader
            return frame

    def _drop_skipped(self) -> bool:
        """Under the lock: drop queued frames below `skip_below` (queued before it was raised); any left?"""
        skipped = False
        while self._frames and self._frames[0].index < self.skip_below:
            self._frames.popleft()
            skipped = True
        if skipped:
            self._cond.notify_all()  # room for a waiting reader
        return bool(self._frames)

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.get()) is not None:
            yield frame

    def qsize(self) -> int:
        """Frames waiting in the queue now."""
        with self._cond:
            return len(self._frames)

    def stats(self) -> QueueStats:
        with self._cond:
            latencies = list(self._latencies_ms)
            return QueueStats(
                received=self._received,
                delivered=self._delivered,
                dropped=self._dropped,
                latency_ms_last=latencies[-1] if latencies else None,
                latency_ms_median=statistics.median(latencies) if latencies else None,
                running=self._thread is not None and self._thread.is_alive(),
                error=self._error_text,
            )

    # -- reader thread --------------------------------------------------------------------------
    def _run(self) -> None:
        fps = self.source.info.fps  # start() opened the source
        period = 1.0 / fps if self.pace and fps > 0 else 0.0
        next_release = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.skip_below:
                    self.source.skip_to(self.skip_below)  # a recording's empty-scene frames: not even decoded
                frame = self.source.read()
                if frame is None or self._stop.is_set():
                    break
                if frame.index < self.skip_below:
                    continue
                if period:
                    if self._stop.wait(max(0.0, next_release - time.monotonic())):
                        break
                    # After a stall, restart the schedule from now rather than bursting to catch up.
                    next_release = max(next_release + period, time.monotonic())
                if not frame.host_time:
                    frame.host_time = time.monotonic()
                if not self._put(frame):
                    break
        except Exception as exc:  # handed to the consumer by get()
            log.debug("frame source raised", exc_info=True)
            with self._cond:
                self._error = exc
                self._error_text = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                self.source.close()
            except Exception:
                log.warning("closing the frame source failed", exc_info=True)
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _put(self, frame: Frame) -> bool:
        """Queue `frame` by the mode's rule; False if the queue was closed while waiting for room."""
        with self._cond:
            self._received += 1
            if self.mode == "latest":
                while len(self._frames) >= self.maxsize:
                    self._frames.popleft()
                    self._dropped += 1
            else:
                while len(self._frames) >= self.maxsize:
                    if self._stop.is_set():
                        return False
                    self._cond.wait(_WAIT_S)
            if self._stop.is_set():
                return False
            self._frames.append(frame)
            self._cond.notify_all()
            return True


def open_frame_queue(uri: str, pace_recordings: bool = True, skip_below: int = 0) -> tuple[FrameQueue, SourceInfo]:
    """Open the source `uri` and start its reader, as a live preview wants it: latest-frame semantics for
    cameras, every frame for recordings (released at the recording's fps when `pace_recordings`).

    Raises what `open_source` / `Source.open` raise (`UserError` for what the user can fix); the
    source is closed again when starting fails.
    """
    source = without_ground_truth(open_source(uri))  # a preview never shows it: ~1.5 ms a frame not decoded
    try:
        info = source.open()
        frames = FrameQueue(source, maxsize=2, mode="latest" if info.live else "every",
                            pace=not info.live and pace_recordings, skip_below=skip_below)
        frames.start()
    except BaseException:
        source.close()
        raise
    return frames, info
