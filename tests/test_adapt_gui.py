""""Adapt to me" in the window, offscreen (issue 15): background captured -> take -> adaptation in a child
process -> adapted networks in use -> restart -> restored; cancel and failure leave the previous networks.
Tiny frames (64x48), the shipped networks and a few seconds of training."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from app.adapt_worker import ADAPTING, CANCELLED, DONE, FAILED, KEPT, AdaptOptions  # noqa: E402
from app.engine_state import WorkerOptions  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.scene_store import SceneStore  # noqa: E402
from app.settings import AppSettings  # noqa: E402

W, H = 64, 48
TINY = ("--size", "64x48", "--generic-samples", "3")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from engines.synth.scene import SceneConfig, write_scene

    return write_scene(SceneConfig(width=W, height=H, n_background=6, n_test=30, seed=4),
                       tmp_path_factory.mktemp("rec") / "take")


@pytest.fixture(scope="module")
def models() -> Path:
    """The shipped generic networks (the window's default)."""
    from engines.config import DEFAULT_MODEL_DIR

    return Path(DEFAULT_MODEL_DIR)


def window_on(qtbot, store_dir: Path, recording: Path, models: Path, **options) -> MainWindow:
    settings = AppSettings(background="checker", countdown_s=0.0, capture_frames=6, mode="dart")
    window = MainWindow(settings, WorkerOptions(scene_store=SceneStore(store_dir), countdown_s=0.0), list_cameras=False)
    qtbot.addWidget(window)
    window.adapter.options = AdaptOptions(**{"take_s": 1.0, "max_frames": 4, "budget_minutes": 0.01, "threads": 1,
                                             "model_dir": str(models), "extra_args": TINY, **options})
    window.show()
    window.open_source(str(recording))
    return window


def in_use(window: MainWindow) -> str:
    return window.worker._config.model_dir


def wait_matted(qtbot, window: MainWindow) -> None:
    def matted() -> bool:
        window.tick()
        snapshot = window.worker.latest()
        return snapshot is not None and snapshot.result is not None
    qtbot.waitUntil(matted, timeout=20000)


def test_adapt_to_me_then_restored_after_restart(qtbot, tmp_path, recording, models):
    window = window_on(qtbot, tmp_path / "scenes", recording, models)
    wait_matted(qtbot, window)  # the recording's empty-scene frames were captured and stored
    assert window.adapt_controls.button.isEnabled() and in_use(window) == str(models)
    qtbot.mouseClick(window.adapt_controls.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: (window.tick(), window.adapter.status().state == ADAPTING)[1], timeout=20000)
    assert window.adapt_controls.cancel.isEnabled() and window.adapt_controls.progress.isVisible()
    qtbot.waitUntil(lambda: (window.tick(), window.adapter.status().state in (DONE, KEPT, FAILED))[1], timeout=180000)
    status = window.adapter.status()
    assert status.state == DONE, status.message
    adapted = SceneStore(tmp_path / "scenes").models_dir(str(recording))
    qtbot.waitUntil(lambda: (window.tick(), in_use(window) == str(adapted))[1], timeout=20000)
    wait_matted(qtbot, window)  # DART runs on the adapted networks
    assert not SceneStore(tmp_path / "scenes").take_path(str(recording)).exists()
    assert window.shutdown()

    again = window_on(qtbot, tmp_path / "scenes", recording, models)
    qtbot.waitUntil(lambda: (again.tick(), in_use(again) == str(adapted))[1], timeout=20000)
    wait_matted(qtbot, again)
    assert again.shutdown()


def test_cancel_and_failure_keep_the_previous_networks(qtbot, tmp_path, recording, models):
    window = window_on(qtbot, tmp_path / "scenes", recording, models, budget_minutes=5.0)
    wait_matted(qtbot, window)
    window.adapter.start(str(recording))
    qtbot.waitUntil(lambda: (window.tick(), window.adapter.status().state == ADAPTING)[1], timeout=20000)
    qtbot.mouseClick(window.adapt_controls.cancel, Qt.MouseButton.LeftButton)
    assert window.adapter.status().state == CANCELLED
    window.adapter._thread.join(20)
    store = SceneStore(tmp_path / "scenes")
    assert not store.models_dir(str(recording)).exists() and store.adapted_models(str(recording)) is None
    assert in_use(window) == str(models)

    window.adapter.options = AdaptOptions(take_s=0.5, max_frames=3, model_dir=str(tmp_path), extra_args=TINY)
    assert window.adapter.start(str(recording))
    qtbot.waitUntil(lambda: (window.tick(), window.adapter.status().state == FAILED)[1], timeout=60000)
    assert "student.safetensors" in window.adapter.status().message
    assert in_use(window) == str(models) and not store.models_dir(str(recording)).exists()
    assert window.shutdown()
