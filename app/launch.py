"""Entry point of the desktop app: `GuiOptions` (from the command line) and `run_gui`.

`run_gui(options)` creates the QApplication (or reuses one), merges the saved settings with the
command line, opens the main window on the chosen source and runs the event loop. With
`quit_after_frames` it exits after that many matted frames; with `snapshot` it then saves a
screenshot of the whole window (for documentation and smoke tests). Returns the exit code; an
unattended run that cannot finish raises `UserError`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from app.allocator import limit_malloc_arenas
from sensors.errors import UserError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECORDING = REPO_ROOT / "assets" / "demo_recording"
UNATTENDED_TIMEOUT_S = 300.0


def background_choices() -> tuple[str, str]:
    """(metavar, help) of a background option: the choices `parse_background_spec` accepts, with their
    defaults, so `process --replace` and `gui --background` agree."""
    from engines.matting.compositing import CHECKER_CELL_PX, DEFAULT_BLUR_SIGMA_PX, NAMED_COLORS

    names = ", ".join(sorted(set(NAMED_COLORS) - {"grey"}))
    metavar = "IMAGE|VIDEO|blur[:SIGMA]|#RRGGBB|NAME|checker[:CELL]"
    text = ("an image or video file (looped)"
            + f", blur (blur:SIGMA: blur strength in pixels, default {DEFAULT_BLUR_SIGMA_PX:g}), #RRGGBB, "
            f"a colour name ({names}), checker (checker:CELL: cell size in pixels, default {CHECKER_CELL_PX})")
    return metavar, text


@dataclass(frozen=True)
class GuiOptions:
    """Command-line choices; None means "the saved setting" (or its default).

    source: camera URI ("realsense://", "orbbec://SERIAL") or recording path; None: the last one,
        else the demo recording.
    background: see `background_choices` (image or video path, blur[:SIGMA], #RRGGBB, a colour name,
        checker[:CELL]).
    mode: one of engines.pipeline.MODES.
    snapshot: save a PNG of the window after `quit_after_frames` matted frames (default 30), then exit.
    quit_after_frames: exit (code 0) after this many matted frames.
    virtual_camera: start streaming to the virtual webcam at once.
    capture_background_frames: frames per background capture.
    countdown_s: seconds to step out of view before a capture.
    max_subject_distance_m / temporal_smoothing: engine options (0 = gate off).
    view: initial view mode (a key of app.views.VIEWS).
    data_dir: folder for settings.ini and captured backgrounds (None: the platform's usual places).
    virtual_camera_backend: pyvirtualcam backend name (None: any available).
    list_cameras: look for connected cameras at start.
    """

    source: str | None = None
    background: str | None = None
    mode: str | None = None
    snapshot: Path | None = None
    quit_after_frames: int | None = None
    virtual_camera: bool = False
    capture_background_frames: int | None = None
    countdown_s: float | None = None
    max_subject_distance_m: float | None = None
    temporal_smoothing: float | None = None
    view: str | None = None
    data_dir: Path | None = None
    virtual_camera_backend: str | None = None
    list_cameras: bool = True

    @property
    def unattended(self) -> bool:
        return self.snapshot is not None or self.quit_after_frames is not None


def _ensure_platform(options: GuiOptions) -> None:
    """Without a usable display Qt would abort: use the offscreen platform for unattended runs, else explain
    (no display at all, missing X11 libraries, or an X server that does not answer)."""
    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return
    if os.environ.get("WAYLAND_DISPLAY"):
        return
    if os.environ.get("DISPLAY"):
        from app.display_check import check_x11_display

        check_x11_display(os.environ["DISPLAY"])
        return
    if options.unattended:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return
    raise UserError("No display found: run the app on a desktop, or use 'main.py process' (headless) "
                    "or 'main.py gui --snapshot OUT.png' (offscreen).", 1)


def route_qt_messages() -> None:
    """Send Qt's own warnings to logging (the offscreen platform's harmless notices at debug level)."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    qt_log = logging.getLogger("qt")
    levels = {
        QtMsgType.QtDebugMsg: logging.DEBUG,
        QtMsgType.QtInfoMsg: logging.INFO,
        QtMsgType.QtWarningMsg: logging.WARNING,
        QtMsgType.QtCriticalMsg: logging.ERROR,
        QtMsgType.QtFatalMsg: logging.CRITICAL,
    }

    def handler(kind, _context, message: str) -> None:
        level = levels.get(kind, logging.WARNING)
        if "propagateSizeHints" in message:
            level = logging.DEBUG
        qt_log.log(level, "%s", message)

    qInstallMessageHandler(handler)


def _apply_options(settings, options: GuiOptions) -> None:
    """Command-line values override the saved settings."""
    from app.views import VIEWS

    overrides = {
        "mode": options.mode,
        "background": options.background,
        "capture_frames": options.capture_background_frames,
        "countdown_s": options.countdown_s,
        "max_subject_distance_m": options.max_subject_distance_m,
        "temporal_smoothing": options.temporal_smoothing,
        "view": options.view if options.view in VIEWS else None,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)


def run_gui(options: GuiOptions) -> int:
    """Run the app until its window closes (or, unattended, until the frames are done). Exit code."""
    _ensure_platform(options)
    limit_malloc_arenas()  # before Qt and the engine start their threads: see app/allocator.py
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    from app.settings import APPLICATION, ORGANIZATION

    route_qt_messages()
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "rgbd-matting"])
    opened: dict = {}  # the window, once it exists, for Ctrl-C
    previous = _close_on_interrupt(app, opened)

    try:
        return _run_window(app, options, opened)
    finally:
        _restore_interrupt(previous)


def _run_window(app, options: GuiOptions, opened: dict) -> int:
    """`run_gui` once the QApplication exists: the window on its source until it closes. Exit code."""
    from PySide6.QtCore import QTimer

    from app.engine_state import WorkerOptions
    from app.main_window import MainWindow
    from app.scene_store import SceneStore
    from app.settings import data_dir, load_settings, open_qsettings, save_settings

    store = open_qsettings(options.data_dir)
    settings = load_settings(store)
    _apply_options(settings, options)
    if options.background is not None:
        from app.backgrounds import make_replacement

        make_replacement(options.background, settings.blur_sigma_px)  # a bad --background is a usage error
    quit_after = options.quit_after_frames
    if options.snapshot is not None and quit_after is None:
        quit_after = 30
    worker_options = WorkerOptions(
        scene_store=SceneStore(data_dir(options.data_dir) / "scenes"),
        capture_frames=settings.capture_frames,
        countdown_s=settings.countdown_s,
        vcam_backend=options.virtual_camera_backend,
        stop_after_matted=quit_after,
    )
    demo = DEMO_RECORDING if DEMO_RECORDING.is_dir() else None
    window = opened["window"] = MainWindow(settings, worker_options, demo_path=demo,
                                           list_cameras=options.list_cameras, unattended=options.unattended)
    outcome = {"code": 0, "error": None}

    def finish() -> None:
        if options.snapshot is not None:
            path = Path(options.snapshot)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(path)):
                outcome.update(code=1, error=f"Could not write the screenshot '{path}'.")
        window.close()
        app.exit(outcome["code"])

    def fail(message: str) -> None:
        outcome.update(code=1, error=message)
        window.close()
        app.exit(1)

    watchdog = QTimer(window, singleShot=True, interval=int(UNATTENDED_TIMEOUT_S * 1000))
    if options.unattended:
        window.finished.connect(lambda: QTimer.singleShot(0, finish))
        window.failed.connect(fail)
        watchdog.timeout.connect(
            lambda: fail(f"Gave up after {UNATTENDED_TIMEOUT_S:.0f} s without {quit_after} matted frames."))
        watchdog.start()

    source = options.source or settings.last_source or (str(demo) if demo else None)
    window.show()
    if source:
        window.open_source(source)
    elif options.unattended:
        watchdog.stop()
        window.close()
        raise UserError("No source to open: give --source with a camera URI or a recording path.", 2)
    if options.virtual_camera:
        window.vcam_action.setChecked(True)

    code = app.exec()
    watchdog.stop()
    window.shutdown()
    if not options.unattended:
        save_settings(store, settings)
    if outcome["error"]:
        raise UserError(outcome["error"], 1)
    return outcome["code"] or code


def _close_on_interrupt(app, opened: dict):
    """Ctrl-C (SIGINT) in the terminal closes the window like its close button (settings saved, threads
    stopped), or quits before it exists, instead of raising KeyboardInterrupt inside a Qt callback: the
    handler only queues the close on the event loop. Returns the previous handler (None off the main thread)."""
    import signal
    import threading

    from PySide6.QtCore import QTimer

    def close() -> None:
        window = opened.get("window")
        window.close() if window is not None else app.quit()

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, lambda *_: QTimer.singleShot(0, close))


def _restore_interrupt(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGINT, previous)
