"""Best-effort post-matting on its own thread, so the live path never waits for it.

`PostMattingWorker` owns a `threading.Thread` (daemon) and the `engines.post_matting.PostMattingStage`
it runs. The engine thread `submit`s a `PostJob` after each matted frame; the worker keeps only the
newest pending job (a newer one replaces it, counted in `dropped`), refines its alpha and publishes a
`PostResult` that `latest()` returns. The thread runs at the lowest CPU priority (Linux), so it uses the
time the live threads leave. The arrays of a job are the engine's published snapshot arrays,
which are never modified, so the worker keeps references instead of copies; the live
`MattingResult` itself is not changed (the stage works on a shallow copy).

Thread safety: `submit`, `latest`, `set_prior`, `reset` and `stop` may be called from any thread and
never wait for a job. A prior change or `reset` drops the pending job and the published result, and
the result of a job already running is discarded. An exception in a job is logged and reported once
(consecutive repeats are not) through `on_error` as one sentence; the worker goes on with the next job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from app.events import describe
from engines.matting.background_prior import BackgroundPrior
from engines.config import DepthConfig, EngineConfig
from engines.matting.result import MattingResult
from engines.matting.post_matting import PostMatting, PostMattingStage, make_post_matting

log = logging.getLogger(__name__)

THREAD_NAME = "PostMatting"
# Niceness of the worker thread (Linux): the lowest, so post-matting takes only CPU time the live threads
# leave. On 2 busy cores this kept the live fps within ~10% of post-matting off (normal priority halved it),
# at the price of slow post frames there; with a spare core it runs at full speed anyway.
NICENESS = 19


@dataclass(frozen=True)
class PostJob:
    """One live frame to refine. color uint8 HxWx3 RGB, depth_m float32 HxW metres, result: its live matte."""

    seq: int
    frame_index: int
    color: np.ndarray
    depth_m: np.ndarray
    result: MattingResult


@dataclass(frozen=True)
class PostResult:
    """The refined alpha (float32 HxW in [0, 1]) of job `seq`, with the job's colour and depth for compositing."""

    seq: int
    frame_index: int
    alpha: np.ndarray
    ms: float  # trimap + backend, milliseconds
    color: np.ndarray
    depth_m: np.ndarray


class PostMattingWorker:
    """Latest-job-only post-matting thread; see the module docstring. `start()` once, `stop()` when done.

    backend: from `make_post_matting`; config: the engine's DepthConfig; band_px: the unknown band's
    extra width (EngineConfig.post_band_px). on_error(message): called from the worker thread.
    """

    def __init__(self, backend: PostMatting, config: DepthConfig, band_px: int = 0,
                 on_error: Callable[[str], None] | None = None) -> None:
        self._stage = PostMattingStage(backend, config, band_px=band_px)
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: PostJob | None = None
        self._prior: BackgroundPrior | None = None  # to apply before the next job
        self._generation = 0  # bumped by set_prior / reset: results of older jobs are discarded
        self._latest: PostResult | None = None
        self._dropped = 0
        self._busy = False
        self._last_error = ""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    @property
    def backend_name(self) -> str:
        return self._stage.backend.name

    @property
    def dropped(self) -> int:
        """Jobs replaced by a newer one before they ran."""
        return self._dropped

    @property
    def busy(self) -> bool:
        """A job is running or waiting."""
        with self._cond:
            return self._busy or self._pending is not None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop taking jobs; True when the thread ended within `timeout` (a running job's result is discarded)."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def submit(self, job: PostJob) -> None:
        """Queue `job` in place of any pending one; never waits for the running job."""
        with self._cond:
            if self._stopping:
                return
            if self._pending is not None:
                self._dropped += 1
            self._pending = job
            self._cond.notify()

    def latest(self) -> PostResult | None:
        return self._latest

    def set_prior(self, prior: BackgroundPrior) -> None:
        """Use `prior` from the next job on (its tables are built in the worker thread)."""
        with self._cond:
            self._prior = prior
            self._forget()
            self._cond.notify()

    def reset(self) -> None:
        """Forget the pending job and the published result (e.g. a new source was opened)."""
        with self._cond:
            self._forget()

    def _forget(self) -> None:
        self._pending = None
        self._latest = None
        self._generation += 1

    # -- worker thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        _lower_priority()
        while True:
            with self._cond:
                while not self._stopping and self._pending is None and self._prior is None:
                    self._cond.wait()
                if self._stopping:
                    return
                prior, self._prior = self._prior, None
                job, self._pending = self._pending, None
                generation = self._generation
                self._busy = True
            try:
                if prior is not None:
                    self._stage.set_prior(prior)
                result = self._refine(job) if job is not None else None
            except Exception as exc:  # one sentence for the user; the traceback goes to the log only
                log.exception("post-matting failed")
                self._report(f"Post-matting failed: {describe(exc)}")
                result = None
            with self._cond:
                self._busy = False
                if result is not None and not self._stopping and generation == self._generation:
                    self._latest = result
                    self._last_error = ""

    def _refine(self, job: PostJob) -> PostResult:
        start = time.perf_counter()
        # A shallow copy: the stage replaces alpha / trimap / timings on it, the live result stays as published.
        result = dataclasses.replace(job.result, timings_ms=dict(job.result.timings_ms))
        self._stage(result, job.color, job.depth_m)
        ms = (time.perf_counter() - start) * 1e3
        return PostResult(job.seq, job.frame_index, result.alpha, ms, job.color, job.depth_m)

    def _report(self, message: str) -> None:
        if message == self._last_error:
            return
        self._last_error = message
        if self._on_error is not None:
            try:
                self._on_error(message)
            except Exception:
                log.exception("reporting a post-matting error failed")


def _lower_priority() -> None:
    """Give the calling thread the lowest CPU priority (`NICENESS`) where the OS sets it per thread (Linux)."""
    if not sys.platform.startswith("linux"):  # elsewhere a thread id is not what setpriority takes
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except OSError:  # not allowed: keep the normal priority
        log.debug("could not lower the post-matting thread's priority", exc_info=True)


def make_post_worker(config: EngineConfig, on_error: Callable[[str], None] | None = None) -> PostMattingWorker:
    """A (not yet started) worker for `config.post` ("closed-form" | "vitmatte"); UserError if it cannot be built."""
    backend = make_post_matting(config.post, config.vitmatte_dir)
    return PostMattingWorker(backend, config.depth, band_px=config.post_band_px, on_error=on_error)
