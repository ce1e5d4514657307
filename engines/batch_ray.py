"""Many recordings on a Ray cluster (`main.py process ... --ray auto|local|ADDRESS`): one Ray task per
recording, at most `BatchConfig.workers` in flight (0: as many as the cluster has CPUs).

Ray is optional: it is imported here only, when a batch asks for it; without it, or with an address
that does not answer, the batch stops with one sentence (`UserError`) before any work. Each task
runs `engines.batch_many.JobRunner.run` in a Ray worker process; the runner is kept in that process
(one per thread count), so its matting networks are loaded once per worker and reused by every later
task there. A recording is one task (not chunks of frames): its background prior is built once in
that task, and the temporal state of the pipeline sees the frames in order, which keeps the files
identical to a run on that input alone. Tasks whose worker process dies are retried once by Ray.
Progress travels through a `ray.util.queue.Queue` (small tuples, at most four a second per task).

Outputs are written by the workers: on a cluster of several machines the input and output paths
must be the same on every node (shared storage), and the project must be importable there (the same
checkout and virtual environment at the same path).
"""

from __future__ import annotations

import logging
import os
import socket
from engines.batch_many import BatchConfig, BatchJob, JobOutcome, JobProgress, JobRunner, Listeners, finished
from engines.config import EngineConfig
from sensors.errors import UserError

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # a local instance started here: jobs pass paths, not frames
CONNECT_TIMEOUT_S = 5.0

_runners: dict[int, JobRunner] = {}  # in a Ray worker process: its runner per thread count (kept between tasks)


def import_ray():
    """The `ray` module, or UserError (exit code 2) with the command that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray, which is not installed here: install it with "
                        "'.venv/bin/pip install ray==2.60.0', or leave out --ray to use this machine's cores.", 2) \
            from None
    return ray


def _check_reachable(address: str) -> None:
    """A quick TCP connect to HOST:PORT (Ray itself retries for minutes); UserError if nothing answers."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"'{address}' is not a Ray address: give auto, local, HOST:PORT (the head's GCS port, "
                        "usually 6379) or ray://HOST:10001.", 2)
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UserError(f"Cannot reach the Ray cluster at '{address}' ({error.strerror or error}): start it with "
                        f"'ray start --head' on that machine, or check the address and port.", 1) from None


def connect(ray, address: str) -> bool:
    """Join the cluster `address` names; True when this call started Ray (the caller shuts it down).

    "auto": a cluster this machine knows (RAY_ADDRESS, or one started with `ray start`), else a new
    local instance; "local": always a new local instance; otherwise an address that must answer.
    UserError (one sentence) when the address is malformed, does not answer or refuses this driver.
    """
    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)  # Ray's notices stay out of the terminal
    if address not in ("auto", "local"):
        _check_reachable(address)
    elif address == "auto" and os.environ.get("RAY_ADDRESS"):
        _check_reachable(os.environ["RAY_ADDRESS"])
    try:
        if address in ("auto", "local"):
            try:
                ray.init(address="local" if address == "local" else None,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
            except ValueError:  # "auto" found a cluster: a connecting driver may not size its object store
                ray.init(**options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError) as error:
        shown = os.environ.get("RAY_ADDRESS", address) if address == "auto" else address
        raise UserError(_join_error(shown, error), 1) from None
    return True


def _join_error(address: str, error: BaseException) -> str:
    causes, cause = [], error
    while cause is not None:
        causes.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if any("InvalidAuthToken" in text or "Authentication token" in text for text in causes):
        return (f"The Ray cluster at '{address}' wants an authentication token: run with RAY_AUTH_MODE=token and the "
                "cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN).")
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return f"Cannot join the Ray cluster at '{address}': {first.rstrip('.')}."


def _run_task(index: int, job: BatchJob, engine: EngineConfig, threads: int, progress) -> JobOutcome:
    """One recording in a Ray worker process (see the module docstring)."""
    import ray

    runner = _runners.get(threads)
    if runner is None:
        runner = _runners[threads] = JobRunner(threads)
    outcome = runner.run(index, job, engine, lambda *event: progress.put_nowait(event))
    outcome.worker = f"{ray.util.get_node_ip_address()} {outcome.worker}"
    return outcome


def run_on_ray(jobs: list[BatchJob], engine: EngineConfig, config: BatchConfig,
               listeners: Listeners = Listeners()) -> list[JobOutcome]:
    """`engines.batch_many.run_jobs` on Ray: one `JobOutcome` per job, in job order."""
    ray = import_ray()
    started_here = connect(ray, config.ray_address or "auto")
    in_flight: dict = {}
    try:
        from ray.util.queue import Queue

        progress = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(num_cpus=1, max_retries=1)(_run_task)
        limit = config.workers if config.workers > 0 else max(int(ray.cluster_resources().get("CPU", 1)), 1)
        outcomes: list[JobOutcome | None] = [None] * len(jobs)
        next_job = 0
        while in_flight or next_job < len(jobs):
            while next_job < len(jobs) and len(in_flight) < limit:  # a window, so 1000 jobs queue no more than `limit`
                ref = task.remote(next_job, jobs[next_job], engine, config.threads_per_worker, progress)
                in_flight[ref] = next_job
                next_job += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.2)
            _drain(progress, listeners.on_progress)
            for ref in ready:
                finished(_outcome_of(ray, ref, in_flight.pop(ref)), outcomes, listeners)
        _drain(progress, listeners.on_progress)
        return outcomes
    except BaseException:
        for ref in in_flight:  # Ctrl-C: stop the running recordings too
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


def _outcome_of(ray, ref, index: int) -> JobOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return JobOutcome(index, error=f"The Ray worker running it failed ({type(error).__name__}: {first}).",
                          exit_code=1)


def _drain(progress, on_progress: JobProgress | None) -> None:
    size = progress.qsize()
    if size and on_progress:
        for event in progress.get_nowait_batch(size):
            on_progress(*event)
    elif size:
        progress.get_nowait_batch(size)
