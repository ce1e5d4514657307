"""The window's status bar: state, recording indicator, webcam, fps and latency; stage timings on request.

`StatusPanel(status_bar, show_details)` adds its labels to a QStatusBar. Always visible: the state
("Live", "Playing", "Capturing background", "Needs a background", "Opening…", "No picture"), a red
"● REC mm:ss  size" while recording, "● Webcam on", frames shown per second, latency and the
post-matting status. The per-stage timings and dropped frames only show with the "Details" toggle
(`details_action`, off by default). Plain widgets, no engine knowledge: the window calls
`show_snapshot`, `set_state`, `recording_started/stopped`, `set_webcam`, `tick` and `clear`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QStatusBar, QToolButton

from app.engine_state import EngineSnapshot
from app.views import post_status

SIZE_EVERY_S = 2.0  # how often the recording's size on disk is measured
_STATE_COLOURS = {"Live": "#2e9d4a", "Playing": "#2e9d4a", "Capturing background": "#c98a00",
                  "Needs a background": "#c98a00", "No picture": "#c0392b"}


def format_elapsed(seconds: float) -> str:
    """mm:ss (h:mm:ss from an hour on)."""
    s = int(max(seconds, 0.0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def format_size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


def folder_size(folder: Path) -> int:
    """Bytes of every file under `folder` (0 when it does not exist yet)."""
    total, stack = 0, [str(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def snapshot_state(snapshot: EngineSnapshot) -> str:
    if snapshot.capture is not None:  # counting down or collecting
        return "Capturing background"
    if not snapshot.has_prior:
        return "Needs a background"
    return "Live" if snapshot.info.live else "Playing"


class StatusPanel:
    def __init__(self, bar: QStatusBar, show_details: bool = False) -> None:
        self.bar = bar
        self.state_label = QLabel()
        self.state_label.setToolTip("Live: a camera is being matted; Playing: a recording is; "
                                    "Needs a background: press B with the scene empty")
        self.rec_label = QLabel()
        self.rec_label.setStyleSheet("color:white; background:#c0392b; font-weight:bold; padding:0 6px;")
        self.rec_label.hide()
        self.webcam_label = QLabel()
        self.webcam_label.setStyleSheet("color:#2e9d4a; font-weight:bold;")
        self.fps_label = QLabel()
        self.latency_label = QLabel()
        self.latency_label.setToolTip("Time from the camera's frame to the picture on screen")
        self.post_label = QLabel()
        self.post_label.setToolTip("Post-matting runs beside the live picture on the newest frame it can take; "
                                   "the composite view shows its result, a few frames late")
        self.stages_label = QLabel()
        self.stages_label.setToolTip("Milliseconds each stage of the engine took on the last frame, "
                                     "and frames dropped because the engine was busy")
        self.details_action = QAction("Timing details", bar, checkable=True)
        self.details_action.setToolTip("Show each engine stage's milliseconds in the status bar")
        self.details_action.setChecked(show_details)
        self.details_action.toggled.connect(self.stages_label.setVisible)
        self.stages_label.setVisible(show_details)
        self.details_button = QToolButton()
        self.details_button.setDefaultAction(self.details_action)
        self.details_button.setText("Details")
        self.details_action.changed.connect(lambda: self.details_button.setText("Details"))
        for label in (self.state_label, self.rec_label, self.webcam_label, self.fps_label, self.latency_label,
                      self.post_label, self.stages_label):
            bar.addPermanentWidget(label)
        bar.addPermanentWidget(self.details_button)
        self._rec_started: float | None = None
        self._rec_folder: Path | None = None
        self._rec_size = 0
        self._rec_size_at = 0.0

    # -- state ------------------------------------------------------------------------------------
    def set_state(self, state: str) -> None:
        colour = _STATE_COLOURS.get(state)
        text = f"● {state}" if colour else state
        if self.state_label.text() != text:
            self.state_label.setText(text)
            self.state_label.setStyleSheet(f"color:{colour}; font-weight:bold;" if colour else "")

    def state(self) -> str:
        return self.state_label.text().lstrip("● ")

    def show_snapshot(self, snapshot: EngineSnapshot, shown_fps: float) -> None:
        stats = snapshot.stats
        self.set_state(snapshot_state(snapshot))
        self.fps_label.setText(f"{shown_fps:5.1f} fps")
        self.fps_label.setToolTip(f"Frames shown per second (the engine finishes {stats.fps:.1f} a second)")
        self.latency_label.setText("" if stats.latency_ms is None else f"latency {stats.latency_ms:.0f} ms")
        self.post_label.setText(post_status(snapshot))
        stages = "  ".join(f"{k} {v:.1f}" for k, v in stats.timings_ms.items())
        self.stages_label.setText((stages + " ms  " if stages else "") + f"dropped {stats.dropped}")

    def set_webcam(self, on: bool) -> None:
        self.webcam_label.setText("● Webcam on" if on else "")
        self.webcam_label.setToolTip("The composite is being sent to the virtual webcam" if on else "")

    def clear(self) -> None:
        """Forget the previous source's rates (the recording and webcam indicators stay)."""
        for label in (self.fps_label, self.latency_label, self.post_label, self.stages_label):
            label.setText("")
        self.bar.clearMessage()

    # -- recording --------------------------------------------------------------------------------
    def recording_started(self, folder: Path | None, now: float | None = None) -> None:
        self._rec_started = time.monotonic() if now is None else now
        self._rec_folder = folder
        self._rec_size, self._rec_size_at = 0, 0.0
        self.rec_label.setToolTip(f"Recording to {folder}" if folder else "Recording")
        self.rec_label.show()
        self.tick(self._rec_started)

    def recording_stopped(self) -> None:
        self._rec_started = self._rec_folder = None
        self.rec_label.hide()
        self.rec_label.setText("")

    @property
    def recording(self) -> bool:
        return self._rec_started is not None

    def tick(self, now: float | None = None) -> None:
        """Count the recording time up (and measure its size every SIZE_EVERY_S)."""
        if self._rec_started is None:
            return
        now = time.monotonic() if now is None else now
        if self._rec_folder is not None and now - self._rec_size_at >= SIZE_EVERY_S:
            self._rec_size, self._rec_size_at = folder_size(self._rec_folder), now
        size = f"  {format_size(self._rec_size)}" if self._rec_size >= 1024 else ""  # not the first header bytes
        text = f"● REC {format_elapsed(now - self._rec_started)}{size}"
        if self.rec_label.text() != text:
            self.rec_label.setText(text)
