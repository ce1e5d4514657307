"""The soak test of the live app: the real main window for N minutes, driven like a user, measured.

    python main.py soak --minutes 60 [--source REC] [--out DIR]

This module owns `SoakOptions` (what to run), the run itself (`run_soak`) and its `SoakResult`; it
prints nothing: `main.py soak` prints `format_summary`.

The run. `run_soak` opens the real `MainWindow` (offscreen without a display, unattended so that no
dialog waits for a click) on the looping recording, with its settings and captured backgrounds in a
temporary folder (the user's own are not touched). Every `action_every_s` seconds it performs the
next step of `SCHEDULE`, cycling, through the window's own widgets and actions: capture the
background (toolbar action), switch the matting mode (depth / dart / rgb, the mode combo box), the view
(the view combo box, every key of `app.views.VIEWS`), the background (Checker / Blur buttons, a
colour), the virtual webcam (toolbar action; an in-memory pyvirtualcam backend is registered when no
real device can be opened), post-matting (the closed-form check box), recording (toolbar action, on for
`record_s` seconds into a temporary folder, deleted afterwards) and reopening the source. The last
`settle_s` seconds put the app back in its starting state (depth, composite, blur, outputs off), so
the final sample is comparable whatever step the schedule was at.

Files in OUT: soak.csv (the samples), soak.png (their plot), soak.json (verdict, figures, the actions
performed and what they produced), each replaced atomically except the CSV, which grows row by row.

Samples, the verdict and the plot: `app.soak_samples`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from app.allocator import ARENAS, heap_figures, limit_malloc_arenas
from app.virtual_camera import MEMORY_BACKEND, CountingCamera, counting_backend_unless_device
from app.soak_samples import REPORTED, Limits, Sample, Verdict, judge, process_figures, resident_split, write_plot

log = logging.getLogger(__name__)

CSV_NAME = "soak.csv"
PLOT_NAME = "soak.png"
SUMMARY_NAME = "soak.json"
COLOUR = "#3A6EA5"
HEARTBEAT_MS = 50  # the soak polls the live view at 20 Hz (the window repaints at ~30 Hz)

# One cycle of user actions; it ends in the starting state (depth, composite view, blur, outputs off).
SCHEDULE: tuple[str, ...] = (
    "capture",
    "mode:dart", "view:alpha", "background:checker", "vcam:on",
    "view:error", "post:on", "view:composite", "record",
    "mode:rgb", "view:trimap", f"background:{COLOUR}", "vcam:off",
    "view:depth", "post:off", "reopen", "view:side_by_side",
    "view:camera", "mode:depth", "background:blur", "view:composite",
)
BASELINE: tuple[str, ...] = ("vcam:off", "post:off", "record:off", "mode:depth", "view:composite",
                             "background:blur")


class SoakSetupError(Exception):
    """The soak could not start (no source, window never showed a frame, output not writable)."""


@dataclass(frozen=True)
class SoakOptions:
    """source: recording path or camera URI; out_dir: where soak.csv and soak.png go."""

    source: str
    minutes: float = 60.0
    out_dir: Path = Path("out/soak")
    action_every_s: float = 30.0
    sample_every_s: float = 10.0
    record_s: float = 5.0
    settle_s: float = 10.0
    schedule: tuple[str, ...] = SCHEDULE
    limits: Limits = Limits()
    vcam_backend: str | None = None  # None: a real device when one opens, else the in-memory backend
    plot: bool = True
    malloc_arenas: int = ARENAS  # 0: glibc's default (to measure what the cap does)

    @property
    def duration_s(self) -> float:
        return self.minutes * 60.0

    @property
    def cycle_s(self) -> float:
        """Seconds from the start until the first cycle of the schedule is done."""
        return (len(self.schedule) + 1) * self.action_every_s


@dataclass
class SoakResult:
    options: SoakOptions
    verdict: Verdict
    samples: list[Sample]
    actions: Counter  # action name -> times performed (the schedule's names)
    errors: list[str]
    warnings: list[str]
    evidence: dict[str, int]  # vcam_frames, recordings, post_frames, displayed frames
    csv_path: Path
    plot_path: Path | None
    seconds: float
    stopped_cleanly: bool

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict.ok else 1


def format_summary(result: SoakResult) -> str:
    """The lines `main.py soak` prints."""
    v, f = result.verdict, result.verdict.figures
    head = (f"Soak {'PASSED' if v.ok else 'FAILED'}: {result.seconds / 60:.1f} min on '{result.options.source}', "
            f"{len(result.samples)} samples, {sum(result.actions.values())} actions "
            f"({len(result.actions)} kinds), warm-up {v.warmup_s / 60:.1f} min.")
    lines = [head]
    for failure in v.failures:
        lines.append(f"  FAIL  {failure}")
    for note in v.notes:
        lines.append(f"  note  {note}")
    if "rss_ref_mb" in f:
        lines.append(f"  RSS      {f['rss_first_mb']:.0f} MB at the first sample, {f['rss_ref_mb']:.0f} MB median "
                     f"after warm-up, {f['rss_end_mb']:.0f} MB at the end ({f.get('rss_mb_per_hour', 0.0):+.0f} MB/h)")
        if "rss_cycles" in f:
            lines.append(f"  cycles   {f['rss_cycles']:.0f} whole after warm-up; first -> last: RSS low "
                         f"{f['rss_first_cycle_low_mb']:.0f} -> {f['rss_last_cycle_low_mb']:.0f} MB, median "
                         f"{f['rss_first_cycle_median_mb']:.0f} -> {f['rss_last_cycle_median_mb']:.0f} MB")
        parts = [f"{label} {f[key + '_first_cycle']:.0f} -> {f[key + '_last_cycle']:.0f}"
                 + (" MB" if key.endswith("_mb") else "") for key, label in REPORTED.items() if f"{key}_first_cycle" in f]
        if parts:  # what RSS is made of, medians of the first -> the last whole cycle
            lines.append("  made of  " + ", ".join(parts))
        lines.append(f"  threads  OS {f['threads_os_end']:.0f} at the end (max {f['threads_os_max']:.0f} after warm-up), "
                     f"Python {f['threads_py_end']:.0f} (max {f['threads_py_max']:.0f})")
        lines.append(f"  fds      {f['fds_end']:.0f} at the end (max {f['fds_max']:.0f} after warm-up)")
        lines.append(f"  None     refcount {f['none_end']:.0f} at the end ({f['none_ref']:.0f} median after warm-up)")
    lines.append(f"  frames   {result.evidence.get('frames', 0)} displayed, median {f.get('fps_median', 0.0):.1f} fps, "
                 f"longest gap {f.get('max_frame_gap_s', 0.0):.1f} s")
    lines.append(f"  outputs  {result.evidence.get('vcam_frames', 0)} frames to the virtual webcam, "
                 f"{result.evidence.get('recordings', 0)} recordings, "
                 f"{result.evidence.get('post_frames', 0)} post-matted frames seen")
    lines.append("  actions  " + ", ".join(f"{name} x{n}" for name, n in sorted(result.actions.items())))
    if result.warnings:
        lines.append(f"  {len(result.warnings)} warning(s) logged; the first: {result.warnings[0]}")
    if not result.stopped_cleanly:
        lines.append("  the engine threads did not stop within 1 s at the end")
    lines.append(f"  samples  {result.csv_path}")
    if result.plot_path is not None:
        lines.append(f"  plot     {result.plot_path}")
    return "\n".join(lines)


class _Problems(logging.Handler):
    """Collects log records (ERROR and up: errors; WARNING: warnings) and uncaught exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self._lock_list = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == __name__:
            return
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        with self._lock_list:
            (self.errors if record.levelno >= logging.ERROR else self.warnings).append(text)

    def add_error(self, text: str) -> None:
        with self._lock_list:
            self.errors.append(text)


# -- the run --------------------------------------------------------------------------------------------------
class _Soak:
    """Lives in the GUI thread: actions, heartbeat, ending; a sampler thread writes the CSV."""

    def __init__(self, options: SoakOptions, window, problems: _Problems, record_dir: Path, loop) -> None:
        from PySide6.QtCore import QTimer

        self.options, self.window, self.problems, self.record_dir, self.loop = options, window, problems, record_dir, loop
        self.t0 = time.monotonic()
        self.actions: Counter = Counter()
        self.last_action = ""
        self.recordings = 0
        self.post_frames = 0
        self.samples: list[Sample] = []
        self._index = 0
        self._frames = 0
        self._last_image = None
        self._last_frame_t = self.t0
        self._beat_t = self.t0
        self._last_post_seq = None
        self._engine_dead = False
        self._ending = False
        self._lock = threading.Lock()
        self._stop_sampler = threading.Event()
        options.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = options.out_dir / CSV_NAME
        self._csv_file = open(self.csv_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(Sample.columns())
        self._csv_file.flush()

        self._heartbeat = QTimer(window, interval=HEARTBEAT_MS)
        self._heartbeat.timeout.connect(self._beat)
        self._action_timer = QTimer(window, interval=int(options.action_every_s * 1000))
        self._action_timer.timeout.connect(self._next_action)
        self._end_timer = QTimer(window, singleShot=True,
                                 interval=int(max(options.duration_s - options.settle_s, 0.0) * 1000))
        self._end_timer.timeout.connect(self._settle)
        self._sampler = threading.Thread(target=self._sample_loop, name="soak-sampler", daemon=True)

    # timeline ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.window.show()
        self.window.open_source(self.options.source)
        self._heartbeat.start()
        self._action_timer.start()
        self._end_timer.start()
        self._sampler.start()

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _settle(self) -> None:
        """Back to the starting state, then the final sample after settle_s."""
        from PySide6.QtCore import QTimer

        if self._ending:
            return
        self._ending = True
        self._action_timer.stop()
        for name in BASELINE:
            self._perform(name, count=False)
        self.last_action = "baseline"
        QTimer.singleShot(int(self.options.settle_s * 1000), self._finish)

    def _abort(self, error: str | None = None) -> None:
        """End at once (no frame for 3 x hang_s, which the final sample shows, or an `error`)."""
        from PySide6.QtCore import QTimer

        if self._ending:
            return
        if error:
            self.problems.add_error(error)
        self._ending = True
        self._action_timer.stop()
        self._end_timer.stop()
        QTimer.singleShot(0, self._finish)

    def _finish(self) -> None:
        self._stop_sampler.set()
        self._sampler.join(timeout=5.0)
        self._take_sample()
        self._heartbeat.stop()
        self._csv_file.close()
        self.loop.quit()

    # heartbeat (GUI thread) -------------------------------------------------------------------------------
    def _beat(self) -> None:
        now = time.monotonic()
        self._beat_t = now
        image = self.window.view.current_image()
        if image is not None and image is not self._last_image:
            self._last_image = image
            self._frames += 1
            self._last_frame_t = now
        snapshot = self.window.worker.latest()
        if snapshot is not None and snapshot.post_output is not None:
            seq = id(snapshot.post_output)
            if seq != self._last_post_seq:
                self._last_post_seq = seq
                self.post_frames += 1
        if not self.window.worker.running and not self._engine_dead:
            self._engine_dead = True
            self._abort("the engine thread ended during the run")
        elif now - self._last_frame_t > 3 * self.options.limits.hang_s:
            self._abort()

    # actions (GUI thread) ------------------------------------------------------------------------------------
    def _next_action(self) -> None:
        schedule = self.options.schedule
        name = schedule[self._index % len(schedule)]
        self._index += 1
        self._perform(name)

    def _perform(self, name: str, count: bool = True) -> None:
        w = self.window
        kind, _, arg = name.partition(":")
        if kind == "capture":
            w.capture_action.trigger()
        elif kind == "mode":
            combo = w.engine_controls.mode
            index = combo.findData(arg)
            if index < 0:
                self.problems.add_error(f"mode '{arg}' is not offered by the window")
                return
            combo.setCurrentIndex(index)
        elif kind == "view":
            combo = w.engine_controls.view
            combo.setCurrentIndex(max(combo.findData(arg), 0))
        elif kind == "background":
            if arg in w.background_controls.buttons and arg in ("blur", "checker"):
                w.background_controls.buttons[arg].click()
            else:
                w.background_controls.choose(arg)  # the colour button would open a dialog
        elif kind == "vcam":
            w.vcam_action.setChecked(arg == "on")
        elif kind == "post":
            box = w.engine_controls.post_matting
            if not box.isEnabled():
                return
            box.setChecked(arg == "on")
        elif kind == "record" and arg == "off":
            w.record_action.setChecked(False)
        elif kind == "record":
            self._start_recording()
        elif kind == "reopen":
            w.open_source(self.options.source)
        else:
            raise ValueError(f"unknown soak action '{name}'")
        if count:
            self.actions[name] += 1
            self.last_action = name

    def _start_recording(self) -> None:
        from PySide6.QtCore import QTimer

        self.recordings += self._clear_recordings()
        self.window.record_action.setChecked(True)
        seconds = min(self.options.record_s, 0.8 * self.options.action_every_s)
        QTimer.singleShot(int(seconds * 1000), lambda: self.window.record_action.setChecked(False))

    def _clear_recordings(self) -> int:
        """Delete the finished recordings; how many had a video."""
        done = 0
        for folder in self.record_dir.iterdir() if self.record_dir.is_dir() else ():
            video = folder / "composite.mp4"
            done += video.is_file() and video.stat().st_size > 0
            shutil.rmtree(folder, ignore_errors=True)
        return done

    # sampling (sampler thread, and the GUI thread for the last one) ------------------------------------------
    def _sample_loop(self) -> None:
        while not self._stop_sampler.wait(self.options.sample_every_s):
            self._take_sample()

    def _take_sample(self) -> None:
        now = time.monotonic()
        rss, threads_os, threads_py, fds = process_figures()
        heap_used, heap_mapped, heap_free = heap_figures()
        rss_anon, rss_file = resident_split()
        snapshot = self.window.worker.latest()
        stats = snapshot.stats if snapshot is not None else None
        latency = stats.latency_ms if stats is not None and stats.latency_ms is not None else float("nan")
        settings = self.window.settings
        sample = Sample(
            t_s=round(now - self.t0, 2), rss_mb=round(rss, 2), threads_os=threads_os, threads_py=threads_py,
            fds=fds, none_refs=sys.getrefcount(None),
            fps=round(stats.fps, 2) if stats is not None else 0.0, latency_ms=round(latency, 1),
            engine_ms=round(sum(stats.timings_ms.values()), 2) if stats is not None else 0.0,
            frames=self._frames, frame_age_s=round(now - self._last_frame_t, 2),
            gui_age_s=round(now - self._beat_t, 2), mode=settings.mode, view=settings.view,
            action=self.last_action, errors=len(self.problems.errors),
            rss_anon_mb=round(rss_anon, 2), rss_file_mb=round(rss_file, 2), heap_used_mb=round(heap_used, 2),
            heap_mapped_mb=round(heap_mapped, 2), heap_free_mb=round(heap_free, 2), py_blocks=sys.getallocatedblocks(),
        )
        with self._lock:
            self.samples.append(sample)
            self._csv.writerow(dataclasses.astuple(sample))
            self._csv_file.flush()
            os.fsync(self._csv_file.fileno())


def _qt_application():
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.launch import route_qt_messages

    route_qt_messages()
    return QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "rgbd-matting-soak"])


def run_soak(options: SoakOptions) -> SoakResult:
    """Run the soak (blocks for options.minutes); see the module docstring."""
    if "://" not in options.source and not Path(options.source).exists():
        raise SoakSetupError(f"'{options.source}' does not exist: give a recording folder or a camera URI.")
    try:
        Path(options.out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SoakSetupError(f"Cannot create the output folder '{options.out_dir}' ({exc.strerror}).") from None
    if options.malloc_arenas > 0:
        limit_malloc_arenas(options.malloc_arenas)  # as `run_gui` does: the soak measures the app as users run it
    _qt_application()
    from PySide6.QtCore import QEventLoop

    from app.engine_worker import WorkerOptions
    from app.main_window import MainWindow
    from app.scene_store import SceneStore
    from app.settings import AppSettings

    backend, registered = (options.vcam_backend, False) if options.vcam_backend else counting_backend_unless_device(MEMORY_BACKEND)
    CountingCamera.frames = 0
    problems = _Problems()
    root = logging.getLogger()
    root.addHandler(problems)
    old_thread_hook, old_hook = threading.excepthook, sys.excepthook

    def thread_hook(args) -> None:
        problems.add_error(f"uncaught {args.exc_type.__name__} in thread "
                           f"{args.thread.name if args.thread else '?'}: {args.exc_value}")
        old_thread_hook(args)

    def hook(kind, value, tb) -> None:
        problems.add_error(f"uncaught {kind.__name__} in the GUI thread: {value}")
        old_hook(kind, value, tb)

    threading.excepthook, sys.excepthook = thread_hook, hook
    temp = Path(tempfile.mkdtemp(prefix="rgbd-soak-"))
    record_dir = temp / "recordings"
    started = time.monotonic()
    window = None
    try:
        settings = AppSettings(background="blur", mode="depth", view="composite", record_dir=str(record_dir),
                               record_raw=True, countdown_s=0.0)
        worker_options = WorkerOptions(scene_store=SceneStore(temp / "scenes"), capture_frames=settings.capture_frames,
                                       countdown_s=settings.countdown_s, vcam_backend=backend)
        window = MainWindow(settings, worker_options, list_cameras=False, unattended=True)
        window.failed.connect(lambda message: problems.add_error(f"the window reported: {message}"))
        loop = QEventLoop()
        soak = _Soak(options, window, problems, record_dir, loop)
        soak.start()
        loop.exec()
        stopped = window.shutdown()
        window.close()
        soak.recordings += soak._clear_recordings()
    finally:
        threading.excepthook, sys.excepthook = old_thread_hook, old_hook
        root.removeHandler(problems)
        if window is not None:
            window.deleteLater()
        if registered:
            import pyvirtualcam

            pyvirtualcam.camera.BACKENDS.pop(MEMORY_BACKEND, None)
        shutil.rmtree(temp, ignore_errors=True)
    errors = list(problems.errors)
    warm = options.limits.warmup_s(options.duration_s, options.cycle_s)
    verdict = judge(soak.samples, options.limits, errors, warmup_s=warm,
                    period_s=len(options.schedule) * options.action_every_s)
    missing = [name for name in options.schedule if not soak.actions.get(name)]
    if missing:  # a run too short to exercise the app says so instead of passing
        verdict = dataclasses.replace(verdict, ok=False, failures=verdict.failures + (
            f"{len(missing)} of the {len(set(options.schedule))} scheduled actions never ran (first: {missing[0]}): "
            f"run longer than {len(options.schedule)} x --every seconds",))
    plot_path = None
    if options.plot:
        plot_path = write_plot(soak.samples, options.out_dir / PLOT_NAME, verdict.warmup_s,
                               title=f"Soak of the live app on {Path(options.source).name}: "
                                     f"{'passed' if verdict.ok else 'FAILED'}")
    evidence = {"frames": soak._frames, "vcam_frames": CountingCamera.frames if backend == MEMORY_BACKEND else -1,
                "recordings": soak.recordings, "post_frames": soak.post_frames}
    result = SoakResult(options=options, verdict=verdict, samples=soak.samples, actions=soak.actions, errors=errors,
                        warnings=list(problems.warnings), evidence=evidence, csv_path=soak.csv_path,
                        plot_path=plot_path, seconds=time.monotonic() - started, stopped_cleanly=stopped)
    write_summary(result, options.out_dir / SUMMARY_NAME)
    return result


def write_summary(result: SoakResult, path: Path) -> Path:
    """soak.json: the verdict, its figures, the actions performed, errors and evidence (atomic)."""
    import json

    v = result.verdict
    data = {
        "ok": v.ok, "failures": list(v.failures), "notes": list(v.notes), "warmup_s": v.warmup_s,
        "figures": v.figures, "minutes": round(result.seconds / 60.0, 2), "source": result.options.source,
        "samples": len(result.samples), "actions": dict(sorted(result.actions.items())),
        "schedule": list(result.options.schedule), "evidence": result.evidence, "errors": result.errors,
        "warnings": result.warnings[:50], "stopped_cleanly": result.stopped_cleanly,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


