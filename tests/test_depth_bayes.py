"""DART eqs. 5-10, 12-13 against values computed by hand (mean 2 m, std 0.1 m, P_F = 0.5)."""

import dataclasses
import math

import numpy as np
import pytest

from engines.matting.background_prior import BackgroundPrior
from engines.config import DepthConfig
from engines.matting.depth_bayes import (
    LikelihoodTables,
    alpha_posterior_given_depth,
    background_likelihood,
    clean_posterior,
    depth_posterior,
    depth_residual,
    foreground_likelihood,
    fuse_error_maps,
    likelihoods,
    make_trimap,
    truncation_normaliser,
    zeta_per_m,
)
from engines.matting.scratch import Scratch

CFG = DepthConfig()  # psi 0.01, zeta 0.001 / mm, P_F 0.5, beta 0.05, thresholds 0.25 / 0.8
DEPTHS = np.array([[1.0, 2.0, 0.0, 3.0, 2.1]], np.float32)  # metres; 0 = unknown
MEAN, STD = 2.0, 0.1


def _prior(shape=(1, 5), mean=MEAN, std=STD):
    return BackgroundPrior(
        depth_mean_m=np.full(shape, mean, np.float32),
        depth_std_m=np.full(shape, std, np.float32),
        valid_count=np.full(shape, 30, np.int32),
        color_mean=np.zeros(shape + (3,), np.float32),
        n_frames=30,
    )


def _phi(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _normal_pdf(d, mean, std):
    return math.exp(-0.5 * ((d - mean) / std) ** 2) / (std * math.sqrt(2.0 * math.pi))


def test_zeta_is_per_millimetre_like_the_paper():
    assert zeta_per_m(CFG) == pytest.approx(1.0)  # 0.001 / mm = 1 / m


def test_eq5_foreground_likelihood():
    p_f = foreground_likelihood(DEPTHS, np.full(DEPTHS.shape, MEAN, np.float32))
    # 1 / mean = 0.5 / m on (0, mean]; 0 for unknown depth and behind the background
    np.testing.assert_allclose(p_f, [[0.5, 0.5, 0.0, 0.0, 0.0]])
    assert p_f.dtype == np.float32


def test_eq6_background_likelihood():
    mean = np.full(DEPTHS.shape, MEAN, np.float32)
    std = np.full(DEPTHS.shape, STD, np.float32)
    p_b = background_likelihood(DEPTHS, mean, std)
    peak = 1.0 / (0.1 * math.sqrt(2.0 * math.pi))  # 3.98942 / m; Phi(20) = 1 so no renormalisation
    expected = [
        peak * math.exp(-50.0),  # d = 1: 10 std away
        peak,  # d = mean
        0.0,  # unknown depth
        peak * math.exp(-50.0),  # d = 3
        peak * math.exp(-0.5),  # d = 2.1: one std -> 2.41971
    ]
    np.testing.assert_allclose(p_b[0], expected, rtol=1e-5, atol=1e-30)
    assert p_b[0, 4] == pytest.approx(2.419707, rel=1e-5)


def test_eq6_truncated_at_zero_and_renormalised():
    # mean 0.1 m, std 0.1 m: 16% of the normal lies below 0, so the density is divided by Phi(1) = 0.841345.
    mean, std = 0.1, 0.1
    assert truncation_normaliser(np.array([mean]), np.array([std]))[0] == pytest.approx(_phi(1.0), rel=1e-6)
    d = np.array([0.1, 0.25], np.float32)
    p_b = background_likelihood(d, np.full(2, mean, np.float32), np.full(2, std, np.float32))
    assert p_b[0] == pytest.approx(_normal_pdf(0.1, mean, std) / _phi(1.0), rel=1e-5)  # 4.74165
    assert p_b[0] == pytest.approx(4.74165, rel=1e-4)
    assert p_b[1] == pytest.approx(_normal_pdf(0.25, mean, std) / 0.8413447, rel=1e-5)
    # integrates to 1 over [0, inf)
    grid = np.linspace(1e-6, 1.5, 200001, dtype=np.float64)
    dens = background_likelihood(grid.astype(np.float32), np.full(grid.shape, mean, np.float32),
                                 np.full(grid.shape, std, np.float32)).astype(np.float64)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-3)


def test_likelihood_tables_match_the_pure_functions():
    rng = np.random.default_rng(0)
    prior = BackgroundPrior(
        depth_mean_m=rng.uniform(0.3, 5.0, (9, 11)).astype(np.float32),
        depth_std_m=rng.uniform(0.01, 0.4, (9, 11)).astype(np.float32),
        valid_count=np.ones((9, 11), np.int32),
        color_mean=np.zeros((9, 11, 3), np.float32),
        n_frames=1,
    )
    depth = rng.uniform(0.0, 5.5, (9, 11)).astype(np.float32)
    depth[::3, ::2] = 0.0
    p_f, p_b = likelihoods(depth, LikelihoodTables.from_prior(prior))
    np.testing.assert_allclose(p_f, foreground_likelihood(depth, prior.depth_mean_m), rtol=1e-6)
    np.testing.assert_allclose(p_b, background_likelihood(depth, prior.depth_mean_m, prior.depth_std_m),
                               rtol=1e-4, atol=1e-30)


def test_eq7_8_depth_posterior_by_hand():
    a_d = depth_posterior(DEPTHS, _prior(), CFG)
    z = 1.0  # zeta in 1/m
    p_f, p_b_mean, p_b_1std = 0.5, 1.0 / (0.1 * math.sqrt(2 * math.pi)), math.exp(-0.5) / (0.1 * math.sqrt(2 * math.pi))
    expected = [
        0.5 * (p_f + z) / (0.5 * p_f + 0.0 + z),  # d = 1 m, clearly in front: 0.75 / 1.25 = 0.6
        0.5 * (p_f + z) / (0.5 * p_f + 0.5 * p_b_mean + z),  # d = mean: 0.75 / 3.24471 = 0.231145
        0.5,  # unknown depth: exactly P_F
        0.5 * z / (0.0 + 0.5 * 0.0 + z),  # d = 3 m, behind the background: pF = 0, pB ~ 0 -> P_F
        0.5 * z / (0.0 + 0.5 * p_b_1std + z),  # d = 2.1, one std behind: pF = 0 -> 0.5 / 2.20985 = 0.226259
    ]
    np.testing.assert_allclose(a_d[0], expected, rtol=1e-5)
    # d = 1.9, one std in front: pF = 0.5 -> 0.75 / (0.25 + 1.20985 + 1) = 0.304896
    one_std_front = depth_posterior(np.array([[1.9]], np.float32), _prior((1, 1)), CFG)[0, 0]
    assert one_std_front == pytest.approx(0.75 / (0.25 + 0.5 * p_b_1std + 1.0), rel=1e-5)
    assert one_std_front == pytest.approx(0.304896, abs=1e-5)
    assert a_d[0, 0] == pytest.approx(0.6, abs=1e-6)
    assert a_d[0, 1] == pytest.approx(0.231145, abs=1e-5)
    assert a_d[0, 2] == 0.5  # exactly
    assert a_d.dtype == np.float32


def test_unknown_depth_gives_exactly_prior_fg_for_any_prior():
    cfg = dataclasses.replace(CFG, prior_fg=0.3)
    rng = np.random.default_rng(1)
    prior = _prior((4, 6), mean=1.0, std=0.05)
    depth = rng.uniform(0.5, 3.0, (4, 6)).astype(np.float32)
    depth[1] = 0.0
    depth[2, :2] = -1.0  # the paper's "-1" fill value is unknown too
    depth[3, 0] = np.nan  # and so is NaN
    a_d = depth_posterior(depth, LikelihoodTables.from_prior(prior), cfg)
    assert np.all(a_d[1] == np.float32(0.3))
    assert np.all(a_d[2, :2] == np.float32(0.3))
    assert a_d[3, 0] == np.float32(0.3)
    assert alpha_posterior_given_depth(np.full((4, 6), 0.8, np.float32), depth, prior, cfg)[3, 0] == np.float32(0.8)


def test_posterior_is_the_same_in_millimetres():
    # The paper's numbers in millimetres: pF = 1/2000, pB(mean) = 1/(100 sqrt(2 pi)), zeta = 0.001.
    p_f, p_b, z = 1 / 2000, 1 / (100 * math.sqrt(2 * math.pi)), 0.001
    paper = 0.5 * (p_f + z) / (0.5 * p_f + 0.5 * p_b + z)
    assert depth_posterior(DEPTHS, _prior(), CFG)[0, 1] == pytest.approx(paper, rel=1e-5)


def test_clean_posterior_removes_small_blobs_and_keeps_large_ones():
    a = np.full((100, 100), 0.07, np.float32)  # min area = 0.002 * 10000 = 20 px
    a[10:14, 10:14] = 1.0  # 16 px speck
    a[50:80, 40:70] = 0.6  # 900 px subject at the paper's "clear foreground" level
    cleaned = clean_posterior(a, CFG)
    assert cleaned[10:14, 10:14].max() <= 0.5  # the speck's above-threshold core was set to 0
    assert cleaned[11:13, 11:13].max() == 0.0
    assert cleaned[60:70, 50:60].min() == pytest.approx(0.6, abs=1e-3)  # interior kept
    assert cleaned[90, 10] == pytest.approx(0.07, abs=1e-6)  # blurred flat background unchanged
    # without removal the speck survives the blur above the threshold
    no_removal = clean_posterior(a, dataclasses.replace(CFG, min_region_fraction=0.0))
    assert no_removal[11:13, 11:13].max() > 0.5


def test_clean_posterior_fills_small_background_holes_on_request():
    cfg = dataclasses.replace(CFG, min_region_fraction=0.01)  # 100 px at 100x100
    a = np.zeros((100, 100), np.float32)
    a[20:80, 20:80] = 1.0
    a[45:51, 45:51] = 0.0  # 36 px hole
    kept = clean_posterior(a, cfg, threshold=0.5)
    assert kept[47:49, 47:49].max() < 0.5
    filled = clean_posterior(a, cfg, threshold=0.5, fill_background_holes=True)
    assert filled[47:49, 47:49].min() == 1.0
    assert filled[5, 5] == 0.0


def test_eq9_10_error_maps():
    a_d = np.array([[0.6, 0.23, 0.5]], np.float32)
    a_raw = np.array([[1.0, 0.0, 0.5]], np.float32)
    e_d = depth_residual(a_d, a_raw)
    np.testing.assert_allclose(e_d, [[0.4, 0.23, 0.0]], atol=1e-7)
    e_rgb = np.array([[0.2, 0.0, 1.0]], np.float32)
    fused = fuse_error_maps(e_d, e_rgb, 0.05)
    # 0.05 * 0.4 + 0.95 * 0.2 = 0.21; 0.05 * 0.23 = 0.0115; 0.95 * 1 = 0.95
    np.testing.assert_allclose(fused, [[0.21, 0.0115, 0.95]], atol=1e-7)
    with pytest.raises(ValueError):
        depth_residual(np.zeros((30, 40), np.float32), np.zeros((120, 160), np.float32))
    with pytest.raises(ValueError):
        fuse_error_maps(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32), 0.05)


def test_eq12_alpha_posterior_by_hand():
    depth = np.array([[1.0, 2.0, 0.0, 2.0]], np.float32)
    alpha = np.array([[0.9, 0.9, 0.9, 0.0]], np.float32)
    out = alpha_posterior_given_depth(alpha, depth, _prior((1, 4)), CFG)
    p_b = 1.0 / (0.1 * math.sqrt(2 * math.pi))
    expected = [
        (0.5 * 0.9 + 1.0 * 0.9) / (0.5 * 0.9 + 0.0 + 1.0),  # in front: 1.35 / 1.45 = 0.931034
        (0.5 * 0.9 + 1.0 * 0.9) / (0.5 * 0.9 + p_b * 0.1 + 1.0),  # at the background: 1.35 / 1.84894 = 0.730147
        0.9,  # unknown depth keeps the prior alpha exactly
        0.0,  # alpha 0 stays 0
    ]
    np.testing.assert_allclose(out[0], expected, rtol=1e-5)
    assert out[0, 2] == np.float32(0.9)


def test_scratch_and_out_give_identical_results():
    rng = np.random.default_rng(2)
    prior = _prior((30, 40))
    tables = LikelihoodTables.from_prior(prior)
    scratch = Scratch()
    for _ in range(2):  # the second call reuses the scratch arrays
        depth = rng.uniform(0.0, 3.0, (30, 40)).astype(np.float32)
        alpha = rng.random((30, 40), dtype=np.float32)
        fresh = alpha_posterior_given_depth(alpha, depth, tables, CFG)
        out = np.empty_like(alpha)
        reused = alpha_posterior_given_depth(alpha, depth, tables, CFG, out=out, scratch=scratch)
        assert reused is out
        np.testing.assert_array_equal(reused, fresh)
        np.testing.assert_array_equal(make_trimap(fresh, CFG, scratch=scratch), make_trimap(fresh, CFG))
    with pytest.raises(ValueError):
        alpha_posterior_given_depth(alpha, depth, tables, CFG, out=alpha)


def test_eq13_two_thresholds():
    values = np.array([[0.1, 0.25, 0.3, 0.8, 0.81, 0.95]], np.float32)
    trimap = make_trimap(values, CFG, blur_sigma_px=0)
    np.testing.assert_array_equal(trimap, [[0.0, 0.0, 0.5, 0.5, 1.0, 1.0]])
    assert trimap.dtype == np.float32


def test_eq13_blurs_before_thresholding_and_widens_the_band():
    spike = np.zeros((21, 21), np.float32)
    spike[10, 10] = 1.0
    # sigma 1 px spreads the spike to 1 / (2 pi) = 0.159 at the centre: below 0.25 -> background
    assert make_trimap(spike, CFG).max() == 0.0
    assert make_trimap(spike, CFG, blur_sigma_px=0)[10, 10] == 1.0

    step = np.zeros((20, 40), np.float32)
    step[:, 20:] = 1.0
    plain = make_trimap(step, CFG)
    unknown_cols = np.flatnonzero(plain[10] == 0.5)
    assert 1 <= unknown_cols.size <= 3 and 18 <= unknown_cols.min() and unknown_cols.max() <= 21
    banded = make_trimap(step, CFG, band_px=3)
    banded_cols = np.flatnonzero(banded[10] == 0.5)
    assert banded_cols.min() == unknown_cols.min() - 3 and banded_cols.max() == unknown_cols.max() + 3
    assert set(np.unique(banded)) == {0.0, 0.5, 1.0}
