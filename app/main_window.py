"""The main window: lays out the widgets, wires them to the engine worker and follows its results.

The window owns one `EngineWorker` and a ~33 ms QTimer. Each tick drains the worker's events
(errors, capture results, virtual-camera problems) and shows its newest snapshot in the live view
and status bar; nothing in the GUI thread ever waits for the engine. Controls only edit
`AppSettings` and forward the change to the worker. Closing the window stops everything.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import events as ev
from app.backgrounds import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from app.capture import COUNTDOWN
from app.capture_panel import CapturePanel, failure_dialog
from app.controls import BackgroundControls, EngineControls
from app.engine_state import FPS_WINDOW, EngineSnapshot, WorkerOptions, running_fps
from app.engine_worker import EngineWorker
from app.events import EngineEvent
from app.message_bar import MessageBar
from app.recorder import RecordOptions, default_recording_folder
from app.settings import AppSettings, videos_dir
from app.source_picker import SourcePicker, source_label
from app.views import VIEWS, LiveView, post_status, render_view

log = logging.getLogger(__name__)

TICK_MS = 33
ENGINE_DEBOUNCE_MS = 150
SIDE_PANEL_WIDTH = 330


class MainWindow(QMainWindow):
    """finished: the worker processed `stop_after_matted` frames. failed(message): unattended run failed."""

    finished = Signal()
    failed = Signal(str)

    def __init__(self, settings: AppSettings, worker_options: WorkerOptions, demo_path: Path | None = None,
                 list_cameras: bool = True, unattended: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.unattended = unattended
        self.setWindowTitle("RGB-D Matting")
        self.resize(1280, 780)
        self.setAcceptDrops(True)
        self.worker = EngineWorker(settings.engine_config(), settings.background, settings.blur_sigma_px,
                                   worker_options)
        self._shown_seq = -1
        self._display_times: deque[float] = deque(maxlen=FPS_WINDOW)  # when new frames were shown
        self._dialog: QMessageBox | None = None

        self.source_picker = SourcePicker(demo_path, list_cameras)
        self.message_bar = MessageBar()
        self.view = LiveView()
        self.capture_panel = CapturePanel(settings)
        self.engine_controls = EngineControls(settings)
        self.background_controls = BackgroundControls(settings)
        self._build_layout()
        self._build_actions()
        self._build_status_bar()

        self.source_picker.source_chosen.connect(self.open_source)
        self.capture_panel.capture_requested.connect(self.capture_background)
        self._engine_timer = QTimer(self, singleShot=True, interval=ENGINE_DEBOUNCE_MS)
        self._engine_timer.timeout.connect(lambda: self.worker.set_engine_config(settings.engine_config()))
        self.engine_controls.engine_changed.connect(self._engine_timer.start)
        self.engine_controls.view_changed.connect(lambda _view: self._redraw())
        self.background_controls.background_changed.connect(
            lambda: self.worker.set_background(settings.background, settings.blur_sigma_px))

        self.worker.start()
        self._timer = QTimer(self, interval=TICK_MS)
        self._timer.timeout.connect(self.tick)
        self._timer.start()
        self.view.set_overlay("Choose a camera or a recording")

    # -- construction ---------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(QLabel("Source"))
        top.addWidget(self.source_picker, 1)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        for panel in (self.capture_panel, self.engine_controls, self.background_controls):
            side_layout.addWidget(panel)
        side_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        needed = side.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 2 * scroll.frameWidth()
        scroll.setFixedWidth(max(SIDE_PANEL_WIDTH, needed))
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        middle = QHBoxLayout()
        middle.addWidget(self.view, 1)
        middle.addWidget(scroll)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top)
        layout.addWidget(self.message_bar)
        layout.addLayout(middle, 1)
        self.setCentralWidget(central)

    def _build_actions(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setMovable(False)
        self.capture_action = QAction("Capture background", self, shortcut=QKeySequence("B"))
        self.capture_action.setToolTip("Step out of view and capture the empty scene (B)")
        self.capture_action.triggered.connect(self.capture_background)
        self.vcam_action = QAction("Virtual webcam", self, checkable=True, shortcut=QKeySequence("V"))
        self.vcam_action.setToolTip("Stream the composite to a virtual webcam for video calls (V)")
        self.vcam_action.toggled.connect(self.worker.set_virtual_camera)
        self.record_action = QAction("Record", self, checkable=True, shortcut=QKeySequence("R"))
        self.record_action.setToolTip("Record the composite video and/or the raw RGB-D stream (R)")
        self.record_action.toggled.connect(self._toggle_recording)
        record_menu = QMenu(self)
        self.record_composite_action = record_menu.addAction("Composite video (MP4)")
        self.record_raw_action = record_menu.addAction("Raw RGB-D recording")
        for action, name in ((self.record_composite_action, "record_composite"), (self.record_raw_action, "record_raw")):
            action.setCheckable(True)
            action.setChecked(getattr(self.settings, name))
            action.toggled.connect(lambda on, name=name: setattr(self.settings, name, on))
        toolbar.addAction(self.capture_action)
        toolbar.addAction(self.vcam_action)
        record_button = QToolButton()
        record_button.setDefaultAction(self.record_action)
        record_button.setMenu(record_menu)
        record_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        toolbar.addWidget(record_button)
        for number, (key, label) in enumerate(VIEWS.items(), start=1):
            action = QAction(label, self, shortcut=QKeySequence(str(number)))
            action.triggered.connect(lambda _checked=False, key=key: self.engine_controls.set_view(key))
            self.addAction(action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.fps_label = QLabel()
        self.stages_label = QLabel()
        self.queue_label = QLabel()
        self.post_label = QLabel()
        self.post_label.setToolTip("Post-matting runs beside the live picture on the newest frame it can take; "
                                   "the composite view shows its result, a few frames late")
        self.output_label = QLabel()
        for label in (self.fps_label, self.stages_label, self.queue_label, self.post_label, self.output_label):
            bar.addPermanentWidget(label)

    # -- user actions ---------------------------------------------------------------------------------
    def open_source(self, uri: str) -> None:
        self.settings.last_source = uri
        self.source_picker.set_current(uri)
        self._shown_seq = -1
        self._display_times.clear()
        self.message_bar.hide()
        self._clear_live_state()
        self.view.set_overlay(f"Opening {source_label(uri)}…")
        self.worker.open_source(uri)

    def capture_background(self) -> None:
        self.message_bar.hide()
        self.worker.start_capture(self.settings.capture_frames, self.settings.countdown_s)

    def set_background(self, spec: str) -> None:
        self.background_controls.choose(spec)

    def _toggle_recording(self, on: bool) -> None:
        if not on:
            self.worker.stop_recording()
            return
        parent = Path(self.settings.record_dir) if self.settings.record_dir else videos_dir()
        options = RecordOptions(default_recording_folder(parent), composite=self.settings.record_composite,
                                raw=self.settings.record_raw)
        self.worker.start_recording(options)

    # -- following the engine -------------------------------------------------------------------------
    def tick(self) -> None:
        """Drain the worker's events, then show its newest snapshot (events first: FINISHED comes last)."""
        for event in self.worker.poll_events():
            self._handle(event)
        snapshot = self.worker.latest()
        if snapshot is not None and snapshot.seq != self._shown_seq:
            self._display_times.append(time.monotonic())
            self._show(snapshot)

    def _redraw(self) -> None:
        snapshot = self.worker.latest()
        if snapshot is not None:
            self._show(snapshot)

    def _show(self, snapshot: EngineSnapshot) -> None:
        self._shown_seq = snapshot.seq
        image, note = render_view(self.settings.view, snapshot)
        self.view.set_image(image)
        capture = snapshot.capture
        if capture is not None and capture.phase == COUNTDOWN:
            self.view.set_overlay("Step out of view", f"{max(capture.seconds_left, 0.0):.0f}")
        elif capture is not None:
            self.view.set_overlay(f"Capturing the empty scene… {capture.collected}/{capture.total}")
        elif not snapshot.has_prior:
            self.view.set_overlay("Press B to capture the background (step out of view first)")
        else:
            self.view.set_overlay(note)
        self.capture_panel.show_progress(capture, snapshot.has_prior)
        stats = snapshot.stats
        self.fps_label.setText(f"{running_fps(self._display_times):5.1f} fps")
        self.fps_label.setToolTip(f"Frames shown per second (the engine finishes {stats.fps:.1f} a second)")
        stages = dict(stats.timings_ms)
        self.stages_label.setText("  ".join(f"{k} {v:.1f}" for k, v in stages.items()) + (" ms" if stages else ""))
        latency = "–" if stats.latency_ms is None else f"{stats.latency_ms:.0f} ms"
        self.queue_label.setText(f"dropped {stats.dropped}  latency {latency}")
        self.post_label.setText(post_status(snapshot))

    def _clear_live_state(self) -> None:
        """Forget what the previous source showed (image, progress, rates)."""
        self.view.clear()
        self.capture_panel.show_progress(None, False)
        self.capture_panel.set_status("")
        for label in (self.fps_label, self.stages_label, self.queue_label, self.post_label):
            label.setText("")
        self.statusBar().clearMessage()

    def _handle(self, event: EngineEvent) -> None:
        kind = event.kind
        if kind == ev.SOURCE_OPENED:
            self.statusBar().showMessage(event.message, 5000)
        elif kind == ev.SOURCE_ERROR:
            self._clear_live_state()
            self.view.set_overlay("No picture: see the message above")
            if self.unattended:
                self.failed.emit(event.message)
            uri = self.settings.last_source
            self.message_bar.show_message(event.message, "error", "Retry" if uri else None,
                                          (lambda: self.open_source(uri)) if uri else None)
        elif kind in (ev.ERROR, ev.RECORDING_FAILED):
            self.message_bar.show_message(event.message, "error")
            if kind == ev.RECORDING_FAILED:
                self._set_checked(self.record_action, False)
        elif kind == ev.NEEDS_CAPTURE:
            self.capture_panel.set_status(event.message)
            if self.unattended and event.detail != "automatic":
                self.capture_background()
        elif kind == ev.PRIOR_RESTORED:
            self.capture_panel.set_status(event.message)
        elif kind == ev.CAPTURE_DONE:
            self.capture_panel.set_status(event.message)
        elif kind == ev.CAPTURE_FAILED:
            self.capture_panel.set_status(event.message)
            if self.unattended:
                log.warning("using the background anyway: %s", event.message)
                self.worker.use_pending_prior()
            else:
                self._dialog = failure_dialog(self, event.message, self.capture_background,
                                              self.worker.use_pending_prior)
        elif kind == ev.MODE_CHANGED:
            self.engine_controls.show_mode(event.detail)
        elif kind == ev.SCENE_CHANGED:
            self.message_bar.show_message(event.message, "warning", "Capture again", self.capture_background)
        elif kind in (ev.VCAM_STARTED, ev.VCAM_STOPPED):
            self.output_label.setText("● webcam" if kind == ev.VCAM_STARTED else "")
            self.statusBar().showMessage(event.message, 5000)
        elif kind == ev.VCAM_UNAVAILABLE:
            self._set_checked(self.vcam_action, False)
            self.output_label.setText("")
            self._show_vcam_help(event)
        elif kind == ev.RECORDING_STARTED:
            self.statusBar().showMessage(event.message, 5000)
        elif kind == ev.RECORDING_STOPPED:
            self._set_checked(self.record_action, False)
            self.message_bar.show_message(event.message, "info")
        elif kind == ev.FINISHED:
            self._redraw()
            self.finished.emit()

    @staticmethod
    def _set_checked(action: QAction, on: bool) -> None:
        action.blockSignals(True)
        action.setChecked(on)
        action.blockSignals(False)

    def _show_vcam_help(self, event: EngineEvent) -> None:
        self.message_bar.show_message(event.message, "error")
        if self.unattended or not event.detail:
            log.warning("%s\n%s", event.message, event.detail)
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Information)
        box.setWindowTitle("Virtual webcam")
        box.setText(event.message)
        box.setInformativeText(event.detail)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setStandardButtons(QMessageBox.StandardButton.Ok)
        box.open()
        self._dialog = box

    # -- drag and drop ----------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_dropped(Path(url.toLocalFile()))
                event.acceptProposedAction()
                return

    def open_dropped(self, path: Path) -> None:
        """An image or video becomes the background; a recording folder or .bag/.db3 the source."""
        suffix = path.suffix.lower()
        if path.is_dir() or suffix in (".bag", ".db3"):
            self.open_source(str(path))
        elif suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS:
            self.set_background(str(path))
        else:
            self.message_bar.show_message(f"'{path.name}' is neither an image, a video nor a recording.", "warning")

    # -- closing ------------------------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Stop the timer and the engine (within 1 s); True when every thread ended."""
        self._timer.stop()
        self._engine_timer.stop()
        return self.worker.stop(timeout=1.0)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
