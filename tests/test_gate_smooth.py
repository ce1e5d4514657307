"""The shared post-stages (engines/matting/gate_smooth.py): a depth gate that leaves no outline of
depthless edge pixels, and temporal smoothing that calms flicker without trailing a moving subject."""

from __future__ import annotations

import numpy as np
import pytest

from engines.config import EngineConfig
from engines.matting.gate_smooth import MotionAwareSmoother, depth_gate

H, W = 96, 128


def _person_behind_gate():
    """A person at 3 m (beyond a 2 m gate) whose outline has no depth, as real sensors give (128x96)."""
    depth = np.full((H, W), 4.0, np.float32)
    alpha = np.zeros((H, W), np.float32)
    alpha[20:80, 40:80] = 1.0
    depth[20:80, 40:80] = 3.0
    ring = np.zeros((H, W), bool)
    ring[19:81, 39:81] = True
    ring[21:79, 41:79] = False
    depth[ring] = 0.0  # invalid edge pixels, 2 px wide (8 px at 640x480)
    alpha[ring] = 0.7  # the matte called them partly subject
    return alpha, depth, ring


def test_gate_removes_depthless_outline_of_a_far_subject():
    alpha, depth, ring = _person_behind_gate()
    gated = depth_gate(alpha, depth, 2.0)
    assert gated.dtype == np.float32 and gated.shape == alpha.shape
    assert gated.max() < 0.05  # neither the body nor its outline survives
    plain = np.where(depth > 2.0, 0.0, alpha)  # the old gate: depthless pixels passed through
    assert plain[ring].min() == pytest.approx(0.7)


def test_gate_keeps_a_near_subject_and_its_depthless_hair():
    alpha, depth, ring = _person_behind_gate()
    depth[depth == 3.0] = 1.2  # now the person is inside the gate
    gated = depth_gate(alpha, depth, 2.0)
    assert gated[40, 60] == pytest.approx(1.0)
    assert gated[ring].mean() > 0.5  # the outline follows the near depth around it


def _frame(x0: int) -> tuple[np.ndarray, np.ndarray]:
    color = np.full((H, W, 3), 60, np.uint8)
    alpha = np.zeros((H, W), np.float32)
    color[20:80, x0:x0 + 30] = 220
    alpha[20:80, x0:x0 + 30] = 1.0
    return color, alpha


def test_smoothing_leaves_no_trail_behind_a_moving_subject():
    smoother = MotionAwareSmoother(0.9)
    for x0 in range(10, 90, 8):  # moving 8 px a frame
        color, alpha = _frame(x0)
        out = smoother(alpha, color)
    assert out[50, x0 - 8: x0].max() < 0.05  # where the subject was a frame ago: no ghost
    assert out[50, x0 + 5: x0 + 25].min() > 0.95  # where it is: solid


def test_smoothing_calms_flicker_where_the_image_is_still():
    rng = np.random.default_rng(0)
    color, alpha = _frame(40)
    smoother = MotionAwareSmoother(0.8)
    outs = []
    for _ in range(30):
        noisy = np.clip(alpha + rng.normal(0, 0.2, alpha.shape).astype(np.float32), 0, 1)
        outs.append(smoother(noisy, color))
    raw_std = 0.2
    assert np.std([o[50, 50] for o in outs[10:]]) < 0.5 * raw_std


def test_pipeline_uses_both(tmp_path):
    from engines.matting.background_prior import BackgroundPriorBuilder
    from engines.matting.pipeline import MattingPipeline

    color, _ = _frame(40)
    depth = np.full((H, W), 3.0, np.float32)
    builder = BackgroundPriorBuilder(H, W)
    for _ in range(3):
        builder.add(np.full((H, W, 3), 60, np.uint8), depth)
    pipeline = MattingPipeline(EngineConfig(mode="depth", max_subject_distance_m=2.0, temporal_smoothing=0.5))
    pipeline.set_prior(builder.build(pipeline.config.depth))
    live = depth.copy()
    live[20:80, 40:70] = 2.5  # a subject, but beyond the 2 m gate
    assert pipeline.process(color, live).alpha.max() < 0.05
    with pytest.raises(ValueError):
        MotionAwareSmoother(1.0)
