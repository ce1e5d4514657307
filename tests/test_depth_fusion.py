"""Depth-sure fusion (engines/matting/depth_fusion.py): which pixels depth decides, and DART using it.

The last test scores DART with and without fusion on semi-real frames (real photographed foregrounds,
../shared/data/alphamatting_dev, evaluation only); it skips without them.
"""

from dataclasses import replace

import numpy as np
import pytest

from engines.config import DepthConfig, EngineConfig
from engines.matting.depth_bayes import depth_residual, fuse_error_maps, resize_depth
from engines.matting.depth_evidence import DepthEvidence
from engines.matting.depth_fusion import FusionConfig, mask_selection, overrule_alpha, sure_regions
from engines.matting.background_prior import BackgroundPriorBuilder
from engines.matting.dart_matting import NetworkMatting
from tests.test_dart_matting import model_dir  # noqa: F401  (tiny random-init models)

H, W = 60, 80


def _maps():
    """Evidence: a sure subject block, a block with the same evidence but no live depth, a half-sure strip,
    and background, part of which had no depth in the empty scene."""
    evidence = np.zeros((H, W), np.float32)
    depth = np.full((H, W), 2.0, np.float32)
    usually_invalid = np.zeros((H, W), bool)
    evidence[10:40, 10:30] = 1.0  # subject, depth valid
    evidence[10:40, 45:60] = 1.0  # subject where the sensor gave no depth (decided by colour)
    depth[10:40, 45:60] = 0.0
    depth[0:5, 20:40] = 0.0  # a dropout on the background: colour unchanged (evidence 0)
    evidence[50:58, 10:70] = 0.5  # depth cannot decide
    usually_invalid[:, 72:] = True  # a window: no depth in the empty scene either
    return evidence, depth, usually_invalid


def test_sure_regions_need_valid_depth_and_leave_the_uncertain_to_the_network():
    evidence, depth, usually_invalid = _maps()
    sure = sure_regions(evidence, depth, usually_invalid, DepthConfig())
    assert sure.foreground[15:35, 15:25].all()
    assert not sure.foreground[:, 40:].any()  # no live depth: never sure
    assert not (sure.foreground & sure.background).any()
    assert sure.background[0:5, 0:70].all()  # also the dropout: the colour matches the plate
    assert not sure.background[:, 72:].any()  # the empty scene had no depth there
    assert not sure.background[10:40, 45:60].any()  # live depth missing, colour changed (evidence 1)
    assert not (sure.foreground | sure.background)[52:56, 15:65].any()  # evidence 0.5


def test_margin_erodes_both_regions():
    evidence, depth, usually_invalid = _maps()
    tight = sure_regions(evidence, depth, usually_invalid, DepthConfig())
    wide = sure_regions(evidence, depth, usually_invalid, DepthConfig(), FusionConfig(margin_px=2))
    assert wide.foreground.sum() < tight.foreground.sum() and wide.background.sum() < tight.background.sum()
    assert not (wide.foreground & ~tight.foreground).any() and not (wide.background & ~tight.background).any()
    outline = tight.foreground & ~wide.foreground
    assert outline[10:13, 10:30].any() and not outline[20:30, 15:25].any()


def test_overrule_and_mask_selection():
    evidence, depth, usually_invalid = _maps()
    sure = sure_regions(evidence, depth, usually_invalid, DepthConfig())
    rng = np.random.default_rng(0)
    alpha = rng.random((H, W), dtype=np.float32)
    before = alpha.copy()
    overrule_alpha(alpha, sure)
    assert (alpha[sure.foreground] == 1).all() and (alpha[sure.background] == 0).all()
    unsure = ~(sure.foreground | sure.background)
    np.testing.assert_array_equal(alpha[unsure], before[unsure])
    selection = rng.random((H, W), dtype=np.float32)
    masked = mask_selection(selection, sure)
    assert masked.dtype == np.float32 and (masked[~unsure] == 0).all()
    np.testing.assert_array_equal(masked[unsure], selection[unsure])


def _box_scene():
    """A flat wall 2.5 m away with noisy depth and a box 1.2 m away in the frame (no textures, so the same
    with or without ../shared), 64x48 like the tiny models' scene."""
    rng = np.random.default_rng(7)
    plate = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    builder = BackgroundPriorBuilder(48, 64)
    for _ in range(6):
        builder.add(plate, (2.5 + rng.normal(0, 0.005, (48, 64))).astype(np.float32))
    color = plate.copy()
    color[12:40, 20:44] = rng.integers(0, 255, (28, 24, 3), dtype=np.uint8)
    depth = (2.5 + rng.normal(0, 0.005, (48, 64))).astype(np.float32)
    depth[12:40, 20:44] = 1.2
    return builder.build(DepthConfig()), color, depth


def test_dart_overrules_coarse_alpha_only_where_depth_is_sure(model_dir):
    """Random-init networks: the coarse alpha is the student's except on the sure regions, and the
    selection map is eq. 10's except there, so every refined patch lies where depth is unsure."""
    prior, color, depth = _box_scene()
    results = {}
    for name, fusion in (("plain", None), ("fused", FusionConfig())):
        matting = NetworkMatting(model_dir, k=20, depth_fusion=fusion)
        matting.set_prior(prior)
        results[name] = matting.process(color, depth)
    plain, fused = results["plain"], results["fused"]
    depth_small = resize_depth(depth, 16, 12)
    usually_invalid = DepthEvidence.from_prior(prior.resized(16, 12), DepthConfig()).usually_invalid
    sure = sure_regions(fused.depth_evidence, depth_small, usually_invalid, DepthConfig())
    assert sure.foreground[4:9, 6:10].all() and sure.background[:2].all()
    assert (fused.raw_alpha[sure.foreground] == 1).all() and (fused.raw_alpha[sure.background] == 0).all()
    unsure = ~(sure.foreground | sure.background)
    assert unsure.any()  # the box's outline
    np.testing.assert_allclose(fused.raw_alpha[unsure], plain.raw_alpha[unsure], atol=1e-6)
    expected = fuse_error_maps(depth_residual(fused.depth_evidence, fused.raw_alpha), fused.error_rgb,
                               DepthConfig().beta)
    np.testing.assert_allclose(fused.error_map[unsure], expected[unsure], atol=1e-6)
    assert (fused.error_map[~unsure] == 0).all()
    selected_small = fused.selected  # 4x4 patches = base pixels at c = 4
    assert selected_small.any() and not (selected_small & ~unsure).any()


def test_fusion_cuts_dart_error_on_real_foregrounds(shared_data):
    """The shipped networks on semi-real frames: the student leaves holes in real textures that depth
    fills, so fusion must cut SAD clearly (60 frames: 19.5 -> about 6; here a few small frames)."""
    from engines.evaluation import semireal

    if not (shared_data / semireal.FOREGROUND_DIR).is_dir():
        pytest.skip("../shared/data/alphamatting_dev is not available")
    config = semireal.SemiRealConfig(width=320, height=240, background_frames=8, test_frames=4, seed=3,
                                     backgrounds=("room", "tum"))
    dart = EngineConfig(mode="dart")
    rows = semireal.semireal_benchmark({"fused": dart, "plain": replace(dart, depth_fusion=False)}, config,
                                       shared_data)
    sad = {row.mode: row.metrics["SAD"] for row in rows}
    assert sad["fused"] < 0.8 * sad["plain"], sad
