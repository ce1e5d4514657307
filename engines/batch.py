"""Headless batch processing of recordings (`main.py process`) and evaluation (`main.py eval`).

`process_recording` builds the background prior (from the recording's first N frames, another
recording, or a saved .npz), mattes every other frame with `MattingPipeline` and writes each
requested output as soon as the frame is done, so an error on frame k keeps frames 0..k-1 on disk.
Progress is reported through a callback; nothing here prints.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from engines.background_prior import BackgroundPrior, BackgroundPriorBuilder, validate_capture
from engines.compositing import make_background, composite, rgba_foreground
from engines.config import DepthConfig, EngineConfig
from engines.foreground import ForegroundEstimator
from engines.metrics import METRIC_NAMES, evaluate, mean_metrics
from engines.pipeline import MattingPipeline
from sensors.errors import UserError
from sensors.frame import Frame
from sensors.image_io import read_alpha, write_alpha_png, write_color
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


def build_prior(
    frames: Iterable[Frame], count: int | None, config: DepthConfig, on_progress: ProgressCallback | None = None
) -> tuple[BackgroundPrior, list[str]]:
    """The background prior from the first `count` frames (all when None), plus capture warnings."""
    builder: BackgroundPriorBuilder | None = None
    for frame in frames:
        if builder is None:
            builder = BackgroundPriorBuilder(frame.height, frame.width)
        elif (frame.height, frame.width) != (builder.height, builder.width):
            raise UserError(
                f"Background frame {frame.index} is {frame.width}x{frame.height} but earlier ones are "
                f"{builder.width}x{builder.height}: use background frames of one size."
            )
        builder.add(frame.color, frame.depth_m())
        if on_progress:
            on_progress("background", builder.count, count)
        if count is not None and builder.count >= count:
            break
    if builder is None or builder.count == 0:
        raise UserError("No background frames were read: the background recording is empty.")
    if count is not None and builder.count < count:
        raise UserError(f"Asked for {count} background frames but the recording has only {builder.count}.")
    report = validate_capture(builder)
    warnings = [] if report.ok else [report.message]
    return builder.build(config), warnings


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
                prior, warnings = build_prior(background, options.background_frames, engine.depth, on_progress)
            described = f"'{options.background_path}' ({prior.n_frames} frames)"
        else:
            count = options.background_frames or info.background_frames
            if not count:
                raise UserError(
                    f"'{input_path}' does not say which frames show the empty scene: "
                    "give --background-frames N, --background RECORDING or --prior FILE.npz.",
                    2,
                )
            prior, warnings = build_prior(frames, count, engine.depth, on_progress)
            described = f"its first {count} frames"
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


@dataclass
class EvaluationReport:
    frames: int
    metrics: dict[str, float]
    per_frame: dict[int, dict[str, float]]


def _prediction_path(pred_dir: Path, index: int) -> Path | None:
    for folder in (pred_dir / "alpha", pred_dir):
        path = folder / frame_name(index)
        if path.is_file():
            return path
    return None


def evaluate_predictions(input_path: str, pred_dir: Path) -> EvaluationReport:
    """Mean SAD/MSE/Grad/Conn (DART scaling) of predicted alpha PNGs against the recording's alpha/."""
    if not pred_dir.is_dir():
        raise UserError(f"Prediction folder '{pred_dir}' does not exist: run 'main.py process' first.", 2)
    per_frame: dict[int, dict[str, float]] = {}
    with open_source(input_path) as source:
        background_frames = source.info.background_frames or 0
        for frame in source:
            if frame.index < background_frames or frame.alpha is None:
                continue
            path = _prediction_path(pred_dir, frame.index)
            if path is None:
                continue
            pred = read_alpha(path)
            if pred.shape != frame.alpha.shape:
                raise UserError(f"'{path}' is {pred.shape[1]}x{pred.shape[0]} but the recording is "
                                f"{frame.width}x{frame.height}: predictions must match the recording's size.")
            per_frame[frame.index] = evaluate(pred, frame.alpha)
    if not per_frame:
        raise UserError(
            f"No frame of '{input_path}' has both a ground-truth alpha and a prediction in '{pred_dir}': "
            "check the recording has an alpha/ folder and the predictions are named like 000030.png."
        )
    metrics = mean_metrics(per_frame.values())
    return EvaluationReport(frames=len(per_frame), metrics={k: metrics[k] for k in METRIC_NAMES}, per_frame=per_frame)
