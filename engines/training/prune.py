"""Pruning the student's hidden features H_c (BGMv2 sec. 4.1: 32 channels handed to the refiner).

Owns `hidden_feature_scores` (how much each hidden channel feeds the refiners) and `prune_hidden` (a
student and refiner state with only the kept channels). The hidden features are produced by the last
(1x1) layer of the student and read only by the refiner's first convolution, so dropping a channel
removes one output row of the one and one input column of the other: the student's alpha, foreground
residual and error map are unchanged, and only the refiners need fine-tuning afterwards
(`engines.training.stages.train_refiner(init_weights=...)`). Fewer channels make the student's output
stack, the refiner's patch gather and its first layer cheaper (README, Speed).
"""

from __future__ import annotations

import numpy as np
import torch

from engines.nets.base_net import FINAL_BIAS, FINAL_WEIGHT, LEAD_OUTPUTS, BaseNet
from engines.nets.refiner import COARSE_LEAD, STAGE1_WEIGHT
from engines.training.data import AugmentConfig, SamplePool, make_batch


@torch.no_grad()
def hidden_feature_scores(student: BaseNet, refiner_states: dict[str, dict[str, torch.Tensor]],
                          pool: SamplePool, weights: dict[str, float] | None = None,
                          downsample: int = 4) -> np.ndarray:
    """(hidden,) float64 importance of each hidden channel, summing to len(refiner_states) weighted shares:
    for each refiner, mean |H_c| over `pool` (un-augmented, base resolution) times the L2 norm of the
    refiner's first-layer weights reading channel c, normalised to sum 1, times `weights[name]` (default 1)."""
    was_training = student.training
    student.eval()
    sums, n = None, 0
    for start in range(0, len(pool), 16):
        index = np.arange(start, min(start + 16, len(pool)))
        batch = make_batch(pool, np.random.default_rng(0), len(index), downsample, AugmentConfig.none(), index)
        hid = student(torch.from_numpy(batch.small["image"]), torch.from_numpy(batch.small["background"]))[3]
        part = hid.abs().mean(dim=(2, 3)).sum(dim=0).double()
        sums = part if sums is None else sums + part
        n += len(index)
    student.train(was_training)
    activity = (sums / max(n, 1)).numpy()
    hidden = activity.size
    score = np.zeros(hidden)
    for name, state in refiner_states.items():
        w = state[STAGE1_WEIGHT].double().numpy()[:, COARSE_LEAD : COARSE_LEAD + hidden]
        s = activity * np.sqrt((w ** 2).sum(axis=(0, 2, 3)))
        score += (weights or {}).get(name, 1.0) * s / s.sum()
    return score


def prune_hidden(student_state: dict[str, torch.Tensor], refiner_states: dict[str, dict[str, torch.Tensor]],
                 keep: np.ndarray) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """The student state with only the hidden channels `keep` (sorted int indices into 0..hidden-1) in its
    last layer, and each refiner state with only their columns in its first layer. Raises `ValueError` for
    indices out of range or repeated."""
    hidden = int(student_state[FINAL_WEIGHT].shape[0]) - LEAD_OUTPUTS
    keep = np.asarray(keep, dtype=np.int64)
    if keep.size == 0 or keep.min() < 0 or keep.max() >= hidden or np.unique(keep).size != keep.size:
        raise ValueError(f"keep must be distinct channel indices in 0..{hidden - 1}, got {keep.tolist()}")
    rows = torch.from_numpy(np.concatenate([np.arange(LEAD_OUTPUTS), LEAD_OUTPUTS + np.sort(keep)]))
    student = dict(student_state)
    for key in (FINAL_WEIGHT, FINAL_BIAS):
        student[key] = student_state[key][rows].contiguous()
    refiners = {}
    for name, state in refiner_states.items():
        first = state[STAGE1_WEIGHT]
        cols = np.concatenate([np.arange(COARSE_LEAD), COARSE_LEAD + np.sort(keep),
                               np.arange(COARSE_LEAD + hidden, first.shape[1])])
        refiners[name] = {**state, STAGE1_WEIGHT: first[:, torch.from_numpy(cols)].contiguous()}
    return student, refiners
