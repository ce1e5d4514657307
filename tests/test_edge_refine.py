"""Edge refinement against the plate (engines/matting/edge_refine.py): halo and see-through holes of a
coarse matte removed from colour, lighting change absorbed, no change without a subject."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.matting.edge_refine import EdgeRefineConfig, EdgeRefiner

H, W = 120, 160


def _scene(seed: int = 0):
    """A textured plate, a reddish subject disc with a soft edge and a see-through hole, composited."""
    rng = np.random.default_rng(seed)
    plate = cv2.GaussianBlur(rng.random((H, W, 3)).astype(np.float32), (0, 0), 3) * 0.4 + 0.3
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r = np.hypot(yy - 60, xx - 80)
    alpha = np.clip((40.0 - r) / 4.0, 0.0, 1.0).astype(np.float32)  # 4-pixel soft edge
    alpha[(np.abs(yy - 60) < 5) & (np.abs(xx - 80) < 5)] = 0.0  # a hole showing the background
    subject = np.empty((H, W, 3), np.float32)
    subject[...] = (0.85, 0.25, 0.2)
    image = alpha[..., None] * subject + (1 - alpha[..., None]) * plate
    return plate, (image * 255 + 0.5).astype(np.uint8), alpha


def _coarse(alpha: np.ndarray) -> np.ndarray:
    """What a 1/4-resolution depth matte gives at 160x120: a hard mask grown by a 2-pixel halo, hole filled."""
    hard = (alpha > 0.01).astype(np.uint8)
    hard[55:66, 75:86] = 1
    return cv2.dilate(hard, np.ones((5, 5), np.uint8)).astype(np.float32)


def test_halo_and_hole_removed():
    plate, image, truth = _scene()
    coarse = _coarse(truth)
    refiner = EdgeRefiner()
    refiner.set_plate(plate)
    refined = refiner(image, coarse)
    assert refined.dtype == np.float32 and refined.shape == (H, W)
    assert 0.0 <= refined.min() and refined.max() <= 1.0
    sad_coarse, sad_refined = np.abs(coarse - truth).sum(), np.abs(refined - truth).sum()
    assert sad_refined < 0.5 * sad_coarse, (sad_coarse, sad_refined)
    assert refined[60, 80] < 0.2  # the hole is open again
    assert refined[60, 60] > 0.95  # the subject's interior stays


def test_lighting_change_between_plate_and_frame_is_absorbed():
    plate, image, truth = _scene(1)
    darker = np.clip(image.astype(np.float32) * np.array([0.8, 0.85, 0.9], np.float32), 0, 255).astype(np.uint8)
    refiner = EdgeRefiner()
    refiner.set_plate(plate)
    coarse = _coarse(truth)
    refined = refiner(darker, coarse)
    assert np.abs(refined - truth).sum() < 0.5 * np.abs(coarse - truth).sum()


def test_no_subject_and_bad_input():
    plate, image, _ = _scene()
    refiner = EdgeRefiner(EdgeRefineConfig())
    with pytest.raises(ValueError):
        refiner(image, np.zeros((H, W), np.float32))  # no plate yet
    refiner.set_plate(plate)
    empty = np.zeros((H, W), np.float32)
    out = refiner(image, empty)
    assert out is not empty and not out.any()
    with pytest.raises(ValueError):
        refiner(image[:60], empty)


def test_a_frame_that_is_all_subject_has_no_band_and_no_error():
    """Before: the band's bounding box was taken from an empty band (IndexError in the live path)."""
    plate, image, _ = _scene()
    refiner = EdgeRefiner()
    refiner.set_plate(plate)
    out = refiner(image, np.ones((H, W), np.float32))
    assert out.shape == (H, W) and np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0


def test_camouflaged_subject_with_depth_in_front_is_not_opened():
    """A patch of the subject with the background's colour (dark trousers on a dark sofa) looks like a
    see-through hole in colour; its depth in front of the room keeps it subject. A real hole (background
    depth there) still opens."""
    plate, image, truth = _scene(2)
    yy, xx = np.mgrid[0:H, 0:W]
    camouflage = (np.abs(yy - 60) < 6) & (np.abs(xx - 62) < 6)
    image[camouflage] = (plate[camouflage] * 255 + 0.5).astype(np.uint8)  # subject pixels coloured like the plate
    truth[camouflage] = 1.0
    background_m = np.full((H, W), 3.0, np.float32)
    depth_m = np.where(truth > 0.5, 1.5, 3.0).astype(np.float32)
    depth_m[56:65, 76:85] = 3.0  # the real hole shows the room
    coarse = _coarse(truth)
    colour_only = EdgeRefiner()
    colour_only.set_plate(plate)
    assert colour_only(image, coarse, depth_m)[camouflage].mean() < 0.5  # without the room's depth: opened
    refiner = EdgeRefiner()
    refiner.set_plate(plate, background_m, np.full((H, W), 0.01, np.float32))
    refined = refiner(image, coarse, depth_m)
    assert refined[camouflage].mean() > 0.95
    assert refined[60, 80] < 0.2  # the hole is open again
    with pytest.raises(ValueError):
        refiner(image, coarse, depth_m[:60])


def test_the_lighting_gain_reads_the_subject_mask_from_a_crop_as_from_the_whole_frame():
    rng = np.random.default_rng(5)
    color = rng.integers(0, 256, (240, 330, 3), dtype=np.uint8)
    plate = rng.random((240, 330, 3), dtype=np.float32)
    outer = np.zeros((240, 330), np.uint8)
    outer[37:150, 61:203] = 255  # near the subject: left out of the fit
    whole = EdgeRefiner._gain(color, plate, outer, (0, 0))
    for y0, x0 in ((37, 61), (30, 55), (0, 0), (33, 59)):  # crops holding every marked pixel, on and off the grid
        crop = outer[y0:155, x0:210]
        np.testing.assert_array_equal(EdgeRefiner._gain(color, plate, crop, (y0, x0)), whole)
    assert not np.array_equal(whole, EdgeRefiner._gain(color, plate, np.zeros_like(outer), (0, 0)))  # the mask counts
