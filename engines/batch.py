"""Headless batch processing of recordings (`main.py process`).

`process_recording` builds the background prior (from the recording's first N frames, another
recording, or a saved .npz), mattes every other frame with `MattingPipeline` and writes each
requested output as soon as the frame is done, so an error on frame k keeps frames 0..k-1 on disk.
Background frames that show a person standing or someone passing through (`validate_capture`,
`plate_check`) are refused before any matting, unless `ProcessOptions.accept_background`; other
capture problems (too few frames, flicker) become warnings. Progress is reported through a callback;
nothing here prints.

Outputs keep the source's identity: `OUT/<kind>/<frame.index>.png` and one row per matted frame in
`OUT/frames.csv` (index, colour and depth timestamps, their gap, how many source indices are missing
just before it), appended after the frame's images are in place; `ProcessSummary.gaps` lists the
missing index runs. Every file is written atomically (`sensors.safe_write`): a killed or failing run
leaves complete files only. A damaged frame stops the run with one sentence saying how far the
recording was read; the ground-truth alpha/ of a recording is never opened here (only `eval` reads it).

Resume (`ProcessOptions.resume`): `OUT/run.json` records the settings a run used and whether it
finished. An input whose record matches and says complete is skipped without opening it; otherwise
the frames listed in `frames.csv` (rows are appended only after a frame's images are in place) are
kept and not matted again, so the result is identical to an uninterrupted run. Different settings, or
no record, start the input afresh. With temporal smoothing the kept frames still go through the
pipeline (its state depends on them), and a video background still advances over them; they are
not written again.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engines.matting.background_prior import BackgroundPrior, CaptureReport, build_prior
from engines.matting.compositing import composite, parse_background_spec, rgba_foreground
from engines.config import EngineConfig
from engines.matting.foreground import ForegroundEstimator
from engines.matting.pipeline import MattingPipeline
from engines.matting.replacement import VideoBackground, open_replacement
from sensors.errors import UserError
from sensors.frame import Frame
from sensors.image_header import LIMIT_TEXT, too_large
from sensors.image_io import ImageFolderSource, without_ground_truth, write_alpha_png, write_color
from sensors.safe_write import AppendOnlyCsv, atomic_write_bytes, prepare_output_folder
from sensors.source import Source, open_source

log = logging.getLogger(__name__)

SAVE_KINDS = ("alpha", "composite", "foreground", "trimap")
FRAMES_CSV = "frames.csv"
RUN_RECORD = "run.json"  # the settings of the run that wrote OUT and whether it finished (resume)
CSV_COLUMNS = ["index", "color_time_s", "depth_time_s", "pair_gap_ms", "missing_before"]
ProgressCallback = Callable[[str, int, "int | None"], None]


class _Unset(str):
    """`ProcessOptions.replace` left at its default: told apart from the same value given on purpose."""


DEFAULT_REPLACE = _Unset("blur")


@dataclass(frozen=True)
class ProcessOptions:
    """What `process_recording` builds the background from and what it writes.

    Checked when made, before any work (UserError, exit code 2, one sentence): `save` holds known
    kinds; `replace` is a valid background (a missing image file or '#12345' is refused). Giving
    `replace` (anything but `DEFAULT_REPLACE`) implies the composite output: it is added to `save`
    (`implied_composite` says so).
    """

    save: tuple[str, ...] = ("alpha",)
    replace: str = DEFAULT_REPLACE  # composite background: image path, "blur", "#RRGGBB", a colour name, "checker"
    background_frames: int | None = None  # None: the recording's meta `background_frames`
    background_path: str | None = None  # another recording of the empty scene
    prior_path: str | None = None  # a saved BackgroundPrior (.npz)
    save_prior_path: str | None = None
    accept_background: bool = False  # use background frames even when they show a person (a warning then)
    resume: bool = False  # keep what an earlier run with the same settings wrote (module docstring); implies record_run
    record_run: bool = True  # write OUT/run.json: what made OUT (eval checks its input) and whether it finished (resume)
    implied_composite: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        unknown = [k for k in self.save if k not in SAVE_KINDS]
        if unknown or not self.save:
            raise UserError(f"Unknown output '{','.join(unknown)}': choose from {', '.join(SAVE_KINDS)}.", 2)
        parse_background_spec(self.replace)  # one sentence (exit 2) for '#12345' or a missing image
        if not isinstance(self.replace, _Unset) and "composite" not in self.save:
            object.__setattr__(self, "save", tuple(self.save) + ("composite",))
            object.__setattr__(self, "implied_composite", True)
        if self.resume:
            object.__setattr__(self, "record_run", True)


@dataclass
class ProcessSummary:
    frames: int
    seconds: float
    saved: tuple[str, ...]
    stage_ms_median: dict[str, float]
    background_description: str
    warnings: list[str] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first, last) runs of missing source indices
    resumed: int = 0  # frames an earlier run had written, kept as they were (ProcessOptions.resume)
    already_complete: bool = False  # an earlier run with the same settings finished: nothing was done

    def describe_gaps(self, shown: int = 6) -> str:
        """'frames 6, 9-10 missing in the source' ('' without gaps)."""
        if not self.gaps:
            return ""
        count = sum(b - a + 1 for a, b in self.gaps)
        runs = [f"{a}" if a == b else f"{a}-{b}" for a, b in self.gaps[:shown]]
        more = f" and {len(self.gaps) - shown} more runs" if len(self.gaps) > shown else ""
        return f"{'frame' if count == 1 else 'frames'} {', '.join(runs)}{more} missing in the source"


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def _frames_after(source_iter: Iterator[Frame], skip: int) -> Iterator[Frame]:
    for _ in range(skip):
        if next(source_iter, None) is None:
            return
    yield from source_iter


class _ReadTracker:
    """Iterates a source, remembering the indices read, and turns a read error into one sentence that
    says how far the recording was read."""

    def __init__(self, source: Source, input_path: str) -> None:
        self._frames = iter(source)
        self.source = source
        self.input_path = input_path
        self.total = source.info.frame_count
        self.read = 0
        self.matted = 0
        self.last_index: int | None = None
        self.missing_before = 0
        self.gaps: list[tuple[int, int]] = []

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                frame = next(self._frames, None)
            except UserError as error:
                raise UserError(self._stopped(str(error)), error.exit_code) from error
            if frame is None:
                return
            self.read += 1
            if self.last_index is not None and frame.index > self.last_index + 1:
                self.gaps.append((self.last_index + 1, frame.index - 1))
            self.missing_before = 0 if self.last_index is None else max(frame.index - self.last_index - 1, 0)
            self.last_index = frame.index
            yield frame

    def _stopped(self, message: str) -> str:
        of = f" of its {self.total}" if self.total is not None else ""
        where = f", after frame {self.last_index}" if self.last_index is not None else ""
        kept = (f"the outputs of the {self.matted} {'frame' if self.matted == 1 else 'frames'} matted so far are "
                "kept" if self.matted else "no frame had been matted yet")
        return (f"{message.rstrip('.')}; '{self.input_path}' ends early there: {self.read}{of} frames were "
                f"read{where} ({kept}).")


def process_recording(
    input_path: str,
    out_dir: Path,
    engine: EngineConfig,
    options: ProcessOptions,
    on_progress: ProgressCallback | None = None,
    pipeline: MattingPipeline | None = None,
) -> ProcessSummary:
    """Matte every non-background frame of `input_path` and write the requested outputs under `out_dir`.

    pipeline: a `MattingPipeline` built from `engine` to reuse (its networks stay loaded between
    recordings; `set_prior` resets its per-stream state); None builds one. Errors the user can act on
    raise `UserError`; outputs written before an error stay on disk.
    """
    started = time.perf_counter()
    settings = run_settings(input_path, engine, options) if options.record_run else None
    earlier = _earlier_run(out_dir, settings) if options.resume else None
    if earlier is not None and earlier.get("complete"):
        return ProcessSummary(frames=0, seconds=time.perf_counter() - started, saved=tuple(options.save),
                              stage_ms_median={}, background_description="an earlier run",
                              resumed=int(earlier.get("frames", 0)), already_complete=True)
    kept_rows = _written_rows(out_dir) if earlier is not None else []
    # The matting engine first: a backend that cannot run (e.g. --post vitmatte without weights) fails
    # before the recording is read, the background built or an output folder made.
    if pipeline is None:
        pipeline = MattingPipeline(engine)
    elif pipeline.config != engine:
        raise ValueError("process_recording: the pipeline was built for another EngineConfig")
    warnings: list[str] = []
    with ExitStack() as stack:
        source = stack.enter_context(without_ground_truth(open_source(input_path)))
        info = source.info
        if too_large(info.width, info.height):
            raise UserError(f"'{input_path}' has {info.width}x{info.height} frames, larger than the limit of "
                            f"{LIMIT_TEXT}.")
        frames = _ReadTracker(source, input_path)
        writer = _OutputWriter(out_dir, options, info.width, info.height, kept_rows)  # checks --replace first
        stack.push(lambda failed, *_: writer.finish(failed is not None))
        if settings is not None:  # after frames.csv is rewritten: a record never vouches for rows of other settings
            _write_run_record(out_dir, settings, complete=False, frames=len(kept_rows))
            writer.made_files.append(out_dir / RUN_RECORD)
        if options.prior_path:
            prior = BackgroundPrior.load(options.prior_path)
            described = f"'{options.prior_path}'"
        elif options.background_path:
            with without_ground_truth(open_source(options.background_path)) as background:
                # its own empty-scene frames when it names them (a take that starts with a capture), else all
                count = options.background_frames or background.info.background_frames
                prior, report = build_prior(background, count, engine.depth, on_progress)
            described = f"'{options.background_path}' ({prior.n_frames} frames)"
            warnings = _check_background(report, f"The background recording '{options.background_path}' shows",
                                         "record the empty scene again", options)
        else:
            count = options.background_frames or info.background_frames
            if not count:
                raise UserError(
                    f"'{input_path}' does not say which frames show the empty scene: "
                    "give --background-frames N, --background RECORDING or --prior FILE.npz.",
                    2,
                )
            prior, report = build_prior(iter(frames), count, engine.depth, on_progress)
            described = f"its first {count} frames"
            warnings = _check_background(report, f"The background frames (the first {count} of '{input_path}') show",
                                         "give frames of the empty scene (--background-frames N or --background "
                                         "EMPTY_RECORDING)", options)
        if options.save_prior_path:
            prior.save(options.save_prior_path)

        pipeline.set_prior(prior)
        total = None
        if info.frame_count is not None and not options.background_path and not options.prior_path:
            total = max(info.frame_count - prior.n_frames, 0)
        elif info.frame_count is not None:
            total = info.frame_count
        timings: dict[str, list[float]] = {}
        done = resumed = 0
        kept = {int(row[0]) for row in kept_rows}
        stateful = engine.temporal_smoothing > 0.0  # the smoother's state depends on every earlier frame
        for frame in frames:
            if frame.index in kept:
                if stateful:
                    pipeline.process(frame.color, frame.depth_m())
                writer.skip(frame)
                resumed += 1
                frames.matted += 1
                if on_progress:
                    on_progress("matting", done + resumed, total)
                continue
            frame_start = time.perf_counter()
            depth_m = frame.depth_m()
            result = pipeline.process(frame.color, depth_m)
            write_start = time.perf_counter()
            writer.write(frame, depth_m, result, prior)
            writer.record(frame, source, frames.missing_before)
            frames.matted += 1
            done_at = time.perf_counter()
            result.timings_ms["write"] = (done_at - write_start) * 1e3
            result.timings_ms["frame (all)"] = (done_at - frame_start) * 1e3
            for stage, ms in result.timings_ms.items():
                timings.setdefault(stage, []).append(ms)
            done += 1
            if on_progress:
                on_progress("matting", done + resumed, total)
    if done + resumed == 0:
        raise UserError(f"'{input_path}' has no frames after the background frames: nothing to matte.")
    if settings is not None:
        _write_run_record(out_dir, settings, complete=True, frames=done + resumed)
    return ProcessSummary(
        frames=done,
        seconds=time.perf_counter() - started,
        saved=tuple(options.save),
        stage_ms_median={stage: float(np.median(values)) for stage, values in timings.items()},
        background_description=described,
        warnings=warnings,
        gaps=frames.gaps,
        resumed=resumed,
    )


def _resolved(path: str | None) -> str | None:
    """An absolute path for files and folders; camera/recording URIs (scheme://) as given."""
    return path if path is None or "://" in path else str(Path(path).resolve())


def run_settings(input_path: str, engine: EngineConfig, options: ProcessOptions) -> dict:
    """What decides a run's outputs, as JSON-ready values: two runs with equal settings write equal files."""
    return {
        "input": _resolved(input_path),
        "engine": dataclasses.asdict(engine),
        "save": sorted(options.save),
        "replace": str(options.replace),
        "background_frames": options.background_frames,
        "background_path": _resolved(options.background_path),
        "prior_path": _resolved(options.prior_path),
        "accept_background": options.accept_background,
    }


def read_run_record(out_dir: Path) -> dict | None:
    """`OUT/run.json` as written by `process` ({"settings": `run_settings`, "complete", "frames"}), or None
    when it is absent, unreadable or not such a record."""
    try:
        record = json.loads((Path(out_dir) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else None


def _earlier_run(out_dir: Path, settings: dict | None) -> dict | None:
    """`OUT/run.json` of an earlier run with these settings, or None (absent, unreadable or other settings)."""
    record = read_run_record(out_dir)
    return record if record is not None and record["settings"] == settings else None


def _written_rows(out_dir: Path) -> list[list[str]]:
    """frames.csv's complete rows (each ends with a newline and has every column), in file order."""
    try:
        text = (out_dir / FRAMES_CSV).read_text()
    except (OSError, UnicodeDecodeError):
        return []
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != ",".join(CSV_COLUMNS):
        return []
    rows = []
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        if line.endswith("\n") and len(row) == len(CSV_COLUMNS) and row[0].isdigit():
            rows.append(row)
    return rows


def _write_run_record(out_dir: Path, settings: dict, complete: bool, frames: int) -> None:
    record = {"settings": settings, "complete": complete, "frames": frames}
    atomic_write_bytes(out_dir / RUN_RECORD, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def _check_background(report: CaptureReport, what: str, remedy: str, options: ProcessOptions) -> list[str]:
    """Refuse background frames with a person or passer-by in them (UserError, exit 1) unless the user
    accepts them (then a warning); the capture's other problems become warnings."""
    if report.subject is None:
        return [] if report.ok else [report.message]
    found = f"{what} {report.subject.describe()}"
    if not options.accept_background:
        raise UserError(f"{found}: {remedy}, or pass --accept-background to use this background anyway.", 1)
    return [f"{found}; used anyway (--accept-background), so the matte may miss that part of the subject."]


class _OutputWriter:
    """Writes alpha / composite / foreground / trimap images for one frame into their folders."""

    def __init__(self, out_dir: Path, options: ProcessOptions, width: int, height: int,
                 kept_rows: list[list[str]] = ()) -> None:
        self.out_dir = out_dir
        self.save = options.save
        self.background = open_replacement(options.replace, width, height) if "composite" in self.save else None
        self.foreground = ForegroundEstimator()  # keeps its buffers between frames
        folders = [out_dir, *(out_dir / kind for kind in self.save)]
        self._made = [folder for folder in folders if not folder.exists()]  # removed again if nothing is written
        self.made_files: list[Path] = []  # files of this run removed with them (run.json)
        prepare_output_folder(out_dir)  # --out a file, read-only or not ours: one sentence before any work
        for kind in self.save:
            prepare_output_folder(out_dir / kind, root=out_dir)
        self.table: AppendOnlyCsv | None = None  # frames.csv: made with the first row, so a run that fails
        for row in kept_rows:  # before any frame leaves an earlier run's file alone (resume: its kept rows)
            self._row(row)

    def _row(self, row: list) -> None:
        if self.table is None:
            self.table = AppendOnlyCsv(self.out_dir / FRAMES_CSV, CSV_COLUMNS)
        self.table.write(row)

    def finish(self, failed: bool) -> None:
        """Close frames.csv. A run that failed before writing any frame removes the empty folders it
        made; one that ended without frames still leaves a frames.csv with its header."""
        if self.table is None and not failed:
            self.table = AppendOnlyCsv(self.out_dir / FRAMES_CSV, CSV_COLUMNS)
        if self.table is not None:
            self.table.close()
            return
        for path in self.made_files:
            path.unlink(missing_ok=True)
        for folder in reversed(self._made):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass

    def record(self, frame: Frame, source: Source, missing_before: int) -> None:
        """frames.csv's row for a frame whose images are written."""
        color_t, depth_t = frame.timestamp, None
        if isinstance(source, ImageFolderSource):
            color_t, depth_t = source.stream_times(frame.index)
        gap_ms = None if color_t is None or depth_t is None else f"{abs(color_t - depth_t) * 1e3:.3f}"
        self._row([frame.index, None if color_t is None else f"{color_t:.6f}",
                   None if depth_t is None else f"{depth_t:.6f}", gap_ms, missing_before])

    def skip(self, frame: Frame) -> None:
        """A frame an earlier run wrote (resume): a video background still moves on by one frame."""
        if isinstance(self.background, VideoBackground):
            self.background.render(frame.color)


    def write(self, frame: Frame, depth_m: np.ndarray, result, prior: BackgroundPrior) -> None:
        name = frame_name(frame.index)
        alpha = result.alpha
        if "alpha" in self.save:
            write_alpha_png(self.out_dir / "alpha" / name, alpha)
        if "trimap" in self.save:
            write_alpha_png(self.out_dir / "trimap" / name, result.trimap_or_thresholds())
        if "composite" in self.save or "foreground" in self.save:
            image = frame.color.astype(np.float32) * np.float32(1.0 / 255.0)
            foreground = self.foreground(image, alpha, prior.color_mean)
            foreground_u8 = np.clip(foreground * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if "foreground" in self.save:
                write_color(self.out_dir / "foreground" / name, rgba_foreground(foreground_u8, alpha))
            if "composite" in self.save:
                background = self.background.render(frame.color, depth_m)
                write_color(self.out_dir / "composite" / name, composite(frame.color, alpha, background, foreground_u8))
