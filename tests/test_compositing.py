"""Compositing and backgrounds (engines/matting/compositing.py), foreground colours (engines/matting/foreground.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.matting import compositing as comp
from engines.matting.foreground import ForegroundEstimator, estimate_foreground
from sensors.errors import UserError
from sensors.image_io import write_color


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _images(rng, h=24, w=32):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, background


# -- composite ------------------------------------------------------------------------------------
def test_composite_alpha_one_is_the_image_and_zero_the_background(rng):
    image, background = _images(rng)
    ones = np.ones(image.shape[:2], np.float32)
    np.testing.assert_array_equal(comp.composite(image, ones, background), image)
    np.testing.assert_array_equal(comp.composite(image, 0 * ones, background), background)


def test_composite_half_alpha_blends(rng):
    image, background = _images(rng)
    half = np.full(image.shape[:2], 0.5, np.float32)
    out = comp.composite(image, half, background)
    assert out.dtype == np.uint8 and out.shape == image.shape
    expected = (image.astype(np.float64) + background) / 2
    assert np.abs(out - expected).max() <= 0.5 + 1e-9  # rounded to the nearest level


def test_composite_per_pixel_alpha_and_uint8_alpha(rng):
    image, background = _images(rng)
    alpha = rng.random(image.shape[:2]).astype(np.float32)
    expected = alpha[..., None] * image + (1 - alpha[..., None]) * background
    assert np.abs(comp.composite(image, alpha, background) - expected).max() <= 1.0
    a8 = (alpha * 255).round().astype(np.uint8)
    expected8 = (a8[..., None] / 255) * image + (1 - a8[..., None] / 255) * background
    assert np.abs(comp.composite(image, a8, background) - expected8).max() <= 1.0


def test_composite_uses_the_foreground_when_given(rng):
    image, background = _images(rng)
    fg = rng.random(image.shape).astype(np.float32)
    ones = np.ones(image.shape[:2], np.float32)
    out = comp.composite(image, ones, background, foreground=fg)
    np.testing.assert_array_equal(out, np.rint(fg * 255).astype(np.uint8))
    # with alpha 0 the foreground does not matter
    np.testing.assert_array_equal(comp.composite(image, 0 * ones, background, foreground=fg), background)


def test_composite_rejects_mismatched_shapes(rng):
    image, background = _images(rng)
    with pytest.raises(ValueError, match="background"):
        comp.composite(image, np.ones((24, 32), np.float32), background[:, :-1])
    with pytest.raises(ValueError, match="alpha"):
        comp.composite(image, np.ones((24, 31), np.float32), background)
    with pytest.raises(ValueError, match="uint8"):
        comp.composite(image.astype(np.float32), np.ones((24, 32), np.float32), background)


def test_rgba_layout(rng):
    fg = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    alpha = rng.random((5, 7)).astype(np.float32)
    rgba = comp.rgba_foreground(fg, alpha)
    assert rgba.dtype == np.uint8 and rgba.shape == (5, 7, 4)
    np.testing.assert_array_equal(rgba[:, :, :3], fg)  # RGB order kept, straight (not premultiplied)
    np.testing.assert_array_equal(rgba[:, :, 3], np.rint(alpha * 255).astype(np.uint8))
    # float foreground in [0, 1] is scaled to 0..255
    rgba_f = comp.rgba_foreground(fg / 255.0, alpha)
    np.testing.assert_array_equal(rgba_f[:, :, :3], fg)


# -- backgrounds ----------------------------------------------------------------------------------
def test_parse_color():
    assert comp.parse_color("#00FF00") == (0, 255, 0)
    assert comp.parse_color(" #12abEF ") == (0x12, 0xAB, 0xEF)


@pytest.mark.parametrize("bad", ["00FF00", "#0F0", "#GG0000", "#00FF001", "", "green", "# 00FF00"])
def test_parse_color_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        comp.parse_color(bad)


def test_solid_background():
    bg = comp.solid_background((10, 20, 30), 5, 3)
    assert bg.shape == (3, 5, 3) and bg.dtype == np.uint8
    assert (bg == np.array([10, 20, 30], np.uint8)).all()
    with pytest.raises(ValueError):
        comp.solid_background((10, 20, 300), 5, 3)


def test_fit_background_fills_and_keeps_aspect():
    # a 200x100 image with a circle of radius 30 in the middle
    image = np.zeros((100, 200, 3), np.uint8)
    cv2.circle(image, (100, 50), 30, (255, 255, 255), -1)
    for width, height in ((120, 120), (300, 100), (50, 80)):
        out = comp.fit_background(image, width, height)
        assert out.shape == (height, width, 3)
        ys, xs = np.nonzero(out[:, :, 0] > 127)
        # the circle stays round (no stretching) and centred
        assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 2
        assert abs(xs.mean() - (width - 1) / 2) <= 1.5 and abs(ys.mean() - (height - 1) / 2) <= 1.5
    # 120x120 from 200x100: scale 1.2, so the diameter 60 becomes about 72
    ys, xs = np.nonzero(comp.fit_background(image, 120, 120)[:, :, 0] > 127)
    assert 69 <= xs.max() - xs.min() + 1 <= 75


def test_checkerboard_cells():
    board = comp.checkerboard(40, 20, cell=8)
    assert board.shape == (20, 40, 3) and board.dtype == np.uint8
    assert board[0, 0, 0] == board[7, 7, 0] == board[8, 8, 0] == comp.CHECKER_LIGHT
    assert board[0, 8, 0] == board[8, 0, 0] == board[15, 23, 0] == comp.CHECKER_DARK
    assert (board[:, :, 0] == board[:, :, 2]).all()


def _high_frequency_energy(image: np.ndarray) -> float:
    grey = image.astype(np.float32).mean(axis=2)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


def test_blurred_background_blurs_far_more_than_near(rng):
    h, w = 64, 128
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noise: all high frequency
    depth = np.full((h, w), 1.0, np.float32)
    depth[:, w // 2 :] = 4.0  # right half far
    out = comp.blurred_background(image, strength=6.0, depth_m=depth, focus_m=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    near = (slice(8, -8), slice(8, w // 2 - 12))
    far = (slice(8, -8), slice(w // 2 + 12, -8))
    e_near, e_far = _high_frequency_energy(out[near]), _high_frequency_energy(out[far])
    assert e_far < 0.05 * e_near
    # in focus stays (almost) sharp
    assert e_near > 0.8 * _high_frequency_energy(image[near])
    # unknown depth counts as far
    holes = depth.copy()
    holes[:, : w // 2] = 0.0
    assert _high_frequency_energy(comp.blurred_background(image, 6.0, holes, 1.0)[near]) < 0.05 * e_near


def test_blurred_background_without_depth_blurs_everywhere(rng):
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    weak = comp.blurred_background(image, strength=1.0)
    strong = comp.blurred_background(image, strength=12.0)
    assert _high_frequency_energy(strong) < 0.1 * _high_frequency_energy(weak) < _high_frequency_energy(image)
    np.testing.assert_array_equal(comp.blurred_background(image, strength=0.0), image)
    # a uniform image stays uniform (no brightness drift from the down/up-scaling)
    flat = np.full((48, 64, 3), 77, np.uint8)
    np.testing.assert_array_equal(comp.blurred_background(flat, strength=20.0), flat)


def test_defocus_amount():
    depth = np.array([[1.0, 2.0, 4.0 / 3.0, 0.0, np.nan, 0.5]], np.float32)
    np.testing.assert_allclose(comp.defocus_amount(depth, 1.0), [[0.0, 1.0, 0.5, 1.0, 1.0, 1.0]], atol=1e-6)


# -- make_background ------------------------------------------------------------------------------
def test_make_background_colours_and_checker(rng):
    frame = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    bg = comp.make_background("#102030", 40, 30)
    assert bg.is_static and (bg.render() == np.array([16, 32, 48], np.uint8)).all()
    assert bg.render(frame).shape == (30, 40, 3)
    assert (comp.make_background("Green", 40, 30).render() == np.array([0, 255, 0], np.uint8)).all()
    np.testing.assert_array_equal(comp.make_background("checker", 40, 30).render(), comp.checkerboard(40, 30))
    checker4 = comp.make_background("checker:4", 40, 30).render()
    np.testing.assert_array_equal(checker4, comp.checkerboard(40, 30, 4))


def test_make_background_blur_uses_the_frame(rng):
    frame = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    bg = comp.make_background("blur:5", 40, 30)
    assert not bg.is_static and bg.spec.blur_sigma_px == 5.0
    np.testing.assert_array_equal(bg.render(frame), comp.blurred_background(frame, 5.0))
    with pytest.raises(ValueError):
        bg.render()


def test_make_background_image_is_read_and_resized_once(tmp_path, rng, monkeypatch):
    source = rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)
    path = tmp_path / "beach.png"
    write_color(path, source)
    calls = []
    real_resize = cv2.resize
    monkeypatch.setattr(comp.cv2, "resize", lambda *a, **k: calls.append(1) or real_resize(*a, **k))
    bg = comp.make_background(str(path), 40, 30)
    frame = np.zeros((30, 40, 3), np.uint8)
    first = bg.render(frame)
    for _ in range(3):
        assert bg.render(frame) is first
    assert len(calls) == 1
    np.testing.assert_array_equal(first, comp.fit_background(source, 40, 30))
    assert not first.flags.writeable  # the cached image cannot be changed by a caller
    # a new frame size rebuilds it once
    assert bg.render(np.zeros((60, 80, 3), np.uint8)).shape == (60, 80, 3)


@pytest.mark.parametrize(
    "spec", ["", "#12", "#GGGGGG", "blur:abc", "blur:-1", "checker:0", "no/such/file.png"]
)
def test_make_background_invalid_choice_is_a_user_error(spec):
    with pytest.raises(UserError) as info:
        comp.make_background(spec, 40, 30)
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message
    assert info.value.exit_code == 2


def test_make_background_missing_and_corrupt_image(tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(UserError, match="missing.jpg"):
        comp.make_background(str(missing), 40, 30)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    with pytest.raises(UserError, match="corrupt.png"):
        comp.make_background(str(corrupt), 40, 30)
    with pytest.raises(UserError, match="folder"):
        comp.make_background(str(tmp_path), 40, 30)


# -- foreground estimation ------------------------------------------------------------------------
def _synthetic_matte(h=96, w=128):
    """I = a F + (1 - a) B with a smooth warm F, a blue/green checkered B and a soft disc + strands."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fg = np.stack([0.85 + 0 * xx, 0.4 + 0.3 * xx / w, 0.2 + 0.2 * yy / h], axis=2)
    cells = ((yy // 8 + xx // 8) % 2)[..., None] > 0
    bg = np.where(cells, np.float32([0.05, 0.2, 0.9]), np.float32([0.1, 0.6, 0.3]))
    r = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((h / 3 - r) / 10 + 0.5, 0, 1)
    strands = (np.sin(xx / 2.0) ** 8) * ((yy > h / 8) & (yy < h / 3)) * 0.7
    alpha = np.maximum(alpha, strands).astype(np.float32)
    alpha[alpha < 0.01] = 0.0
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.float32)
    return image, alpha, fg.astype(np.float32), bg.astype(np.float32)


def test_estimated_foreground_is_much_closer_than_the_image():
    image, alpha, fg, bg = _synthetic_matte()
    soft = (alpha > 0.05) & (alpha < 0.95)
    assert soft.sum() > 500
    error_image = np.abs(image - fg)[soft].mean()
    estimate = estimate_foreground(image, alpha)
    assert estimate.dtype == np.float32 and estimate.shape == image.shape
    error_estimate = np.abs(estimate - fg)[soft].mean()
    assert error_estimate < 0.4 * error_image
    # a known background plate helps further
    error_plate = np.abs(estimate_foreground(image, alpha, background_rgb=bg) - fg)[soft].mean()
    assert error_plate < 0.8 * error_estimate


def test_fast_path_matches_the_paper_method():
    image, alpha, fg, bg = _synthetic_matte()
    soft = (alpha > 0.05) & (alpha < 0.95)
    for plate in (None, bg):
        paper = estimate_foreground(image, alpha, plate, first_pass_scale=1)
        fast = estimate_foreground(image, alpha, plate)
        assert np.abs(fast - paper)[soft].mean() < 0.01


def test_foreground_is_the_image_where_alpha_is_one_and_accepts_uint8(rng):
    image, alpha, _, _ = _synthetic_matte()
    estimate = estimate_foreground(image, alpha)
    np.testing.assert_allclose(estimate[alpha == 1.0], image[alpha == 1.0], atol=1e-5)
    image8 = np.rint(image * 255).astype(np.uint8)
    alpha8 = np.rint(alpha * 255).astype(np.uint8)
    estimate8 = estimate_foreground(image8, alpha8)
    assert np.abs(estimate8 - estimate).mean() < 0.01
    # binary alpha: nothing to estimate, F is the image
    binary = (alpha > 0.5).astype(np.float32)
    np.testing.assert_array_equal(estimate_foreground(image, binary), image)


def test_estimator_reuses_buffers_across_sizes_and_writes_into_out():
    image, alpha, _, _ = _synthetic_matte()
    estimator = ForegroundEstimator()
    first = estimator(image, alpha)
    small_image, small_alpha, _, _ = _synthetic_matte(48, 64)
    estimator(small_image, small_alpha)  # a different size in between
    out = np.zeros_like(image)
    assert estimator(image, alpha, out=out) is out
    np.testing.assert_array_equal(out, first)
    with pytest.raises(ValueError, match="alpha"):
        estimator(image, alpha[:-1])


def test_composite_with_estimated_foreground_removes_the_old_background_colour():
    image, alpha, fg, _ = _synthetic_matte()
    new_bg = np.zeros_like(image)
    new_bg[:] = (1.0, 1.0, 1.0)
    truth = alpha[..., None] * fg + (1 - alpha[..., None]) * new_bg
    to8 = lambda x: np.rint(x * 255).astype(np.uint8)  # noqa: E731
    plain = comp.composite(to8(image), alpha, to8(new_bg))
    better = comp.composite(to8(image), alpha, to8(new_bg), foreground=estimate_foreground(image, alpha))
    soft = (alpha > 0.05) & (alpha < 0.95)
    error_plain = np.abs(plain / 255.0 - truth)[soft].mean()
    error_better = np.abs(better / 255.0 - truth)[soft].mean()
    assert error_better < 0.5 * error_plain


def test_an_unreadable_background_image_is_called_a_background_image(tmp_path):
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint16))  # 16-bit: not a colour image the app takes
    with pytest.raises(UserError) as info:
        comp.make_background(str(path), 32, 24)
    assert str(info.value).startswith("The background image")
