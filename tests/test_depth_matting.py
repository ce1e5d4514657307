"""Depth-only matting on synthetic RGB-D scenes, the guided filter, and the stage benchmark."""

import cv2
import numpy as np
import pytest

from engines.matting.background_prior import BackgroundPriorBuilder
from engines.config import DepthConfig
from engines.evaluation.speed import measure_depth_stage_ms
from engines.matting.depth_matting import DepthMatting, work_size
from engines.matting.guided_filter import GuidedUpsampler, guided_filter, guided_upsample
from sensors.errors import UserError

CFG = DepthConfig()
H, W = 240, 320
BG_RGB = np.array([70, 90, 120], np.float32)
BOX_RGB = np.array([200, 150, 100], np.float32)
BOX = (110, 210, 60, 200)  # x0, x1, y0, y1


def _soft_box_alpha():
    """Ground truth: a box whose edge ramps from 0 to 1 over 4 px (signed distance / 4 + 0.5)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    x0, x1, y0, y1 = BOX
    signed = np.minimum(np.minimum(xx - x0, x1 - xx), np.minimum(yy - y0, y1 - yy))
    return np.clip(signed / 4.0 + 0.5, 0.0, 1.0).astype(np.float32), signed


def _background_color(rng):
    return np.clip(BG_RGB + rng.normal(0.0, 2.0, (H, W, 3)), 0, 255)


def _prior(rng, always_invalid=None, n=15):
    """An empty scene: a wall at 2.5 m, 5 mm noise, 3% random dropouts."""
    builder = BackgroundPriorBuilder(H, W)
    for _ in range(n):
        depth = (2.5 + rng.normal(0.0, 0.005, (H, W))).astype(np.float32)
        depth[rng.random((H, W)) < 0.03] = 0.0
        if always_invalid is not None:
            depth[always_invalid] = 0.0
        builder.add(_background_color(rng).astype(np.uint8), depth)
    return builder.build(CFG)


def _frame(rng, gt, dropout=0.05):
    """The box at 1 m in front of the wall, colour blended by the soft ground truth."""
    color = (gt[..., None] * BOX_RGB + (1.0 - gt[..., None]) * _background_color(rng)).astype(np.uint8)
    depth = np.where(gt > 0.5, 1.0, 2.5).astype(np.float32) + rng.normal(0.0, 0.005, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < dropout] = 0.0
    return color, depth


def test_depth_only_matte_of_a_box_in_front_of_a_wall():
    rng = np.random.default_rng(0)
    gt, signed = _soft_box_alpha()
    matting = DepthMatting(CFG)
    matting.set_prior(_prior(rng))
    color, depth = _frame(rng, gt)
    result = matting.process(color, depth)
    alpha = result.alpha

    assert alpha.shape == (H, W) and alpha.dtype == np.float32
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    inside, outside = signed > 6, signed < -8
    assert alpha[inside].mean() > 0.97 and np.percentile(alpha[inside], 5) > 0.9
    assert alpha[outside].mean() < 0.005 and alpha[outside].max() < 0.1
    assert np.abs(alpha - gt).mean() < 0.02
    # Soft edge that follows the colour edge: along a row, alpha crosses 0.5 within 1.5 px of the truth.
    row = alpha[130, 95:130]
    crossing = 95 + np.flatnonzero(row >= 0.5)[0]
    assert abs(crossing - BOX[0]) <= 1.5
    assert np.any((row > 0.1) & (row < 0.9))  # soft, not a hard step
    # The by-products: raw posterior at work resolution, trimap at full resolution.
    assert result.posterior.shape == (60, 80) and result.evidence.shape == (60, 80)
    # A_D of a clear foreground pixel in front of a wall at 2.5 m: 0.5 (0.4 + 1) / (0.2 + 1) = 0.58333
    assert result.posterior[30, 40] == pytest.approx(0.7 / 1.2, abs=1e-3)
    assert set(np.unique(result.trimap)) <= {0.0, 0.5, 1.0}
    assert result.trimap[130, 160] == 1.0 and result.trimap[20, 20] == 0.0
    assert {"downsample", "posterior", "clean", "upsample", "trimap"} <= set(result.timings_ms)


def test_unknown_depth_is_background_where_the_empty_scene_had_none_and_colour_decides_elsewhere():
    rng = np.random.default_rng(1)
    gt, signed = _soft_box_alpha()
    window = np.zeros((H, W), bool)
    window[10:60, 230:300] = True  # never measured, e.g. a window
    matting = DepthMatting(CFG)
    matting.set_prior(_prior(rng, always_invalid=window))
    color, depth = _frame(rng, gt)
    depth[window] = 0.0
    color[window] = (240, 240, 200)  # the view through the window changed: still not the subject
    depth[100:140, 140:180] = 0.0  # a 40x40 depth hole on the box (hair, black cloth): colour has changed
    depth[200:230, 20:60] = 0.0  # dropout on the wall (an IR shadow): colour unchanged
    result = matting.process(color, depth)
    alpha = result.alpha
    assert alpha[window].max() < 0.05
    assert alpha[105:135, 145:175].min() > 0.9
    assert alpha[200:230, 20:60].max() < 0.05
    # The paper's posterior there is P_F (0.5, closer to its foreground level 0.6 than to the wall's ~0.07):
    assert result.posterior[53, 10] == 0.5 and result.posterior[30, 40] == 0.5


def test_subject_distance_gate_and_surfaces_behind_the_background():
    rng = np.random.default_rng(2)
    gt, signed = _soft_box_alpha()
    prior = _prior(rng)
    color, depth = _frame(rng, gt)
    gated = DepthMatting(CFG, max_subject_distance_m=0.8)
    gated.set_prior(prior)
    assert gated.process(color, depth).alpha.max() < 0.05  # the box at 1 m is beyond the 0.8 m gate
    matting = DepthMatting(CFG)
    matting.set_prior(prior)
    behind = np.full((H, W), 4.0, np.float32)  # e.g. a door opened behind the wall's plane
    assert matting.process(_background_color(rng).astype(np.uint8), behind).alpha.max() < 0.05


def test_empty_scene_gives_an_empty_matte():
    rng = np.random.default_rng(3)
    matting = DepthMatting(CFG)
    matting.set_prior(_prior(rng))
    depth = (2.5 + rng.normal(0.0, 0.005, (H, W))).astype(np.float32)
    depth[rng.random((H, W)) < 0.05] = 0.0
    alpha = matting.process(_background_color(rng).astype(np.uint8), depth).alpha
    assert alpha.max() < 0.05


def test_errors_without_prior_or_with_another_frame_size():
    matting = DepthMatting(CFG)
    color = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(UserError, match="No background"):
        matting.process(color, np.zeros((H, W), np.float32))
    matting.set_prior(_prior(np.random.default_rng(4), n=2))
    with pytest.raises(UserError, match="does not match"):
        matting.process(np.zeros((120, 160, 3), np.uint8), np.zeros((120, 160), np.float32))


def test_work_size():
    assert work_size(640, 480, 0.25) == (160, 120)
    assert work_size(1280, 720, 0.25) == (320, 180)
    assert work_size(3, 3, 0.25) == (1, 1)


def test_guided_filter_keeps_constants_and_follows_guide_edges():
    rng = np.random.default_rng(5)
    guide = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    const = np.full((16, 20), 0.7, np.float32)
    np.testing.assert_allclose(guided_upsample(const, guide, 2, 1e-3), 0.7, atol=1e-4)
    np.testing.assert_allclose(guided_filter(guide, np.full((64, 80), 0.3, np.float32), 2, 1e-3), 0.3, atol=1e-4)

    # A colour edge at x = 42 and a coarse map whose step is 1.5 coarse px (6 px) to the right: bilinear
    # upsampling ramps over x = 45..49 and is flat at the colour edge; the guided filter puts a jump
    # on the colour edge and crosses 0.5 earlier.
    guide = np.zeros((64, 96, 3), np.uint8)
    guide[:, 42:] = (220, 200, 180)
    coarse = np.zeros((16, 24), np.float32)
    coarse[:, 12:] = 1.0  # step at coarse x = 12 -> full x = 48
    bilinear = cv2.resize(coarse, (96, 64), interpolation=cv2.INTER_LINEAR)[32]
    assert bilinear[42] - bilinear[41] == 0.0
    for up in (guided_upsample(coarse, guide, radius=2, eps=1e-4),
               guided_upsample(coarse, guide[..., 0], radius=2, eps=1e-4),
               GuidedUpsampler(2, 1e-4, gray=True)(coarse, guide)):
        row = up[32]
        assert row[42] - row[41] > 0.4  # the jump sits on the colour edge
        assert row[:41].max() < 0.05 and row[66:].min() > 0.95
        assert np.flatnonzero(row >= 0.5)[0] < np.flatnonzero(bilinear >= 0.5)[0]


def test_guided_upsampler_reuses_buffers_and_accepts_low_res_guide():
    rng = np.random.default_rng(6)
    guide = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    coarse = rng.random((12, 16), dtype=np.float32)
    up = GuidedUpsampler(2, 1e-3)
    first = up(coarse, guide).copy()
    out = np.empty((48, 64), np.float32)
    second = up(coarse, guide, out=out)
    assert second is out
    np.testing.assert_allclose(second, first, atol=1e-6)
    np.testing.assert_allclose(second, guided_upsample(coarse, guide, 2, 1e-3), atol=1e-6)
    with pytest.raises(ValueError):
        up(coarse, guide, low_res_guide=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError):
        up(coarse, guide.astype(np.float32))


def test_measure_depth_stage_ms_reports_every_stage():
    times = measure_depth_stage_ms(width=160, height=120, n=2)
    assert {"prior_update", "posterior", "fusion", "trimap", "depth_matting", "total"} <= set(times)
    assert all(v >= 0.0 for v in times.values())
    assert times["total"] == pytest.approx(
        times["prior_update"] + times["posterior"] + times["fusion"] + times["trimap"])
