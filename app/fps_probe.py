"""Measures the engine's frame rate on a recording, with and without the window on screen.

    python -m app.fps_probe RECORDING [FRAMES] [MODES] [--fixed-k]
        MODES: depth (default), dart, rgb, rgb-subtract, or several joined by commas, e.g. dart,depth;
        --fixed-k: the network modes refine k patches every frame (as `main.py process` does) instead of
        adapting them to the window's time budget, so two runs compare at one accuracy.

Every run uses the same `EngineWorker` (matting, then foreground estimation + compositing over a blurred
background, the app's default, on the output stage thread) with the recording played as fast as the
engine goes (no pacing, no dropped frames). "without GUI" polls the worker from a plain loop; "with GUI"
shows the real main window (offscreen when there is no display) repainting from its 10 ms timer, so the
difference is what the GUI thread costs the engine; "with GUI, paced" plays the recording at its own
rate, as a camera delivers frames, and gives the latency a user sees (frame arrival to published output).
fps is frames over time and the median of per-frame rates (1 / median interval between published frames);
latency is the median of (snapshot seen - frame's host_time); CPU is the whole process's CPU time (all its
threads) per timed frame, steadier than fps on a shared machine; in the network modes, the median of the
patches refined a frame is printed too (the window adapts it to a time budget, so fps alone can hide
fewer). Timing starts after `warmup` matted frames.
With several modes, the fps of each against the last mode is printed (same run, same machine load).

`live_stages()` gives `main.py bench-speed` (`engines.evaluation.speed.bench_speed_lines`) the app's own
compositing and output conversions.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from app.engine_state import WorkerOptions
from app.engine_worker import EngineWorker
from app.scene_store import SceneStore


@dataclass(frozen=True)
class FpsReport:
    fps: float  # frames / seconds
    frames: int
    stage_ms: dict[str, float]  # median per stage over the timed frames
    median_fps: float = 0.0  # 1 / median interval between published frames
    latency_ms: float = 0.0  # median of (snapshot seen - frame host_time)
    cpu_ms: float = 0.0  # CPU time of the whole process (all threads) per timed frame
    patches: float = 0.0  # median of the patches the refiner recomputed a frame (network modes; the window adapts it)


def live_stages():
    """(compose_factory, outputs) for `engines.evaluation.speed.live_path_ms`: the app's `Compositor` over
    the blurred background (foreground estimation + composite), the virtual webcam's frame conversion
    (RGB -> I420 as v4l2loopback takes it) and the display's (`app.views.display_image` for a 960x720 view)."""
    import cv2
    from PySide6.QtGui import QImage

    from app.backgrounds import Compositor
    from app.views import display_image

    def compose_factory(prior):
        compositor = Compositor(render_beside=True)  # as the window has it in the network modes
        compositor.set_background("blur")
        compositor.set_plate(prior.color_mean)
        return compositor.compose

    def display(rgb):
        pixels = display_image(rgb, 960, 720)
        return QImage(pixels.data, pixels.shape[1], pixels.shape[0], 4 * pixels.shape[1], QImage.Format.Format_RGB32)

    outputs = {"virtual webcam (RGB -> I420)": lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420),
               "display (image scaled to a 960x720 view)": display}
    return compose_factory, outputs


def _settings(mode: str, background: str, fixed_k: bool):
    """The window's defaults for `mode`; with `fixed_k`, without the patch budget."""
    from app.settings import AppSettings

    @dataclass
    class ProbeSettings(AppSettings):
        fixed_k: bool = False

        def engine_config(self):
            config = super().engine_config()
            return replace(config, patch_budget_ms=None) if self.fixed_k else config

    return ProbeSettings(background=background, mode=mode, fixed_k=fixed_k)


def _options(data: Path, frames: int, warmup: int, pace: bool = False) -> WorkerOptions:
    return WorkerOptions(scene_store=SceneStore(data), pace_recordings=pace, stop_after_matted=warmup + frames)


class _Timer:
    """Follows a worker's snapshots: time between the warmup-th and the last matted frame, stage medians."""

    def __init__(self, worker: EngineWorker, frames: int, warmup: int) -> None:
        self.worker, self.frames, self.warmup = worker, frames, warmup
        self.start: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None
        self.cpu: list[float] = []  # process CPU seconds at start and end
        self.stages: dict[str, list[float]] = {}
        self.seen: list[float] = []
        self.latencies: list[float] = []
        self.patches: list[int] = []
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
            self.cpu.append(time.process_time())
        elif self.start is not None and snapshot.result is not None:
            for stage, ms in snapshot.stats.timings_ms.items():
                self.stages.setdefault(stage, []).append(ms)
            self.seen.append(now)
            self.patches.append(snapshot.result.refined_patches)
            if snapshot.frame.host_time:
                self.latencies.append((time.monotonic() - snapshot.frame.host_time) * 1e3)
        if self.start is not None and matted >= self.warmup + self.frames:
            self.end = (now, matted)
            self.cpu.append(time.process_time())
            return True
        return False

    def report(self) -> FpsReport:
        (t0, m0), (t1, m1) = self.start, self.end
        gaps = [b - a for a, b in zip(self.seen, self.seen[1:])]
        return FpsReport(fps=(m1 - m0) / (t1 - t0), frames=m1 - m0,
                         stage_ms={k: statistics.median(v) for k, v in self.stages.items()},
                         median_fps=1.0 / statistics.median(gaps) if gaps else 0.0,
                         latency_ms=statistics.median(self.latencies) if self.latencies else 0.0,
                         cpu_ms=(self.cpu[-1] - self.cpu[0]) * 1e3 / max(1, m1 - m0),
                         patches=statistics.median(self.patches) if self.patches else 0.0)


def measure_without_gui(source: str, frames: int = 100, warmup: int = 5, background: str = "blur",
                        mode: str = "depth", fixed_k: bool = False) -> FpsReport:
    with tempfile.TemporaryDirectory() as data:
        config = _settings(mode, background, fixed_k).engine_config()  # the window's defaults
        worker = EngineWorker(config, background, options=_options(Path(data), frames, warmup))
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
                     mode: str = "depth", pace: bool = False, fixed_k: bool = False) -> FpsReport:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.launch import route_qt_messages
    from app.main_window import MainWindow

    route_qt_messages()
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as data:
        settings = _settings(mode, background, fixed_k)
        window = MainWindow(settings, _options(Path(data), frames, warmup, pace), list_cameras=False)
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
    from engines.matting.pipeline import MODES

    fixed_k = "--fixed-k" in argv
    argv = [a for a in argv if a != "--fixed-k"]
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    source = argv[0]
    frames = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 0
    modes = (argv[2] if len(argv) > 2 else "depth").split(",")
    problem = (f"'{source}' does not exist" if "://" not in source and not Path(source).exists() else
               f"FRAMES must be a positive whole number, not '{argv[1]}'" if len(argv) > 1 and frames < 1 else
               f"unknown mode in '{','.join(modes)}' (choose from {', '.join(MODES)})" if set(modes) - set(MODES) else "")
    if problem:
        sys.stderr.write(f"fps_probe: {problem}.\n")
        return 2
    frames = frames or 100
    runs = (("without GUI", measure_without_gui, {}), ("with GUI", measure_with_gui, {}),
            ("with GUI, paced", measure_with_gui, {"pace": True}))
    results: dict[tuple[str, str], FpsReport] = {}
    sys.stdout.write(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} (1 min) at the start"
                     f"{'; k patches every frame (--fixed-k)' if fixed_k else ''}\n")
    for mode in modes:
        for name, measure, extra in runs:
            report = results[mode, name] = measure(source, frames, mode=mode, fixed_k=fixed_k, **extra)
            stages = "  ".join(f"{k} {v:.1f}" for k, v in report.stage_ms.items())
            if report.patches:
                stages += f"   patches refined {report.patches:.0f}"
            sys.stdout.write(f"{mode:6s} {name:16s} {report.fps:6.1f} fps (median {report.median_fps:5.1f}), "
                             f"latency {report.latency_ms:5.0f} ms, CPU {report.cpu_ms:5.1f} ms a frame over "
                             f"{report.frames} frames   ms: {stages}\n")
    for mode in modes[:-1]:
        ratios = "  ".join(f"{name} {results[mode, name].fps / results[modes[-1], name].fps:.2f}" for name, _, _ in runs)
        sys.stdout.write(f"fps {mode} / {modes[-1]}: {ratios}\n")
        cpu = "  ".join(f"{name} {results[modes[-1], name].cpu_ms / max(results[mode, name].cpu_ms, 1e-9):.2f}"
                        for name, _, _ in runs[:2])
        sys.stdout.write(f"CPU a frame, {modes[-1]} / {mode} (the fps ratio if the cores were full in both): {cpu}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
