"""Throughput of batch processing (`main.py bench-batch`): frames per second through `main.py process`'s
batch path for 1, 2, ... workers on this machine (in this process, then a process pool) and on a
local Ray instance, on generated recordings (`engines.synth`); plus peak memory with few and with
many recordings queued.

Each run mattes the same jobs into its own folder and is checked byte for byte against the serial
run. Times are wall-clock for the whole batch, including starting the worker processes and loading
the models in each; the start of the local Ray instance itself is timed apart (a cluster is started
once and kept). "CPU cores used" is the CPU time of this process and its worker processes per
wall-clock second: on a machine shared with other jobs it shows how much of the cores the batch got
(Ray's workers are not this process's children, so their rows have none). Memory runs each happen
in a fresh process (so their peaks are their own): the peak resident size of that driver process and
of its largest worker process, from `getrusage`.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from engines.batch import ProcessOptions
from engines.batch_many import BatchConfig, BatchJob, Listeners, run_jobs
from engines.config import EngineConfig


@dataclass(frozen=True)
class ThroughputConfig:
    """What `throughput_benchmark` generates and runs. Sizes in pixels; memory_inputs: queued recordings."""

    recordings: int = 2  # distinct generated scenes; the batch's inputs take them in turn
    inputs: int = 8  # recordings in each timed batch
    test_frames: int = 30
    background_frames: int = 10
    width: int = 640
    height: int = 480
    workers: tuple[int, ...] = (1, 2)
    ray: bool = True
    memory_inputs: tuple[int, ...] = (2, 20)
    memory_workers: int = 2
    seed: int = 0


@dataclass(frozen=True)
class ThroughputRow:
    runner: str  # "this process", "process pool", "Ray (local)"
    workers: int
    frames: int
    seconds: float  # the whole batch, wall clock
    first_frame_s: float  # until the first matted frame was reported (worker start, model and prior)
    steady_fps: float  # frames per second from the first report to the end
    identical: bool  # every output file equal to the serial run's
    cpu_share: float | None  # CPU seconds of this process and its workers per wall second (None: Ray's workers)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class MemoryRow:
    inputs: int
    workers: int
    frames: int
    driver_peak_mb: float
    worker_peak_mb: float


@dataclass
class ThroughputReport:
    rows: list[ThroughputRow]
    memory: list[MemoryRow]
    ray_start_s: float | None  # starting the local Ray instance (not in the rows' times)
    cores: int
    load: tuple[float, float]  # the machine's 1-minute load average before and after (other jobs included)


def make_recordings(config: ThroughputConfig, root: Path) -> list[Path]:
    """`config.recordings` synthetic rgbd-folder recordings (seeds seed, seed+1, ...) under root/recordings/."""
    from engines.synth.scene import SceneConfig, write_scene

    paths = []
    for i in range(config.recordings):
        scene = SceneConfig(width=config.width, height=config.height, n_background=config.background_frames,
                            n_test=config.test_frames, seed=config.seed + i)
        paths.append(write_scene(scene, root / "recordings" / f"cam{i:02d}"))
    return paths


def _jobs(paths: list[Path], out: Path, count: int) -> list[BatchJob]:
    options = ProcessOptions(record_run=True, accept_background=True)
    return [BatchJob(str(paths[i % len(paths)]), out / f"job{i:03d}", options) for i in range(count)]


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class _Timing:
    frames: int
    seconds: float
    first_frame_s: float
    steady_fps: float
    cpu_seconds: float  # this process and its finished child processes (not Ray's workers)


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(jobs: list[BatchJob], engine: EngineConfig, config: BatchConfig) -> _Timing:
    done: dict[int, int] = {}
    first: list[tuple[float, int]] = []  # (time, frames done) at the first progress report

    def on_progress(job: int, frames: int, total: int | None) -> None:
        done[job] = frames
        if not first:
            first.append((time.perf_counter(), sum(done.values())))

    cpu_before, started = _cpu_seconds(), time.perf_counter()
    if config.ray_address is not None:
        from engines.batch_ray import run_on_ray

        outcomes = run_on_ray(jobs, engine, config, Listeners(on_progress))
    else:
        outcomes = run_jobs(jobs, engine, config, Listeners(on_progress))
    ended = time.perf_counter()
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"benchmark job failed: {failed[0]}")
    frames = sum(o.summary.frames for o in outcomes)
    at, before = first[0] if first else (started, 0)
    return _Timing(frames, ended - started, at - started, (frames - before) / max(ended - at, 1e-9),
                   _cpu_seconds() - cpu_before)


def throughput_benchmark(config: ThroughputConfig, engine: EngineConfig, root: Path, cores: int) -> ThroughputReport:
    """Generate the recordings under `root`, run every configuration, measure (module docstring).

    cores: CPU cores to share among the pool's workers (OpenCV threads per worker = cores // workers).
    Raises RuntimeError if a job fails; UserError if Ray is asked for and missing.
    """
    paths = make_recordings(config, root)
    load_before = os.getloadavg()[0]
    rows: list[ThroughputRow] = []
    reference = None
    for workers in config.workers:
        out = root / f"pool-{workers}"
        batch = BatchConfig(workers=workers, threads_per_worker=max(cores // workers, 1))
        timing = _timed(_jobs(paths, out, config.inputs), engine, batch)
        reference = reference or _digest(out)
        rows.append(ThroughputRow("this process" if workers == 1 else "process pool", workers, timing.frames,
                                  timing.seconds, timing.first_frame_s, timing.steady_fps, _digest(out) == reference,
                                  timing.cpu_seconds / timing.seconds))
    ray_start = None
    if config.ray:
        from engines.batch_ray import import_ray

        ray = import_ray()
        started = time.perf_counter()
        ray.init(num_cpus=max(config.workers), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, object_store_memory=100 * 1024**2)
        ray_start = time.perf_counter() - started
        try:
            for workers in config.workers:
                out = root / f"ray-{workers}"
                timing = _timed(_jobs(paths, out, config.inputs), engine, BatchConfig(workers=workers, ray_address="auto"))
                rows.append(ThroughputRow("Ray (local)", workers, timing.frames, timing.seconds, timing.first_frame_s,
                                          timing.steady_fps, _digest(out) == reference, None))
        finally:
            ray.shutdown()
    memory = [_memory_run(paths, root / f"memory-{n}", n, engine, config.memory_workers, cores)
              for n in config.memory_inputs]
    return ThroughputReport(rows, memory, ray_start, cores, (load_before, os.getloadavg()[0]))


def _measure(paths, out, inputs, engine, workers, cores, results) -> None:
    batch = BatchConfig(workers=workers, threads_per_worker=max(cores // workers, 1))
    frames = _timed(_jobs(paths, out, inputs), engine, batch).frames
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest finished worker
    results.put((frames, own / 1024, children / 1024))


def _memory_run(paths, out, inputs, engine, workers, cores) -> MemoryRow:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_measure, args=(paths, out, inputs, engine, workers, cores, results))
    process.start()
    frames, driver_mb, worker_mb = results.get()
    process.join()
    return MemoryRow(inputs, workers, frames, driver_mb, worker_mb)


def _cpu_columns(row: ThroughputRow) -> str:
    if row.cpu_share is None:
        return "- | -"
    return f"{row.cpu_share:.2f} | {row.cpu_share * row.seconds / max(row.frames, 1) * 1e3:.0f}"


def format_report(report: ThroughputReport, config: ThroughputConfig, engine: EngineConfig) -> str:
    """The tables `main.py bench-batch` prints (Markdown)."""
    lines = [f"{config.inputs} inputs ({config.recordings} generated recordings in turn) x {config.test_frames} frames "
             f"at {config.width}x{config.height} (+{config.background_frames} background frames each), mode "
             f"{engine.mode}, {report.cores} CPU cores (load average {report.load[0]:.1f} before, "
             f"{report.load[1]:.1f} after: other jobs share them):", "",
             "| runner | workers | frames | seconds | frames/s | vs 1 worker | first frame after (s) | frames/s after it "
             "| CPU cores used | CPU ms per frame | same bytes as serial |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    firsts: dict[bool, float] = {}  # the first row of this machine's runs and of Ray's: their 1-worker rate
    for row in report.rows:
        one = firsts.setdefault(row.runner.startswith("Ray"), row.fps)
        lines.append(f"| {row.runner} | {row.workers} | {row.frames} | {row.seconds:.2f} | {row.fps:.1f} | "
                     f"{row.fps / one if one else 0:.2f}x | {row.first_frame_s:.2f} | {row.steady_fps:.1f} | "
                     f"{_cpu_columns(row)} | {'yes' if row.identical else 'NO'} |")
    if report.ray_start_s is not None:
        lines.append(f"\nStarting the local Ray instance took {report.ray_start_s:.1f} s (not in the times above).")
    lines += ["", "| recordings queued | workers | frames | driver peak RSS (MB) | largest worker peak RSS (MB) |",
              "|---|---|---|---|---|"]
    lines += [f"| {m.inputs} | {m.workers} | {m.frames} | {m.driver_peak_mb:.0f} | {m.worker_peak_mb:.0f} |"
              for m in report.memory]
    return "\n".join(lines)
