"""Matting metrics against hand-computed cases (engines/evaluation/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines.evaluation import metrics


# -- SAD / MSE ------------------------------------------------------------------------------------
def test_sad_and_mse_of_a_4x4_case():
    gt = np.zeros((4, 4))
    pred = np.zeros((4, 4))
    pred[0, 0] = 1.0  # |d| = 1,   d^2 = 1
    pred[1, 2] = 0.5  # |d| = 0.5, d^2 = 0.25
    gt[2, 1] = 0.25  # |d| = 0.25, d^2 = 0.0625
    assert metrics.sad(pred, gt) == pytest.approx(1.75)
    assert metrics.mse(pred, gt) == pytest.approx((1 + 0.25 + 0.0625) / 16)


def test_sad_is_symmetric_and_zero_for_identical_mattes():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 6)), rng.random((5, 6))
    assert metrics.sad(a, b) == pytest.approx(metrics.sad(b, a))
    assert metrics.sad(a, a) == 0.0 and metrics.mse(a, a) == 0.0


def test_uint8_is_read_as_0_to_255():
    pred = np.full((2, 2), 255, dtype=np.uint8)
    gt = np.zeros((2, 2), dtype=np.uint8)
    assert metrics.sad(pred, gt) == pytest.approx(4.0)
    assert metrics.mse(pred, gt) == pytest.approx(1.0)
    # float32 and uint8 of the same matte agree
    assert metrics.sad(pred, np.zeros((2, 2), np.float32)) == pytest.approx(4.0)


def test_mask_restricts_the_sum_and_the_mean():
    pred = np.array([[1.0, 0.5], [0.0, 0.0]])
    gt = np.zeros((2, 2))
    mask = np.array([[False, True], [True, False]])
    assert metrics.sad(pred, gt, mask=mask) == pytest.approx(0.5)
    assert metrics.mse(pred, gt, mask=mask) == pytest.approx(0.25 / 2)


@pytest.mark.parametrize("fn", [metrics.sad, metrics.mse, metrics.grad, metrics.conn, metrics.evaluate])
def test_shape_mismatch_raises_value_error(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(np.zeros((4, 4)), np.zeros((4, 5)))


def test_non_matte_inputs_are_rejected():
    with pytest.raises(ValueError, match="HxW"):
        metrics.sad(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="uint8"):
        metrics.sad(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.int32))


# -- Grad -----------------------------------------------------------------------------------------
def _reference_gradient_magnitude(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """Explicit loops: build the 2-D Gaussian-derivative filter, convolve with replicated edges."""

    def gauss(x):
        return math.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    def dgauss(x):
        return -x * gauss(x) / sigma**2

    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    size = 2 * half + 1
    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            hx[i, j] = gauss(i - half) * dgauss(j - half)
    hx /= math.sqrt((hx**2).sum())
    hy = hx.T
    h, w = a.shape
    gx = np.zeros_like(a)
    gy = np.zeros_like(a)
    for r in range(h):
        for c in range(w):
            for i in range(size):
                for j in range(size):
                    rr = min(max(r - (i - half), 0), h - 1)
                    cc = min(max(c - (j - half), 0), w - 1)
                    gx[r, c] += hx[i, j] * a[rr, cc]
                    gy[r, c] += hy[i, j] * a[rr, cc]
    return np.sqrt(gx**2 + gy**2)


def test_filter_has_nine_taps_and_unit_norm_for_sigma_1_4():
    g, dg = metrics.gaussian_derivative_kernels(1.4)
    assert g.shape == dg.shape == (9,)
    assert np.linalg.norm(np.outer(g, dg)) == pytest.approx(1.0)


def test_grad_of_a_constant_error_is_zero():
    rng = np.random.default_rng(1)
    gt = rng.random((12, 10)) * 0.8
    assert metrics.grad(gt + 0.2, gt) == pytest.approx(0.0, abs=1e-20)
    assert metrics.grad(np.full((6, 6), 0.7), np.zeros((6, 6))) == pytest.approx(0.0, abs=1e-20)


def test_grad_of_a_step_against_no_step_matches_explicit_convolution():
    pred = np.zeros((8, 8))
    pred[:, 4:] = 1.0  # vertical edge
    pred[6:, :] = 1.0  # plus a horizontal one, so both filters matter
    gt = np.zeros((8, 8))
    expected = float((_reference_gradient_magnitude(pred) ** 2).sum())
    assert expected > 1.0  # the case is not degenerate
    assert metrics.grad(pred, gt) == pytest.approx(expected, rel=1e-9)
    reference = _reference_gradient_magnitude(pred)
    np.testing.assert_allclose(metrics.gradient_magnitude(pred), reference, atol=1e-12)


def test_grad_of_two_different_soft_mattes_matches_explicit_convolution():
    rng = np.random.default_rng(2)
    pred, gt = rng.random((7, 9)), rng.random((7, 9))
    diff = _reference_gradient_magnitude(pred) - _reference_gradient_magnitude(gt)
    assert metrics.grad(pred, gt) == pytest.approx(float((diff**2).sum()), rel=1e-9)


# -- Conn -----------------------------------------------------------------------------------------
def test_conn_of_identical_mattes_is_zero():
    rng = np.random.default_rng(3)
    a = rng.random((16, 16))
    assert metrics.conn(a, a) == 0.0


def test_conn_counts_a_disconnected_foreground_island_in_pred():
    gt = np.zeros((10, 10))
    gt[1:6, 1:6] = 1.0  # the subject
    pred = gt.copy()
    pred[8, 7:9] = 1.0  # a 2-pixel island that gt says is background
    # Island pixels: gt = 0 so they never join the source; l = 0, d_pred = 1 -> phi 0, phi_gt = 1.
    assert metrics.conn(pred, gt) == pytest.approx(2.0)


def test_conn_step_by_step_1x5():
    pred = np.array([[0.9, 0.9, 0.3, 1.0, 0.5]])
    gt = np.array([[1.0, 0.8, 0.3, 1.0, 0.2]])
    # min(pred, gt)      = [0.9, 0.8, 0.3, 1.0, 0.2]
    # t = 0.1, 0.2: all five connected
    # t = 0.3: {0,1,2,3}           -> pixel 4 leaves, l4 = 0.2
    # t = 0.4: {0,1} beats {3}     -> pixels 2, 3 leave, l = 0.3
    # t = 0.5 .. 0.8: {0,1}
    # t = 0.9: {0}                 -> pixel 1 leaves, l1 = 0.8
    # t = 1.0: empty               -> pixel 0 leaves, l0 = 0.9
    levels = metrics.connectivity_levels(pred, gt)
    np.testing.assert_allclose(levels, [[0.9, 0.8, 0.3, 0.3, 0.2]])
    # d_pred = [0.0, 0.1, 0.0, 0.7, 0.3] -> phi_pred = [1, 1, 1, 0.3, 0.7]
    # d_gt   = [0.1, 0.0, 0.0, 0.7, 0.0] -> phi_gt   = [1, 1, 1, 0.3, 1]
    assert metrics.conn(pred, gt) == pytest.approx(0.3)


def test_conn_uses_4_connectivity():
    pred = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    gt = pred.copy()
    gt[2, 2] = 0.1
    # (2,2) touches the block only diagonally: never in the source, l = 0.
    # d_pred = 1 -> phi 0; d_gt = 0.1 < 0.15 -> phi 1. (8-connectivity would give l = 0.1 and 0.9.)
    assert metrics.conn(pred, gt) == pytest.approx(1.0)


def test_conn_rejects_a_step_that_does_not_divide_one():
    with pytest.raises(ValueError, match="step"):
        metrics.conn(np.zeros((3, 3)), np.zeros((3, 3)), step=0.3)


# -- reports --------------------------------------------------------------------------------------
def test_evaluate_scales_like_the_dart_paper():
    gt = np.zeros((10, 10))
    gt[1:6, 1:6] = 1.0
    pred = gt.copy()
    pred[8, 7:9] = 1.0
    result = metrics.evaluate(pred, gt)
    assert set(result) == set(metrics.METRIC_NAMES)
    assert result["SAD"] == pytest.approx(2.0 / 1000)
    assert result["MSE"] == pytest.approx(2.0 / 100 * 1000)
    assert result["Grad"] == pytest.approx(metrics.grad(pred, gt) / 1000)
    assert result["Conn"] == pytest.approx(2.0 / 1000)


def test_mean_metrics():
    out = metrics.mean_metrics([{"SAD": 1.0, "MSE": 2.0}, {"SAD": 3.0, "MSE": 6.0}])
    assert out == {"SAD": 2.0, "MSE": 4.0}
    with pytest.raises(ValueError):
        metrics.mean_metrics([])
    with pytest.raises(ValueError, match="MSE"):
        metrics.mean_metrics([{"SAD": 1.0, "MSE": 2.0}, {"SAD": 3.0}])
