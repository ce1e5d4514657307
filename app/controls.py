"""Side-panel controls: matting engine options, view mode, replacement background and "Adapt to me".

Each panel edits the window's `AppSettings` in place and emits one signal saying what changed:
`EngineControls.engine_changed` (mode, refiner, post-matting, depth gate, smoothing),
`EngineControls.view_changed(view)`, `BackgroundControls.background_changed` (settings.background
and settings.blur_sigma_px are the new choice), `AdaptControls.adapt_requested` / `cancel_requested`
(the window runs `app.adapt_worker.SceneAdapter` and shows its state with `show_status`). No engine or
worker knowledge here.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QStandardItemModel
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QProgressBar,
    QPushButton,
    QSlider,
    QWidget,
)

from app.backgrounds import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_video
from app.settings import NETWORK_MODES, AppSettings, switch_available
from app.views import VIEWS
from engines.matting.pipeline import MODES

MAX_GATE_DM = 60  # depth gate slider: decimetres, 0 = off
MAX_SMOOTHING_PERCENT = 90
NOT_YET = "Not available in this version of the engine yet."

# mode -> (label in the Mode box, one-line explanation); the technical name goes in the tooltip
MODE_LABELS: dict[str, tuple[str, str]] = {
    "dart": ("DART (default)",
             "Depth plus neural networks (the DART method): depth decides where it is sure, the networks do "
             "edges, hair and what depth misses; the most accurate, about 20 ms a frame."),
    "depth": ("Depth only (fastest)",
              "Cuts you out by distance, against the captured empty scene: fastest, not fooled by lighting changes."),
    "rgb": ("Colour networks (RGB baseline)",
            "The same neural networks on colour alone, without depth: for comparison with DART."),
    "rgb-subtract": ("Colour difference (simple)",
                     "Plain colour background subtraction: keeps the whole room after a change of light."),
}
HIDDEN_MODES = ("rgb-subtract",)  # offered only when it is the saved setting
REFINER_TIP = ("Recompute the most uncertain 4x4 patches at full resolution with the refiner network "
               "(finer hair and edges, about 8 ms more a frame).")
REFINER_OFF = "Only the network modes (DART, Colour networks) use it."
ADAPT_TIP = ("After capturing the background, stay in view for a short take: the networks then learn you and "
             "your room in the background (a few minutes, the app keeps running). Used by the network modes; "
             "kept for this camera or recording and restored next time.")
ADAPT_IDLE = "Stay in view for 15 s after the capture; the networks then learn you (about 5 min)."
CORRECT_TIP = ("Pause on the current frame and paint where the cut-out is wrong (foreground or background); "
               "the next \"Adapt to me\" learns from your marks.")
POST_MATTING_TIP = ("Closed-form matting on a thin band along the edges, on its own thread: finer hair and "
                    "edges in the Composite view, a few frames late. The virtual webcam and recordings keep "
                    "the live matte.")


def mode_order() -> list[str]:
    """The engine's modes, the default and the plain-language ones first."""
    return [m for m in MODE_LABELS if m in MODES] + [m for m in MODES if m not in MODE_LABELS]


def _slider(maximum: int, value: int) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, maximum)
    slider.setValue(value)
    return slider


def _with_value(slider: QSlider, label: QLabel) -> QWidget:
    """The slider with its value label on its right."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(slider, 1)
    label.setMinimumWidth(44)
    row.addWidget(label)
    return box


class EngineControls(QGroupBox):
    engine_changed = Signal()
    view_changed = Signal(str)

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__("Matting", parent)
        self.settings = settings
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.mode = QComboBox()
        for mode in mode_order():
            label, explanation = MODE_LABELS.get(mode, (mode, ""))
            self.mode.addItem(label, mode)
            self.mode.setItemData(self.mode.count() - 1, f"{explanation}\n(--mode {mode})",
                                  Qt.ItemDataRole.ToolTipRole)
        self.mode.setCurrentIndex(max(self.mode.findData(settings.mode), 0))
        # offered only when it is the saved setting: it keeps the whole room after a light change
        self._show_hidden_modes = settings.mode in HIDDEN_MODES
        form.addRow("Mode", self.mode)
        self.mode_help = QLabel()
        self.mode_help.setWordWrap(True)
        font = self.mode_help.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        self.mode_help.setFont(font)
        form.addRow(self.mode_help)

        self.refiner = QCheckBox("Refiner")
        self.post_matting = QCheckBox("Post-matting")
        for box, switch in ((self.refiner, "refiner"), (self.post_matting, "post_matting")):
            available = switch_available(switch)
            box.setChecked(bool(getattr(settings, switch)) and available)
            box.setEnabled(available)
        self.post_matting.setToolTip(POST_MATTING_TIP if switch_available("post_matting") else NOT_YET)
        form.addRow(self.refiner)
        form.addRow(self.post_matting)
        self.edge_refine = QCheckBox("Clean edges")
        self.edge_refine.setChecked(bool(settings.edge_refine))
        self.edge_refine.setToolTip("Remove the halo around you and open gaps (hair, between fingers) by "
                                    "comparing each edge pixel with the captured background (every mode; "
                                    "a few ms a frame)")
        form.addRow(self.edge_refine)

        self.gate = _slider(MAX_GATE_DM, int(round(settings.max_subject_distance_m * 10)))
        self.gate.setToolTip("Pixels farther than this are always background (0 = off)")
        self.gate_label = QLabel()
        form.addRow("Max subject distance", _with_value(self.gate, self.gate_label))
        self.smoothing = _slider(MAX_SMOOTHING_PERCENT, int(round(settings.temporal_smoothing * 100)))
        self.smoothing.setToolTip("Steady the matte where nothing moves (less flicker); moving parts are "
                                  "not smoothed, so there are no trails (0 = off)")
        self.smoothing_label = QLabel()
        form.addRow("Temporal smoothing", _with_value(self.smoothing, self.smoothing_label))

        self.view = QComboBox()
        for key, label in VIEWS.items():
            self.view.addItem(label, key)
        self.view.setCurrentIndex(max(self.view.findData(settings.view), 0))
        self.view.setToolTip("What the big picture shows (keys 1-7)")
        form.addRow("View", self.view)
        self._update_labels()
        self._update_mode()

        self.mode.currentIndexChanged.connect(self._on_engine)
        self.refiner.toggled.connect(self._on_engine)
        self.post_matting.toggled.connect(self._on_engine)
        self.edge_refine.toggled.connect(self._on_engine)
        self.gate.valueChanged.connect(self._on_engine)
        self.smoothing.valueChanged.connect(self._on_engine)
        self.view.currentIndexChanged.connect(self._on_view)

    def _update_labels(self) -> None:
        gate = self.gate.value()
        self.gate_label.setText("off" if gate == 0 else f"{gate / 10:.1f} m")
        self.smoothing_label.setText(f"{self.smoothing.value()} %")

    def _update_mode(self) -> None:
        """The mode's explanation, the hidden modes (unless current or saved) and the refiner box's state."""
        mode = self.mode.currentData()
        _label, explanation = MODE_LABELS.get(mode, (mode, ""))
        self.mode_help.setText(explanation)
        self.mode.setToolTip(f"{explanation}\nTechnical name: {mode} (main.py --mode {mode})")
        self._show_hidden_modes = self._show_hidden_modes or mode in HIDDEN_MODES
        view = self.mode.view()
        for i in range(self.mode.count()):
            hidden = self.mode.itemData(i) in HIDDEN_MODES and not self._show_hidden_modes
            if isinstance(view, QListView):
                view.setRowHidden(i, hidden)
            item = self.mode.model().item(i) if isinstance(self.mode.model(), QStandardItemModel) else None
            if item is not None:  # hidden rows must not be reached with the arrow keys or the wheel either
                item.setEnabled(not hidden)
        network = mode in NETWORK_MODES and switch_available("refiner")
        self.refiner.blockSignals(True)  # unticked where it does nothing; the saved choice comes back with a network mode
        self.refiner.setChecked(network and bool(self.settings.refiner))
        self.refiner.blockSignals(False)
        self.refiner.setEnabled(network)
        self.refiner.setToolTip(REFINER_TIP if network else REFINER_TIP + "\n" + REFINER_OFF)

    def _on_engine(self, *_) -> None:
        s = self.settings
        s.mode = self.mode.currentData()
        self._update_mode()
        if self.refiner.isEnabled():
            s.refiner = self.refiner.isChecked()
        if self.post_matting.isEnabled():
            s.post_matting = self.post_matting.isChecked()
        s.edge_refine = self.edge_refine.isChecked()
        s.max_subject_distance_m = self.gate.value() / 10.0
        s.temporal_smoothing = self.smoothing.value() / 100.0
        self._update_labels()
        self.engine_changed.emit()

    def _on_view(self, *_) -> None:
        self.settings.view = self.view.currentData()
        self.view_changed.emit(self.settings.view)

    def set_view(self, view: str) -> None:
        self.view.setCurrentIndex(max(self.view.findData(view), 0))

    def show_mode(self, mode: str) -> None:
        """Show (and save) a mode the engine switched to itself, without asking the engine to switch."""
        self.mode.blockSignals(True)
        self.mode.setCurrentIndex(max(self.mode.findData(mode), 0))
        self.mode.blockSignals(False)
        self.settings.mode = self.mode.currentData()
        self._update_mode()


class BackgroundControls(QGroupBox):
    background_changed = Signal()

    KINDS = ("blur", "color", "image", "video", "checker")

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__("Background", parent)
        self.settings = settings
        grid = QGridLayout(self)
        self.buttons: dict[str, QPushButton] = {}
        group = QButtonGroup(self)
        group.setExclusive(True)
        labels = {"blur": "Blur", "color": "Colour…", "image": "Image…", "video": "Video…", "checker": "Checker"}
        tips = {
            "blur": "Blur the real background (more with distance)",
            "color": "A solid colour",
            "image": "An image file (or drop one on the window)",
            "video": "A video file, looped",
            "checker": "A checkerboard, to judge the edges of the matte",
        }
        for i, kind in enumerate(self.KINDS):
            button = QPushButton(labels[kind])
            button.setCheckable(True)
            button.setToolTip(tips[kind])
            group.addButton(button)
            grid.addWidget(button, i // 3, i % 3)
            self.buttons[kind] = button
        self.buttons["blur"].clicked.connect(lambda: self.choose("blur"))
        self.buttons["checker"].clicked.connect(lambda: self.choose("checker"))
        self.buttons["color"].clicked.connect(self._pick_color)
        self.buttons["image"].clicked.connect(self._pick_image)
        self.buttons["video"].clicked.connect(self._pick_video)
        self.blur = _slider(60, int(round(settings.blur_sigma_px)))
        self.blur.setMinimum(2)
        self.blur.setToolTip("Blur strength (Gaussian sigma in pixels at full strength)")
        self.blur.valueChanged.connect(self._on_blur)
        self.blur_label = QLabel("Blur strength")
        grid.addWidget(self.blur_label, 2, 0)
        grid.addWidget(self.blur, 2, 1, 1, 2)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        grid.addWidget(self.detail, 3, 0, 1, 3)
        self._show_choice()

    @staticmethod
    def kind_of(spec: str) -> str:
        lower = spec.strip().lower()
        if lower.startswith("blur"):
            return "blur"
        if lower.startswith("checker"):
            return "checker"
        if lower.startswith("#"):
            return "color"
        return "video" if is_video(spec) else "image"

    def choose(self, spec: str) -> None:
        """Use `spec` (image/video path, "#RRGGBB", "blur", "checker") and emit background_changed."""
        self.settings.background = spec
        self._show_choice()
        self.background_changed.emit()

    def _show_choice(self) -> None:
        spec = self.settings.background
        kind = self.kind_of(spec)
        self.buttons[kind].setChecked(True)
        self.blur.setVisible(kind == "blur")
        self.blur_label.setVisible(kind == "blur")
        if kind == "color":
            self.detail.setText(f'<span style="background:{spec}">&nbsp;&nbsp;&nbsp;&nbsp;</span> {spec}')
        else:
            self.detail.setText(Path(spec).name if kind in ("image", "video") else "")
        self.detail.setVisible(bool(self.detail.text()))

    def _on_blur(self, value: int) -> None:
        self.settings.blur_sigma_px = float(value)
        if self.kind_of(self.settings.background) == "blur":
            self.background_changed.emit()

    def _pick_color(self) -> None:
        spec = self.settings.background
        initial = QColor(spec) if spec.startswith("#") else QColor(0, 177, 64)
        color = QColorDialog.getColor(initial, self, "Background colour")
        if color.isValid():
            self.choose(color.name().upper())
        else:
            self._show_choice()

    def _pick_file(self, title: str, extensions: tuple[str, ...]) -> None:
        patterns = " ".join(f"*{e}" for e in extensions)
        path, _ = QFileDialog.getOpenFileName(self, title, "", f"{title} ({patterns})")
        if path:
            self.choose(path)
        else:
            self._show_choice()

    def _pick_image(self) -> None:
        self._pick_file("Images", IMAGE_EXTENSIONS)

    def _pick_video(self) -> None:
        self._pick_file("Videos", VIDEO_EXTENSIONS)


class AdaptControls(QGroupBox):
    """"Adapt to me": start, correct and cancel buttons, a progress bar with the estimated time left, one line of state."""

    adapt_requested = Signal()
    cancel_requested = Signal()
    correct_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Adapt to me", parent)
        self.button = QPushButton("Adapt to me")
        self.button.setToolTip(ADAPT_TIP)
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.correct = QPushButton("Correct…")
        self.correct.setToolTip(CORRECT_TIP)
        self.correct.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.button, 1)
        row.addWidget(self.correct)
        row.addWidget(self.cancel)
        layout = QFormLayout(self)
        layout.addRow(row)
        layout.addRow(self.progress)
        layout.addRow(self.label)
        self.button.clicked.connect(self.adapt_requested)
        self.cancel.clicked.connect(self.cancel_requested)
        self.correct.clicked.connect(self.correct_requested)

    def show_status(self, busy: bool, fraction: float, eta_s: float | None, message: str, can_start: bool) -> None:
        """busy: a take or an adaptation runs; fraction in [0, 1]; eta_s: seconds left (None: unknown).
        Marks for the next adaptation ("Correct…") can be made whenever it could start, also while busy."""
        self.button.setEnabled(can_start and not busy)
        self.correct.setEnabled(can_start)
        self.cancel.setEnabled(busy)
        self.progress.setVisible(busy)
        self.progress.setValue(int(round(100 * fraction)))
        if busy and eta_s is not None:
            minutes, seconds = divmod(int(max(eta_s, 0.0)), 60)
            self.progress.setFormat(f"%p% · about {minutes} min {seconds:02d} s left")
        message = message or ADAPT_IDLE
        if self.label.text() != message:
            self.label.setText(message)
