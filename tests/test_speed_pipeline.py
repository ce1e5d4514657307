"""Tests of what makes the live path fast, by behaviour (never by timing): the output stage thread and the
pipelined engine worker (same frames, same outputs, in order), the patch budget, the base network's
downsampling per resolution, and the live-path table of `main.py bench-speed`."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app import events as ev
from app.backgrounds import Compositor, _LazyBackground
from app.engine_state import WorkerOptions
from app.engine_worker import EngineWorker
from app.live_pipeline import OutputStage
from engines.config import EngineConfig
from engines.matting.dart_matting import NetworkMatting, PatchBudget, _AdaptiveK, choose_downsample
from engines.matting.pipeline import MattingPipeline
from engines.evaluation.speed import LivePathConfig, live_path_ms
from engines.matting.background_prior import BackgroundPriorBuilder
from engines.synth.scene import SceneConfig, generate_scene

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo_recording"
SHIPPED = ROOT / "assets" / "models"


def test_output_stage_runs_jobs_in_order_and_drains():
    done, errors = [], []
    stage = OutputStage(errors.append, depth=2)
    for i in range(50):
        stage.submit(lambda i=i: (time.sleep(0.001 if i % 7 == 0 else 0), done.append(i)))
    assert stage.drain(5.0)
    assert done == list(range(50))
    stage.close()
    stage.submit(lambda: done.append("inline"))  # after close: runs in the caller's thread
    assert done[-1] == "inline" and errors == []


def test_output_stage_reports_a_run_of_failures_once_and_goes_on():
    errors, done = [], []
    stage = OutputStage(errors.append)
    for i in range(3):
        stage.submit(lambda: 1 / 0)
    stage.submit(lambda: done.append(threading.current_thread().name))
    stage.submit(lambda: 1 / 0)
    stage.drain(5.0)
    stage.close()
    assert [type(e) for e in errors] == [ZeroDivisionError, ZeroDivisionError]  # once per run of failures
    assert done == ["OutputStage"]


def _run_worker(config: EngineConfig, matted: int) -> tuple[EngineWorker, list, list]:
    """The worker on the demo until `matted` frames are matted: (worker, fed (frame, output, background,
    thread), events); the worker is stopped."""
    fed = []
    worker = EngineWorker(config, "blur", options=WorkerOptions(pace_recordings=False, stop_after_matted=matted))
    worker._outputs.feed = lambda frame, output, fps, background=False: fed.append(
        (frame, output.copy(), background, threading.current_thread()))
    worker.start()
    worker.open_source(str(DEMO))
    deadline = time.monotonic() + 120
    events = []
    while time.monotonic() < deadline and not any(e.kind == ev.FINISHED for e in events):
        events += worker.poll_events()
        time.sleep(0.02)
    assert worker.stop(2.0)
    assert any(e.kind == ev.FINISHED for e in events), [e.message for e in events]
    return worker, fed, events


def _assert_sequential_outputs(worker: EngineWorker, fed: list, config: EngineConfig, matted: int) -> None:
    """Every frame fed in order from the output stage, each the output of one-frame-after-another matting."""
    prior = worker._prior
    indices = [frame.index for frame, *_ in fed]
    assert indices == list(range(len(fed)))  # every frame, in order
    outputs = [(frame, output) for frame, output, background, _ in fed if not background]
    assert len(outputs) == matted
    assert {thread.name for *_, thread in fed} == {"EngineWorker"}  # the output stage: the engine's second thread
    assert all(thread is not worker._thread for *_, thread in fed)
    pipeline = MattingPipeline(config)
    pipeline.set_prior(prior)
    compositor = Compositor()
    compositor.set_background("blur")
    compositor.set_plate(prior.color_mean)
    for frame, output in outputs:  # the same computation one frame after another
        depth_m = frame.depth_m()
        expected = compositor.compose(frame.color, depth_m, pipeline.process(frame.color, depth_m).alpha)
        np.testing.assert_array_equal(output, expected)


def _record_threads(monkeypatch, cls, name: str) -> list[str]:
    """The names of the threads that call `cls.name` from now on (the method still runs)."""
    threads, method = [], getattr(cls, name)

    def recorded(self, *args):
        threads.append(threading.current_thread().name)
        return method(self, *args)

    monkeypatch.setattr(cls, name, recorded)
    return threads


def test_pipelined_worker_sends_every_frame_in_order_with_the_sequential_output(monkeypatch):
    config = EngineConfig(mode="depth")
    rendered_on = _record_threads(monkeypatch, _LazyBackground, "render")
    worker, fed, _ = _run_worker(config, 12)
    assert set(rendered_on) == {"EngineWorker"}  # the depth mode renders on the output stage itself
    monkeypatch.undo()
    _assert_sequential_outputs(worker, fed, config, 12)


def test_network_modes_finish_the_matte_on_a_third_thread_in_frame_order(monkeypatch):
    # edge refinement and temporal smoothing (stateful: frame order matters) on the finish stage
    config = EngineConfig(mode="dart", edge_refine=True, temporal_smoothing=0.5)
    finished_on = _record_threads(monkeypatch, MattingPipeline, "finish")
    rendered_on = _record_threads(monkeypatch, _LazyBackground, "render")
    worker, fed, _ = _run_worker(config, 6)
    assert finished_on == ["EngineFinish"] * 6
    assert len(rendered_on) == 6 and all(name.startswith("Background") for name in rendered_on)
    monkeypatch.undo()
    _assert_sequential_outputs(worker, fed, config, 6)


def test_compositor_rendering_beside_gives_the_serial_output_and_passes_on_its_errors():
    rng = np.random.default_rng(3)
    color = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    depth_m = rng.uniform(0.5, 3.0, (120, 160)).astype(np.float32)
    yy, xx = np.mgrid[:120, :160]
    alpha = np.clip(1.5 - np.hypot(yy - 60, xx - 80) / 30.0, 0, 1).astype(np.float32)  # a soft disc
    plate = rng.random((120, 160, 3), dtype=np.float32)
    serial, beside = Compositor(), Compositor(render_beside=True)
    for spec in ("blur", "#336699", "checker"):
        for compositor in (serial, beside):
            compositor.set_background(spec)
            compositor.set_plate(plate)
        timings: dict[str, float] = {}
        np.testing.assert_array_equal(beside.compose(color, depth_m, alpha, timings), serial.compose(color, depth_m, alpha))
        assert set(timings) == {"background", "composite"}

    beside.render_beside = False  # switched off between frames: rendered here again
    serial_thread = []
    original = beside._background.render
    beside._background.render = lambda *args: (serial_thread.append(threading.current_thread()), original(*args))[1]
    np.testing.assert_array_equal(beside.compose(color, depth_m, alpha), serial.compose(color, depth_m, alpha))
    assert serial_thread == [threading.current_thread()]
    beside.render_beside = True
    helpers = []

    def broken(*args):
        helpers.append(threading.current_thread())
        time.sleep(0.05)  # still running when the foreground is done
        raise RuntimeError("video ended badly")

    beside._background.render = broken
    with pytest.raises(RuntimeError, match="video ended badly"):
        beside.compose(color, depth_m, alpha)
    assert helpers and helpers[0] is not threading.current_thread()  # it did run beside
    beside.close()
    assert not helpers[0].is_alive()


def test_post_matting_keeps_the_outputs_on_the_engine_thread():
    worker, fed, _ = _run_worker(EngineConfig(mode="depth", post="closed-form"), 3)
    assert [thread is worker._thread for _, _, background, thread in fed if not background] == [True] * 3


def test_adaptive_patch_count_follows_the_budget_within_bounds():
    k = _AdaptiveK(700, PatchBudget(frame_ms=30.0, min_k=100, smoothing=1.0))
    assert k.k == 700
    assert k.update(other_ms=10.0, refiner_ms=20.0, refined=100) == 100  # 0.2 ms a patch, 20 ms of room
    assert k.update(other_ms=10.0, refiner_ms=2.0, refined=100) == 700  # 0.02 ms a patch: capped at k
    assert k.update(other_ms=40.0, refiner_ms=20.0, refined=100) == 100  # over budget: the floor
    fixed = _AdaptiveK(300, None)
    assert fixed.update(1000.0, 1000.0, 300) == 300


def test_patch_budget_bounds_the_refined_patches():
    frames = list(generate_scene(SceneConfig(width=160, height=120, n_background=4, n_test=3, seed=2)))
    builder = BackgroundPriorBuilder(120, 160)
    for f in frames[:4]:
        builder.add(f.color, f.depth_m())
    for budget, later in ((PatchBudget(frame_ms=1e-6, min_k=5), 5), (PatchBudget(frame_ms=1e9, min_k=5), 60), (None, 60)):
        matting = NetworkMatting(SHIPPED, k=60, device="cpu", patch_budget=budget)
        matting.set_prior(builder.build(matting.config))
        refined = []
        for f in frames[4:]:
            refined.append(int(matting.process(f.color, f.depth_m()).selected.sum()))
        assert refined[0] <= 60 and max(refined[1:]) <= later
        assert matting.last_refined == refined[-1]


def test_base_downsampling_is_chosen_per_resolution():
    assert choose_downsample(640, 480) == 4
    assert choose_downsample(320, 240) == 4
    assert choose_downsample(1280, 720) == 8
    assert choose_downsample(1920, 1080) == 8
    assert choose_downsample(3840, 2160) == 16
    frames = list(generate_scene(SceneConfig(width=1280, height=720, n_background=2, n_test=1, seed=3)))
    builder = BackgroundPriorBuilder(720, 1280)
    for f in frames[:2]:
        builder.add(f.color, f.depth_m())
    matting = NetworkMatting(SHIPPED, k=50, device="cpu")
    matting.set_prior(builder.build(matting.config))
    result = matting.process(frames[-1].color, frames[-1].depth_m())
    assert matting.downsample == 8 and result.raw_alpha.shape == (90, 160) and result.alpha.shape == (720, 1280)


@pytest.mark.parametrize("peer", [None, Path("/nonexistent/peer")])
def test_live_path_table_times_frames_with_the_subject(peer):
    calls = []

    def compose_factory(prior):
        def compose(color, depth_m, alpha, timings):
            timings["composite"] = 1.0
            return color
        return compose

    report = live_path_ms(LivePathConfig(DEMO, frames=3, k=50, threads=1, peer_dir=peer), compose_factory,
                          {"webcam": calls.append})
    rows = report.rows
    assert rows["subject share of the frame (alpha > 0.5)"] > 0.02  # not alpha 0 everywhere
    for name in ("read/decode (colour + depth files)", "dart: student", "dart: refiner", "composite",
                 "output: webcam", "engine only: depth mode", "whole live path, one frame after another",
                 "engine only: dart (stages one after another, no edge refinement)"):
        assert rows[name] >= 0.0, name
    assert rows["patches refined (count, not ms)"] <= 50
    assert not any(name.startswith("engine only: peer") for name in rows)  # no peer model: no peer row
    assert len(calls) == 6 and report.providers[-1] == "CPUExecutionProvider"


def test_live_window_runs_one_network_thread_and_one_opencv_thread():
    """The live window's threads share two cores: onnxruntime and OpenCV must not start their own pools
    there (offline processing keeps two network threads)."""
    import cv2

    from app.settings import AppSettings

    from engines.matting.providers import SessionSettings

    def threads(matting: NetworkMatting) -> tuple[int, int]:
        onnx = matting._onnx
        return tuple(s.get_session_options().intra_op_num_threads for s in (onnx.base, onnx.refiner))

    assert threads(MattingPipeline(AppSettings(mode="dart").engine_config())._backend.matting) == (1, 1)
    # offline the student runs beside the depth stages on one thread, the refiner on two
    assert threads(MattingPipeline(EngineConfig(mode="dart"))._backend.matting) == (1, 2)
    assert threads(MattingPipeline(EngineConfig(mode="dart", overlap_stages=False))._backend.matting) == (2, 2)
    # bench-speed --threads N: the session settings decide
    assert threads(NetworkMatting(SHIPPED, device="cpu", session=SessionSettings(intra_op_threads=1))) == (1, 1)
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        worker = EngineWorker(EngineConfig(mode="depth"), "checker")
        worker.start()
        assert cv2.getNumThreads() == 1
        assert worker.stop(2.0)
        assert cv2.getNumThreads() == 2  # given back: other code in the process keeps its own setting
    finally:
        cv2.setNumThreads(before)
