"""The desktop app (offscreen Qt): capture, views, backgrounds, errors, shutdown, snapshot, and its
pure helpers (scene store, scene-change check, capture state machine, recorder, settings)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from app import events as ev  # noqa: E402
from app.backgrounds import make_replacement  # noqa: E402
from app.capture import COLLECTING, COUNTDOWN, BackgroundCapture  # noqa: E402
from app.engine_state import WorkerOptions  # noqa: E402
from app.engine_worker import EngineWorker  # noqa: E402
from app.events import EngineEvent  # noqa: E402
from app.launch import GuiOptions, run_gui  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.recorder import Recorder, RecordOptions, raw_folder  # noqa: E402
from app.scene_monitor import SceneChangeMonitor, check_scene  # noqa: E402
from app.scene_store import SceneStore, scene_key  # noqa: E402
from app.settings import AppSettings, load_settings, open_qsettings, save_settings  # noqa: E402
from app.views import VIEWS  # noqa: E402
from engines.matting.background_prior import BackgroundPriorBuilder  # noqa: E402
from engines.config import DepthConfig  # noqa: E402
from engines.synth.scene import SceneConfig, write_scene  # noqa: E402
from sensors.errors import UserError  # noqa: E402
from sensors.frame import Frame, Intrinsics  # noqa: E402
from sensors.source import open_source  # noqa: E402

W, H = 160, 120
N_BACKGROUND = 10
ENGINE_THREADS = ("EngineWorker", "FrameQueue-reader")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A synthetic recording: 10 empty-scene frames (meta background_frames = 10), then 20 with a person."""
    path = tmp_path_factory.mktemp("rec") / "scene"
    write_scene(SceneConfig(width=W, height=H, n_background=N_BACKGROUND, n_test=20, seed=1), path)
    return path


@pytest.fixture(scope="module")
def live_like_recording(tmp_path_factory) -> Path:
    """Like a camera: nothing says which frames are empty (40 empty frames, then a person)."""
    path = tmp_path_factory.mktemp("rec") / "live_like"
    write_scene(SceneConfig(width=W, height=H, n_background=40, n_test=20, seed=2), path)
    meta_path = path / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["background_frames"]
    meta_path.write_text(json.dumps(meta))
    return path


def engine_threads_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ENGINE_THREADS and t.is_alive()]


def make_window(qtbot, tmp_path: Path, settings: AppSettings | None = None, **worker) -> MainWindow:
    settings = settings or AppSettings(background="checker", countdown_s=0.0, capture_frames=8)
    options = WorkerOptions(scene_store=SceneStore(tmp_path / "scenes"), capture_frames=settings.capture_frames,
                            countdown_s=settings.countdown_s, **worker)
    window = MainWindow(settings, options, list_cameras=False)
    qtbot.addWidget(window)
    window.show()
    return window


def wait_for_snapshot(qtbot, window: MainWindow, condition, timeout_ms: int = 8000):
    found = []

    def check() -> bool:
        window.tick()
        snapshot = window.worker.latest()
        if snapshot is not None and condition(snapshot):
            found.append(snapshot)
            return True
        return False

    qtbot.waitUntil(check, timeout=timeout_ms)
    return found[-1]


# -- the window ---------------------------------------------------------------------------------------
def test_capture_button_then_composite_views_and_backgrounds(qtbot, tmp_path, live_like_recording):
    window = make_window(qtbot, tmp_path)
    window.open_source(str(live_like_recording))
    wait_for_snapshot(qtbot, window, lambda s: s.frame.index >= 0)
    assert "capture the background" in window.view.overlay().lower()

    qtbot.mouseClick(window.capture_panel.button, qtbot_button())
    wait_for_snapshot(qtbot, window, lambda s: s.has_prior)
    qtbot.waitUntil(lambda: window.capture_panel.progress.value() == 100, timeout=2000)
    assert (tmp_path / "scenes" / f"{scene_key(str(live_like_recording))}.npz").is_file()

    # composite: the person's pixels are the camera's, the rest is the checkerboard
    snapshot = wait_for_snapshot(qtbot, window, lambda s: s.result is not None and s.frame.index >= 45)
    window._show(snapshot)
    shown = window.view.current_image().astype(int)
    raw = snapshot.frame.color.astype(int)
    alpha = snapshot.result.alpha
    assert shown.shape == raw.shape
    background, subject = alpha < 0.02, alpha > 0.98
    assert background.mean() > 0.3 and subject.sum() >= 20
    assert np.abs(shown - raw)[background].mean() > 20
    assert np.abs(shown - raw)[subject].mean() < 4

    # every view mode renders something of the right kind
    for key in VIEWS:
        window.engine_controls.set_view(key)
        assert window.settings.view == key
        image = window.view.current_image()
        width = 2 * W if key == "side_by_side" else W
        assert image.shape == (H, width, 3), key
        grey = bool(np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2]))
        assert grey == (key in ("alpha", "trimap")), key
        if key == "trimap":
            assert set(np.unique(image)) <= {0, 127, 128, 255}
    window.engine_controls.set_view("composite")

    # a new background reaches the composite
    window.background_controls.choose("#00FF00")
    snapshot = wait_for_snapshot(
        qtbot, window,
        lambda s: s.result is not None and np.all(s.output[s.result.alpha < 0.001] == (0, 255, 0)))
    assert window.background_controls.buttons["color"].isChecked()


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_recording_background_frames_are_captured_automatically_and_restored(qtbot, tmp_path, recording):
    window = make_window(qtbot, tmp_path)
    window.open_source(str(recording))
    snapshot = wait_for_snapshot(qtbot, window, lambda s: s.result is not None)
    assert snapshot.frame.index >= N_BACKGROUND  # the empty-scene frames built the prior
    assert "static and empty" in window.capture_panel.status.text()
    window.close()

    # a second session on the same recording restores the stored background instead
    worker = EngineWorker(window.settings.engine_config(), "checker",
                          options=WorkerOptions(scene_store=SceneStore(tmp_path / "scenes"), stop_after_matted=3))
    worker.start()
    try:
        worker.open_source(str(recording))
        qtbot.waitUntil(lambda: worker.latest() is not None and worker.latest().stats.matted >= 3, timeout=8000)
        kinds = [e.kind for e in worker.poll_events()]
        assert ev.PRIOR_RESTORED in kinds and ev.CAPTURE_DONE not in kinds
        assert worker.latest().frame.index >= N_BACKGROUND  # empty-scene frames are skipped
    finally:
        assert worker.stop(1.0)


def test_engine_options_rebuild_the_pipeline_and_keep_the_background(qtbot, tmp_path, recording):
    window = make_window(qtbot, tmp_path)
    window.open_source(str(recording))
    wait_for_snapshot(qtbot, window, lambda s: s.result is not None)
    window.engine_controls.gate.setValue(15)  # 1.5 m
    window.engine_controls.mode.setCurrentIndex(window.engine_controls.mode.findData("rgb-subtract"))
    qtbot.waitUntil(lambda: window.worker._config.max_subject_distance_m == 1.5, timeout=3000)
    assert window.worker._config.mode == "rgb-subtract"
    seq = window.worker.latest().seq
    snapshot = wait_for_snapshot(qtbot, window, lambda s: s.seq > seq + 1 and s.result is not None)
    assert snapshot.has_prior and snapshot.result.trimap is None  # no recapture; the new mode runs
    assert np.all(snapshot.result.alpha[snapshot.depth_m > 1.5] == 0)


def test_post_matting_switch_shows_the_post_composite_beside_the_live_output(qtbot, tmp_path, recording):
    settings = AppSettings(background="checker", post_matting=True)
    window = make_window(qtbot, tmp_path, settings)
    window.open_source(str(recording))
    # post-matting runs at low priority: on a busy machine its first frame takes a while
    snapshot = wait_for_snapshot(qtbot, window, lambda s: s.post_output is not None, timeout_ms=40000)
    window._show(snapshot)
    assert window.worker._config.post == "closed-form" and window.worker._pipeline._post is None  # not inline
    assert np.array_equal(window.view.current_image(), snapshot.post_output)
    assert re.fullmatch(r"post \d+ ms, \d+ frames? behind", window.post_label.text())
    window.engine_controls.set_view("side_by_side")  # the other views stay live
    assert np.array_equal(window.view.current_image()[:, W:], snapshot.output)
    window.engine_controls.set_view("composite")

    window.engine_controls.post_matting.setChecked(False)
    snapshot = wait_for_snapshot(qtbot, window, lambda s: s.result is not None and s.post_stats is None)
    window._show(snapshot)
    assert window.post_label.text() == "" and np.array_equal(window.view.current_image(), snapshot.output)


def test_record_button_writes_video_and_raw_frames(qtbot, tmp_path, recording):
    settings = AppSettings(background="checker", record_dir=str(tmp_path / "videos"), record_raw=True)
    window = make_window(qtbot, tmp_path, settings)
    window.open_source(str(recording))
    wait_for_snapshot(qtbot, window, lambda s: s.result is not None)
    window.record_action.setChecked(True)
    # count from the first recorded frame: frames already in the engine's stages when the command ran are not in it
    qtbot.waitUntil(lambda: window.worker._outputs._recorder is not None, timeout=10000)
    start = window.worker.latest().stats.shown
    wait_for_snapshot(qtbot, window, lambda s: s.stats.shown >= start + 6)
    window.record_action.setChecked(False)
    qtbot.waitUntil(lambda: (window.tick(), "Saved" in window.message_bar.text())[1], timeout=5000)
    folders = list((tmp_path / "videos").iterdir())
    assert len(folders) == 1
    video = cv2.VideoCapture(str(folders[0] / "composite.mp4"))
    assert video.isOpened() and video.get(cv2.CAP_PROP_FRAME_COUNT) >= 5
    with open_source(str(raw_folder(folders[0]))) as source:
        assert source.info.frame_count >= 5 and (source.info.width, source.info.height) == (W, H)


def test_closing_during_capture_stops_every_thread(qtbot, tmp_path, live_like_recording):
    settings = AppSettings(background="checker", countdown_s=5.0, capture_frames=8)
    window = make_window(qtbot, tmp_path, settings)
    window.open_source(str(live_like_recording))
    wait_for_snapshot(qtbot, window, lambda s: True)
    window.capture_background()
    wait_for_snapshot(qtbot, window, lambda s: s.capture is not None and s.capture.phase == COUNTDOWN)
    window.tick()
    assert window.view._big  # the countdown is on screen
    assert engine_threads_alive()
    window.close()  # stops within its 1 s budget or reports failure
    assert engine_threads_alive() == []
    assert not window.worker.running


def test_errors_show_in_the_window(qtbot, tmp_path, recording):
    window = make_window(qtbot, tmp_path)
    window.open_source(str(tmp_path / "no such recording"))
    qtbot.waitUntil(lambda: window.message_bar.level == "error", timeout=5000)
    window.tick()
    assert "does not exist" in window.message_bar.text()
    assert window.worker.running

    window.open_source(str(recording))
    wait_for_snapshot(qtbot, window, lambda s: s.result is not None)
    window.background_controls.choose(str(tmp_path / "missing.png"))
    qtbot.waitUntil(lambda: "missing.png" in window.message_bar.text(), timeout=5000)
    assert window.worker.running


def test_scene_change_prompt_offers_a_recapture(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    window.worker._events.append(EngineEvent(ev.SCENE_CHANGED, "The background looks different."))
    window.tick()
    assert window.message_bar.isVisible() and window.message_bar.action.text() == "Capture again"
    assert window.message_bar.level == "warning"


def test_dropped_image_becomes_the_background(qtbot, tmp_path):
    image = tmp_path / "beach.png"
    cv2.imwrite(str(image), np.full((30, 40, 3), 200, np.uint8))
    window = make_window(qtbot, tmp_path)
    window.open_dropped(image)
    assert window.settings.background == str(image)
    assert window.background_controls.buttons["image"].isChecked()


def test_snapshot_command_saves_a_png_of_the_window(qtbot, tmp_path, recording):
    out = tmp_path / "shots" / "window.png"
    code = run_gui(GuiOptions(source=str(recording), background="checker", snapshot=out, quit_after_frames=4,
                              data_dir=tmp_path / "data", list_cameras=False))
    assert code == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] >= 800 and image.shape[0] >= 500
    assert (tmp_path / "data" / "scenes" / f"{scene_key(str(recording))}.npz").is_file()
    assert engine_threads_alive() == []


def test_live_view_paints_the_image_scaled_to_fit_in_its_colours(qtbot):
    """The view pre-scales the image to its own pixels (`display_image`, BGRX for QImage.Format_RGB32):
    the painted widget shows the image's colours (not swapped channels) and black bars, at any size."""
    from PySide6.QtGui import QImage

    from app.views import LiveView, display_image

    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[:, :80] = (255, 0, 0)  # left half red, right half blue
    rgb[:, 80:] = (0, 0, 255)
    pixels = display_image(rgb, 480, 480)  # wide image in a square: scaled x3, letterboxed
    assert pixels.shape == (360, 480, 4) and tuple(pixels[10, 10]) == (0, 0, 255, 255)
    assert display_image(rgb, 0, 0).shape == (120, 160, 4)
    view = LiveView()
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.set_image(rgb)
    grab = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    ratio = grab.width() / view.width()
    shot = np.frombuffer(grab.constBits(), np.uint8).reshape(grab.height(), grab.bytesPerLine())
    shot = shot[:, : 3 * grab.width()].reshape(grab.height(), grab.width(), 3)
    middle = int(200 * ratio)
    assert tuple(shot[middle, int(100 * ratio)]) == (255, 0, 0) and tuple(shot[middle, int(300 * ratio)]) == (0, 0, 255)
    assert tuple(shot[int(20 * ratio), middle]) == (20, 20, 20)  # the bar above the image
    assert np.array_equal(view.current_image(), rgb)


# -- pure helpers ---------------------------------------------------------------------------------------
def test_scene_keys_are_safe_and_distinct(tmp_path):
    a, b = tmp_path / "x" / "take 1", tmp_path / "y" / "take 1"
    assert scene_key(str(a)) != scene_key(str(b))
    assert scene_key(str(a)) == scene_key(str(tmp_path / "x" / ".." / "x" / "take 1"))
    assert scene_key("realsense://123/../4") == "realsense_123_.._4"
    for key in (scene_key(str(a)), scene_key("orbbec://"), scene_key("realsense://AB:CD")):
        assert "/" not in key and ":" not in key and " " not in key


def _flat_prior(depth_m: float = 2.0, n: int = 5):
    builder = BackgroundPriorBuilder(H, W)
    rng = np.random.default_rng(0)
    for _ in range(n):
        builder.add(np.full((H, W, 3), 90, np.uint8), (depth_m + rng.normal(0, 0.003, (H, W))).astype(np.float32))
    return builder.build(DepthConfig())


def test_scene_store_round_trip_and_resolution_check(tmp_path):
    store = SceneStore(tmp_path / "scenes")
    prior = _flat_prior()
    assert store.load("realsense://1") is None
    store.save("realsense://1", prior)
    loaded = store.load("realsense://1", (H, W))
    np.testing.assert_array_equal(loaded.depth_mean_m, prior.depth_mean_m)
    assert store.load("realsense://1", (H * 2, W * 2)) is None
    store.path_for("realsense://2").write_bytes(b"not a zip")
    assert store.load("realsense://2") is None


def test_scene_check_flags_a_moved_camera_not_a_person():
    prior = _flat_prior(2.0)
    depth = np.full((H, W), 2.0, np.float32)
    alpha = np.zeros((H, W), np.float32)
    person = depth.copy()
    person[20:, 40:110] = 1.0
    alpha_person = np.zeros_like(alpha)
    alpha_person[20:, 40:110] = 1.0
    assert not check_scene(prior, depth, alpha).different
    assert not check_scene(prior, person, alpha_person).different
    moved = np.full((H, W), 1.4, np.float32)  # everything is nearer: the camera moved
    assert check_scene(prior, moved, np.ones_like(alpha)).different
    drifted = np.full((H, W), 2.3, np.float32)  # background pixels off by 30 cm while alpha says background
    assert check_scene(prior, drifted, alpha).different

    monitor = SceneChangeMonitor(patience=3)
    assert [monitor.update(prior, moved, alpha) for _ in range(5)] == [False, False, True, False, False]
    monitor.update(prior, depth, alpha)  # back to normal re-arms
    assert [monitor.update(prior, moved, alpha) for _ in range(3)] == [False, False, True]


def test_capture_state_machine_counts_down_then_collects():
    capture = BackgroundCapture(total=3, countdown_s=2.0, started_at=100.0)
    color, depth = np.zeros((H, W, 3), np.uint8), np.full((H, W), 2.0, np.float32)
    assert capture.progress(101.0).phase == COUNTDOWN and capture.progress(101.0).seconds_left == pytest.approx(1.0)
    assert not capture.step(color, depth, 101.5) and capture.collected == 0
    assert not capture.step(color, depth, 102.0) and capture.progress(102.0).phase == COLLECTING
    assert not capture.step(color, depth, 102.1)
    assert capture.step(color, depth, 102.2)
    prior, report = capture.finish(DepthConfig())
    assert prior.n_frames == 3 and prior.shape == (H, W)


def test_recorder_writes_composite_video_and_raw_recording(tmp_path):
    intrinsics = Intrinsics.default_for(W, H)
    recorder = Recorder(RecordOptions(tmp_path / "rec", composite=True, raw=True), W, H, 30.0, 0.001, intrinsics)
    for i in range(5):
        frame = Frame(np.full((H, W, 3), 40 * i, np.uint8), np.full((H, W), 1500 + i, np.uint16), 0.001,
                      i / 30, 100 + i, intrinsics)
        recorder.write(frame, np.full((H, W, 3), (255, 0, 0), np.uint8))
    recorder.close()
    video = cv2.VideoCapture(str(tmp_path / "rec" / "composite.mp4"))
    ok, first = video.read()
    assert ok and first.shape == (H, W, 3) and first[..., 2].mean() > 200  # red in BGR
    with open_source(str(raw_folder(tmp_path / "rec"))) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(5))
    assert int(frames[3].depth_raw[0, 0]) == 1503


def test_video_background_loops_and_fits_the_frame(tmp_path):
    path = tmp_path / "waves.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 32))
    for level in (0, 120, 240):
        writer.write(np.full((32, 64, 3), level, np.uint8))
    writer.release()
    background = make_replacement(str(path))
    frame = np.zeros((H, W, 3), np.uint8)
    levels = [int(background.render(frame).mean()) for _ in range(5)]
    assert background.render(frame).shape == (H, W, 3)
    assert levels[0] < 10 and 110 < levels[1] < 130 and levels[2] > 230  # in order, from the first frame
    assert abs(levels[3] - levels[0]) < 10 and abs(levels[4] - levels[1]) < 10  # then again
    with pytest.raises(UserError):
        make_replacement(str(tmp_path / "missing.mp4"))


def test_settings_persist_and_build_the_engine_config(tmp_path):
    store = open_qsettings(tmp_path)
    settings = AppSettings(mode="rgb-subtract", max_subject_distance_m=2.5, temporal_smoothing=0.3,
                           background="#112233", view="alpha")
    save_settings(store, settings)
    loaded = load_settings(open_qsettings(tmp_path))
    assert loaded == settings
    config = loaded.engine_config()
    assert (config.mode, config.max_subject_distance_m, config.temporal_smoothing) == ("rgb-subtract", 2.5, 0.3)
    assert AppSettings(max_subject_distance_m=0.0).engine_config().max_subject_distance_m is None
