"""The source picker: connected cameras, the demo recording and "Open recording…".

`SourcePicker` lists cameras from `sensors.devices.list_devices()` on a background thread (an SDK
can take seconds to enumerate USB), so the window never waits for it; a missing `sensors.devices`
module or SDK only shows up in the refresh button's tooltip. Choosing an entry emits
`source_chosen(uri)`. `forget(uri)` drops an entry that failed to open (listed cameras and the demo
stay), so a mistyped path is not offered again.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QMenu, QToolButton, QWidget

log = logging.getLogger(__name__)

DEMO_LABEL = "Demo recording"


def source_label(uri: str) -> str:
    if "://" in uri:
        return uri
    path = Path(uri)
    return f"Recording: {path.name or uri}"


class _DeviceLister:
    """Runs list_devices() / sdk_status() once on a daemon thread; `done` tells when it finished."""

    def __init__(self) -> None:
        self.devices: list = []
        self.status: dict[str, str] = {}
        self.error = ""
        self.done = threading.Event()
        threading.Thread(target=self._work, name="list-cameras", daemon=True).start()

    def _work(self) -> None:
        try:
            from sensors.devices import list_devices, sdk_status

            self.status = sdk_status()
            self.devices = list_devices(timeout_s=5.0)
        except Exception as exc:  # module missing or an SDK crashing: cameras just are not listed
            self.error = f"Camera support is not available ({type(exc).__name__}: {exc})."
            log.info("%s", self.error)
        finally:
            self.done.set()


class SourcePicker(QWidget):
    source_chosen = Signal(str)

    def __init__(self, demo_path: Path | None, list_cameras: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(24)
        self.combo.setPlaceholderText("Choose a camera or a recording")
        self.combo.setToolTip("Camera or recording to process")
        self.open_button = QToolButton()
        self.open_button.setText("Open recording…")
        self.open_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.open_button)
        menu.addAction("Recording folder…", self.open_folder)
        menu.addAction("RealSense file (.bag, .db3)…", self.open_file)
        self.open_button.setMenu(menu)
        self.refresh_button = QToolButton()
        self.refresh_button.setText("⟳")
        self.refresh_button.setToolTip("Look for connected cameras again")
        self.refresh_button.clicked.connect(self.refresh_cameras)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.refresh_button)
        layout.addWidget(self.open_button)
        if demo_path is not None and demo_path.is_dir():
            self.combo.addItem(DEMO_LABEL, str(demo_path))
        self.combo.activated.connect(self._on_activated)
        self._lister: _DeviceLister | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(200)
        self._poll.timeout.connect(self._check_lister)
        if list_cameras:
            self.refresh_cameras()

    # -- entries ------------------------------------------------------------------------------------
    def current_uri(self) -> str | None:
        return self.combo.currentData()

    def set_current(self, uri: str) -> None:
        """Select `uri`, adding it when it is not listed (emits nothing)."""
        index = self._index_of(uri)
        if index < 0:
            self.combo.addItem(source_label(uri), uri)
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)

    def forget(self, uri: str) -> None:
        """Drop `uri` (a source that failed to open) unless it is a listed camera or the demo; when it was
        selected, nothing is selected afterwards (emits nothing)."""
        index = self._index_of(uri)
        if index < 0 or index in self._kept_indices():
            return
        was_current = index == self.combo.currentIndex()
        self.combo.removeItem(index)
        if was_current:
            self.combo.setCurrentIndex(-1)

    def _kept_indices(self) -> set[int]:
        listed = {f"{d.sdk}://{d.serial}" for d in (self._lister.devices if self._lister is not None else [])}
        return {i for i in range(self.combo.count())
                if self.combo.itemText(i) == DEMO_LABEL or self.combo.itemData(i) in listed}

    def _index_of(self, uri: str) -> int:
        for i in range(self.combo.count()):
            data = self.combo.itemData(i)
            if data == uri or (data and "://" not in uri and "://" not in data
                               and Path(data).resolve() == Path(uri).resolve()):
                return i
        return -1

    def _on_activated(self, index: int) -> None:
        uri = self.combo.itemData(index)
        if uri:
            self.source_chosen.emit(uri)

    def _choose(self, uri: str) -> None:
        self.set_current(uri)
        self.source_chosen.emit(uri)

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a recording folder")
        if folder:
            self._choose(folder)

    def open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a RealSense recording", "", "RealSense recordings (*.bag *.db3)")
        if path:
            self._choose(path)

    # -- cameras ------------------------------------------------------------------------------------
    def refresh_cameras(self) -> None:
        if self._lister is not None and not self._lister.done.is_set():
            return
        self._lister = _DeviceLister()
        self.refresh_button.setEnabled(False)
        self._poll.start()

    def _check_lister(self) -> None:
        lister = self._lister
        if lister is None or not lister.done.is_set():
            return
        self._poll.stop()
        self.refresh_button.setEnabled(True)
        notes = [f"{sdk}: {status}" for sdk, status in lister.status.items()]
        if lister.error:
            notes.append(lister.error)
        self.refresh_button.setToolTip("Look for connected cameras again\n" + "\n".join(notes))
        current = self.current_uri()
        for i in reversed(range(self.combo.count())):  # drop cameras listed before
            data = self.combo.itemData(i)
            if data and "://" in data and data != current:
                self.combo.removeItem(i)
        for position, device in enumerate(lister.devices):
            uri = f"{device.sdk}://{device.serial}"
            if self._index_of(uri) < 0:
                self.combo.insertItem(position, f"{device.model} ({device.serial})", uri)
        if current:
            self.combo.setCurrentIndex(max(self._index_of(current), 0))
