"""Changing trained networks' widths: pruning the student's hidden features H_c (BGMv2 sec. 4.1: 32
channels handed to the refiner) and widening the refiner's stage 2.

Owns `hidden_feature_scores` (how much each hidden channel feeds the refiners), `prune_hidden` (a
student and refiner state with only the kept channels) and `widen_stage2` (a refiner state whose stage-2
hidden layer has more channels and computes the same function). The hidden features are produced by the last
(1x1) layer of the student and read only by the refiner's first convolution, so dropping a channel
removes one output row of the one and one input column of the other: the student's alpha, foreground
residual and error map are unchanged, and only the refiners need fine-tuning afterwards
(`engines.training.stages.train_refiner(init_weights=...)`). Fewer channels make the student's output
stack, the refiner's patch gather and its first layer cheaper (README, Speed).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from engines.nets.base_net import FINAL_BIAS, FINAL_WEIGHT, LEAD_OUTPUTS, BaseNet
from engines.nets.refiner import COARSE_LEAD, STAGE1_WEIGHT, STAGE2_WEIGHT, Refiner, refiner_config_of
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


STAGE2_LAST_WEIGHT = "patch_net.stage2.3.weight"  # reads the stage-2 hidden layer's channels


def widen_stage2(state: dict[str, torch.Tensor], channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`state` (a refiner's) with its stage-2 hidden layer grown to `channels`, computing the same function:
    the new channels' convolution rows and batch-norm entries are those of a fresh refiner (seeded), and
    the last layer reads them with weight 0, so they start to matter only through fine-tuning
    (`engines.training.stages.train_refiner(init_weights=...)`). Raises `ValueError` if `channels` is not
    more than the current width."""
    config = refiner_config_of(state, "(state)")
    old = config.stage_channels[2]
    if channels <= old:
        raise ValueError(f"widen_stage2 grows the stage-2 layer: it has {old} channels, asked for {channels}")
    wide = config.stage_channels[:2] + (channels,)
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(seed)
        fresh = Refiner(dataclasses.replace(config, stage_channels=wide)).state_dict()
    out = dict(state)
    for key, value in fresh.items():
        if (key.startswith("patch_net.stage2.1.") and value.ndim == 1) or key == STAGE2_WEIGHT:
            out[key] = torch.cat([state[key], value[old:]]).contiguous()  # new rows: the fresh ones
    last = state[STAGE2_LAST_WEIGHT]
    zeros = last.new_zeros((last.shape[0], channels - old) + tuple(last.shape[2:]))
    out[STAGE2_LAST_WEIGHT] = torch.cat([last, zeros], dim=1).contiguous()
    return out
