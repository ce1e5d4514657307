"""Measures the engine's frame rate on a recording, with and without the window on screen.

    python -m app.fps_probe RECORDING [FRAMES] [MODE]     (MODE: depth (default), dart, rgb, rgb-subtract)

Both runs use the same `EngineWorker` (matting + foreground estimation + compositing over a blurred
background, the app's default) with the recording played as fast as the engine goes (no pacing, no
dropped frames). "without GUI" polls the worker from a plain loop; "with GUI" shows the real main
window (offscreen when there is no display) repainting from its 33 ms timer, so the difference is
what the GUI thread costs the engine. Timing starts after `warmup` matted frames.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.engine_state import WorkerOptions
from app.engine_worker import EngineWorker
from app.scene_store import SceneStore


@dataclass(frozen=True)
class FpsReport:
    fps: float
    frames: int
    stage_ms: dict[str, float]  # median per stage over the timed frames


def _options(data: Path, frames: int, warmup: int) -> WorkerOptions:
    return WorkerOptions(scene_store=SceneStore(data), pace_recordings=False, stop_after_matted=warmup + frames)


class _Timer:
    """Follows a worker's snapshots: time between the warmup-th and the last matted frame, stage medians."""

    def __init__(self, worker: EngineWorker, frames: int, warmup: int) -> None:
        self.worker, self.frames, self.warmup = worker, frames, warmup
        self.start: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None
        self.stages: dict[str, list[float]] = {}
        self._seq = -1

    def poll(self) -> bool:
        """True when done."""
        snapshot = self.worker.latest()
        if snapshot is None or snapshot.seq == self._seq:
            return False
        self._seq = snapshot.seq
        matted = snapshot.stats.matted
        now = time.perf_counter()
        if self.start is None and matted >= self.warmup:
            self.start = (now, matted)
        elif self.start is not None and snapshot.result is not None:
            for stage, ms in snapshot.stats.timings_ms.items():
                self.stages.setdefault(stage, []).append(ms)
        if self.start is not None and matted >= self.warmup + self.frames:
            self.end = (now, matted)
            return True
        return False

    def report(self) -> FpsReport:
        (t0, m0), (t1, m1) = self.start, self.end
        return FpsReport(fps=(m1 - m0) / (t1 - t0), frames=m1 - m0,
                         stage_ms={k: statistics.median(v) for k, v in self.stages.items()})


def measure_without_gui(source: str, frames: int = 100, warmup: int = 5, background: str = "blur",
                        mode: str = "depth") -> FpsReport:
    from engines.config import EngineConfig

    with tempfile.TemporaryDirectory() as data:
        worker = EngineWorker(EngineConfig(mode=mode), background, options=_options(Path(data), frames, warmup))
        worker.start()
        timer = _Timer(worker, frames, warmup)
        try:
            worker.open_source(source)
            while not timer.poll():
                if not worker.running:
                    raise RuntimeError("the engine stopped")
                time.sleep(0.002)  # poll often: the engine publishes every frame
        finally:
            worker.stop()
        return timer.report()


def measure_with_gui(source: str, frames: int = 100, warmup: int = 5, background: str = "blur",
                     mode: str = "depth") -> FpsReport:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.launch import route_qt_messages
    from app.main_window import MainWindow
    from app.settings import AppSettings

    route_qt_messages()
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as data:
        settings = AppSettings(background=background, mode=mode)
        window = MainWindow(settings, _options(Path(data), frames, warmup), list_cameras=False)
        window.show()
        timer = _Timer(window.worker, frames, warmup)
        poller = QTimer(interval=2)
        poller.timeout.connect(lambda: timer.poll() and app.quit())
        poller.start()
        window.open_source(source)
        app.exec()
        poller.stop()
        window.close()
        return timer.report()


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    source, frames = argv[0], int(argv[1]) if len(argv) > 1 else 100
    mode = argv[2] if len(argv) > 2 else "depth"
    for name, measure in (("without GUI", measure_without_gui), ("with GUI", measure_with_gui)):
        report = measure(source, frames, mode=mode)
        stages = "  ".join(f"{k} {v:.1f}" for k, v in report.stage_ms.items())
        sys.stdout.write(f"{name:12s} {report.fps:6.1f} fps over {report.frames} frames   ms: {stages}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
