"""`main.py bench-adapt`: the scene-adaptation benchmark of `engines.evaluation.adaptation` with the
adaptation of `engines.training.adapt` plugged in (issue 15, item 4).

Owns `run_adapt_benchmark`: for every scene of the chosen suite, the take (frames without ground truth)
is labelled by the teacher and the student adapted with `adapt_to_take`; the adapted model folder is
then scored on the scene's later test frames against the generic networks (the default mode), the teacher
and depth-only mode. Adapted weights land in the work folder only (for the semi-real suite they
derive from research-only images: never commit or ship them).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from engines.config import DepthConfig
from engines.evaluation.adaptation import (
    AdaptBenchConfig,
    AdaptScene,
    adaptation_benchmark,
    semireal_adapt_scenes,
    synthetic_adapt_scenes,
)
from engines.training.adapt import AdaptConfig, adapt_to_take
from engines.training.adapt_data import Take, teacher_engine


def scene_take(scene: AdaptScene, depth: DepthConfig = DepthConfig()) -> Take:
    """The scene's take as `adapt_to_take` wants it (prior from the background frames, no alpha)."""
    if any(f.alpha is not None for f in scene.take):
        raise ValueError("a take must not carry ground truth")
    return Take(scene.prior(depth), np.stack([f.color for f in scene.take]),
                np.stack([f.depth_m() for f in scene.take]), np.asarray([f.index for f in scene.take]))


def run_adapt_benchmark(bench: AdaptBenchConfig, adapt: AdaptConfig, model_dir: str | Path, work_dir: str | Path,
                        data_root: str | Path | None = None, on_log: Callable[[dict], None] | None = None) -> dict:
    """Run the benchmark; returns `adaptation_benchmark`'s report. Scenes already scored in `work_dir`
    are reused. `on_log` receives one dict per finished scene and the adaptation's phase events. The
    semi-real suite without its data raises a one-sentence `UserError`."""
    if bench.suite == "semi-real":
        from engines.evaluation import semireal

        semireal.require_data(data_root or semireal.default_data_root(), shown=None if data_root else
                              f"../shared/data/{semireal.FOREGROUND_DIR}")
    scenes = (synthetic_adapt_scenes(bench) if bench.suite == "synthetic"
              else semireal_adapt_scenes(bench, data_root))

    def run(scene: AdaptScene, out_dir: Path) -> dict:
        start = time.perf_counter()
        events = (lambda e: on_log(e) if e.get("event") in ("done",) else None) if on_log else None
        result = adapt_to_take(scene_take(scene), model_dir, out_dir, adapt, on_log=events)
        return {"accepted": result.accepted, "reason": result.reason, "steps": result.steps, "refiner": result.refiner,
                "errors": result.errors, "seconds": result.seconds, "frames": result.frames,
                "wall_s": round(time.perf_counter() - start, 1)}

    key = json.loads(json.dumps(asdict(adapt), default=str))
    teacher = teacher_engine(adapt.teacher, model_dir=model_dir)
    return adaptation_benchmark(scenes, run, str(model_dir), teacher, work_dir, on_log, key, rescore=bench.rescore)


def describe(bench: AdaptBenchConfig, adapt: AdaptConfig, scenes_done: int) -> str:
    """The title line of the benchmark's table: suite, sizes, seed, budget, batch mix and threads."""
    return (f"{bench.suite} suite: {scenes_done} scenes, {bench.take_frames} take + {bench.test_frames} test frames "
            f"each, {bench.width}x{bench.height}, seed {bench.seed}; adaptation budget {adapt.budget_s / 60:g} min, "
            f"{adapt.scene_fraction:.0%} take samples per batch, {adapt.refiner_share:.0%} of the training time "
            f"for the refiner, {adapt.threads or 'all'} CPU threads")
