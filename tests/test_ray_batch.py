"""`main.py process ... --ray` (issue 19) on a local Ray instance with 2 CPUs: one task per recording
writes the same bytes as a serial run in this process; a failing input is reported without stopping
the others; each Ray worker process loads the matting networks once for all its recordings."""

from __future__ import annotations

import shutil

import pytest
import ray

from engines.batch import ProcessOptions
from engines.batch_many import BatchConfig, BatchJob
from engines.batch_ray import run_on_ray
from engines.config import EngineConfig
from tests.batch_recordings import BACKGROUND_FRAMES, assert_same_files, run_main, write_recording


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (starting one takes seconds); `--ray auto` joins it."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("recs")
    return [write_recording(root / name, seed) for seed, name in enumerate(("cam1", "cam2", "cam3", "cam4"))]


@pytest.mark.slow
def test_ray_tasks_write_the_same_bytes_as_a_serial_run(local_ray, recordings, tmp_path, capsys):
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    common = ["--save", "alpha,composite,foreground,trimap", "--smoothing", "0.4"]
    assert run_main("process", *recordings, "--out", serial, *common, "--workers", 1) == 0
    assert run_main("process", *recordings, "--out", on_ray, *common, "--ray", "auto", "--workers", 2) == 0
    assert "Processed 4 of 4 inputs" in capsys.readouterr().out
    assert_same_files(serial, on_ray)


@pytest.mark.slow
def test_a_failing_input_on_ray_is_reported_and_the_others_finish(local_ray, recordings, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(recordings[0], broken)
    (broken / "color" / f"{BACKGROUND_FRAMES + 1:06d}.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    assert run_main("process", broken, *recordings[1:3], "--out", out, "--ray", "auto") == 1
    captured = capsys.readouterr()
    assert "Processed 2 of 3 inputs (1 failed)" in captured.out and "Traceback" not in captured.err
    assert [line for line in captured.err.splitlines() if line.startswith("error:")][0].startswith(f"error: {broken}:")
    assert len(list((out / "cam2" / "alpha").iterdir())) == len(list((out / "cam3" / "alpha").iterdir())) > 0


@pytest.mark.slow
def test_each_ray_worker_loads_the_networks_once(local_ray, recordings, tmp_path):
    """dart mode (onnxruntime sessions): 4 recordings on 2 workers; a worker process builds the pipeline for
    its first recording only (workers kept from earlier tests may hold pipelines of other settings too)."""
    engine = EngineConfig(mode="dart", refine_patches=20)
    jobs = [BatchJob(str(path), tmp_path / path.name, ProcessOptions(record_run=True)) for path in recordings]
    outcomes = run_on_ray(jobs, engine, BatchConfig(workers=2, ray_address="auto"))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    by_worker: dict[str, set[int]] = {}
    for outcome in outcomes:  # a worker's count of built pipelines as each of its recordings ended
        by_worker.setdefault(outcome.worker, set()).add(outcome.pipelines_built)
    assert len(by_worker) < len(jobs)  # some worker process ran several recordings...
    assert all(len(counts) == 1 for counts in by_worker.values()), by_worker  # ...and loaded the networks once
    for path in recordings:
        assert len(list((tmp_path / path.name / "alpha").iterdir())) > 0
