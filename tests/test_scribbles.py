"""Scribble correction (issue 15 item 3): strokes become labels, the scene store keeps marked frames,
the teacher's labels are overruled where marked, and in the window "Correct…" -> paint -> Save ->
"Adapt to me" trains on the marked frame. Tiny frames (64x48)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.adapt_worker import AdaptOptions, SceneAdapter, _Run
from app.scene_store import MAX_SCRIBBLE_FRAMES, SceneStore
from engines.matting.background_prior import BackgroundPrior
from engines.matting.scribbles import SCRIBBLE_BACKGROUND, SCRIBBLE_FOREGROUND, SCRIBBLE_NONE, paint_stroke
from sensors.errors import UserError

W, H = 64, 48


def test_paint_stroke_draws_joined_discs_and_erases():
    labels = np.zeros((H, W), np.uint8)
    paint_stroke(labels, [(10, 10), (40, 10)], SCRIBBLE_FOREGROUND, 3)
    assert labels[10, 10] == labels[10, 25] == labels[13, 40] == SCRIBBLE_FOREGROUND  # the line between is painted
    assert labels[20, 25] == SCRIBBLE_NONE and labels[10, 50] == SCRIBBLE_NONE
    paint_stroke(labels, [(25, 10)], SCRIBBLE_NONE, 2)  # the eraser
    assert labels[10, 25] == SCRIBBLE_NONE and labels[10, 10] == SCRIBBLE_FOREGROUND
    paint_stroke(labels, [(-5, 100)], SCRIBBLE_BACKGROUND, 3)  # outside: clipped, no error
    with pytest.raises(ValueError):
        paint_stroke(labels, [(1, 1)], 7, 3)
    with pytest.raises(ValueError):
        paint_stroke(labels.astype(np.float32), [(1, 1)], SCRIBBLE_FOREGROUND, 3)


def _frame(value: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.zeros((H, W), np.uint8)
    labels[:5] = SCRIBBLE_BACKGROUND
    return np.full((H, W, 3), value, np.uint8), np.full((H, W), 1.5, np.float32), labels


def test_scene_store_keeps_marked_frames_until_the_background_changes(tmp_path):
    store = SceneStore(tmp_path / "scenes")
    uri = "realsense://123"
    assert store.load_scribbles(uri) is None
    for k in range(MAX_SCRIBBLE_FRAMES + 2):
        n = store.add_scribbles(uri, *_frame(k))
    marked = store.load_scribbles(uri)
    assert n == MAX_SCRIBBLE_FRAMES and marked["color"].shape == (MAX_SCRIBBLE_FRAMES, H, W, 3)
    assert marked["color"][0, 0, 0, 0] == 2 and marked["depth_mm"][0, 0, 0] == 1500  # the oldest went first
    assert (marked["scribbles"][:, :5] == SCRIBBLE_BACKGROUND).all()
    store.scribbles_path(uri).write_bytes(b"broken")  # unreadable: ignored, not an error
    assert store.load_scribbles(uri) is None
    store.add_scribbles(uri, *_frame(1))
    whole = store.scribbles_path(uri).read_bytes()
    store.scribbles_path(uri).write_bytes(whole[: len(whole) // 2])  # a damaged zip (BadZipFile)
    assert store.load_scribbles(uri) is None
    assert store.add_scribbles(uri, *_frame(1)) == 1  # and new marks can still be saved
    store.add_scribbles(uri, *_frame(1))
    prior = BackgroundPrior(depth_mean_m=np.ones((H, W), np.float32), depth_std_m=np.full((H, W), 0.01, np.float32),
                            valid_count=np.ones((H, W), np.int32), color_mean=np.zeros((H, W, 3), np.float32),
                            n_frames=1)
    store.save(uri, prior)  # a new background: the old marks show another scene
    assert store.load_scribbles(uri) is None


def test_the_take_file_carries_the_marks_after_the_take(tmp_path):
    store = SceneStore(tmp_path)
    uri = "realsense://9"
    adapter = SceneAdapter(store, AdaptOptions())
    run = _Run(uri, 0.0, frames=[np.zeros((H, W, 3), np.uint8)] * 3, depths=[np.zeros((H, W), np.uint16)] * 3)
    assert set(adapter._take_arrays(run)) == {"color", "depth_mm"}
    store.add_scribbles(uri, *_frame(9))
    arrays = adapter._take_arrays(run)
    assert arrays["color"].shape == (4, H, W, 3) and arrays["scribbles"].shape == (4, H, W)
    assert not arrays["scribbles"][:3].any() and arrays["scribbles"][3, 0, 0] == SCRIBBLE_BACKGROUND
    assert arrays["color"][3, 0, 0, 0] == 9


def test_a_part_this_run_did_not_adapt_stays_the_scenes(tmp_path):
    store = SceneStore(tmp_path)
    uri = "realsense://9"
    current = store.models_dir(uri)
    current.mkdir(parents=True)
    for name in ("student.onnx", "student.safetensors", "refiner_dart.onnx", "refiner_dart.safetensors"):
        (current / name).write_text("adapted before")
    staging = tmp_path / "staging"
    staging.mkdir()
    for name in ("student.onnx", "student.safetensors", "refiner_dart.onnx", "refiner_dart.safetensors"):
        (staging / name).write_text("this run")  # the student a generic copy, the refiner new
    adapter = SceneAdapter(store, AdaptOptions())
    adapter._keep_adapted_parts(uri, staging, {"accepted": True, "student_accepted": False, "refiner_accepted": True})
    assert (staging / "student.onnx").read_text() == "adapted before" == (staging / "student.safetensors").read_text()
    assert (staging / "refiner_dart.onnx").read_text() == "this run"


def test_a_scenes_part_that_does_not_fit_this_runs_other_part_is_not_kept(tmp_path):
    """A scene adapted before the hidden features were pruned holds a 32-wide refiner; a new run that
    adapts only the (16-wide) student must not keep that refiner beside it."""
    import torch

    from engines.nets.base_net import BaseNet, BaseNetConfig
    from engines.nets.onnx_export import export_base_net, export_refiner
    from engines.nets.refiner import Refiner, RefinerConfig

    store = SceneStore(tmp_path)
    uri = "realsense://8"
    current, staging = store.models_dir(uri), tmp_path / "staging"
    for folder, hidden in ((current, 32), (staging, 16)):
        folder.mkdir(parents=True)
        torch.manual_seed(hidden)
        net = BaseNet(BaseNetConfig(aspp_channels=16, decoder_channels=(8, 8, 8), hidden_channels=hidden)).eval()
        export_base_net(net, folder / "student.onnx", size=(24, 32))
        export_refiner(Refiner(RefinerConfig(hidden_channels=hidden, aux_channels=2)).eval(), folder / "refiner_dart.onnx")
        for name in ("student.safetensors", "refiner_dart.safetensors"):
            (folder / name).write_text(f"{hidden} wide")
    before = (staging / "refiner_dart.onnx").read_bytes()
    adapter = SceneAdapter(store, AdaptOptions())
    adapter._keep_adapted_parts(uri, staging, {"accepted": True, "student_accepted": True, "refiner_accepted": False})
    assert (staging / "refiner_dart.onnx").read_bytes() == before and (staging / "refiner_dart.safetensors").read_text() == "16 wide"


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from engines.synth.scene import SceneConfig, write_scene

    return write_scene(SceneConfig(width=W, height=H, n_background=6, n_test=30, seed=4),
                       tmp_path_factory.mktemp("rec") / "take")


def test_marks_overrule_the_teacher_and_keep_the_frame(recording, tmp_path):
    from engines.training.adapt_data import TeacherConfig, label_take, read_saved_take, read_take

    take = read_take(recording, max_frames=4)
    plain = label_take(take, TeacherConfig(max_unknown_fraction=0.0))  # every frame dropped
    assert not plain.kept.any()
    take.scribbles = np.zeros(take.depth_m.shape, np.uint8)
    take.scribbles[1, :, :8] = SCRIBBLE_FOREGROUND  # "this is me" on the left edge
    take.scribbles[1, :4, 20:] = SCRIBBLE_BACKGROUND
    marked = label_take(take, TeacherConfig(max_unknown_fraction=0.0))
    assert list(marked.kept) == [False, True, False, False] and 1 not in marked.dropped
    assert (marked.alpha[1][:, :8] == 1).all() and (marked.alpha[1][:4, 20:] == 0).all()
    assert (marked.weight[1][:, :8] == 1).all() and (marked.weight[1][:4, 20:] == 1).all()
    np.testing.assert_array_equal(marked.alpha[0], plain.alpha[0])

    prior_path = tmp_path / "prior.npz"
    take.prior.save(prior_path)
    depth_mm = (take.depth_m * 1000).astype(np.uint16)
    np.savez(tmp_path / "take.npz", color=take.color, depth_mm=depth_mm, scribbles=take.scribbles)
    np.testing.assert_array_equal(read_saved_take(tmp_path / "take.npz", prior_path).scribbles, take.scribbles)
    np.savez(tmp_path / "bad.npz", color=take.color, depth_mm=depth_mm, scribbles=take.scribbles + 5)
    with pytest.raises(UserError, match="does not match"):
        read_saved_take(tmp_path / "bad.npz", prior_path)


def test_correct_then_adapt_in_the_window(qtbot, tmp_path, recording):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication, QDialogButtonBox

    from app.adapt_worker import DONE, FAILED, KEPT
    from app.engine_state import WorkerOptions
    from app.main_window import MainWindow
    from app.scribble_dialog import ScribbleDialog
    from app.settings import AppSettings
    from engines.config import DEFAULT_MODEL_DIR

    store = SceneStore(tmp_path / "scenes")
    settings = AppSettings(background="checker", countdown_s=0.0, capture_frames=6, mode="dart")
    window = MainWindow(settings, WorkerOptions(scene_store=store, countdown_s=0.0), list_cameras=False)
    qtbot.addWidget(window)
    window.adapter.options = AdaptOptions(take_s=1.0, max_frames=4, budget_minutes=0.01, threads=1,
                                          model_dir=str(DEFAULT_MODEL_DIR),
                                          extra_args=("--size", "64x48", "--generic-samples", "3"))
    window.show()
    window.open_source(str(recording))

    def matted() -> bool:
        window.tick()
        snapshot = window.worker.latest()
        return snapshot is not None and snapshot.result is not None and window.adapt_controls.correct.isEnabled()
    qtbot.waitUntil(matted, timeout=20000)
    qtbot.mouseClick(window.adapt_controls.correct, Qt.MouseButton.LeftButton)
    dialog = window.findChild(ScribbleDialog)
    assert dialog is not None and dialog.isVisible()
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    assert not save.isEnabled()  # nothing marked yet
    canvas = dialog.canvas

    def drag(button, points) -> None:
        def send(kind, x, y, buttons):
            pos = QPointF(x, y)
            QApplication.sendEvent(canvas, QMouseEvent(kind, pos, canvas.mapToGlobal(pos), button, buttons,
                                                       Qt.KeyboardModifier.NoModifier))
        send(QEvent.Type.MouseButtonPress, *points[0], button)
        for x, y in points[1:]:
            send(QEvent.Type.MouseMove, x, y, button)
        send(QEvent.Type.MouseButtonRelease, *points[-1], Qt.MouseButton.NoButton)

    rect = canvas._target()
    left, top, sx, sy = rect.x(), rect.y(), rect.width() / W, rect.height() / H
    drag(Qt.MouseButton.LeftButton, [(left + 10 * sx, top + 30 * sy), (left + 30 * sx, top + 30 * sy)])
    drag(Qt.MouseButton.RightButton, [(left + 50 * sx, top + 5 * sy)])
    labels = dialog.scribbles()
    assert labels[30, 20] == SCRIBBLE_FOREGROUND and labels[5, 50] == SCRIBBLE_BACKGROUND
    assert labels[45, 5] == SCRIBBLE_NONE
    assert save.isEnabled()
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)
    marked = store.load_scribbles(str(recording))
    assert marked is not None and len(marked["color"]) == 1
    np.testing.assert_array_equal(marked["scribbles"][0], labels)
    assert "Marks saved" in window.message_bar.label.text()

    qtbot.mouseClick(window.adapt_controls.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: (window.tick(), window.adapter.status().state in (DONE, KEPT, FAILED))[1], timeout=180000)
    status = window.adapter.status()
    assert status.state in (DONE, KEPT), status.message
    if status.state == DONE:  # the adaptation saw the take and the marked frame
        result = json.loads((store.models_dir(str(recording)) / "adapt.json").read_text())
        assert result["frames"]["take"] == 5
    assert window.shutdown()
