"""A window a non-developer understands (issue 18): plain mode names, controls enabled only where they
act, a status bar with state / fps / latency / REC and the stage timings behind "Details", a Help menu
and About; no stale state (messages clear with their cause, failed sources are forgotten); the CLI's
background choices and defaults stated the same way everywhere."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

import main  # noqa: E402
from app import events as ev  # noqa: E402
from app.controls import HIDDEN_MODES, MODE_LABELS  # noqa: E402
from app.engine_state import WorkerOptions  # noqa: E402
from app.events import EngineEvent  # noqa: E402
from app.help_dialogs import about_html, asset_licences  # noqa: E402
from app.main_window import MainWindow, short_path  # noqa: E402
from app.scene_store import SceneStore  # noqa: E402
from app.settings import NETWORK_MODES, AppSettings  # noqa: E402
from app.status_panel import StatusPanel, format_elapsed  # noqa: E402
from engines.matting.compositing import parse_background_spec  # noqa: E402
from engines.matting.pipeline import MODES  # noqa: E402
from engines.synth.scene import SceneConfig, write_scene  # noqa: E402

W, H = 160, 120


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "scene"
    write_scene(SceneConfig(width=W, height=H, n_background=10, n_test=20, seed=1), path)
    return path


def make_window(qtbot, tmp_path: Path, settings: AppSettings | None = None) -> MainWindow:
    settings = settings or AppSettings(background="checker", countdown_s=0.0, capture_frames=8)
    options = WorkerOptions(scene_store=SceneStore(tmp_path / "scenes"), capture_frames=settings.capture_frames,
                            countdown_s=settings.countdown_s)
    window = MainWindow(settings, options, list_cameras=False)
    qtbot.addWidget(window)
    window.show()
    return window


def push(window: MainWindow, kind: str, message: str = "", detail: str = "") -> None:
    """Deliver an engine event as the worker would, and let the window handle it."""
    window.worker._events.append(EngineEvent(kind, message, detail))
    window.tick()


def wait_for(qtbot, window: MainWindow, condition, timeout_ms: int = 20000) -> None:
    qtbot.waitUntil(lambda: (window.tick(), condition())[1], timeout=timeout_ms)


# -- controls -------------------------------------------------------------------------------------------
def test_mode_box_speaks_plain_language_and_hides_rgb_subtract(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    box = window.engine_controls.mode
    labels = [box.itemText(i) for i in range(box.count())]
    assert labels[0] == "DART (default)" and "Depth only (fastest)" in labels
    assert "Colour networks (RGB baseline)" in labels
    assert sorted(box.itemData(i) for i in range(box.count())) == sorted(MODES)  # technical names as data
    assert "dart" in box.toolTip() and "--mode dart" in box.toolTip()
    assert window.engine_controls.mode_help.text() == MODE_LABELS["dart"][1]
    hidden = [box.itemData(i) for i in range(box.count()) if box.view().isRowHidden(i)]
    assert hidden == list(HIDDEN_MODES)  # rgb-subtract is not offered beside the real modes ...
    row = box.findData("rgb-subtract")
    assert not box.model().item(row).isEnabled()  # ... nor reachable with the keys

    box.setCurrentIndex(box.findData("dart"))
    assert window.settings.mode == "dart" and window.engine_controls.mode_help.text() == MODE_LABELS["dart"][1]
    assert "dart" in box.toolTip()

    saved = make_window(qtbot, tmp_path / "b", AppSettings(mode="rgb-subtract", background="checker"))
    saved_box = saved.engine_controls.mode
    assert saved_box.currentData() == "rgb-subtract"  # ... unless it is the saved setting
    assert not any(saved_box.view().isRowHidden(i) for i in range(saved_box.count()))
    assert "light" in saved.engine_controls.mode_help.text()


def test_controls_are_enabled_only_where_they_act_and_say_what_they_do(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    controls = window.engine_controls
    for mode in MODES:
        controls.mode.setCurrentIndex(controls.mode.findData(mode))
        assert controls.refiner.isEnabled() == (mode in NETWORK_MODES), mode
        assert controls.refiner.isChecked() == (mode in NETWORK_MODES), mode  # saved: on; shown only where it acts
        assert "network" in controls.refiner.toolTip()
    for box in (controls.post_matting, controls.edge_refine, controls.refiner):
        assert len(box.toolTip()) > 40
    assert "few frames late" in controls.post_matting.toolTip()
    # a switch that cannot act keeps its saved value
    controls.mode.setCurrentIndex(controls.mode.findData("depth"))
    window.settings.refiner = True
    controls.edge_refine.setChecked(not controls.edge_refine.isChecked())
    assert window.settings.refiner is True


# -- status bar -------------------------------------------------------------------------------------------
def test_status_bar_shows_state_fps_latency_and_hides_stage_timings_until_asked(qtbot, tmp_path, recording):
    window = make_window(qtbot, tmp_path)
    assert window.status.state() == "No source"
    window.open_source(str(recording))
    assert window.status.state() == "Opening…"
    wait_for(qtbot, window, lambda: window.worker.latest() is not None and window.worker.latest().result is not None)
    snapshot = window.worker.latest()
    window._show(snapshot)
    assert window.status.state() == "Playing"  # a recording; a camera says "Live"
    assert window.status.fps_label.text().endswith("fps")
    assert window.status.latency_label.text() == "" or window.status.latency_label.text().startswith("latency")
    assert window.status.stages_label.isHidden() and not window.settings.show_details
    assert "ms" in window.status.stages_label.text()  # measured, just not shown

    window.status.details_action.trigger()
    assert window.status.stages_label.isVisible() and window.settings.show_details
    assert window.status.details_button.text() == "Details"
    window.status.details_action.trigger()
    assert window.status.stages_label.isHidden()

    push(window, ev.VCAM_STARTED, "Virtual webcam on: /dev/video9.")
    assert window.status.webcam_label.text() == "● Webcam on"
    push(window, ev.VCAM_STOPPED, "Virtual webcam off.")
    assert window.status.webcam_label.text() == ""


def test_rec_indicator_counts_up_with_the_size(qtbot, tmp_path):
    from PySide6.QtWidgets import QStatusBar

    bar = QStatusBar()
    qtbot.addWidget(bar)
    panel = StatusPanel(bar)
    assert panel.rec_label.isHidden()
    folder = tmp_path / "take"
    folder.mkdir()
    (folder / "composite.mp4").write_bytes(b"x" * 3 * 1024 * 1024)
    panel.recording_started(folder, now=100.0)
    assert not panel.rec_label.isHidden() and panel.rec_label.text().startswith("● REC 00:00")
    assert "3.0 MB" in panel.rec_label.text() and str(folder) in panel.rec_label.toolTip()
    panel.tick(165.4)
    assert panel.rec_label.text().startswith("● REC 01:05")
    panel.recording_stopped()
    assert panel.rec_label.isHidden() and not panel.recording
    assert format_elapsed(3725) == "1:02:05"


def test_recording_shows_rec_and_a_readable_message_and_clears_a_stale_webcam_error(qtbot, tmp_path, recording):
    record_dir = tmp_path / ("a-very-long-folder-name-for-the-videos-of-this-user" * 2)
    settings = AppSettings(background="checker", record_dir=str(record_dir), record_composite=True)
    window = make_window(qtbot, tmp_path, settings)
    window.open_source(str(recording))
    wait_for(qtbot, window, lambda: window.worker.latest() is not None and window.worker.latest().result is not None)
    push(window, ev.VCAM_UNAVAILABLE, "The virtual webcam cannot start: no device", "")
    assert window.message_bar.level == "error" and window.message_bar.cause == "vcam"

    window.record_action.setChecked(True)
    wait_for(qtbot, window, lambda: window.status.recording)
    assert window.status.rec_label.isVisible() and window.status.rec_label.text().startswith("● REC 00:0")
    text = window.message_bar.text()
    assert text.startswith("Recording to ") and "…" in text and len(text) < 100  # shortened, not cut off
    assert window.message_bar.label.toolTip() == str(window._recording_folder)  # the whole path on hover
    assert window.message_bar.action.text() == "Open folder"
    assert "webcam" not in text  # the old webcam error is gone
    window.capture_background()  # before: capturing during a take hid "Recording to ..." for good
    assert window.message_bar.text() == text

    window.record_action.setChecked(False)
    wait_for(qtbot, window, lambda: "Saved" in window.message_bar.text())
    assert window.status.rec_label.isHidden() and "webcam" not in window.message_bar.text()


# -- no stale state ------------------------------------------------------------------------------------
def test_webcam_error_clears_when_the_webcam_starts_or_a_source_opens(qtbot, tmp_path, recording):
    window = make_window(qtbot, tmp_path)
    push(window, ev.VCAM_UNAVAILABLE, "The virtual webcam cannot start: no device", "steps")
    assert window.message_bar.isVisible() and window.message_bar.action.text() == "Set-up help"
    push(window, ev.VCAM_STARTED, "Virtual webcam on: /dev/video9.")
    assert not window.message_bar.isVisible()

    push(window, ev.VCAM_UNAVAILABLE, "The virtual webcam cannot start: no device", "")
    window.open_source(str(recording))
    assert not window.message_bar.isVisible()
    wait_for(qtbot, window, lambda: window.worker.latest() is not None and window.worker.latest().result is not None)

    push(window, ev.SCENE_CHANGED, "The background looks different.")  # another cause is left alone ...
    push(window, ev.VCAM_STARTED, "Virtual webcam on.")
    assert window.message_bar.isVisible() and window.message_bar.cause == "scene"
    push(window, ev.CAPTURE_DONE, "Captured.")  # ... until its own cause is gone
    assert not window.message_bar.isVisible()


def test_a_source_that_failed_to_open_is_not_listed_nor_remembered(qtbot, tmp_path, recording):
    window = make_window(qtbot, tmp_path)
    picker = window.source_picker
    typo = str(tmp_path / "recordnig")
    window.open_source(typo)
    assert window.settings.last_source == ""  # not before it opened
    wait_for(qtbot, window, lambda: window.message_bar.level == "error")
    assert "does not exist" in window.message_bar.text() and window.message_bar.action.text() == "Retry"
    assert picker._index_of(typo) < 0 and window.settings.last_source == ""
    assert window.status.state() == "No picture"

    window.open_source(str(recording))
    wait_for(qtbot, window, lambda: window.settings.last_source == str(recording))
    assert picker._index_of(str(recording)) >= 0

    window.open_source(typo)
    wait_for(qtbot, window, lambda: window.message_bar.level == "error" and window.message_bar.isVisible())
    assert window.settings.last_source == str(recording) and picker._index_of(typo) < 0
    assert picker.combo.currentIndex() == -1  # nothing is shown as open
    window.message_bar.action.click()  # Retry asks for the failed source again
    assert picker._index_of(typo) >= 0 and window._uri == typo


# -- menus -------------------------------------------------------------------------------------------------
def test_help_menu_explains_shortcuts_cameras_webcam_and_about(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert {"File", "View", "Help"} <= set(menus)
    items = {a.text(): a for a in menus["Help"].actions() if a.text()}
    assert {"Keyboard shortcuts", "Camera set-up…", "Virtual webcam set-up…", "About RGB-D Matting"} <= set(items)

    items["Keyboard shortcuts"].trigger()
    text = window.help_dialog.browser.toPlainText()
    for key in ("B", "V", "R", "1", "7", "F1", "Ctrl+Q"):
        assert f"\n{key}\n" in f"\n{text}\n", key
    assert "capture the empty scene" in text

    items["Camera set-up…"].trigger()
    text = window.help_dialog.browser.toPlainText()
    assert "CAMERAS.md" in text and "udev" in text and "realsense://" in text

    items["Virtual webcam set-up…"].trigger()
    assert "modprobe v4l2loopback" in window.help_dialog.browser.toPlainText()

    items["About RGB-D Matting"].trigger()
    text = window.help_dialog.browser.toPlainText()
    from PySide6.QtCore import qVersion

    assert platform.python_version() in text and qVersion() in text and "onnxruntime" in text
    assert "Apache License 2.0" in text and "assets/demo_recording/" in text


def test_about_reads_the_licences_from_the_asset_docs():
    licences = dict(asset_licences())
    assert "Apache License 2.0" in licences["Network weights (assets/models)"]
    assert licences["assets/backbone_init/"] == "Apache-2.0"
    assert "CC BY 4.0" in licences["assets/demo_recording/"]
    assert "<h2>RGB-D Matting</h2>" in about_html()


def test_short_path_keeps_both_ends():
    path = "/home/someone/" + "x" * 100 + "/2024-05-01_10-00-00"
    short = short_path(path)
    assert len(short) <= 70 and short.startswith("/home/") and short.endswith("2024-05-01_10-00-00")
    assert short_path("/tmp/a") == "/tmp/a"


# -- command line ------------------------------------------------------------------------------------------
def _subparser(name: str) -> argparse.ArgumentParser:
    parser = main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["gui", "process"])
def test_every_gui_and_process_option_states_its_default(command):
    for action in _subparser(command)._actions:
        if action.option_strings and action.dest != "help" and not action.required:
            assert action.help and "default" in action.help, f"{command} {action.option_strings[0]}"


def test_background_choices_agree_between_gui_and_process_and_parse():
    process = next(a for a in _subparser("process")._actions if a.dest == "replace")
    gui = next(a for a in _subparser("gui")._actions if a.dest == "background")
    for choice in ("blur:SIGMA", "checker:CELL", "#RRGGBB", "blur", "checker", "green"):
        assert choice in process.help and choice in gui.help, choice
    assert gui.help.split(" (default")[0].split(": ", 1)[1] == process.help.split(" (default: %")[0].split(": ", 1)[1]
    for spec in ("blur", "blur:20", "#12AB34", "green", "checker", "checker:8"):
        parse_background_spec(spec)  # every choice the help names is accepted
    assert gui.metavar == process.metavar and "VIDEO" in gui.metavar  # both take a looped video
