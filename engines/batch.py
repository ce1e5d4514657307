"""Headless batch processing of recordings (`main.py process`).

`process_recording` builds the background prior (from the recording's first N frames, another
recording, or a saved .npz), mattes every other frame with `MattingPipeline` and writes each
requested output as soon as the frame is done, so an error on frame k keeps frames 0..k-1 on disk.
Background frames that show a person standing or someone passing through (`validate_capture`,
`plate_check`) are refused before any matting, unless `ProcessOptions.accept_background`; other
capture problems (too few frames, flicker) become warnings. Progress is reported through a callback;
nothing here prints.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engines.matting.background_prior import BackgroundPrior, CaptureReport, build_prior
from engines.matting.compositing import make_background, composite, rgba_foreground
from engines.config import EngineConfig
from engines.matting.foreground import ForegroundEstimator
from engines.matting.pipeline import MattingPipeline
from sensors.errors import UserError
from sensors.frame import Frame
from sensors.image_io import write_alpha_png, write_color
from sensors.source import open_source

log = logging.getLogger(__name__)

SAVE_KINDS = ("alpha", "composite", "foreground", "trimap")
ProgressCallback = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class ProcessOptions:
    """What `process_recording` builds the background from and what it writes."""

    save: tuple[str, ...] = ("alpha",)
    replace: str = "blur"  # composite background: image path, "blur", "#RRGGBB", a colour name, "checker"
    background_frames: int | None = None  # None: the recording's meta `background_frames`
    background_path: str | None = None  # another recording of the empty scene
    prior_path: str | None = None  # a saved BackgroundPrior (.npz)
    save_prior_path: str | None = None
    accept_background: bool = False  # use background frames even when they show a person (a warning then)


@dataclass
class ProcessSummary:
    frames: int
    seconds: float
    saved: tuple[str, ...]
    stage_ms_median: dict[str, float]
    background_description: str
    warnings: list[str] = field(default_factory=list)


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def _frames_after(source_iter: Iterator[Frame], skip: int) -> Iterator[Frame]:
    for _ in range(skip):
        if next(source_iter, None) is None:
            return
    yield from source_iter


def process_recording(
    input_path: str,
    out_dir: Path,
    engine: EngineConfig,
    options: ProcessOptions,
    on_progress: ProgressCallback | None = None,
) -> ProcessSummary:
    """Matte every non-background frame of `input_path` and write the requested outputs under `out_dir`."""
    unknown = [k for k in options.save if k not in SAVE_KINDS]
    if unknown:
        raise UserError(f"Unknown output '{unknown[0]}': choose from {', '.join(SAVE_KINDS)}.", 2)
    started = time.perf_counter()
    warnings: list[str] = []
    with open_source(input_path) as source:
        info = source.info
        frames = iter(source)
        writer = _OutputWriter(out_dir, options, info.width, info.height)  # checks --replace before any work
        if options.prior_path:
            prior = BackgroundPrior.load(options.prior_path)
            described = f"'{options.prior_path}'"
        elif options.background_path:
            with open_source(options.background_path) as background:
                prior, report = build_prior(background, options.background_frames, engine.depth, on_progress)
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
            prior, report = build_prior(frames, count, engine.depth, on_progress)
            described = f"its first {count} frames"
            warnings = _check_background(report, f"The background frames (the first {count} of '{input_path}') show",
                                         "give frames of the empty scene (--background-frames N or --background "
                                         "EMPTY_RECORDING)", options)
        if options.save_prior_path:
            prior.save(options.save_prior_path)

        pipeline = MattingPipeline(engine)
        pipeline.set_prior(prior)
        total = None
        if info.frame_count is not None and not options.background_path and not options.prior_path:
            total = max(info.frame_count - prior.n_frames, 0)
        elif info.frame_count is not None:
            total = info.frame_count
        timings: dict[str, list[float]] = {}
        done = 0
        for frame in frames:
            frame_start = time.perf_counter()
            depth_m = frame.depth_m()
            result = pipeline.process(frame.color, depth_m)
            write_start = time.perf_counter()
            writer.write(frame, depth_m, result, prior)
            done_at = time.perf_counter()
            result.timings_ms["write"] = (done_at - write_start) * 1e3
            result.timings_ms["frame (all)"] = (done_at - frame_start) * 1e3
            for stage, ms in result.timings_ms.items():
                timings.setdefault(stage, []).append(ms)
            done += 1
            if on_progress:
                on_progress("matting", done, total)
    if done == 0:
        raise UserError(f"'{input_path}' has no frames after the background frames: nothing to matte.")
    return ProcessSummary(
        frames=done,
        seconds=time.perf_counter() - started,
        saved=tuple(options.save),
        stage_ms_median={stage: float(np.median(values)) for stage, values in timings.items()},
        background_description=described,
        warnings=warnings,
    )


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

    def __init__(self, out_dir: Path, options: ProcessOptions, width: int, height: int) -> None:
        self.out_dir = out_dir
        self.save = options.save
        self.background = make_background(options.replace, width, height) if "composite" in self.save else None
        self.foreground = ForegroundEstimator()  # keeps its buffers between frames
        for kind in self.save:
            (out_dir / kind).mkdir(parents=True, exist_ok=True)

    def write(self, frame: Frame, depth_m: np.ndarray, result, prior: BackgroundPrior) -> None:
        name = frame_name(frame.index)
        alpha = result.alpha
        if "alpha" in self.save:
            write_alpha_png(self.out_dir / "alpha" / name, alpha)
        if "trimap" in self.save and result.trimap is not None:
            write_alpha_png(self.out_dir / "trimap" / name, result.trimap)
        if "composite" in self.save or "foreground" in self.save:
            image = frame.color.astype(np.float32) * np.float32(1.0 / 255.0)
            foreground = self.foreground(image, alpha, prior.color_mean)
            foreground_u8 = np.clip(foreground * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if "foreground" in self.save:
                write_color(self.out_dir / "foreground" / name, rgba_foreground(foreground_u8, alpha))
            if "composite" in self.save:
                background = self.background.render(frame.color, depth_m)
                write_color(self.out_dir / "composite" / name, composite(frame.color, alpha, background, foreground_u8))
