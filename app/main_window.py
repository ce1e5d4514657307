"""The main window: lays out the widgets, wires them to the engine worker and follows its results.

The window owns one `EngineWorker` and a 10 ms QTimer. Each tick drains the worker's events
(errors, capture results, virtual-camera problems) and shows its newest snapshot in the live view
and status bar (`app.status_panel`); nothing in the GUI thread ever waits for the engine. Controls only
edit `AppSettings` and forward the change to the worker. Closing the window stops everything.

No stale state: a message in the message bar names its cause and is cleared when that cause is gone
(the webcam started, the source opened, a clean capture); a source that fails to open is dropped from
the source list and never becomes `settings.last_source`. The menu bar holds File, View and Help
(keyboard shortcuts, camera and virtual webcam set-up, About: `app.help_dialogs`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
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
from app import help_dialogs
from app.adapt_worker import ADAPTING, DONE, TAKE, SceneAdapter
from app.backgrounds import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from app.capture import COUNTDOWN
from app.capture_panel import CapturePanel, failure_dialog
from app.controls import AdaptControls, BackgroundControls, EngineControls
from app.engine_state import FPS_WINDOW, EngineSnapshot, WorkerOptions, replace_config, running_fps
from app.engine_worker import EngineWorker
from app.events import EngineEvent
from app.message_bar import MessageBar
from app.recorder import RecordOptions, default_recording_folder
from app.scribble_dialog import ScribbleDialog
from app.settings import AppSettings, videos_dir
from app.source_picker import SourcePicker, source_label
from app.status_panel import StatusPanel
from app.views import VIEWS, LiveView, render_view
from sensors.errors import UserError

log = logging.getLogger(__name__)

TICK_MS = 10  # a new frame is on screen within 10 ms, and every frame of a stream faster than 30 fps
ENGINE_DEBOUNCE_MS = 150
SIDE_PANEL_WIDTH = 330
PATH_CHARS = 70  # a longer path in a message is shortened in the middle (the tooltip has all of it)


def short_path(path: Path | str, limit: int = PATH_CHARS) -> str:
    text = str(path)
    return text if len(text) <= limit else text[: limit // 3] + "…" + text[-(limit - limit // 3 - 1):]


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
        self._opening: deque[str] = deque()  # sources asked for, not yet opened or failed (in order)
        self._uri = ""  # the source asked for last
        self._recording_folder: Path | None = None

        self.source_picker = SourcePicker(demo_path, list_cameras)
        self.message_bar = MessageBar()
        self.view = LiveView()
        self.capture_panel = CapturePanel(settings)
        self.engine_controls = EngineControls(settings)
        self.background_controls = BackgroundControls(settings)
        self.adapter = SceneAdapter(worker_options.scene_store)  # "Adapt to me" (issue 15)
        self.adapt_controls = AdaptControls()
        self._models_in_use: str | None = None  # the adapted networks' folder the engine uses, if any
        self._build_layout()
        self._build_actions()
        self._build_status_bar()
        self._build_menus()

        self.source_picker.source_chosen.connect(self.open_source)
        self.capture_panel.capture_requested.connect(self.capture_background)
        self._engine_timer = QTimer(self, singleShot=True, interval=ENGINE_DEBOUNCE_MS)
        self._engine_timer.timeout.connect(lambda: self.worker.set_engine_config(self._engine_config()))
        self.adapt_controls.adapt_requested.connect(lambda: self.adapter.start(self._uri))
        self.adapt_controls.cancel_requested.connect(self.adapter.cancel)
        self.adapt_controls.correct_requested.connect(self.correct_matte)
        self.engine_controls.engine_changed.connect(self._engine_timer.start)
        self.engine_controls.view_changed.connect(lambda _view: self._redraw())
        self.background_controls.background_changed.connect(self._background_changed)

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
        for panel in (self.capture_panel, self.adapt_controls, self.engine_controls, self.background_controls):
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
        self.vcam_action.toggled.connect(self._toggle_vcam)
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
        self.view_actions = []
        for number, (key, label) in enumerate(VIEWS.items(), start=1):
            action = QAction(label, self, shortcut=QKeySequence(str(number)))
            action.setToolTip(f"View: {label}")
            action.triggered.connect(lambda _checked=False, key=key: self.engine_controls.set_view(key))
            self.addAction(action)
            self.view_actions.append(action)

    def _build_status_bar(self) -> None:
        self.status = StatusPanel(self.statusBar(), self.settings.show_details)
        self.status.details_action.toggled.connect(lambda on: setattr(self.settings, "show_details", on))
        self.fps_label, self.post_label = self.status.fps_label, self.status.post_label
        self.stages_label, self.output_label = self.status.stages_label, self.status.webcam_label
        self.status.set_state("No source")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        open_folder = file_menu.addAction("Open recording folder…", self.source_picker.open_folder)
        open_folder.setShortcut(QKeySequence.StandardKey.Open)
        open_folder.setToolTip("Open a recording folder")
        file_menu.addAction("Open RealSense file (.bag, .db3)…", self.source_picker.open_file)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("Quit", self.close)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.setToolTip("Quit")
        actions_menu = bar.addMenu("&Actions")
        for action in (self.capture_action, self.vcam_action, self.record_action):
            actions_menu.addAction(action)
        view_menu = bar.addMenu("&View")
        for action in self.view_actions:
            view_menu.addAction(action)
        view_menu.addSeparator()
        view_menu.addAction(self.status.details_action)
        help_menu = bar.addMenu("&Help")
        shortcuts = help_menu.addAction("Keyboard shortcuts", self.show_shortcuts)
        shortcuts.setShortcut(QKeySequence("F1"))
        shortcuts.setToolTip("This list of keyboard shortcuts")
        help_menu.addAction("Camera set-up…", lambda: self._help("Camera set-up",
                                                                 help_dialogs.camera_setup_markdown(), markdown=True))
        help_menu.addAction("Virtual webcam set-up…", lambda: self._help("Virtual webcam set-up",
                                                                         help_dialogs.vcam_setup_text()))
        help_menu.addSeparator()
        help_menu.addAction(f"About {help_dialogs.APP_NAME}",
                            lambda: self._help(f"About {help_dialogs.APP_NAME}", help_dialogs.about_html(), rich=True))
        self._shortcut_actions = [self.capture_action, self.vcam_action, self.record_action, *self.view_actions,
                                  open_folder, quit_action, shortcuts]

    def show_shortcuts(self) -> None:
        self._help("Keyboard shortcuts", help_dialogs.shortcuts_html(self._shortcut_actions), rich=True)

    def _help(self, title: str, text: str, markdown: bool = False, rich: bool = False) -> None:
        self.help_dialog = help_dialogs.show_help(self, title, text, markdown=markdown, rich=rich)

    # -- user actions ---------------------------------------------------------------------------------
    def open_source(self, uri: str) -> None:
        """Open `uri`; it becomes settings.last_source only once it opened (SOURCE_OPENED)."""
        self._uri = uri
        self._opening.append(uri)
        self.source_picker.set_current(uri)
        self._shown_seq = -1
        self._display_times.clear()
        self.message_bar.hide()
        self._clear_live_state()
        self.status.set_state("Opening…")
        self.view.set_overlay(f"Opening {source_label(uri)}…")
        self.worker.open_source(uri)

    def _toggle_vcam(self, on: bool) -> None:
        if on:
            self.message_bar.clear("vcam")
        self.worker.set_virtual_camera(on)

    def _background_changed(self) -> None:
        self.message_bar.clear("background")
        self.worker.set_background(self.settings.background, self.settings.blur_sigma_px)

    def capture_background(self) -> None:
        if self.message_bar.cause != "recording":  # "Recording to ..." stays until the take is saved
            self.message_bar.hide()
        self.worker.start_capture(self.settings.capture_frames, self.settings.countdown_s)

    def set_background(self, spec: str) -> None:
        self.background_controls.choose(spec)

    def _engine_config(self):
        """The settings' engine configuration, with the networks adapted to this scene when there are some."""
        store = self.adapter.store
        adapted = store.adapted_models(self._uri) if store is not None and self._uri else None
        self._models_in_use = str(adapted) if adapted is not None else None
        config = self.settings.engine_config()
        return replace_config(config, model_dir=self._models_in_use) if adapted is not None else config

    def correct_matte(self) -> ScribbleDialog | None:
        """Pause on the newest matted frame for the user's marks (issue 15 item 3); they are stored beside
        the scene's background for the next adaptation. Returns the open dialog (None: nothing to mark)."""
        snapshot, store = self.worker.latest(), self.adapter.store
        if snapshot is None or snapshot.result is None or store is None or not snapshot.source_uri:
            return None
        dialog = ScribbleDialog(snapshot.frame.color, snapshot.result.alpha, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # and the snapshot it holds with it

        def save() -> None:
            try:
                n = store.add_scribbles(snapshot.source_uri, snapshot.frame.color, snapshot.depth_m, dialog.scribbles())
            except UserError as exc:
                self.message_bar.show_message(str(exc), "error", cause="scribbles")
                return
            self.message_bar.show_message(f"Marks saved ({n} marked frame{'s' * (n != 1)}): \"Adapt to me\" "
                                          "learns from them.", "info", cause="scribbles")

        dialog.accepted.connect(save)
        dialog.open()
        return dialog

    def _follow_adaptation(self, snapshot: EngineSnapshot | None) -> None:
        """Feed the take, show the adaptation's progress, and put newly adapted networks in use."""
        self.adapter.feed(snapshot)
        status = self.adapter.status()
        if status.state == DONE and status.models_dir is not None and self._models_in_use != str(status.models_dir):
            self.worker.set_engine_config(self._engine_config())
        can_start = self.adapter.available and snapshot is not None and snapshot.has_prior
        self.adapt_controls.show_status(status.state in (TAKE, ADAPTING), status.fraction, status.eta_s,
                                        status.message, can_start)

    def _toggle_recording(self, on: bool) -> None:
        if not on:
            self.worker.stop_recording()
            return
        parent = Path(self.settings.record_dir) if self.settings.record_dir else videos_dir()
        self._recording_folder = default_recording_folder(parent)
        options = RecordOptions(self._recording_folder, composite=self.settings.record_composite,
                                raw=self.settings.record_raw)
        self.worker.start_recording(options)

    def _open_recording_folder(self, folder: Path | None) -> None:
        if folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # -- following the engine -------------------------------------------------------------------------
    def tick(self) -> None:
        """Drain the worker's events, then show its newest snapshot (events first: FINISHED comes last)."""
        for event in self.worker.poll_events():
            self._handle(event)
        snapshot = self.worker.latest()
        if snapshot is not None and snapshot.seq != self._shown_seq:
            self._show(snapshot)
        self._follow_adaptation(snapshot)
        self.status.tick()

    def _redraw(self) -> None:
        snapshot = self.worker.latest()
        if snapshot is not None:
            self._show(snapshot)

    def _show(self, snapshot: EngineSnapshot) -> None:
        if snapshot.seq != self._shown_seq:  # a new frame on screen, whoever asked for the repaint
            self._display_times.append(time.monotonic())
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
        self.status.show_snapshot(snapshot, running_fps(self._display_times))

    def _clear_live_state(self) -> None:
        """Forget what the previous source showed (image, progress, rates)."""
        self.view.clear()
        self.capture_panel.show_progress(None, False)
        self.capture_panel.set_status("")
        self.status.clear()

    def _handle(self, event: EngineEvent) -> None:
        kind = event.kind
        if kind == ev.SOURCE_OPENED:
            if self._opening:
                self.settings.last_source = self._opening.popleft()
            previous, config = self._models_in_use, self._engine_config()
            if self._models_in_use != previous:  # this scene's adapted networks, or back to the generic ones
                self.worker.set_engine_config(config)
            self.message_bar.clear("source")
            self.statusBar().showMessage(event.message, 5000)
        elif kind == ev.SOURCE_ERROR:
            self._source_failed(event)
        elif kind == ev.ERROR:
            cause = "background" if event.message.startswith("Cannot use that background") else ""
            self.message_bar.show_message(event.message, "error", cause=cause)
        elif kind == ev.RECORDING_FAILED:
            self.message_bar.show_message(event.message, "error", cause="recording")
            self._set_checked(self.record_action, False)
            self.status.recording_stopped()
        elif kind == ev.NEEDS_CAPTURE:
            self.capture_panel.set_status(event.message)
            if self.unattended and event.detail != "automatic":
                self.capture_background()
        elif kind in (ev.PRIOR_RESTORED, ev.CAPTURE_DONE):
            self.capture_panel.set_status(event.message)
            self.message_bar.clear("scene")
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
            self.message_bar.show_message(event.message, "warning", "Capture again", self.capture_background,
                                          cause="scene")
        elif kind in (ev.VCAM_STARTED, ev.VCAM_STOPPED):
            self.status.set_webcam(kind == ev.VCAM_STARTED)
            if kind == ev.VCAM_STARTED:
                self.message_bar.clear("vcam")
            self.statusBar().showMessage(event.message, 5000)
        elif kind == ev.VCAM_UNAVAILABLE:
            self._set_checked(self.vcam_action, False)
            self.status.set_webcam(False)
            self._show_vcam_help(event)
        elif kind == ev.RECORDING_STARTED:
            folder = self._recording_folder
            self.status.recording_started(folder)
            text = f"Recording to {short_path(folder)}" if folder else event.message
            self.message_bar.show_message(text, "info", "Open folder", lambda: self._open_recording_folder(folder),
                                          cause="recording", tooltip=str(folder or ""))
        elif kind == ev.RECORDING_STOPPED:
            self._set_checked(self.record_action, False)
            self.status.recording_stopped()
            folder = self._recording_folder
            self.message_bar.show_message(event.message, "info", "Open folder" if folder else None,
                                          lambda: self._open_recording_folder(folder), cause="recording",
                                          tooltip=str(folder or ""))
        elif kind == ev.FINISHED:
            self._redraw()
            self.finished.emit()

    def _source_failed(self, event: EngineEvent) -> None:
        """A source that failed to open is forgotten (list and last_source); one that failed while
        streaming stays. Either way the message offers to try it again."""
        self._clear_live_state()
        self.status.set_state("No picture")
        self.view.set_overlay("No picture: see the message above")
        if self.unattended:
            self.failed.emit(event.message)
        uri = self._uri
        if self._opening and event.message.startswith(f"Cannot open '{self._opening[0]}'"):
            uri = self._opening.popleft()
            self.source_picker.forget(uri)
            if self.settings.last_source == uri and "://" not in uri:
                self.settings.last_source = ""
        self.message_bar.show_message(event.message, "error", "Retry" if uri else None,
                                      (lambda: self.open_source(uri)) if uri else None, cause="source")

    @staticmethod
    def _set_checked(action: QAction, on: bool) -> None:
        action.blockSignals(True)
        action.setChecked(on)
        action.blockSignals(False)

    def _show_vcam_help(self, event: EngineEvent) -> None:
        self.message_bar.show_message(event.message, "error", "Set-up help" if event.detail else None,
                                      (lambda: self._help("Virtual webcam set-up", event.detail)) if event.detail else None,
                                      cause="vcam")
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
        self.adapter.stop()
        return self.worker.stop(timeout=1.0)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
