"""What the live view can show, and the widget that shows it.

`render_view(view, snapshot)` turns an engine snapshot into the image of one view mode (uint8
HxWx3 RGB): the composite, the camera image, alpha, colourised depth, the error map / depth
posterior, the trimap, or camera and composite side by side. With post-matting on, the composite view
shows the newest post-matted composite once there is one (it is a few frames behind the live one). `LiveView` paints the newest image
scaled to fit, with an optional overlay text (countdown, hints); it keeps the displayed array so
tests can compare pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.engine_state import EngineSnapshot

# view key -> label shown in the window
VIEWS: dict[str, str] = {
    "composite": "Composite",
    "camera": "Camera",
    "alpha": "Alpha matte",
    "depth": "Depth",
    "error": "Error map / depth posterior",
    "trimap": "Trimap",
    "side_by_side": "Side by side",
}
NEEDS_RESULT = ("alpha", "error", "trimap")
DEPTH_RANGE_M = (0.3, 5.5)


def gray_to_rgb(values01: np.ndarray) -> np.ndarray:
    """float HxW in [0, 1] -> uint8 HxWx3 grey."""
    g = cv2.convertScaleAbs(np.clip(values01, 0.0, 1.0).astype(np.float32), alpha=255.0)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)


def colorize(values01: np.ndarray, invalid: np.ndarray | None = None) -> np.ndarray:
    """float HxW in [0, 1] -> uint8 HxWx3 RGB with the TURBO colour map; `invalid` pixels black."""
    g = cv2.convertScaleAbs(np.clip(values01, 0.0, 1.0).astype(np.float32), alpha=255.0)
    rgb = cv2.cvtColor(cv2.applyColorMap(g, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    if invalid is not None:
        rgb[invalid] = 0
    return rgb


def colorize_depth(depth_m: np.ndarray, near_m: float = DEPTH_RANGE_M[0], far_m: float = DEPTH_RANGE_M[1]) -> np.ndarray:
    """Depth (float32 HxW metres, 0 = unknown) as TURBO colours (near red, far blue); unknown black."""
    t = (far_m - depth_m) / np.float32(far_m - near_m)
    return colorize(t, invalid=~(depth_m > 0))


def _to_size(image: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def _error_image(snapshot: EngineSnapshot) -> np.ndarray | None:
    result = snapshot.result
    h, w = snapshot.frame.color.shape[:2]
    if result.error_map is not None:
        error = result.error_map.astype(np.float32)
        scale = max(float(np.percentile(error, 99)), 1e-6)
        return colorize(_to_size(error / scale, w, h))
    if result.depth_posterior is not None:
        return colorize(_to_size(result.depth_posterior.astype(np.float32), w, h))
    return None


def post_status(snapshot: EngineSnapshot) -> str:
    """Status-bar text for post-matting, e.g. "post 140 ms, 4 frames behind"; "" while it is off."""
    stats = snapshot.post_stats
    if stats is None:
        return ""
    if stats.ms is None or stats.behind is None:
        return "post …"
    frames = "frame" if stats.behind == 1 else "frames"
    return f"post {stats.ms:.0f} ms, {stats.behind} {frames} behind"


def render_view(view: str, snapshot: EngineSnapshot) -> tuple[np.ndarray, str]:
    """(uint8 HxWx3 RGB image, note) for a view mode; the note says why a view fell back to the camera."""
    frame = snapshot.frame
    result = snapshot.result
    if view == "composite":
        if snapshot.post_output is not None:
            return snapshot.post_output, ""
        return snapshot.output, ""
    if view == "camera":
        return frame.color, ""
    if view == "depth":
        return colorize_depth(snapshot.depth_m), ""
    if view == "side_by_side":
        return np.hstack((frame.color, snapshot.output)), ""
    if result is None:
        return frame.color, "no matte yet: capture the background first"
    if view == "alpha":
        return gray_to_rgb(result.alpha), ""
    if view == "trimap":
        trimap = result.trimap_or_thresholds()
        return gray_to_rgb(_to_size(trimap, frame.width, frame.height, nearest=True)), ""
    if view == "error":
        image = _error_image(snapshot)
        if image is None:
            return gray_to_rgb(result.alpha), "this mode makes no error map: showing alpha"
        return image, ""
    raise ValueError(f"unknown view {view!r}")


def display_image(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 HxWx3 RGB scaled to fit width x height pixels (aspect kept; area averaging down, bilinear
    up), as uint8 h x w x 4 in QImage.Format_RGB32's byte order (B, G, R, 255). A width or height
    under 1 keeps the image's own size."""
    h, w = rgb.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale <= 0 or size == (w, h):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(rgb, size, interpolation=interpolation), cv2.COLOR_RGB2BGRA)


class LiveView(QWidget):
    """Paints the newest image scaled to fit (aspect kept, black borders) and an overlay text."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAutoFillBackground(False)
        self._array: np.ndarray | None = None  # the RGB image shown, as given
        self._pixels: np.ndarray | None = None  # it scaled to the widget, BGRX (QImage.Format_RGB32)
        self._image: QImage | None = None
        self._overlay = ""
        self._big = ""

    def current_image(self) -> np.ndarray | None:
        """The uint8 HxWx3 RGB array shown now (None before the first frame)."""
        return self._array

    def set_image(self, rgb: np.ndarray) -> None:
        self._array = np.ascontiguousarray(rgb, dtype=np.uint8)
        self._prepare()
        self.update()

    def _prepare(self) -> None:
        """The shown array as a QImage already scaled to the widget's pixels (`display_image`): painting
        it is then a plain copy, where Qt's own smooth scaling of an RGB888 image costs several ms a frame."""
        if self._array is None:
            return
        ratio = self.devicePixelRatioF()
        pixels = display_image(self._array, round(self.width() * ratio), round(self.height() * ratio))
        h, w = pixels.shape[:2]
        self._pixels = pixels  # QImage does not copy: keep the buffer alive while it is shown
        self._image = QImage(pixels.data, w, h, 4 * w, QImage.Format.Format_RGB32)
        self._image.setDevicePixelRatio(ratio)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        self._prepare()
        super().resizeEvent(event)

    def clear(self) -> None:
        """Show no image (e.g. after the source failed)."""
        self._array = self._pixels = self._image = None
        self.update()

    def set_overlay(self, text: str, big: str = "") -> None:
        """A line of text over the top of the image, and optionally a big centred one (countdown)."""
        if (text, big) != (self._overlay, self._big):
            self._overlay, self._big = text, big
            self.update()

    def overlay(self) -> str:
        return self._overlay

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(20, 20, 20))
        if self._image is not None:
            ratio = self._image.devicePixelRatio()
            w, h = self._image.width() / ratio, self._image.height() / ratio  # fits the widget: no scaling
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(target, self._image)
        if self._overlay:
            font = QFont(self.font())
            font.setPointSizeF(max(11.0, self.height() / 40))
            painter.setFont(font)
            flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
            margin = painter.fontMetrics().height() * 0.4
            inner = QRectF(margin, margin, self.width() - 2 * margin, self.height())
            needed = painter.boundingRect(inner, flags, self._overlay)
            box = QRectF(0, 0, self.width(), needed.height() + 2 * margin)
            painter.fillRect(box, QColor(0, 0, 0, 150))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box.adjusted(margin, margin, -margin, -margin), flags, self._overlay)
        if self._big:
            font = QFont(self.font())
            font.setPointSizeF(max(24.0, self.height() / 6))
            font.setBold(True)
            painter.setFont(font)
            size = painter.fontMetrics().height() * 1.3
            disc = QRectF((self.width() - size) / 2, (self.height() - size) / 2, size, size)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 150))
            painter.drawEllipse(disc)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(disc, Qt.AlignmentFlag.AlignCenter, self._big)
        painter.end()
