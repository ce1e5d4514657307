"""Benchmarks behind `main.py bench-accuracy` and `main.py bench-speed`.

Accuracy: a fixed set of synthetic scenes (like the DART paper's dataset: N scenes x (background +
test) frames) is generated in memory from a fixed seed, every mode mattes the test frames with a prior
built from the scene's background frames, and the metrics are averaged over all test frames.
Speed: median milliseconds per frame of each stage and of each mode end to end.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from engines.batch import build_prior
from engines.config import DepthConfig, EngineConfig
from engines.metrics import METRIC_NAMES, evaluate, mean_metrics
from engines.pipeline import MattingPipeline
from engines.synth import SceneConfig, generate_scene

ALL_BACKGROUND = "all-background"
DEPTH_MODES = ("depth", "dart")


@dataclass
class AccuracyRow:
    mode: str
    metrics: dict[str, float]
    ms_per_frame: float
    frames: int


def accuracy_benchmark(
    modes: tuple[str, ...],
    scenes: int = 12,
    width: int = 640,
    height: int = 480,
    background_frames: int = 30,
    test_frames: int = 5,
    seed: int = 2024,
    post: tuple[str, ...] = (),
    post_band_px: int = 3,
    vitmatte_dir: str | None = None,
) -> list[AccuracyRow]:
    """Mean metrics per mode over `scenes` synthetic scenes (scene i uses seed + i).

    Each post-matting kind in `post` adds a "<mode> + <kind>" row for every mode that uses depth (the
    post-matting trimap is depth-derived, eq. 12-13).
    """
    depth_config = DepthConfig()
    engines = {mode: EngineConfig(mode=mode, depth=depth_config) for mode in modes}
    for kind in post:
        for mode in (m for m in modes if m in DEPTH_MODES):
            engines[f"{mode} + {kind}"] = EngineConfig(mode=mode, depth=depth_config, post=kind,
                                                       post_band_px=post_band_px, vitmatte_dir=vitmatte_dir)
    per_mode: dict[str, list[dict[str, float]]] = {name: [] for name in (ALL_BACKGROUND, *engines)}
    ms: dict[str, list[float]] = {name: [] for name in per_mode}
    for scene in range(scenes):
        config = SceneConfig(width=width, height=height, n_background=background_frames, n_test=test_frames,
                             seed=seed + scene)
        frames = list(generate_scene(config))
        prior, _ = build_prior(frames[:background_frames], background_frames, depth_config)
        tests = frames[background_frames:]
        for frame in tests:
            per_mode[ALL_BACKGROUND].append(evaluate(np.zeros_like(frame.alpha), frame.alpha))
            ms[ALL_BACKGROUND].append(0.0)
        for mode, engine in engines.items():
            pipeline = MattingPipeline(engine)
            pipeline.set_prior(prior)
            for frame in tests:
                depth_m = frame.depth_m()
                start = time.perf_counter()
                result = pipeline.process(frame.color, depth_m)
                ms[mode].append((time.perf_counter() - start) * 1e3)
                per_mode[mode].append(evaluate(result.alpha, frame.alpha))
    return [
        AccuracyRow(mode=mode, metrics=mean_metrics(results), ms_per_frame=statistics.median(ms[mode]),
                    frames=len(results))
        for mode, results in per_mode.items()
    ]


def format_table(rows: list[AccuracyRow], title: str) -> str:
    header = f"| mode | {' | '.join(METRIC_NAMES)} | ms/frame |"
    lines = [title, "", header, "|" + "---|" * (len(METRIC_NAMES) + 2)]
    for row in rows:
        values = " | ".join(f"{row.metrics[name]:.2f}" for name in METRIC_NAMES)
        lines.append(f"| {row.mode} | {values} | {row.ms_per_frame:.1f} |")
    lines.append("")
    lines.append("SAD/1000, MSE*1000, Grad/1000, Conn/1000 over the whole image, mean over test frames; "
                 "ms/frame is the median time of MattingPipeline.process.")
    return "\n".join(lines)


def _median_ms(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def speed_benchmark(width: int = 640, height: int = 480, frames: int = 100) -> dict[str, float]:
    """Median ms per frame: DART's depth stages one by one, then each mode end to end, then compositing."""
    from engines.compositing import composite, make_background
    from engines.depth_matting import measure_depth_stage_ms
    from engines.foreground import estimate_foreground
    from engines.pipeline import MODES

    rows = {f"depth stage: {name}": ms for name, ms in measure_depth_stage_ms(width, height, frames).items()}

    config = SceneConfig(width=width, height=height, n_background=10, n_test=1, seed=7)
    scene = list(generate_scene(config))
    prior, _ = build_prior(scene[:10], 10, DepthConfig())
    frame = scene[-1]
    depth_m = frame.depth_m()
    for mode in MODES:
        pipeline = MattingPipeline(EngineConfig(mode=mode))
        pipeline.set_prior(prior)
        pipeline.process(frame.color, depth_m)  # warm-up
        rows[f"mode {mode}: MattingPipeline.process"] = _median_ms(lambda: pipeline.process(frame.color, depth_m), frames)

    alpha = frame.alpha.astype(np.float32)
    image = frame.color.astype(np.float32) / 255.0
    rows["foreground estimation"] = _median_ms(lambda: estimate_foreground(image, alpha, prior.color_mean), frames)
    background = make_background("blur", width, height)
    rows["blurred background"] = _median_ms(lambda: background.render(frame.color, depth_m), frames)
    plate = background.render(frame.color, depth_m)
    rows["composite"] = _median_ms(lambda: composite(frame.color, alpha, plate), frames)
    return rows
