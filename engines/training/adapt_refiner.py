"""Scene adaptation of the DART patch refiner (issue 15: "the student (and the refiner) are
fine-tuned"): after the student, the refiner learns the take's full-resolution edges on the adapted
student's outputs, within its share of the budget, and is kept only if better.

Owns `mixed_full_batch` (take / generic samples at training size with their base-resolution copies,
as `engines.training.data.make_batch` gives them) and `adapt_refiner` (BGMv2 eq. 5 on the refined
alpha and foreground, the student frozen; validated by the refined alpha's MAD on held-out take frames
against the teacher and on generic samples against ground truth). `engines.training.adapt` calls it and
writes the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engines.nets.base_net import BaseNet, foreground_from_residual
from engines.nets.losses import refine_loss
from engines.nets.refiner import Refiner, load_refiner
from engines.training.data import AugmentConfig, Batch, SamplePool, make_batch
from engines.training.stages import AUX_CHANNELS, TRAIN_SELECTION_DEPTH, StageConfig, refined_mad, refiner_inputs

REFINER_WEIGHTS = "refiner_dart.safetensors"


def mixed_full_batch(generic: SamplePool, scene: SamplePool, rng: np.random.Generator, batch_size: int,
                     scene_fraction: float, downsample: int, augment: AugmentConfig) -> Batch:
    """One augmented `Batch` (full and base resolution): round(`scene_fraction` * batch_size) (at least
    one) take samples first, then generic ones. Both pools must have the same size."""
    if generic.size != scene.size:
        raise ValueError(f"generic pool {generic.size} and take pool {scene.size} differ in size")
    n_scene = min(batch_size, max(1, int(round(scene_fraction * batch_size))))
    parts = [make_batch(scene, rng, n_scene, downsample, augment)]
    if batch_size > n_scene:
        parts.append(make_batch(generic, rng, batch_size - n_scene, downsample, augment))
    return Batch({k: np.concatenate([p.full[k] for p in parts]) for k in parts[0].full},
                 {k: np.concatenate([p.small[k] for p in parts]) for k in parts[0].small})


@dataclass
class RefinerAdaptation:
    """refiner: the fine-tuned module (eval mode); steps; errors: refined-alpha MAD "take_before/after"
    (held-out take vs the teacher) and "generic_before/after"; better: the held-out take error fell and
    the generic one grew by at most the tolerance."""

    refiner: Refiner
    steps: int
    errors: dict[str, float]
    better: bool


def adapt_refiner(student: BaseNet, model_dir: Path, generic: SamplePool, scene: SamplePool, hold: SamplePool,
                  generic_val: SamplePool, seconds: float, batch_size: int, scene_fraction: float, downsample: int,
                  augment: AugmentConfig, tolerance: float, seed: int = 0, device: str = "cpu",
                  should_stop: Callable[[], bool] = lambda: False, max_steps: int = 100_000,
                  on_progress: Callable[[float], None] | None = None) -> RefinerAdaptation | None:
    """Fine-tune `model_dir`'s DART refiner within `seconds` of wall time, its validation included (at
    most `max_steps` steps), on mixed batches, `student` (already adapted) frozen; `on_progress(f)`, f in
    [0, 1], every few steps. Returns None when `model_dir` has no refiner weights to start from. Raises
    `UserError` when those weights do not fit the refiner."""
    path = model_dir / REFINER_WEIGHTS
    if not path.is_file():
        return None
    entered = time.perf_counter()
    stage = StageConfig()
    refiner = load_refiner(path, AUX_CHANNELS["dart"], stage.k_train)
    refiner = refiner.to(device)
    student = student.to(device).eval()
    for p in student.parameters():
        p.requires_grad_(False)

    def errors(suffix: str) -> dict[str, float]:
        return {f"take_{suffix}": refined_mad(refiner, student, hold, "dart", downsample, device)["refined_mad"],
                f"generic_{suffix}": refined_mad(refiner, student, generic_val, "dart", downsample,
                                                 device)["refined_mad"]}

    result = errors("before")
    validation_s = time.perf_counter() - entered  # the same again after training
    optimizer = torch.optim.Adam(refiner.parameters(), lr=stage.lr_refiner / 3)
    refiner.train()
    step = 0
    while step < max_steps and time.perf_counter() - entered < seconds - validation_s and not should_stop():
        rng = np.random.default_rng([seed, 16, step])
        batch = mixed_full_batch(generic, scene, rng, batch_size, scene_fraction, downsample, augment)
        t = refiner_inputs(batch, student, "dart", TRAIN_SELECTION_DEPTH, 0.0015, device)
        pha, fgr_res, _ = refiner(t["src"], t["bgr"], t["pha"], t["fgr_res"], t["hid"], t["err"], t["aux"])
        loss = refine_loss(pha, foreground_from_residual(fgr_res, t["src"]), t["alpha"], t["foreground"])["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if on_progress is not None and step % 5 == 0:
            on_progress(min((time.perf_counter() - entered) / seconds, 1.0))
    refiner.eval()
    result.update(errors("after"))
    better = (result["take_after"] < result["take_before"]
              and result["generic_after"] <= result["generic_before"] * (1.0 + tolerance))
    return RefinerAdaptation(refiner, step, {k: round(v, 5) for k, v in result.items()}, better)
