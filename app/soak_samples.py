"""What the soak measures and how it is judged: `Sample` (one row of soak.csv), `process_figures`
(this process's RSS, threads and file descriptors from /proc), `Limits` and `judge` (the verdict, a
pure function over the samples) and `write_plot` (the curves, with matplotlib).

Samples. Every `sample_every_s` seconds a sampler thread appends one row to OUT/soak.csv, flushed
at once (a crash keeps every row written): resident memory (VmRSS), OS and Python thread counts,
open file descriptors (all from /proc/self), `sys.getrefcount(None)`, the fps and queue latency the
status bar shows (`EngineStats` of the newest snapshot), the last frame's engine milliseconds, the
number of displayed frames and the seconds since the last one (a new array in the live view) and
since the GUI thread last ran. Also what RSS is made of, reported per cycle and never judged
(`REPORTED`): anonymous and file-backed resident memory, glibc malloc's own account
(`app.allocator.heap_figures`) and Python's allocated blocks.

The verdict (`judge`) fails the run on
- an error: an exception logged by the app (any log record at ERROR or above: the engine worker logs
  every failed frame or command so), an uncaught exception in any thread, a source error, or the
  engine thread ending;
- a hang: no new displayed frame, or a GUI thread that did not run, for more than `hang_s` (20 s);
- growth after warm-up. Warm-up is the first `warmup_fraction` (20%) of the run, at least
  `min_warmup_s` (60 s) and at least one full cycle of the schedule (so that every first-use cost,
  network models, numba kernels, the video encoder, is paid inside it). Over the samples after
  warm-up (at least `min_post_samples`, else growth is not judged and the summary says so) it fails
  when memory grew by more than `rss_growth` (5%): with two or more whole cycles of the schedule after
  warm-up, when the low (5th percentile) or the median RSS of the last whole cycle exceeds that of the
  first one (RSS follows the states a cycle visits, so only cycle against cycle compares; a first
  60-minute run failed the end-against-median rule only because it ended in a high-memory state). A
  leak raises every state after it, so the low and the median show it; the single lowest sample can be
  one taken mid mode switch (networks unloaded: 462 MB between two samples of 566 and 557) and the
  peak depends on which transient buffers (encoder, post-matting, patch batch) a sample happens to
  catch (the same cycle's peak varied 665-737 MB over one passing run), so both are reported, not
  judged); with fewer cycles, when the final RSS exceeds their median; when the final OS or
  Python thread count exceeds their maximum by more than `thread_slack` (2), when the final number of
  open file descriptors exceeds their maximum by more than `fd_slack` (2), or when the final
  refcount of None differs from their median by more than `none_drift` (1000; on Python 3.11 a
  binding that drops one None reference per call loses thousands a minute, and None's refcount
  reaching zero aborts the interpreter).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """When the verdict fails; see the module docstring."""

    hang_s: float = 20.0
    warmup_fraction: float = 0.2
    min_warmup_s: float = 60.0
    min_post_samples: int = 3
    rss_growth: float = 0.05
    thread_slack: int = 2
    fd_slack: int = 2
    none_drift: int = 1000

    def warmup_s(self, duration_s: float, cycle_s: float = 0.0) -> float:
        return max(self.warmup_fraction * duration_s, self.min_warmup_s, cycle_s)


@dataclass(frozen=True)
class Sample:
    """One row of soak.csv. Times in seconds since the start; NaN where /proc is not available."""

    t_s: float
    rss_mb: float
    threads_os: int
    threads_py: int
    fds: int
    none_refs: int
    fps: float  # the status bar's fps (EngineStats.fps of the newest snapshot)
    latency_ms: float  # the status bar's latency (frame queue median), NaN when none
    engine_ms: float  # sum of the newest frame's stage timings
    frames: int  # new frames the live view showed since the start (polled at 20 Hz)
    frame_age_s: float  # since the live view last got a new frame (or since the start)
    gui_age_s: float  # since the GUI thread last ran the soak's heartbeat
    mode: str = ""
    view: str = ""
    action: str = ""  # the last action performed
    errors: int = 0  # errors so far
    # reported, not judged (what RSS is made of): resident anonymous memory and mapped files (/proc RssAnon,
    # RssFile), glibc malloc's arena bytes in use, large blocks mapped on their own (virtual size) and freed
    # bytes its arenas keep (`app.allocator.heap_figures`), and Python's allocated memory blocks
    rss_anon_mb: float = float("nan")
    rss_file_mb: float = float("nan")
    heap_used_mb: float = float("nan")
    heap_mapped_mb: float = float("nan")
    heap_free_mb: float = float("nan")
    py_blocks: float = float("nan")  # sys.getallocatedblocks()

    @staticmethod
    def columns() -> list[str]:
        return [f.name for f in dataclasses.fields(Sample)]


# the Sample fields whose first and last whole cycles' medians the verdict reports (never judges), and their labels
REPORTED = {"rss_anon_mb": "anonymous", "rss_file_mb": "mapped files", "heap_used_mb": "malloc in use",
            "heap_free_mb": "malloc kept free", "heap_mapped_mb": "malloc large blocks (virtual)",
            "py_blocks": "Python blocks"}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    failures: tuple[str, ...]
    notes: tuple[str, ...]
    warmup_s: float
    figures: dict[str, float] = field(default_factory=dict)


# -- the verdict (pure) ------------------------------------------------------------------------------------
def judge(samples: list[Sample], limits: Limits = Limits(), errors: tuple[str, ...] | list[str] = (),
          warmup_s: float | None = None, period_s: float | None = None) -> Verdict:
    """Pass or fail over the samples (the last one is "the end"); see the module docstring.

    period_s: the length of one cycle of the schedule. With at least two whole cycles after warm-up,
    memory is judged cycle against cycle (see `_cycle_growth`), because RSS rises and falls with the
    states a cycle visits (network models loaded, post-matting, recording) and "the end" may fall in
    any of them."""
    failures: list[str] = []
    notes: list[str] = []
    figures: dict[str, float] = {}
    if errors:
        failures.append(f"{len(errors)} error(s) in the app; the first: {errors[0]}")
    if not samples:
        return Verdict(False, tuple(failures + ["no sample was taken"]), (), 0.0, figures)
    end = samples[-1]
    warm = limits.warmup_s(end.t_s) if warmup_s is None else warmup_s
    worst = max(samples, key=lambda s: s.frame_age_s)
    figures["max_frame_gap_s"] = worst.frame_age_s
    if worst.frame_age_s > limits.hang_s:
        failures.append(f"hang: no new frame was displayed for {worst.frame_age_s:.0f} s "
                        f"(at {worst.t_s / 60:.1f} min; limit {limits.hang_s:.0f} s)")
    stalled = max(samples, key=lambda s: s.gui_age_s)
    figures["max_gui_gap_s"] = stalled.gui_age_s
    if stalled.gui_age_s > limits.hang_s:
        failures.append(f"hang: the GUI thread did not run for {stalled.gui_age_s:.0f} s "
                        f"(at {stalled.t_s / 60:.1f} min; limit {limits.hang_s:.0f} s)")
    post = [s for s in samples[:-1] if s.t_s >= warm]
    fps = [s.fps for s in post or samples if s.fps == s.fps]
    if fps:
        figures["fps_median"] = statistics.median(fps)
    if len(post) < limits.min_post_samples:
        notes.append(f"growth not judged: {len(post)} sample(s) after the {warm:.0f} s warm-up "
                     f"(need {limits.min_post_samples}); run longer")
        return Verdict(not failures, tuple(failures), tuple(notes), warm, figures)

    rss_ref = statistics.median(s.rss_mb for s in post)
    figures.update(rss_ref_mb=rss_ref, rss_end_mb=end.rss_mb, rss_first_mb=samples[0].rss_mb)
    cycles = _cycle_growth(post, period_s, warm) if period_s else None
    if cycles is not None:
        first_cycle, last_cycle, count = cycles
        figures["rss_cycles"] = count
        for key in ("peak", "median", "low"):
            figures[f"rss_first_cycle_{key}_mb"] = first_cycle[key]
            figures[f"rss_last_cycle_{key}_mb"] = last_cycle[key]
        for key in REPORTED:  # where measured (not NaN)
            if first_cycle[key] == first_cycle[key] and last_cycle[key] == last_cycle[key]:
                figures[f"{key}_first_cycle"] = first_cycle[key]
                figures[f"{key}_last_cycle"] = last_cycle[key]
        for what, key in (("low (5th percentile)", "low"), ("median", "median")):
            first, last = first_cycle[key], last_cycle[key]
            if last > first * (1.0 + limits.rss_growth):
                failures.append(f"memory grew: the {what} RSS of the last whole cycle is {last:.0f} MB, of the first "
                                f"after warm-up {first:.0f} MB (+{100 * (last / first - 1):.1f}%, limit "
                                f"+{100 * limits.rss_growth:.0f}%)")
    elif end.rss_mb > rss_ref * (1.0 + limits.rss_growth):
        failures.append(f"memory grew: RSS {end.rss_mb:.0f} MB at the end, {rss_ref:.0f} MB median after "
                        f"warm-up (+{100 * (end.rss_mb / rss_ref - 1):.1f}%, limit +{100 * limits.rss_growth:.0f}%)")
    for name, label, slack in (("threads_os", "OS threads", limits.thread_slack),
                               ("threads_py", "Python threads", limits.thread_slack),
                               ("fds", "open file descriptors", limits.fd_slack)):
        top, last = max(getattr(s, name) for s in post), getattr(end, name)
        figures[f"{name}_max"], figures[f"{name}_end"] = top, last
        if last > top + slack:
            failures.append(f"{label} grew: {last} at the end, at most {top} after warm-up (limit +{slack})")
    none_ref = statistics.median(s.none_refs for s in post)
    figures.update(none_ref=none_ref, none_end=end.none_refs)
    if abs(end.none_refs - none_ref) > limits.none_drift:
        failures.append(f"None's refcount drifted: {end.none_refs} at the end, {none_ref:.0f} median after "
                        f"warm-up (limit ±{limits.none_drift})")
    span_h = (end.t_s - post[0].t_s) / 3600.0
    if span_h > 0:
        figures["rss_mb_per_hour"] = (end.rss_mb - post[0].rss_mb) / span_h
    return Verdict(not failures, tuple(failures), tuple(notes), warm, figures)


def _cycle_growth(post: list[Sample], period_s: float, start_s: float):
    """(first, last, number) over the whole schedule cycles after `start_s`, where first and last are
    {"peak", "median", "low"} RSS in MB of the first and the last whole cycle (low: 5th percentile) and
    the medians of the `REPORTED` fields (NaN when not measured), or None with fewer than two whole cycles."""
    cycles: dict[int, list[Sample]] = {}
    for sample in post:
        cycles.setdefault(int((sample.t_s - start_s) // period_s), []).append(sample)
    last_whole = int((post[-1].t_s - start_s) // period_s) - 1  # the cycle the last sample is in is not whole
    whole = [cycles[k] for k in sorted(cycles) if k <= last_whole and len(cycles[k]) >= 2]
    if len(whole) < 2:
        return None

    def summary(cycle: list[Sample]) -> dict[str, float]:
        rss = [s.rss_mb for s in cycle]
        low = statistics.quantiles(rss, n=20, method="inclusive")[0]
        reported = {name: statistics.median(getattr(s, name) for s in cycle) for name in REPORTED}
        return {"peak": max(rss), "median": statistics.median(rss), "low": low, **reported}

    return summary(whole[0]), summary(whole[-1]), len(whole)


# -- measuring the process ------------------------------------------------------------------------------------
def process_figures() -> tuple[float, int, int, int]:
    """(RSS in MB, OS threads, Python threads, open file descriptors) of this process; NaN/-1 off Linux."""
    status = _proc_status()
    rss = status.get("VmRSS", float("nan")) / 1024.0
    threads = int(status.get("Threads", -1))
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    return rss, threads, threading.active_count(), fds


def resident_split() -> tuple[float, float]:
    """(anonymous, file-backed) resident memory of this process in MB (/proc RssAnon, RssFile; NaN off Linux).
    Mapped files (libraries, models) are resident as the kernel pages them in and can be dropped under
    memory pressure; a leak is anonymous."""
    status = _proc_status()
    return status.get("RssAnon", float("nan")) / 1024.0, status.get("RssFile", float("nan")) / 1024.0


def _proc_status() -> dict[str, float]:
    """The numeric fields of /proc/self/status (kB for memory); empty where there is none."""
    fields: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                name, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    fields[name] = float(parts[0])
    except OSError:
        pass
    return fields


# -- the plot ---------------------------------------------------------------------------------------------------
def write_plot(samples: list[Sample], path: Path, warmup_s: float, title: str = "Soak") -> Path | None:
    """RSS, threads, file descriptors, None's refcount and fps against minutes; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001 (matplotlib is optional for the soak itself)
        log.warning("no plot: matplotlib cannot be loaded (%s)", exc)
        return None
    minutes = [s.t_s / 60.0 for s in samples]
    panels = (
        ("memory (MB)", [("rss_mb", "RSS")] + [(name, REPORTED[name]) for name in
                                               ("rss_anon_mb", "rss_file_mb", "heap_used_mb", "heap_free_mb")]),
        ("malloc mapped (MB)", [("heap_mapped_mb", REPORTED["heap_mapped_mb"])]),
        ("Python blocks", [("py_blocks", REPORTED["py_blocks"])]),
        ("threads", [("threads_os", "OS"), ("threads_py", "Python")]),
        ("open fds", [("fds", "fds")]),
        ("refcount(None)", [("none_refs", "None")]),
        ("fps", [("fps", "fps")]),
        ("latency / engine ms", [("latency_ms", "queue latency"), ("engine_ms", "engine")]),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 12), sharex=True)
    for ax, (label, series) in zip(axes, panels):
        for name, legend in series:
            ax.plot(minutes, [getattr(s, name) for s in samples], marker=".", markersize=3, linewidth=1, label=legend)
        ax.axvspan(0, warmup_s / 60.0, color="0.9", zorder=0)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend(loc="upper right", fontsize=8)
    axes[0].set_title(f"{title} (grey: warm-up)")
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
