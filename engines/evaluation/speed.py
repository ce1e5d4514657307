"""Speed measurements of the run-time stages on generated frames (`main.py bench-speed`).

Owns `measure_depth_stage_ms` (DART's depth stages on synthetic arrays), `measure_network_ms`
(`NetworkMatting.process` on a generated RGB-D scene), `live_path_ms` / `bench_speed_lines` (`main.py
bench-speed`: every stage of the live path in DART mode on a recording's subject frames, then engine-only
rows of dart, depth mode and the MediaPipe selfie segmentation peer with their ratio, all in one run),
`generator_scenes` and `quantize_models` (INT8 calibration on generated frames only). Medians in
milliseconds; evaluation only, so the run-time modules never import the scene generator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engines.config import LIVE_OVERLAP_STAGES, DepthConfig
from engines.matting.background_prior import BackgroundPrior, BackgroundPriorBuilder
from engines.matting.dart_matting import NetworkMatting
from engines.matting.depth_bayes import (
    LikelihoodTables,
    alpha_posterior_given_depth,
    clean_posterior,
    depth_posterior,
    depth_residual,
    fuse_error_maps,
    make_trimap,
    resize_depth,
)
from engines.matting.scratch import Scratch
from engines.matting.depth_matting import DepthMatting, work_size
from engines.synth.scene import SceneConfig, generate_scene

CALIBRATION_SEEDS = (7000, 7001, 7002, 7003)  # generator scenes for INT8 calibration (no evaluation data)


def generator_scenes(seeds: tuple[int, ...] = CALIBRATION_SEEDS, width: int = 640, height: int = 480,
                     background_frames: int = 10, test_frames: int = 6) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Generated RGB-D scenes as lists of (colour uint8 HxWx3 RGB, depth float32 HxW metres): the first
    `background_frames` of each show the empty scene; for INT8 calibration (`engines.nets.quantize`)."""
    scenes = []
    for seed in seeds:
        config = SceneConfig(width=width, height=height, n_background=background_frames, n_test=test_frames, seed=seed)
        scenes.append([(f.color, f.depth_m()) for f in generate_scene(config)])
    return scenes


def _synthetic_scene(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background depth, frame depth with a box in front, colour) for the benchmark; metres, RGB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = (2.5 + 0.5 * xx / width).astype(np.float32)
    frame = background.copy()
    box = (np.abs(xx - width / 2) < width / 6) & (np.abs(yy - height / 2) < height / 3)
    frame[box] = 1.2
    frame += rng.normal(0.0, 0.005, frame.shape).astype(np.float32)
    frame[rng.random(frame.shape) < 0.05] = 0.0
    color = np.where(box[..., None], 200, 60).astype(np.uint8).repeat(3, axis=2)
    return background, frame, color


def measure_depth_stage_ms(width: int = 640, height: int = 480, n: int = 100, config: DepthConfig | None = None,
                           seed: int = 0) -> dict[str, float]:
    """Median milliseconds of DART's depth stages on synthetic arrays.

    Stages: "prior_update" (one `BackgroundPriorBuilder.add`, full resolution), "posterior" (nearest
    downsampling + eqs. 7-8 + cleaning at work resolution), "fusion" (eqs. 9-10 at work resolution),
    "trimap" (eq. 12 + eq. 13 at full resolution); "total" is their sum. "depth_matting" (one whole
    `DepthMatting.process`, guided upsampling included) is reported separately, outside "total".
    """
    cfg = config or DepthConfig()
    rng = np.random.default_rng(seed)
    background, frame, color = _synthetic_scene(width, height, rng)
    builder = BackgroundPriorBuilder(height, width)
    for _ in range(3):
        noisy = background + rng.normal(0.0, 0.005, background.shape).astype(np.float32)
        builder.add(color, noisy)
    prior = builder.build(cfg)
    w, h = work_size(width, height, cfg.work_scale)
    tables_work = LikelihoodTables.from_prior(prior.resized(w, h))
    tables_full = LikelihoodTables.from_prior(prior)
    alpha_raw = rng.random((h, w), dtype=np.float32)
    error_rgb = rng.random((h, w), dtype=np.float32)
    alpha_fine = rng.random((height, width), dtype=np.float32)
    matting = DepthMatting(cfg)
    matting.set_prior(prior)
    scratch = Scratch()

    stages = {name: [] for name in ("prior_update", "posterior", "fusion", "trimap", "depth_matting")}
    posterior = None
    for _ in range(max(1, n)):
        t0 = time.perf_counter()
        builder.add(color, frame)
        t1 = time.perf_counter()
        posterior = clean_posterior(depth_posterior(resize_depth(frame, w, h), tables_work, cfg), cfg)
        t2 = time.perf_counter()
        fuse_error_maps(depth_residual(posterior, alpha_raw), error_rgb, cfg.beta)
        t3 = time.perf_counter()
        make_trimap(alpha_posterior_given_depth(alpha_fine, frame, tables_full, cfg, scratch=scratch), cfg,
                    scratch=scratch)
        t4 = time.perf_counter()
        matting.process(color, frame)
        t5 = time.perf_counter()
        stages["prior_update"].append(t1 - t0)
        stages["posterior"].append(t2 - t1)
        stages["fusion"].append(t3 - t2)
        stages["trimap"].append(t4 - t3)
        stages["depth_matting"].append(t5 - t4)
    result = {name: float(np.median(values)) * 1e3 for name, values in stages.items()}
    result["total"] = sum(result[k] for k in ("prior_update", "posterior", "fusion", "trimap"))
    return result


def measure_network_ms(model_dir: str | Path, width: int = 640, height: int = 480, n: int = 50, seed: int = 0,
                       **kwargs) -> dict[str, float]:
    """Median milliseconds per stage of `NetworkMatting.process` on a synthetic RGB-D frame (`engines.synth.scene`,
    background prior from its empty-scene captures); kwargs go to `NetworkMatting`."""
    frames = list(generate_scene(SceneConfig(width=width, height=height, n_background=10, n_test=3, seed=seed)))
    builder = BackgroundPriorBuilder(height, width)
    for frame in frames[:10]:
        builder.add(frame.color, frame.depth_m())
    matting = NetworkMatting(model_dir, **kwargs)
    matting.set_prior(builder.build(matting.config))
    test = frames[-1]
    color, depth = test.color, test.depth_m()
    times: dict[str, list[float]] = {}
    for i in range(n + 3):
        result = matting.process(color, depth)
        if i >= 3:
            for key, value in result.timings_ms.items():
                times.setdefault(key, []).append(value)
    return {key: float(np.median(v)) for key, v in times.items()}


def quantize_models(model_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """INT8 copies of the student and both refiners of `model_dir` in `out_dir`, calibrated on generator
    scenes (`CALIBRATION_SEEDS`; never evaluation data). Returns the written files."""
    from engines.nets.quantize import quantize_model_dir

    return quantize_model_dir(model_dir, out_dir, generator_scenes())


# ---- the whole live path (`main.py bench-speed`) ----

PEER_MODEL = "selfie_segmentation_landscape_144x256.onnx"  # MediaPipe selfie segmentation, 256x144 input
Stage = Callable[[np.ndarray, np.ndarray, np.ndarray, dict], np.ndarray]


@dataclass(frozen=True)
class LivePathConfig:
    """What `live_path_ms` times.

    recording: an RGB-D recording whose first `background_frames` frames show the empty scene (the demo),
    its frames resized to `size` (width, height) when given; model_dir: the networks (None: assets/models);
    frames: frames timed per row (the recording's subject frames, looped); k: refined patches;
    device: "auto" | "cpu" | "cuda" (`engines.matting.providers.resolve_providers`); precision: "auto" |
    "float" | "int8" (`engines.matting.dart_matting.network_file`); threads: onnxruntime intra-op threads;
    peer_dir: the MediaPipe selfie segmentation folder (None or missing: no peer row); budget_ms: adapt the
    refined patches (at most k) to this many milliseconds of `NetworkMatting.process` a frame.
    """

    recording: Path
    frames: int = 100
    k: int = 700
    device: str = "auto"
    precision: str = "auto"
    threads: int = 2
    peer_dir: Path | None = None
    edge_refine: bool = True  # as the app ("Clean edges", on by default)
    size: tuple[int, int] | None = None  # (width, height) the frames are resized to; None: the recording's
    model_dir: Path | None = None  # None: the shipped models (assets/models)
    depth: DepthConfig = DepthConfig()
    budget_ms: float | None = None  # NetworkMatting's PatchBudget (None: always k patches)


def _resized(frame, size: tuple[int, int] | None):
    """`frame` with colour (area / linear) and depth (nearest) resized to size = (width, height)."""
    import cv2
    from dataclasses import replace

    if size is None or (frame.color.shape[1], frame.color.shape[0]) == tuple(size):
        return frame
    return replace(frame, color=cv2.resize(frame.color, size, interpolation=cv2.INTER_LINEAR),
                   depth_raw=cv2.resize(frame.depth_raw, size, interpolation=cv2.INTER_NEAREST), alpha=None)


def _read_frames(recording: Path, n: int, size: tuple[int, int] | None = None) -> tuple[list, list[float], int]:
    """(all frames of the recording resized to `size`, read/decode ms of `n` reads looping over it,
    background frames)."""
    from sensors.source import open_source

    frames, times = [], []
    background, complete = 0, False
    while len(times) < n or not complete:
        source = open_source(str(recording))
        with source:
            background = source.info.background_frames or 0
            while len(times) < n or not complete:
                t0 = time.perf_counter()
                frame = source.read()
                if frame is None:
                    complete = True
                    break
                times.append((time.perf_counter() - t0) * 1e3)
                if not complete:
                    frames.append(_resized(frame, size))
    return frames, times, background


class SelfieSegmentation:
    """The MediaPipe selfie segmentation peer on onnxruntime: `__call__(color_rgb)` -> float32 HxW person
    probability in [0, 1] at the frame's size (colour resized to the model's 256x144, mask resized back)."""

    def __init__(self, model: Path, threads: int = 2) -> None:
        from engines.matting.providers import SessionSettings, open_session

        self.session = open_session(model, ["CPUExecutionProvider"], settings=SessionSettings(intra_op_threads=threads))
        shape = self.session.get_inputs()[0].shape  # [1, h, w, 3]
        self.size = (int(shape[2]), int(shape[1]))
        self.input = self.session.get_inputs()[0].name

    def __call__(self, color_rgb: np.ndarray) -> np.ndarray:
        import cv2

        small = cv2.resize(color_rgb, self.size, interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32)[None]
        x *= np.float32(1.0 / 255.0)
        (mask,) = self.session.run(None, {self.input: x})
        return cv2.resize(mask[0, :, :, 0], (color_rgb.shape[1], color_rgb.shape[0]), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class LivePathReport:
    """rows: row name -> median milliseconds (a few rows are counts or ratios, named so); files: the network
    files loaded; providers: the onnxruntime providers of the student's session."""

    rows: dict[str, float]
    files: list[Path]
    providers: list[str]


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def live_path_ms(config: LivePathConfig, compose_factory: Callable[[BackgroundPrior], Stage] | None = None,
                 outputs: dict[str, Callable[[np.ndarray], object]] | None = None) -> LivePathReport:
    """Median milliseconds of every stage a frame takes through the live app in DART mode, on the frames
    of `config.recording` that show the subject, then engine-only rows of dart, depth and the peer on the
    same frames in memory, and their ratio (dart / peer, from the medians of this run).

    compose_factory(prior) -> compose(color, depth_m, alpha, timings) -> uint8 HxWx3 output: the app's
    compositing (`app.fps_probe.live_stages`); outputs: name -> conversion of the output image (virtual
    webcam, display). Rows "dart: <stage>" come from `NetworkMatting`'s timings; "patches refined" is a count.
    Raises `UserError` for a recording without empty-scene frames or a device without its provider.
    """
    from engines.config import EngineConfig
    from engines.matting.dart_matting import NetworkMatting, PatchBudget
    from engines.matting.pipeline import MattingBackend, MattingPipeline, _network_result
    from engines.matting.providers import SessionSettings
    from sensors.errors import UserError

    from engines.matting.providers import resolve_providers

    resolve_providers(config.device)  # no GPU provider for "cuda": one sentence before any work
    all_frames, read_ms, n_background = _read_frames(config.recording, config.frames, config.size)
    if not n_background or len(all_frames) <= n_background:
        raise UserError(f"The recording {config.recording} says no empty-scene frames (background_frames) are first.")
    builder = BackgroundPriorBuilder(*all_frames[0].color.shape[:2])
    for frame in all_frames[:n_background]:
        builder.add(frame.color, frame.depth_m())
    prior = builder.build(config.depth)
    subject = [(f.color, f.depth_m()) for f in all_frames[n_background:]]

    def dart_pipeline(overlap: bool) -> tuple[NetworkMatting, MattingPipeline]:
        matting = NetworkMatting(config.model_dir or EngineConfig().model_dir, config=config.depth, k=config.k,
                                 device=config.device, precision=config.precision, overlap=overlap,
                                 session=SessionSettings(intra_op_threads=config.threads),
                                 patch_budget=None if config.budget_ms is None else PatchBudget(config.budget_ms))
        pipeline = MattingPipeline(EngineConfig(mode="rgb-subtract", depth=config.depth, edge_refine=config.edge_refine))
        pipeline._backend = MattingBackend(matting, _network_result)  # the dart backend with this run's device/precision
        pipeline.set_prior(prior)
        return matting, pipeline

    matting, pipeline = dart_pipeline(LIVE_OVERLAP_STAGES)  # the live path as the window runs it
    compose = compose_factory(prior) if compose_factory is not None else None
    rows: dict[str, list[float]] = {"read/decode (colour + depth files)": read_ms, "depth to metres": []}
    total, subject_px = [], []
    for i in range(config.frames + 3):
        frame = all_frames[n_background + i % len(subject)]
        t0 = time.perf_counter()
        depth_m = frame.depth_m()
        t1 = time.perf_counter()
        result = pipeline.process(frame.color, depth_m)
        timings = dict(result.timings_ms)
        output = compose(frame.color, depth_m, result.alpha, timings) if compose is not None else None
        for name, convert in (outputs or {}).items():
            t = time.perf_counter()
            convert(output)
            timings[f"output: {name}"] = (time.perf_counter() - t) * 1e3
        t2 = time.perf_counter()
        if i < 3:  # warm-up
            continue
        rows["depth to metres"].append((t1 - t0) * 1e3)
        for name, ms in timings.items():
            key = name if name.startswith("output") else f"dart: {name}" if name in _DART_STAGES else name
            rows.setdefault(key, []).append(ms)
        rows.setdefault("patches refined (count, not ms)", []).append(float(matting.last_refined))
        total.append((t2 - t0) * 1e3 + read_ms[min(i - 3, len(read_ms) - 1)])
        subject_px.append(float((result.alpha > 0.5).mean()))
    table = {name: _median(v) for name, v in rows.items()}
    table["dart: total"] = table.pop("dart: total", float("nan"))
    table["whole live path, one frame after another"] = _median(total)
    table["subject share of the frame (alpha > 0.5)"] = _median(subject_px)
    table.update(_engine_only_ms(config, prior, subject, dart_pipeline(True)[1], dart_pipeline(False)[1]))
    return LivePathReport(table, list(matting.files), matting.providers)


def bench_speed_lines(config: LivePathConfig, compose_factory: Callable[[BackgroundPrior], Stage] | None = None,
                      outputs: dict[str, Callable[[np.ndarray], object]] | None = None) -> list[str]:
    """`main.py bench-speed`: the lines of `live_path_ms(config, compose_factory, outputs)` (the app's
    compositing and outputs: `app.fps_probe.live_stages`), headed by the machine's load, the providers and
    the network files; says when the peer row is skipped."""
    import os

    load = os.getloadavg()[0]
    report = live_path_ms(config, compose_factory, outputs)
    size = f"{config.size[0]}x{config.size[1]}" if config.size else "recorded size"
    lines = [f"Live path in DART mode on {config.recording} ({size}), medians over {config.frames} frames with the "
             f"subject in view; {os.cpu_count()} CPU cores, load average {load:.1f} at the start and "
             f"{os.getloadavg()[0]:.1f} at the end; {config.threads} onnxruntime threads on "
             f"{', '.join(report.providers)}; networks {', '.join(p.name for p in report.files)}; the live path "
             f"runs dart's stages one after another, as the window does; 'engine only: dart (MattingPipeline ...)' "
             f"runs them on two threads, as `process` does:"]
    lines += [f"  {name:<62} {value:8.2f}" for name, value in report.rows.items()]
    peer = None if config.peer_dir is None else Path(config.peer_dir) / PEER_MODEL
    if peer is None or not peer.is_file():
        lines.append(f"  (no peer row: {peer or 'no --peer folder'} not found; ../shared is not part of a user's clone)")
    return lines


_DART_STAGES = ("prepare", "student", "posterior", "fusion", "refiner", "total")


def _engine_only_ms(config: LivePathConfig, prior: BackgroundPrior, subject: list, dart_pipeline,
                    serial_pipeline) -> dict[str, float]:
    """Engine only, frame in memory, the same subject frames: dart as `process` runs it (`dart_pipeline`, its
    stages on two threads; without and with edge refinement), dart with its stages one after another on one
    thread (`serial_pipeline`, as the window), depth mode and the MediaPipe peer, taking turns frame by frame
    so that all see the same machine load; wall-clock and CPU milliseconds (all threads of the process), and
    dart / peer ratios."""
    from engines.config import EngineConfig
    from engines.matting.edge_refine import EdgeRefiner
    from engines.matting.pipeline import MattingPipeline

    edge = EdgeRefiner()
    edge.set_plate(prior.color_mean)
    depth = MattingPipeline(EngineConfig(mode="depth", depth=config.depth))
    depth.set_prior(prior)
    dart_pipeline._edge = serial_pipeline._edge = None  # without edge refinement; `process`'s is added below
    runs = {"dart (MattingPipeline, no edge refinement)": dart_pipeline.process,
            "dart (as process runs it, edge refinement on)": lambda c, d: edge(c, dart_pipeline.process(c, d).alpha),
            "dart (stages one after another, no edge refinement)": serial_pipeline.process,
            "depth mode": depth.process}
    peer_model = None if config.peer_dir is None else Path(config.peer_dir) / PEER_MODEL
    if peer_model is not None and peer_model.is_file():
        peer = SelfieSegmentation(peer_model, config.threads)
        runs["peer MediaPipe selfie segmentation (RGB)"] = lambda c, d: peer(c)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(config.frames + 3):
        color, depth_m = subject[i % len(subject)]
        for name, run in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run(color, depth_m)
            if i >= 3:
                wall[name].append((time.perf_counter() - t0) * 1e3)
                cpu[name].append((time.process_time() - c0) * 1e3)
    rows = {}
    for name in runs:
        rows[f"engine only: {name}"] = _median(wall[name])
        rows[f"engine only: {name}, CPU ms"] = _median(cpu[name])
    peer_name = "peer MediaPipe selfie segmentation (RGB)"
    if peer_name in runs:
        dart_name = "dart (MattingPipeline, no edge refinement)"
        rows["ratio dart / peer (no edge refinement), wall"] = rows[f"engine only: {dart_name}"] / rows[f"engine only: {peer_name}"]
        rows["ratio dart / peer (no edge refinement), CPU"] = (rows[f"engine only: {dart_name}, CPU ms"]
                                                              / rows[f"engine only: {peer_name}, CPU ms"])
        serial = "dart (stages one after another, no edge refinement)"
        rows["ratio dart one thread of stages / peer, wall"] = rows[f"engine only: {serial}"] / rows[f"engine only: {peer_name}"]
    return rows
