"""Background prior (DART eq. 4): streaming statistics, fallbacks, save/load, resize, capture checks."""

import dataclasses
import math

import numpy as np
import pytest

from engines.matting.background_prior import (
    BackgroundPrior,
    BackgroundPriorBuilder,
    eq4_mean_std,
    validate_capture,
)
from engines.config import DepthConfig
from sensors.errors import UserError

EXACT_EQ4 = DepthConfig(std_floor_ratio=0.0)  # eq. 4 as printed (no std floor)


def _grey(h, w, value=100):
    return np.full((h, w, 3), value, np.uint8)


def test_eq4_fallbacks_by_hand():
    # One row of 3 pixels over 3 frames: pixel 0 never valid, pixel 1 valid once, pixel 2 valid 3 times.
    frames = [
        np.array([[0.0, 0.0, 1.9]], np.float32),
        np.array([[0.0, 2.4, 2.0]], np.float32),
        np.array([[0.0, 0.0, 2.1]], np.float32),
    ]
    builder = BackgroundPriorBuilder(1, 3)
    for depth in frames:
        builder.add(_grey(1, 3), depth)
    assert builder.count == 3
    prior = builder.build(EXACT_EQ4)

    # |K| = 0: mean = d_max = 5.46, std = psi * d_max = 0.0546
    assert prior.depth_mean_m[0, 0] == pytest.approx(5.46)
    assert prior.depth_std_m[0, 0] == pytest.approx(0.01 * 5.46)
    # |K| = 1: mean = 2.4, std = psi * mean = 0.024
    assert prior.depth_mean_m[0, 1] == pytest.approx(2.4)
    assert prior.depth_std_m[0, 1] == pytest.approx(0.024)
    # |K| = 3: mean = (1.9 + 2.0 + 2.1) / 3 = 2.0; std = sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    assert prior.depth_mean_m[0, 2] == pytest.approx(2.0, abs=1e-6)
    assert prior.depth_std_m[0, 2] == pytest.approx(math.sqrt(0.02 / 2), abs=1e-6)
    assert prior.valid_count.tolist() == [[0, 1, 3]]
    assert prior.n_frames == 3


def test_std_floor_applies_only_to_tiny_sample_std():
    # Quantised, stable readings: the same 3.0 m in every frame gives a sample std of exactly 0.
    builder = BackgroundPriorBuilder(1, 2)
    for _ in range(5):
        builder.add(_grey(1, 2), np.array([[3.0, 0.0]], np.float32))
    exact = builder.build(EXACT_EQ4)
    assert exact.depth_std_m[0, 0] == pytest.approx(1e-3)  # only the 1 mm guard against a delta function
    floored = builder.build(DepthConfig(std_floor_ratio=0.005))
    assert floored.depth_std_m[0, 0] == pytest.approx(0.005 * 3.0)  # 15 mm
    # The |K| = 0 fallback psi * d_max (54.6 mm) is above the floor (27.3 mm): unchanged.
    assert floored.depth_std_m[0, 1] == pytest.approx(0.0546)
    # eq4_mean_std directly: |K| = 1 keeps psi * mean because psi > std_floor_ratio.
    mean, std = eq4_mean_std(np.array([2.0]), np.array([np.nan]), np.array([1]), DepthConfig())
    assert mean[0] == pytest.approx(2.0) and std[0] == pytest.approx(0.02)


@pytest.mark.parametrize("h, w", [(12, 17), (12, 16)])  # odd and even sizes subsample colour differently
def test_builder_matches_numpy_statistics(h, w):
    rng = np.random.default_rng(0)
    n = 40
    depths = rng.uniform(0.5, 4.0, (n, h, w)).astype(np.float32)
    depths[rng.random((n, h, w)) < 0.3] = 0.0  # invalid samples
    depths[:, 0, 0] = 0.0  # never valid
    depths[5, 1, 1] = np.nan  # NaN is "unknown" too
    colors = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    builder = BackgroundPriorBuilder(h, w)
    for color, depth in zip(colors, depths, strict=True):
        builder.add(color, depth)
    prior = builder.build(EXACT_EQ4)

    valid = depths > 0  # NaN > 0 is False
    count = valid.sum(axis=0)
    masked = np.where(valid, depths, np.nan)
    ok = count > 1
    np.testing.assert_array_equal(prior.valid_count, count)
    np.testing.assert_allclose(prior.depth_mean_m[ok], np.nanmean(masked[:, ok], axis=0), atol=1e-5)
    np.testing.assert_allclose(prior.depth_std_m[ok], np.nanstd(masked[:, ok], axis=0, ddof=1), atol=1e-5)
    assert prior.depth_mean_m[0, 0] == pytest.approx(5.46)
    np.testing.assert_allclose(prior.color_mean, colors.mean(axis=0) / 255.0, atol=1e-5)
    stats = builder.stats()
    expected_color_std = np.sqrt(colors.astype(np.float64).var(axis=0, ddof=1).mean(axis=2)) / 255.0
    # tracked on every second pixel of every second row; each sample stands for its 2x2 block
    assert stats.color_std.shape == (h, w)
    np.testing.assert_allclose(stats.color_std[::2, ::2], expected_color_std[::2, ::2], atol=1e-4)
    np.testing.assert_array_equal(stats.color_std[1::2, 1::2], stats.color_std[:-1:2, :-1:2])
    assert prior.color_mean.dtype == np.float32 and prior.depth_std_m.dtype == np.float32


def test_builder_rejects_wrong_shapes_and_empty_build():
    builder = BackgroundPriorBuilder(4, 5)
    with pytest.raises(ValueError):
        builder.add(_grey(4, 6), np.ones((4, 5), np.float32))
    with pytest.raises(ValueError):
        builder.add(_grey(4, 5), np.ones((5, 4), np.float32))
    with pytest.raises(UserError):
        builder.build(DepthConfig())


def _small_prior(h=6, w=8, seed=0):
    rng = np.random.default_rng(seed)
    builder = BackgroundPriorBuilder(h, w)
    for _ in range(4):
        depth = rng.uniform(1.0, 3.0, (h, w)).astype(np.float32)
        depth[0, :3] = 0.0
        builder.add(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth)
    return builder.build(DepthConfig())


def test_save_load_round_trip(tmp_path):
    prior = _small_prior()
    path = tmp_path / "prior.npz"
    prior.save(path)
    loaded = BackgroundPrior.load(path)
    for field in ("depth_mean_m", "depth_std_m", "valid_count", "color_mean", "color_std"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(prior, field))
    assert loaded.n_frames == prior.n_frames
    assert loaded.valid_count.dtype == np.int32
    # A name without .npz is used as given (no suffix added by numpy).
    other = tmp_path / "prior.bin"
    prior.save(other)
    assert other.exists() and BackgroundPrior.load(other).n_frames == 4


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        BackgroundPrior.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(UserError):
        BackgroundPrior.load(garbage)
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, version=np.array(1), depth_mean_m=np.ones((2, 2), np.float32))
    with pytest.raises(UserError, match="lacks"):
        BackgroundPrior.load(incomplete)
    pickled = tmp_path / "pickled.npz"
    prior = _small_prior()
    np.savez(pickled, version=np.array(1), depth_mean_m=np.array([{"a": 1}], dtype=object),
             depth_std_m=prior.depth_std_m, valid_count=prior.valid_count, color_mean=prior.color_mean,
             n_frames=np.array(4))
    with pytest.raises(UserError):
        BackgroundPrior.load(pickled)
    mismatched = tmp_path / "mismatched.npz"
    np.savez(mismatched, version=np.array(1), depth_mean_m=prior.depth_mean_m, depth_std_m=prior.depth_std_m[:2],
             valid_count=prior.valid_count, color_mean=prior.color_mean, n_frames=np.array(4))
    with pytest.raises(UserError, match="inconsistent"):
        BackgroundPrior.load(mismatched)


def test_resized_uses_nearest_samples_without_blending():
    prior = _small_prior(8, 8)
    half = prior.resized(4, 4)
    assert half.shape == (4, 4)
    # Every output value is one of the input values (never a blend of a d_max pixel and a valid one).
    assert set(np.unique(half.depth_mean_m)) <= set(np.unique(prior.depth_mean_m))
    assert set(np.unique(half.valid_count)) <= set(np.unique(prior.valid_count))
    # Each output pixel keeps one input pixel's (mean, std, count) triple.
    triples = set(zip(prior.depth_mean_m.ravel(), prior.depth_std_m.ravel(), prior.valid_count.ravel(), strict=True))
    for m, s, c in zip(half.depth_mean_m.ravel(), half.depth_std_m.ravel(), half.valid_count.ravel(), strict=True):
        assert (m, s, c) in triples
    assert half.color_mean.shape == (4, 4, 3)
    assert prior.resized(8, 8) is prior


def _capture(moving_blob: bool, near_object: bool = False, n=20, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    builder = BackgroundPriorBuilder(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        depth = (3.0 + rng.normal(0.0, 0.01, (h, w))).astype(np.float32)  # 1 cm noise at 3 m
        depth[rng.random((h, w)) < 0.05] = 0.0
        color = np.clip(120 + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
        if moving_blob:  # a 16x16 object crossing the scene at 1.5 m
            cx = int(i * (w - 16) / (n - 1))
            blob = (xx >= cx) & (xx < cx + 16) & (yy >= 16) & (yy < 32)
            depth[blob] = 1.5
            color[blob] = (220, 40, 40)
        if near_object:  # something 0.3 m in front of the camera over the left half
            depth[:, : w // 2] = 0.3
        builder.add(color, depth)
    return builder


def test_static_noisy_capture_passes():
    report = validate_capture(_capture(moving_blob=False))
    assert report.ok, report.message
    assert report.moving_fraction < 0.005 and report.color_moving_fraction < 0.005
    assert report.n_frames == 20


def test_capture_with_moving_blob_fails():
    report = validate_capture(_capture(moving_blob=True))
    assert not report.ok
    assert report.moving_fraction > 0.1 and report.color_moving_fraction > 0.1
    assert "changed during capture" in report.message


def test_capture_with_near_object_or_too_few_frames_fails():
    report = validate_capture(_capture(moving_blob=False, near_object=True))
    assert not report.ok and report.near_fraction == pytest.approx(0.5, abs=0.01)
    assert "closer than" in report.message
    short = validate_capture(_capture(moving_blob=False, n=3))
    assert not short.ok and "frames" in short.message


def test_validate_capture_accepts_a_built_prior():
    prior = _capture(moving_blob=True).build(DepthConfig())
    assert not validate_capture(prior).ok
    stripped = dataclasses.replace(_capture(moving_blob=False).build(DepthConfig()), color_std=None)
    report = validate_capture(stripped)
    assert report.ok and math.isnan(report.color_moving_fraction)
