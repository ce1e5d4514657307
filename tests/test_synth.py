"""Tests of the synthetic RGB-D scene generator (engines/synth*.py) at small sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.synth.preview import preview_image
from engines.synth.samples import random_sample, render_frame
from engines.synth.scene import SceneConfig, generate_scene, write_scene
from engines.synth.textures import TextureBank
from engines.synth.sensor import DepthSensor, cast_shadow, occlusion_shadow, sense_depth
from sensors.frame import Frame, Intrinsics

W, H = 160, 120
NO_EFFECTS = dict(exposure_change=0.0, white_balance_change=0.0, gamma_change=0.0, lighting_change=0.0,
                  cast_shadow=0.0)


@pytest.fixture
def empty_shared(tmp_path):
    """A shared dir with no data: the generator must fall back to procedural textures."""
    path = tmp_path / "no_shared"
    path.mkdir()
    return str(path)


def _frames(**kwargs) -> list[Frame]:
    base = dict(width=W, height=H, n_background=4, n_test=3, real_background_prob=0.0)
    base.update(kwargs)
    return list(generate_scene(SceneConfig(**base)))


def _far_from_subject(frame: Frame, margin: int) -> np.ndarray:
    """Pixels at least `margin` px away from any subject pixel (alpha > 0)."""
    subject = (frame.alpha > 0).astype(np.uint8)
    return cv2.dilate(subject, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) == 0


def test_frames_follow_the_contract(empty_shared):
    frames = _frames(shared_dir=empty_shared, seed=1)
    assert [f.index for f in frames] == list(range(7))
    assert frames[3].timestamp == pytest.approx(3 / 30.0)
    for f in frames:
        assert f.color.dtype == np.uint8 and f.color.shape == (H, W, 3)
        assert f.depth_raw.dtype == np.uint16 and f.depth_raw.shape == (H, W)
        assert f.depth_scale == 0.001
        assert f.alpha is not None and f.alpha.dtype == np.float32 and f.alpha.shape == (H, W)
        assert f.intrinsics == frames[0].intrinsics
    for f in frames[:4]:
        assert not f.alpha.any()
    for f in frames[-2:]:
        a = f.alpha
        assert 0.0 <= a.min() and a.max() <= 1.0
        assert (a == 1.0).sum() > 100, "a solid subject core"
        assert ((a > 0.02) & (a < 0.98)).sum() > 20, "soft boundary pixels"


def test_deterministic_for_a_seed_and_different_across_seeds(empty_shared):
    a = _frames(shared_dir=empty_shared, seed=7)
    b = _frames(shared_dir=empty_shared, seed=7)
    c = _frames(shared_dir=empty_shared, seed=8)
    for fa, fb in zip(a, b, strict=True):
        assert np.array_equal(fa.color, fb.color)
        assert np.array_equal(fa.depth_raw, fb.depth_raw)
        assert np.array_equal(fa.alpha, fb.alpha)
    assert not np.array_equal(a[0].color, c[0].color)
    assert not np.array_equal(a[-1].alpha, c[-1].alpha)


def test_background_frames_have_fresh_noise_on_a_static_scene(empty_shared):
    frames = _frames(shared_dir=empty_shared, seed=2, n_test=0)
    c0, c1 = frames[0].color.astype(int), frames[1].color.astype(int)
    assert np.any(c0 != c1), "fresh noise per frame"
    assert np.abs(c0 - c1).mean() < 8, "same scene"
    d0, d1 = frames[0].depth_m(), frames[1].depth_m()
    both = (d0 > 0) & (d1 > 0)
    assert np.median(np.abs(d0 - d1)[both]) < 0.05


def test_depth_noise_grows_with_distance():
    """Per-pixel std over background frames: a far plane is much noisier than a near one (k z^2)."""
    rng = np.random.default_rng(0)
    truth = np.full((60, 160), 4.0, np.float32)
    truth[:, :80] = 1.0
    sensor = DepthSensor(noise_k=0.0015, baseline_m=0.0, edge_dropout=0.0, random_dropout=0.0)
    stack = np.stack([sense_depth(rng, truth, np.zeros_like(truth), sensor, fx=140.0) for _ in range(20)])
    std = stack.std(axis=0)
    near, far = np.median(std[:, 5:70]), np.median(std[:, 90:155])
    assert far > 8 * near
    assert 0.5 * 0.0015 * 16 < far < 2.0 * 0.0015 * 16
    assert np.all(np.abs(stack[:, :, 90:155].mean(axis=0) - 4.0) < 0.05)


def test_depth_noise_grows_with_distance_in_generated_scenes(empty_shared):
    frames = _frames(shared_dir=empty_shared, seed=3, n_background=12, n_test=0, width=128, height=96)
    stack = np.stack([f.depth_m() for f in frames])
    valid = (stack > 0).all(axis=0)
    mean, std = stack.mean(axis=0), stack.std(axis=0)
    near = valid & (mean < 2.2)
    far = valid & (mean > 3.3)
    assert near.sum() > 50 and far.sum() > 50, "the room spans near and far surfaces"
    assert np.median(std[far]) > 2 * np.median(std[near])


def test_hair_strands_have_no_depth():
    """Partial-alpha pixels away from the body (hair strands) return no depth; the body core does."""
    cfg = dict(width=320, height=240, n_background=1, n_test=2, veil_prob=0.0, hair_strands=500,
               misregistration_px=0.0, stereo_baseline_m=0.0, edge_dropout=0.0, flying_pixels=0.0)
    core_hole_fractions = []
    for seed in range(6):
        frame = _frames(seed=seed, **cfg)[-1]
        a = frame.alpha
        core = cv2.erode((a >= 1.0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        near_core = cv2.dilate((a >= 0.99).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        strands = (a > 0.1) & (a < 0.9) & ~near_core
        if strands.sum() < 20:
            continue  # bald or hair out of frame
        depth = frame.depth_m()
        assert (depth[strands] == 0).mean() > 0.7
        core_hole_fractions.append((depth[core] == 0).mean())
    assert len(core_hole_fractions) >= 2
    # dark clothes may lose depth too (by design), so only the typical body keeps most of it
    assert np.median(core_hole_fractions) < 0.3


def test_lighting_change_fools_rgb_subtraction_but_not_depth(empty_shared):
    def errors(**effects):
        frames = _frames(shared_dir=empty_shared, seed=5, n_background=6, n_test=2, **effects)
        backgrounds, test = frames[:6], frames[-1]
        plate = np.mean([f.color.astype(np.float32) for f in backgrounds], axis=0)
        depth_plate = np.median(np.stack([f.depth_m() for f in backgrounds]), axis=0)
        away = _far_from_subject(test, margin=6)
        rgb_diff = np.abs(test.color.astype(np.float32) - plate).max(axis=2)
        false_pos = (rgb_diff[away] > 20).mean()
        depth = test.depth_m()
        both = away & (depth > 0) & (depth_plate > 0)
        z = depth_plate[both]
        depth_ok = (np.abs(depth[both] - z) < 4 * 0.0015 * z * z + 0.04).mean()
        return false_pos, depth_ok, np.abs(test.color.astype(np.float32) - plate)[away].mean()

    false_pos, depth_ok, mean_diff = errors()
    assert false_pos > 0.1, "exposure/white balance/lamp/shadow changes flag background pixels in RGB"
    assert mean_diff > 8
    assert depth_ok > 0.97, "background depth unchanged up to noise"
    false_pos_static, depth_ok_static, _ = errors(**NO_EFFECTS)
    assert false_pos_static < 0.01
    assert depth_ok_static > 0.97


def test_cast_shadow_falls_away_from_the_lamp():
    h, w = 120, 160
    intr = Intrinsics(100.0, 100.0, 79.5, 59.5)
    caster = np.zeros((h, w), np.float32)
    caster[50:70, 70:90] = 1.0  # a 0.3 m square at 1.5 m, centred on the optical axis
    wall = np.full((h, w), 3.0, np.float32)
    shadow = cast_shadow(caster, wall, intr, np.array([0.0, 0.0, 1.5]), np.array([1.0, -1.0, 0.0]))
    assert shadow.max() > 0.5
    ys, xs = np.nonzero(shadow > 0.5 * shadow.max())
    # Parallel light along (-1, 1, 1.5) moves the shadow 1 m left and 1 m down on the wall 1.5 m behind.
    assert xs.mean() == pytest.approx(79.5 - 100.0 / 3.0, abs=3)
    assert ys.mean() == pytest.approx(59.5 + 100.0 / 3.0, abs=3)
    assert shadow[55:65, 75:85].max() < 0.1, "not straight behind the subject"


def test_cast_shadow_darkens_the_background(empty_shared):
    def darkening(strength: float) -> float:
        values = []
        for seed in range(4):
            frames = _frames(shared_dir=empty_shared, seed=seed, n_background=3, n_test=1,
                             **dict(NO_EFFECTS, cast_shadow=strength))
            plate = np.mean([f.color.astype(np.float32) for f in frames[:3]], axis=0).mean(axis=2)
            test = frames[-1]
            diff = (test.color.astype(np.float32).mean(axis=2) - plate)[test.alpha == 0]
            values.append(np.clip(-diff - 3, 0, None).mean())  # beyond the noise floor
        return float(np.mean(values))

    assert darkening(1.0) > 3 * darkening(0.0)


def test_depth_is_misregistered_against_colour():
    """With only the shift enabled, the subject's depth silhouette is offset from its alpha."""
    cfg = dict(width=W, height=H, n_background=1, n_test=1, stereo_baseline_m=0.0, edge_dropout=0.0,
               flying_pixels=0.0, depth_noise_k=0.0, disparity_step_px=0.0, veil_prob=0.0, hair_strands=0)

    def overlap(misregistration: float) -> float:
        frame = _frames(seed=4, misregistration_px=misregistration, **cfg)[-1]
        solid = frame.alpha >= 0.5
        bg_depth = _frames(seed=4, misregistration_px=misregistration, **cfg)[0].depth_m()
        nearer = (frame.depth_m() > 0) & (bg_depth > 0) & (frame.depth_m() < bg_depth - 0.1)
        return (solid & nearer).sum() / max(int((solid | nearer).sum()), 1)

    assert overlap(2.0) < overlap(0.0)


def test_occlusion_shadow_band_width_and_side():
    depth = np.full((10, 200), 3.0, np.float32)
    depth[:, 100:140] = 1.0
    fx, baseline = 300.0, 0.06
    expected = fx * baseline * (1 / 1.0 - 1 / 3.0)  # 12 px
    left = occlusion_shadow(depth, fx, baseline, side=-1)
    assert not left[:, 100:].any()
    assert abs(int(left[0, :100].sum()) - expected) <= 1.5
    assert left[0, 100 - int(expected) + 1:100].all()
    right = occlusion_shadow(depth, fx, baseline, side=1)
    assert not right[:, :140].any()
    assert abs(int(right[0, 140:].sum()) - expected) <= 1.5


def test_procedural_fallback_without_shared_data(empty_shared):
    bank = TextureBank(empty_shared)
    assert not bank.has_real and bank.plate is None
    frames = _frames(shared_dir=empty_shared, seed=0, real_background_prob=1.0)
    assert frames[-1].alpha.max() == 1.0
    assert (frames[0].depth_raw > 0).mean() > 0.7, "a synthetic room, not the real plate with its holes"


def test_real_textures_and_plate_when_shared_data_exists(shared_data, empty_shared):
    bank = TextureBank(shared_data.parent)
    assert bank.has_real and bank.plate is not None
    frames = _frames(shared_dir=str(shared_data.parent), seed=0, real_background_prob=1.0)
    depth = frames[0].depth_raw
    assert (depth == 0).mean() > 0.1, "the TUM frame keeps its depth holes"
    tum = cv2.resize(bank.plate.color, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(frames[0].color.astype(np.float32) - tum).mean() < 40
    real = _frames(shared_dir=str(shared_data.parent), seed=11)
    procedural = _frames(shared_dir=empty_shared, seed=11)
    assert not np.array_equal(real[0].color, procedural[0].color)


def test_write_scene_roundtrip(tmp_path, empty_shared):
    from sensors.rgbd_folder import RgbdFolderSource

    config = SceneConfig(width=W, height=H, n_background=3, n_test=2, seed=9, shared_dir=empty_shared)
    out = write_scene(config, tmp_path / "rec")
    expected = list(generate_scene(config))
    with RgbdFolderSource(str(out)) as source:
        assert source.info.background_frames == 3
        assert source.info.frame_count == 5
        got = list(source)
    assert len(got) == 5
    for e, g in zip(expected, got, strict=True):
        assert np.array_equal(e.color, g.color)
        assert np.array_equal(e.depth_raw, g.depth_raw)
        assert g.alpha is not None and np.abs(e.alpha - g.alpha).max() <= 0.5 / 255 + 1e-6
        assert g.intrinsics.fx == pytest.approx(e.intrinsics.fx)


def _check_sample(sample: dict, height: int, width: int) -> None:
    assert set(sample) == {"image", "background", "depth_m", "background_depth_m", "alpha", "foreground"}
    for key in ("image", "background", "foreground"):
        assert sample[key].shape == (height, width, 3) and sample[key].dtype == np.float32
        assert 0.0 <= sample[key].min() and sample[key].max() <= 1.0
    for key in ("depth_m", "background_depth_m", "alpha"):
        assert sample[key].shape == (height, width) and sample[key].dtype == np.float32
    assert sample["depth_m"].min() >= 0 and sample["alpha"].max() <= 1.0


def test_random_sample_contract_and_determinism(empty_shared):
    bank = TextureBank(empty_shared)
    s1 = random_sample(np.random.default_rng(5), 96, 128, bank)
    s2 = random_sample(np.random.default_rng(5), 96, 128, bank)
    _check_sample(s1, 96, 128)
    for key in s1:
        assert np.array_equal(s1[key], s2[key])
    core = s1["alpha"] >= 1.0
    assert core.sum() > 50
    # Inside the subject the image is its foreground (plus camera noise).
    assert np.abs(s1["image"][core] - s1["foreground"][core]).mean() < 0.05
    assert not s1["foreground"][s1["alpha"] == 0].any()
    s3 = random_sample(np.random.default_rng(6), 96, 128, bank)
    assert not np.array_equal(s1["alpha"], s3["alpha"])


def test_render_frame_from_arrays():
    h, w = 80, 100
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy - 40) ** 2 + (xx - 50) ** 2) < 20 ** 2
    alpha = cv2.GaussianBlur(disc.astype(np.float32), (5, 5), 1.0)
    foreground = np.zeros((h, w, 3), np.uint8)
    foreground[...] = (200, 60, 40)
    background = np.dstack([np.tile(np.linspace(40, 220, w), (h, 1))] * 3).astype(np.uint8)
    sample = render_frame(np.random.default_rng(0), foreground, alpha, np.full((h, w), 1.5, np.float32),
                          background, np.full((h, w), 3.0, np.float32))
    _check_sample(sample, h, w)
    assert np.array_equal(sample["alpha"], alpha)
    depth = sample["depth_m"]
    inner = cv2.erode(disc.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    valid_in = depth[inner][depth[inner] > 0]
    assert valid_in.size > 0.5 * inner.sum() and np.median(valid_in) == pytest.approx(1.5, abs=0.05)
    bg_valid = sample["background_depth_m"][sample["background_depth_m"] > 0]
    assert np.median(bg_valid) == pytest.approx(3.0, abs=0.1)


def test_preview_image_is_a_contact_sheet(empty_shared):
    sheet = preview_image(seeds=(0,), width=64, height=48, shared_dir=empty_shared, n_background=1, n_test=1)
    assert sheet.dtype == np.uint8 and sheet.shape == (52, 5 * 68, 3)


def test_config_is_validated():
    with pytest.raises(ValueError):
        SceneConfig(width=8)
    with pytest.raises(ValueError):
        SceneConfig(subject_distance_m=(2.0, 1.0))


def test_default_shared_dir_is_beside_the_repository():
    """The generator finds ../shared (photo textures, the TUM plate) from its own place in the tree."""
    from engines.synth.textures import default_shared_dir
    from tests.conftest import REPO_ROOT, SHARED

    assert default_shared_dir() == SHARED == REPO_ROOT.parent / "shared"
