"""The background-capture panel: the button, its countdown and frame count, and the progress bar.

Emits `capture_requested` (button or shortcut B). `show_progress` follows the engine's
`CaptureProgress`; the window decides what to do with the result. `failure_dialog` builds the
non-blocking "capture again / use anyway" question shown when a capture does not validate.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.capture import COUNTDOWN, CaptureProgress
from app.settings import AppSettings


class CapturePanel(QGroupBox):
    capture_requested = Signal()

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__("Background capture", parent)
        self.settings = settings
        form = QFormLayout(self)
        self.button = QPushButton("Capture background (B)")
        self.button.setToolTip("Step out of view; the empty scene is recorded after the countdown")
        self.button.clicked.connect(self.capture_requested)
        form.addRow(self.button)
        self.countdown = QDoubleSpinBox()
        self.countdown.setRange(0.0, 10.0)
        self.countdown.setSingleStep(1.0)
        self.countdown.setDecimals(0)
        self.countdown.setSuffix(" s")
        self.countdown.setValue(settings.countdown_s)
        self.countdown.valueChanged.connect(lambda v: setattr(settings, "countdown_s", float(v)))
        self.frames = QSpinBox()
        self.frames.setRange(10, 600)
        self.frames.setValue(settings.capture_frames)
        self.frames.valueChanged.connect(lambda v: setattr(settings, "capture_frames", int(v)))
        row = QHBoxLayout()  # one row for both: the panel's lower groups stay in view at the default size
        row.addWidget(self.countdown, 1)
        row.addWidget(QLabel("Frames"))
        row.addWidget(self.frames, 1)
        form.addRow("Countdown", row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setFormat("no background yet")
        form.addRow(self.progress)
        self.status = QLabel()
        self.status.setWordWrap(True)
        form.addRow(self.status)

    def show_progress(self, progress: CaptureProgress | None, has_prior: bool) -> None:
        if progress is None:
            self.progress.setValue(100 if has_prior else 0)
            self.progress.setFormat("background captured" if has_prior else "no background yet")
            return
        if progress.phase == COUNTDOWN:
            self.progress.setValue(0)
            self.progress.setFormat(f"step out of view… {progress.seconds_left:.0f} s")
        else:
            self.progress.setValue(int(100 * progress.fraction))
            self.progress.setFormat(f"capturing {progress.collected}/{progress.total} frames")

    def set_status(self, text: str) -> None:
        self.status.setText(text)


def failure_dialog(parent: QWidget, message: str, retry: Callable[[], None], use_anyway: Callable[[], None]) -> QMessageBox:
    """A non-blocking question (already open) for a capture that did not validate."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Background capture")
    box.setText(message)
    retry_button = box.addButton("Capture again", QMessageBox.ButtonRole.AcceptRole)
    use_button = box.addButton("Use anyway", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)

    def done(_result: int) -> None:
        clicked = box.clickedButton()
        if clicked is retry_button:
            retry()
        elif clicked is use_button:
            use_anyway()

    box.finished.connect(done)
    box.open()
    return box
