""""Correct…" (issue 15 item 3; capture-stage paper sec. 4.2): the user marks, on a paused frame, where
the matte failed, as foreground or background; the marks are kept beside the scene's background
(`SceneStore.add_scribbles`) and overrule the teacher in the next "Adapt to me".

Owns `ScribbleCanvas` (the frozen frame with the matte shown by darkening the background and the
marks in green (foreground) and red (background); the left button paints with the chosen brush, the
right button paints background) and `ScribbleDialog` (brush choice, size, clear, save / cancel). The
labels and the painting itself: `engines.matting.scribbles`.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engines.matting.scribbles import SCRIBBLE_BACKGROUND, SCRIBBLE_FOREGROUND, SCRIBBLE_NONE, paint_stroke

MARK_COLORS = {SCRIBBLE_FOREGROUND: (40, 220, 60), SCRIBBLE_BACKGROUND: (235, 40, 40)}
BACKGROUND_SHADE = 0.35  # the background (alpha 0) is shown at this brightness, so the matte is visible
DEFAULT_BRUSH_PX = 12
HELP = ("Paint where the cut-out is wrong: Foreground where part of you is missing, Background where the "
        "room shows through. The right mouse button paints background. The marks are used by the next "
        "\"Adapt to me\".")


class ScribbleCanvas(QWidget):
    """The frozen frame (uint8 HxWx3 RGB) and its alpha (float32 HxW in [0, 1]) with the marks painted on
    it; `scribbles` is the uint8 HxW label map (`engines.matting.scribbles`)."""

    changed = Signal()

    def __init__(self, color: np.ndarray, alpha: np.ndarray, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        shade = BACKGROUND_SHADE + (1.0 - BACKGROUND_SHADE) * np.clip(alpha, 0.0, 1.0)[..., None]
        self._base = (color.astype(np.float32) * shade).astype(np.uint8)
        self.scribbles = np.zeros(color.shape[:2], np.uint8)
        self.brush = SCRIBBLE_FOREGROUND
        self.radius_px = DEFAULT_BRUSH_PX
        self._stroke: list[tuple[float, float]] = []
        self._stroke_label = SCRIBBLE_FOREGROUND
        self._image: QImage | None = None
        self._render()
        self.setMinimumSize(320, 240)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def clear(self) -> None:
        self.scribbles[:] = SCRIBBLE_NONE
        self._render()
        self.changed.emit()

    def image_point(self, pos: QPointF) -> tuple[float, float]:
        """Widget coordinates -> pixel coordinates of the frame."""
        rect = self._target()
        h, w = self.scribbles.shape
        return ((pos.x() - rect.x()) * w / rect.width(), (pos.y() - rect.y()) * h / rect.height())

    def _target(self) -> QRectF:
        h, w = self.scribbles.shape
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def _render(self) -> None:
        shown = self._base.copy()
        for label, rgb in MARK_COLORS.items():
            marked = self.scribbles == label
            shown[marked] = (0.4 * shown[marked] + 0.6 * np.asarray(rgb, np.float32)).astype(np.uint8)
        self._shown = np.ascontiguousarray(shown)
        h, w = self.scribbles.shape
        self._image = QImage(self._shown.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self.update()

    def _paint_to(self, pos: QPointF) -> None:
        self._stroke.append(self.image_point(pos))
        paint_stroke(self.scribbles, self._stroke[-2:], self._stroke_label, self.radius_px)
        self._render()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        right = event.button() == Qt.MouseButton.RightButton
        self._stroke_label = SCRIBBLE_BACKGROUND if right else self.brush
        self._stroke = []
        self._paint_to(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & (Qt.MouseButton.LeftButton | Qt.MouseButton.RightButton):
            self._paint_to(event.position())

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._stroke = []
        self.changed.emit()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self._image is not None:
            painter.drawImage(self._target(), self._image)
        painter.end()


class ScribbleDialog(QDialog):
    """Mark one paused frame; `scribbles()` after it was accepted. Save is enabled once something is marked."""

    def __init__(self, color: np.ndarray, alpha: np.ndarray, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Correct the cut-out")
        self.canvas = ScribbleCanvas(color, alpha, self)
        self.foreground = QRadioButton("Foreground (me)")
        self.background = QRadioButton("Background (room)")
        self.eraser = QRadioButton("Eraser")
        self.foreground.setChecked(True)
        group = QButtonGroup(self)
        for button, label in ((self.foreground, SCRIBBLE_FOREGROUND), (self.background, SCRIBBLE_BACKGROUND),
                              (self.eraser, SCRIBBLE_NONE)):
            group.addButton(button, label)
        group.idToggled.connect(lambda label, on: setattr(self.canvas, "brush", label) if on else None)
        self.brush_size = QSpinBox()
        self.brush_size.setRange(2, 60)
        self.brush_size.setValue(DEFAULT_BRUSH_PX)
        self.brush_size.setSuffix(" px")
        self.brush_size.valueChanged.connect(lambda value: setattr(self.canvas, "radius_px", value))
        clear = QPushButton("Clear")
        clear.clicked.connect(self.canvas.clear)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.canvas.changed.connect(self._enable_save)
        self._enable_save()
        tools = QHBoxLayout()
        for widget in (self.foreground, self.background, self.eraser, QLabel("Brush"), self.brush_size, clear):
            tools.addWidget(widget)
        tools.addStretch(1)
        help_label = QLabel(HELP)
        help_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(help_label)
        layout.addLayout(tools)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.buttons)
        h, w = color.shape[:2]
        self.resize(min(w, 960) + 40, min(h, 720) + 140)

    def _enable_save(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(bool(self.canvas.scribbles.any()))

    def scribbles(self) -> np.ndarray:
        """uint8 HxW labels (`engines.matting.scribbles`)."""
        return self.canvas.scribbles.copy()
