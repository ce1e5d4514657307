"""Virtual webcam: frames reach a pyvirtualcam backend from the engine thread; no device -> setup help."""

from __future__ import annotations

import sys

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pyvirtualcam = pytest.importorskip("pyvirtualcam")

from app.engine_state import WorkerOptions  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.scene_store import SceneStore  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from app.virtual_camera import VirtualCamera, VirtualCameraUnavailable, setup_help  # noqa: E402
from engines.synth.scene import SceneConfig, write_scene  # noqa: E402

W, H = 160, 120
MODPROBE = 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="RGB-D Matting"'


class MemoryBackend:
    """A pyvirtualcam backend that keeps what it is sent (see pyvirtualcam.camera.Backend)."""

    opened: list["MemoryBackend"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw) -> None:
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.frames: list[np.ndarray] = []
        self.threads: set[str] = set()
        self.closed = False
        MemoryBackend.opened.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.threads.add(threading.current_thread().name)
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return "memory0"

    def native_fourcc(self):
        return None


class NoDeviceBackend:
    def __init__(self, **kw) -> None:
        raise RuntimeError("No v4l2 loopback device found at /dev/video[0-99]")


@pytest.fixture(autouse=True)
def backends():
    MemoryBackend.opened.clear()
    pyvirtualcam.register_backend("test-memory", MemoryBackend)
    pyvirtualcam.register_backend("test-no-device", NoDeviceBackend)
    yield
    for name in ("test-memory", "test-no-device"):
        pyvirtualcam.camera.BACKENDS.pop(name, None)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vcam") / "scene"
    write_scene(SceneConfig(width=W, height=H, n_background=10, n_test=20, seed=3), path)
    return path


def make_window(qtbot, tmp_path: Path, backend: str) -> MainWindow:
    settings = AppSettings(background="#0000FF", countdown_s=0.0)
    options = WorkerOptions(scene_store=SceneStore(tmp_path / "scenes"), vcam_backend=backend)
    window = MainWindow(settings, options, list_cameras=False)
    qtbot.addWidget(window)
    window.show()
    return window


def test_composite_streams_to_the_virtual_camera_from_the_engine_thread(qtbot, tmp_path, recording):
    window = make_window(qtbot, tmp_path, "test-memory")
    window.open_source(str(recording))
    qtbot.waitUntil(lambda: window.worker.latest() is not None and window.worker.latest().result is not None,
                    timeout=8000)
    shown_before = window.worker.latest().stats.shown
    window.vcam_action.setChecked(True)
    qtbot.waitUntil(lambda: bool(MemoryBackend.opened) and len(MemoryBackend.opened[0].frames) >= 15, timeout=8000)
    sent, shown = len(MemoryBackend.opened[0].frames), window.worker.latest().stats.shown - shown_before
    window.vcam_action.setChecked(False)
    qtbot.waitUntil(lambda: MemoryBackend.opened[0].closed, timeout=3000)

    camera = MemoryBackend.opened[0]
    assert (camera.width, camera.height, camera.fps) == (W, H, 30.0)  # the source's size and frame rate
    assert camera.threads == {"EngineWorker"}  # not the GUI thread: keeps going while minimised
    assert all(frame.shape == (W * H * 3,) and frame.dtype == np.uint8 for frame in camera.frames)
    # one frame per engine frame, so the webcam runs at the recording's (paced) rate
    assert abs(shown - sent) <= 3
    # what is sent is the composite (blue background where the matte is 0), in RGB order
    last = camera.frames[-1].reshape(H, W, 3)
    assert np.mean(np.all(last == (0, 0, 255), axis=2)) > 0.3
    window.tick()
    assert not window.vcam_action.isChecked()


def test_no_virtual_camera_device_shows_the_setup_commands(qtbot, tmp_path, recording, monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    window = make_window(qtbot, tmp_path, "test-no-device")
    window.open_source(str(recording))
    window.vcam_action.setChecked(True)
    qtbot.waitUntil(lambda: (window.tick(), window._dialog is not None)[1], timeout=8000)
    assert not window.vcam_action.isChecked()
    assert MODPROBE in window._dialog.informativeText()
    assert "no v4l2loopback device" in window._dialog.text() and MODPROBE in window._dialog.text()
    assert window.worker.running  # the engine keeps going without the webcam


def test_virtual_camera_errors_carry_help_for_each_platform():
    with pytest.raises(VirtualCameraUnavailable) as info:
        VirtualCamera(W, H, 30.0, backend="test-no-device")
    assert "loopback" in info.value.reason and info.value.help
    if sys.platform.startswith("linux"):  # the one-line reason gives the whole command (pyvirtualcam's omits sudo and options)
        assert MODPROBE in info.value.reason
    assert MODPROBE in setup_help("linux") and "/etc/modprobe.d/" in setup_help("linux")
    assert "OBS" in setup_help("win32") and "OBS" in setup_help("darwin")
    camera = VirtualCamera(W, H, 25.0, backend="test-memory")
    camera.send(np.zeros((H, W, 3), np.uint8))
    camera.close()
    assert MemoryBackend.opened[0].fps == 25.0 and len(MemoryBackend.opened[0].frames) == 1
