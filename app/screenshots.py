"""Screenshots of the window's main states for the docs, made from explicit settings (never saved ones).

    python -m app.screenshots docs/screenshots

writes main.png (the demo over a colour, playing), details.png (side by side, stage timings shown),
recording.png (REC counter and the "Recording to …" message), error.png (a mistyped source: message
with Retry, nothing remembered) and about.png (Help > About). Settings, captured backgrounds and the
recording go to out/screenshot-data (deleted afterwards), so the shots do not depend on this machine's
saved settings.
Needs a display (use Xvfb) or QT_QPA_PLATFORM=offscreen (fonts may then differ).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from app.launch import DEMO_RECORDING, route_qt_messages

BACKGROUND = "#3A6EA5"
WORK_DIR = Path("out") / "screenshot-data"


def _wait(app, window, condition, timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError("the window did not reach the state to photograph in time")
        app.processEvents()
        window.tick()
        time.sleep(0.01)


def _settle(app, window, seconds: float) -> None:
    end = time.monotonic() + seconds
    _wait(app, window, lambda: time.monotonic() > end)


def _matted(window, at_least: int):
    return lambda: (s := window.worker.latest()) is not None and s.result is not None and s.stats.matted >= at_least


def make_screenshots(out_dir: Path) -> list[Path]:
    from PySide6.QtWidgets import QApplication

    from app.engine_state import WorkerOptions
    from app.main_window import MainWindow
    from app.scene_store import SceneStore
    from app.settings import AppSettings

    route_qt_messages()
    app = QApplication.instance() or QApplication(["screenshots"])
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(widget, name: str) -> None:
        path = out_dir / name
        if not widget.grab().save(str(path)):
            raise RuntimeError(f"could not write {path}")
        written.append(path)

    shutil.rmtree(WORK_DIR, ignore_errors=True)
    settings = AppSettings(background=BACKGROUND, record_dir=str(WORK_DIR / "Videos"), record_raw=False)
    window = MainWindow(settings, WorkerOptions(scene_store=SceneStore(WORK_DIR / "scenes")), list_cameras=False)
    window.resize(1280, 780)
    window.show()
    try:
        window.open_source(str(DEMO_RECORDING))
        _wait(app, window, _matted(window, 14))
        _settle(app, window, 1.0)
        save(window, "main.png")

        window.engine_controls.set_view("side_by_side")
        window.status.details_action.setChecked(True)
        _settle(app, window, 1.5)
        save(window, "details.png")
        window.status.details_action.setChecked(False)
        window.engine_controls.set_view("composite")

        window.record_action.setChecked(True)
        _wait(app, window, lambda: window.status.recording)
        _settle(app, window, 3.2)
        save(window, "recording.png")
        window.record_action.setChecked(False)
        _wait(app, window, lambda: "Saved" in window.message_bar.text())

        window.open_source("my-recordnig")
        _wait(app, window, lambda: window.message_bar.level == "error" and window.message_bar.isVisible())
        _settle(app, window, 0.3)
        save(window, "error.png")

        window.menuBar().actions()[-1].menu().actions()[-1].trigger()  # Help > About
        _settle(app, window, 0.5)
        save(window.help_dialog, "about.png")
        window.help_dialog.close()
    finally:
        window.shutdown()
        window.close()
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")
    for shot in make_screenshots(target):
        print(shot)
