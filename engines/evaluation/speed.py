"""Speed measurements of the run-time stages on generated frames (`main.py bench-speed`).

Owns `measure_depth_stage_ms` (DART's depth stages on synthetic arrays) and `measure_network_ms`
(`NetworkMatting.process` on a generated RGB-D scene). Medians in milliseconds; evaluation only, so
the run-time modules never import the scene generator.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engines.config import DepthConfig
from engines.matting.background_prior import BackgroundPriorBuilder
from engines.matting.dart_matting import NetworkMatting
from engines.matting.depth_bayes import (
    LikelihoodTables,
    Scratch,
    alpha_posterior_given_depth,
    clean_posterior,
    depth_posterior,
    depth_residual,
    fuse_error_maps,
    make_trimap,
    resize_depth,
)
from engines.matting.depth_matting import DepthMatting, work_size
from engines.synth.scene import SceneConfig, generate_scene


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
