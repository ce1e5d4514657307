"""The best-effort post-matting thread (`app.post_worker`) and the engine worker running it beside the live path."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from app import events as ev
from app.engine_state import WorkerOptions
from app.engine_worker import EngineWorker
from app.post_worker import NICENESS, THREAD_NAME, PostJob, PostMattingWorker
from engines.matting.background_prior import BackgroundPriorBuilder
from engines.matting.background_prior import build_prior
from engines.config import DepthConfig, EngineConfig
from engines.matting.pipeline import MattingPipeline
from engines.matting.result import MattingResult
from engines.matting.post_matting import PostMattingStage, make_post_matting
from engines.synth.scene import SceneConfig, generate_scene, write_scene

H, W = 40, 40


def _flat_prior():
    builder = BackgroundPriorBuilder(H, W)
    for _ in range(3):
        builder.add(np.full((H, W, 3), 60, np.uint8), np.full((H, W), 2.0, np.float32))
    return builder.build(DepthConfig())


def _job(seq: int) -> PostJob:
    """A 40x40 job whose colour carries `seq` (a square at 1 m in front of the 2 m background)."""
    color = np.full((H, W, 3), seq % 256, np.uint8)
    depth = np.full((H, W), 2.0, np.float32)
    depth[10:30, 10:30] = 1.0
    alpha = (depth < 1.5).astype(np.float32)
    return PostJob(seq, seq, color, depth, MattingResult(alpha=alpha))


class GatedBackend:
    """Records the jobs it sees (by colour) and holds each one until `release` is set; `fail` raises instead."""

    name = "gated"

    def __init__(self, fail: bool = False) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.seen: list[int] = []
        self.fail = fail
        self.niceness: int | None = None

    def refine(self, image_rgb, alpha, depth_m, trimap):
        self.seen.append(int(image_rgb[0, 0, 0]))
        if sys.platform.startswith("linux"):
            self.niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.started.set()
        self.release.wait(5.0)
        if self.fail:
            self.fail = False
            raise RuntimeError("boom")
        return np.array(alpha, np.float32)


def _worker(backend, **kwargs) -> PostMattingWorker:
    worker = PostMattingWorker(backend, DepthConfig(), **kwargs)
    worker.set_prior(_flat_prior())
    worker.start()
    return worker


def _wait(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_submit_never_waits_and_only_the_latest_job_runs():
    backend = GatedBackend()
    worker = _worker(backend)
    try:
        worker.submit(_job(1))
        assert backend.started.wait(5.0)  # job 1 is running and blocked
        start = time.perf_counter()
        for seq in range(2, 11):
            worker.submit(_job(seq))
        assert time.perf_counter() - start < 0.05  # nine submits while a job runs: none waited
        assert worker.latest() is None and worker.busy
        backend.release.set()
        _wait(lambda: worker.latest() is not None and worker.latest().seq == 10)
        assert backend.seen == [1, 10]  # 2..9 were replaced before they could run
        if sys.platform.startswith("linux"):  # the live threads get the CPU first
            assert backend.niceness == NICENESS
        assert worker.dropped == 8
        result = worker.latest()
        assert result.frame_index == 10 and result.alpha.dtype == np.float32 and result.ms >= 0
        worker.set_prior(_flat_prior())  # a new background: results of the old one are forgotten
        assert worker.latest() is None
    finally:
        backend.release.set()
        assert worker.stop(1.0)


def test_an_exception_becomes_one_message_and_the_worker_goes_on():
    backend = GatedBackend(fail=True)
    backend.release.set()
    messages: list[str] = []
    worker = _worker(backend, on_error=messages.append)
    try:
        worker.submit(_job(1))
        _wait(lambda: messages)
        assert messages == ["Post-matting failed: RuntimeError: boom"]
        assert worker.running and worker.latest() is None
        worker.submit(_job(2))
        _wait(lambda: worker.latest() is not None)
        assert worker.latest().seq == 2 and len(messages) == 1
    finally:
        assert worker.stop(1.0)


def test_stop_returns_within_its_timeout_while_a_job_runs_and_discards_it():
    backend = GatedBackend()
    worker = _worker(backend)
    worker.submit(_job(1))
    assert backend.started.wait(5.0)
    start = time.perf_counter()
    assert not worker.stop(timeout=0.2)  # the job cannot be interrupted: stop gives up waiting on time
    assert time.perf_counter() - start < 0.5
    worker.submit(_job(2))  # ignored once stopping
    backend.release.set()
    _wait(lambda: not worker.running)
    assert worker.latest() is None and backend.seen == [1]


@pytest.fixture(scope="module")
def scene_frames():
    return list(generate_scene(SceneConfig(width=160, height=120, n_background=6, n_test=4, seed=1)))


def test_real_closed_form_refines_real_frames_and_leaves_the_live_result_alone(scene_frames):
    config = DepthConfig()
    prior, _ = build_prior(scene_frames[:6], 6, config)
    pipeline = MattingPipeline(EngineConfig(mode="depth", depth=config))
    pipeline.set_prior(prior)
    worker = PostMattingWorker(make_post_matting("closed-form"), config, band_px=3)
    worker.set_prior(prior)
    worker.start()
    reference = PostMattingStage(make_post_matting("closed-form"), config, band_px=3)
    reference.set_prior(prior)
    try:
        for seq, frame in enumerate(scene_frames[6:], start=1):
            depth = frame.depth_m()
            live = pipeline.process(frame.color, depth)
            live_alpha, live_timings = live.alpha.copy(), dict(live.timings_ms)
            worker.submit(PostJob(seq, frame.index, frame.color, depth, live))
            _wait(lambda seq=seq: worker.latest() is not None and worker.latest().seq == seq, timeout_s=20.0)
            done = worker.latest()
            # the published live result is untouched; the refined alpha is the stage's
            np.testing.assert_array_equal(live.alpha, live_alpha)
            assert live.timings_ms == live_timings and live.trimap is not None
            expected = reference(MattingResult(alpha=live_alpha.copy()), frame.color, depth).alpha
            np.testing.assert_allclose(done.alpha, expected, atol=1e-5)
            assert done.color is frame.color and done.depth_m is depth  # references, not copies
            assert done.alpha.shape == (120, 160) and done.ms > 0
        assert worker.dropped == 0
        assert not np.array_equal(done.alpha, live_alpha)  # the closed form changed the band
    finally:
        assert worker.stop(1.0)


# -- the engine worker ------------------------------------------------------------------------------------
SLOW_S = 0.3


class SlowClosedForm:
    """The real closed-form backend made slower than a frame, counting its calls."""

    name = "closed-form"

    def __init__(self) -> None:
        self.inner = make_post_matting("closed-form")
        self.calls = 0

    def refine(self, image_rgb, alpha, depth_m, trimap):
        self.calls += 1
        time.sleep(SLOW_S)
        return self.inner.refine(image_rgb, alpha, depth_m, trimap)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "scene"
    write_scene(SceneConfig(width=160, height=120, n_background=10, n_test=20, seed=1), path)
    return path


def test_engine_keeps_matting_live_frames_while_slow_post_matting_runs_beside(monkeypatch, recording):
    backends: list[SlowClosedForm] = []

    def slow(kind, vitmatte_dir=None, device=None):
        backends.append(SlowClosedForm())
        return backends[-1]

    monkeypatch.setattr("app.post_worker.make_post_matting", slow)
    worker = EngineWorker(EngineConfig(mode="depth", post="closed-form"), "checker",
                          options=WorkerOptions(pace_recordings=False))
    worker.start()
    try:
        worker.open_source(str(recording))
        _wait(lambda: worker.latest() is not None and worker.latest().result is not None, timeout_s=10.0)
        first = worker.latest().stats.matted
        start = time.monotonic()
        _wait(lambda: worker.latest().stats.matted >= first + 40, timeout_s=10.0)
        elapsed = time.monotonic() - start
        # 40 live frames in less time than 15 slow post frames: the live path does not wait for post-matting
        assert elapsed < 15 * SLOW_S, elapsed
        assert backends[0].calls <= elapsed / SLOW_S + 1
        _wait(lambda: worker.latest().post_output is not None, timeout_s=10.0)
        snapshot = worker.latest()
        assert snapshot.post_output.shape == snapshot.output.shape and snapshot.post_output.dtype == np.uint8
        assert snapshot.post_stats.ms >= SLOW_S * 1e3 and snapshot.post_stats.behind >= 0
        _wait(lambda: worker.latest().post_stats.dropped > 0)
        assert not any(k.startswith("post_") for k in snapshot.stats.timings_ms)  # the live pipeline has no post stage
        assert not any(e.kind in ev.PROBLEMS for e in worker.poll_events())

        # a post job is running (or about to): stopping the engine still takes well under a second
        start = time.monotonic()
        assert worker.stop(1.0)
        assert time.monotonic() - start < 1.0
    finally:
        worker.stop(1.0)
    _wait(lambda: THREAD_NAME not in [t.name for t in threading.enumerate()], timeout_s=2 * SLOW_S + 1)


def test_engine_turns_post_matting_on_and_off_and_reports_its_errors(monkeypatch, recording):
    worker = EngineWorker(EngineConfig(mode="depth"), "checker", options=WorkerOptions(pace_recordings=False))
    worker.start()
    try:
        worker.open_source(str(recording))
        _wait(lambda: worker.latest() is not None and worker.latest().result is not None, timeout_s=10.0)
        assert worker.latest().post_stats is None and worker.latest().post_output is None

        worker.set_engine_config(EngineConfig(mode="depth", post="closed-form"))
        _wait(lambda: worker.latest().post_output is not None, timeout_s=10.0)
        post = worker._post.worker if worker._post is not None else None
        assert post is not None and post.running

        def broken(image_rgb, alpha, depth_m, trimap):
            raise ValueError("no good")

        monkeypatch.setattr(post._stage.backend, "refine", broken)
        _wait(lambda: any(e.kind == ev.ERROR and e.message == "Post-matting failed: ValueError: no good"
                          for e in worker.poll_events()), timeout_s=5.0)
        assert worker.latest().result is not None  # live matting goes on

        worker.set_engine_config(EngineConfig(mode="depth"))
        _wait(lambda: worker.latest().post_stats is None, timeout_s=5.0)
        assert worker._post is None and worker.latest().post_output is None
        _wait(lambda: not post.running, timeout_s=2.0)
    finally:
        assert worker.stop(1.0)
