"""The live engine thread on recordings: paced playback without freezes, any frame size in the network
modes, and an engine failure reported once with a fallback to depth mode (issue 12)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app import events as ev
from app.engine_state import WorkerOptions
from app.engine_worker import EngineWorker
from engines.config import EngineConfig
from engines.synth.scene import SceneConfig, write_scene

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models"
FPS = 30.0


def _wait(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def _recording(tmp_path: Path, width: int, height: int, n_background: int = 10, n_test: int = 12) -> Path:
    return write_scene(SceneConfig(width=width, height=height, n_background=n_background, n_test=n_test, seed=3,
                                   fps=FPS), tmp_path / f"rec_{width}x{height}")


def _started(config: EngineConfig, **options) -> EngineWorker:
    worker = EngineWorker(config, "checker", options=WorkerOptions(**options))
    worker.start()
    return worker


def test_looping_recording_plays_without_freezing_on_skipped_frames(tmp_path):
    """The 10 empty-scene frames of each loop are skipped, not paced: no ~0.33 s hold at the loop."""
    worker = _started(EngineConfig(mode="depth"), pace_recordings=True)
    try:
        worker.open_source(str(_recording(tmp_path, 96, 72)))
        _wait(lambda: worker.latest() is not None and worker.latest().result is not None)
        shown: list[tuple[float, int]] = []
        deadline = time.monotonic() + 2.2  # about three loops of 12 shown frames at 30 fps
        seq = -1
        while time.monotonic() < deadline:
            snapshot = worker.latest()
            if snapshot.seq != seq:
                seq = snapshot.seq
                shown.append((time.monotonic(), snapshot.frame.index))
            time.sleep(0.002)
    finally:
        worker.stop(2.0)
    indices = [index for _, index in shown]
    assert min(indices) >= 10 and indices.count(10) >= 2, indices  # looped, background frames never shown
    gaps = np.diff([t for t, _ in shown])
    # With the skipped frames paced, the loop boundary held the last frame for 11 periods (0.37 s).
    assert gaps.max() < 5.0 / FPS, f"longest gap {gaps.max():.3f} s"


@pytest.mark.skipif(not (SHIPPED / "student.onnx").is_file(), reason="no shipped models in assets/models")
def test_dart_mode_mattes_a_frame_size_the_network_cannot_take(tmp_path):
    worker = _started(EngineConfig(mode="dart"), pace_recordings=False)
    try:
        worker.open_source(str(_recording(tmp_path, 81, 61, n_background=6, n_test=6)))
        _wait(lambda: worker.latest() is not None and worker.latest().result is not None, timeout_s=60.0)
        result = worker.latest().result
        assert result.alpha.shape == (61, 81)
        problems = [e for e in worker.poll_events() if e.kind in ev.PROBLEMS or e.kind == ev.MODE_CHANGED]
        assert problems == []
    finally:
        worker.stop(2.0)


def test_engine_failure_is_reported_once_and_falls_back_to_depth(tmp_path, monkeypatch):
    from engines.matting import pipeline

    def broken_backend(config):
        backend = real_make_backend(config)
        if config.mode == "rgb-subtract":
            def fail(color_rgb, depth_m):
                raise RuntimeError("the network broke")
            backend.process = fail
        return backend

    real_make_backend = pipeline.make_backend
    monkeypatch.setattr(pipeline, "make_backend", broken_backend)
    worker = _started(EngineConfig(mode="rgb-subtract"), pace_recordings=False)
    try:
        worker.open_source(str(_recording(tmp_path, 64, 48, n_background=6, n_test=8)))
        events: list = []
        _wait(lambda: events.extend(worker.poll_events()) or any(e.kind == ev.MODE_CHANGED for e in events))
        _wait(lambda: worker.latest() is not None and worker.latest().result is not None)
        time.sleep(0.3)  # more frames: nothing more is reported
        events += worker.poll_events()
    finally:
        worker.stop(2.0)
    errors = [e for e in events if e.kind == ev.ERROR]
    assert len(errors) == 1 and "switched to 'depth'" in errors[0].message, [e.message for e in errors]
    assert [e.detail for e in events if e.kind == ev.MODE_CHANGED] == ["depth"]


FPS_SCRIPT = """
import sys, time
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.engine_state import WorkerOptions
from app.main_window import MainWindow
from app.scene_store import SceneStore
from app.settings import AppSettings
rec, scenes = sys.argv[1], Path(sys.argv[2])
settings = AppSettings(background="checker", countdown_s=0.0, capture_frames=8)
window = MainWindow(settings, WorkerOptions(scene_store=SceneStore(scenes), capture_frames=8, countdown_s=0.0,
                                            pace_recordings=False), list_cameras=False)
window.show()
window._timer.stop()  # the script decides when the window repaints: 10 times a second
window.open_source(rec)
deadline = time.monotonic() + 60
while (window.worker.latest() is None or window.worker.latest().result is None) and time.monotonic() < deadline:
    app.processEvents(); time.sleep(0.01)
for _ in range(25):
    window.tick()
    end = time.monotonic() + 0.1
    while time.monotonic() < end:
        app.processEvents(); time.sleep(0.005)
print("FPS", window.fps_label.text().split()[0], window.worker.latest().stats.fps)
window.shutdown()
"""


def test_window_fps_counts_frames_displayed_not_engine_frames(tmp_path):
    """The engine runs unpaced (fast); the window shows a new frame 10 times a second: fps says ~10.
    Run in its own interpreter so no earlier window or app state of the test session takes part."""
    import os
    import subprocess
    import sys

    rec = _recording(tmp_path, 64, 48, n_background=6, n_test=150)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", FPS_SCRIPT, str(rec), str(tmp_path / "scenes")],
                          cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("FPS")][-1]
    shown, engine_fps = (float(v) for v in line.split()[1:])
    assert engine_fps > 25.0  # unpaced: the engine finishes far more frames than are shown
    assert 6.0 < shown < 12.0, (shown, engine_fps)
