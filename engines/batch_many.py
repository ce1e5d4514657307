"""Many recordings at once (`main.py process` with several inputs): the jobs, and running them on
this machine, one after another or in a pool of worker processes.

Each `BatchJob` is one recording with its own background (its own `ProcessOptions`) and its own
output folder; it is matted by `engines.batch.process_recording` exactly as a run on that input
alone would, so the files are identical whichever way the jobs are spread. A worker (`JobRunner`)
keeps one `MattingPipeline` per engine configuration, so the networks are loaded once per worker
process, not once per recording.

`run_jobs` spreads the jobs: in this process when one worker is asked for (or there is one job), else
over a pool of `workers` processes (started with "spawn": each has its own onnxruntime session and
`threads_per_worker` OpenCV threads); `engines.batch_ray.run_on_ray` spreads the same jobs over Ray.
A job that fails becomes a `JobOutcome` with the error's sentence; the others go on. Progress arrives through callbacks (nothing here prints): per-job
matted-frame counts as they grow, each job's outcome as it finishes. Only small job descriptions
are queued, so memory does not grow with the number of jobs.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Callable

from engines.batch import ProcessOptions, ProcessSummary, process_recording
from engines.config import EngineConfig
from sensors.errors import UserError

JobProgress = Callable[[int, int, "int | None"], None]  # (job index, frames matted so far, frames in all or None)
REPORT_EVERY_S = 0.25  # a worker reports a job's frame count at most this often (and at its last frame)


@dataclass(frozen=True)
class BatchJob:
    """One recording of a batch: its path (or URI), its output folder, how its background is built."""

    input_path: str
    out_dir: Path
    options: ProcessOptions


@dataclass(frozen=True)
class BatchConfig:
    """How the jobs are spread.

    workers: recordings matted at the same time (processes here, or Ray tasks); 1 = in this process.
    threads_per_worker: OpenCV threads in each worker process (cores / workers avoids oversubscription).
    ray_address: None runs on this machine; "auto" (Ray's own choice: a running cluster, else a local
    one) or a cluster address ("HOST:6379", "ray://HOST:10001") runs one Ray task per recording.
    """

    workers: int = 1
    threads_per_worker: int = 1
    ray_address: str | None = None


@dataclass(frozen=True)
class Listeners:
    """Where a batch reports: frame counts per job as they grow, and each job's outcome when it ends."""

    on_progress: JobProgress | None = None
    on_outcome: Callable[["JobOutcome"], None] | None = None


@dataclass
class JobOutcome:
    """How one job ended: `summary` when it worked, else `error` (one sentence) and `exit_code`."""

    job: int  # index into the job list
    summary: ProcessSummary | None = None
    error: str | None = None
    exit_code: int = 0
    detail: str = ""  # the traceback of an unexpected error (shown with --debug)
    worker: str = field(default="", compare=False)  # where it ran: "pid 1234" or a Ray node
    pipelines_built: int = field(default=0, compare=False)  # pipelines (network loads) its worker had built by then

    @property
    def ok(self) -> bool:
        return self.error is None


class JobRunner:
    """Runs jobs one after another in one process, reusing one `MattingPipeline` per `EngineConfig`.

    threads: OpenCV's thread count for this process (None leaves it alone, for the calling process).
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None:
            import cv2

            cv2.setNumThreads(int(threads))
        self._pipelines: dict[EngineConfig, object] = {}
        self.built = 0  # pipelines built so far (each loads its networks once)

    def pipeline(self, engine: EngineConfig):
        """The pipeline for `engine`, built on first use (loading its networks); UserError if it cannot run."""
        if engine not in self._pipelines:
            from engines.matting.pipeline import MattingPipeline

            self._pipelines[engine] = MattingPipeline(engine)
            self.built += 1
        return self._pipelines[engine]

    def run(self, index: int, job: BatchJob, engine: EngineConfig, report: JobProgress | None = None) -> JobOutcome:
        """Process one job; every error becomes the outcome's sentence (KeyboardInterrupt still stops)."""
        import os

        throttle = _Throttle(index, report) if report is not None else None
        try:
            summary = process_recording(job.input_path, job.out_dir, engine, job.options, throttle,
                                        self.pipeline(engine))
            outcome = JobOutcome(index, summary)
        except UserError as error:
            outcome = JobOutcome(index, error=str(error), exit_code=error.exit_code)
        except Exception as error:  # one recording's bug or bad data must not stop the others
            outcome = JobOutcome(index, error=f"unexpected {type(error).__name__}: {error}", exit_code=1,
                                 detail=traceback.format_exc())
        outcome.worker, outcome.pipelines_built = f"pid {os.getpid()}", self.built
        return outcome


class _Throttle:
    """`process_recording`'s progress callback, passing matted-frame counts on at most every REPORT_EVERY_S."""

    def __init__(self, index: int, report: JobProgress) -> None:
        self.index, self.report, self.last = index, report, 0.0

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage != "matting":
            return
        now = time.monotonic()
        if done == total or now - self.last >= REPORT_EVERY_S:
            self.last = now
            self.report(self.index, done, total)


def expected_frames(job: BatchJob) -> int | None:
    """Frames `job` will matte, from its recording's header (None when unknown or unreadable here).

    Only folder recordings are looked at (a header read); files such as .bag would need their SDK to
    open them, which for hundreds of takes would delay the start: their totals come with their first
    progress report instead.
    """
    from sensors.image_io import without_ground_truth
    from sensors.source import open_source

    if not Path(job.input_path).is_dir():
        return None
    try:
        with without_ground_truth(open_source(job.input_path)) as source:
            info = source.info
    except Exception:  # the worker reports the real problem; a guess is all that is needed here
        return None
    if info.frame_count is None:
        return None
    if job.options.prior_path or job.options.background_path:
        return info.frame_count
    return max(info.frame_count - (job.options.background_frames or info.background_frames or 0), 0)


def run_jobs(jobs: list[BatchJob], engine: EngineConfig, config: BatchConfig,
             listeners: Listeners = Listeners()) -> list[JobOutcome]:
    """Process every job on this machine (module docstring); one `JobOutcome` per job, in job order.

    Each job's problems are in its outcome; KeyboardInterrupt stops the workers and propagates.
    `config.ray_address` is not looked at here: `engines.batch_ray.run_on_ray` is the Ray runner.
    """
    if config.workers <= 1 or len(jobs) <= 1:
        return _run_here(jobs, engine, listeners)
    return _run_in_pool(jobs, engine, config, listeners)


def finished(outcome: JobOutcome, outcomes: list, listeners: Listeners) -> None:
    """Put `outcome` in its place in `outcomes` and tell the listener."""
    outcomes[outcome.job] = outcome
    if listeners.on_outcome:
        listeners.on_outcome(outcome)


def _run_here(jobs, engine, listeners: Listeners) -> list[JobOutcome]:
    runner = JobRunner()
    outcomes: list[JobOutcome | None] = [None] * len(jobs)
    for index, job in enumerate(jobs):
        finished(runner.run(index, job, engine, listeners.on_progress), outcomes, listeners)
    return outcomes


# -- the process pool ---------------------------------------------------------------------------------
_worker: tuple[JobRunner, EngineConfig, object] | None = None  # this worker process's runner (set by _start_worker)


def _start_worker(engine: EngineConfig, threads: int, progress_queue) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    _worker = (JobRunner(threads), engine, progress_queue)


def _run_in_worker(index: int, job: BatchJob) -> JobOutcome:
    runner, engine, progress_queue = _worker
    return runner.run(index, job, engine, lambda *event: progress_queue.put(event))


def _run_in_pool(jobs, engine, config: BatchConfig, listeners: Listeners) -> list[JobOutcome]:
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent; same on every OS
    progress_queue = context.Queue()
    workers = min(config.workers, len(jobs))
    outcomes: list[JobOutcome | None] = [None] * len(jobs)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(engine, config.threads_per_worker, progress_queue))
    try:
        futures: dict[Future, int] = {pool.submit(_run_in_worker, i, job): i for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress_queue, listeners.on_progress)
            for future in done:
                finished(_outcome_of(future, futures[future]), outcomes, listeners)
        _drain(progress_queue, listeners.on_progress)
    except BaseException:  # Ctrl-C, SIGTERM: stop the workers now, not after their current recording
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public way before 3.14
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return outcomes


def _outcome_of(future: Future, index: int) -> JobOutcome:
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, BrokenProcessPool):
        return JobOutcome(index, error="A worker process stopped unexpectedly (killed, or out of memory?) while "
                                       "this recording was queued or running.", exit_code=1)
    return JobOutcome(index, error=f"unexpected {type(error).__name__}: {error}", exit_code=1)


def _drain(progress_queue, on_progress: JobProgress | None) -> None:
    while True:
        try:
            event = progress_queue.get_nowait()
        except Empty:
            return
        if on_progress:
            on_progress(*event)
