"""DART's depth stages on real Kinect depth: a person walking towards the camera (UR Fall Detection).

The sequence (98 frames, 640x480, ../shared/data/urfd_depth_sequence, tests only: CC BY-NC-SA) has no
empty frame: the person is visible, small and far, from the first frame on and stands near the back
wall for about 40 frames. A plain per-pixel median would keep them in the "empty" scene there, so the
empty scene is modelled from the farther half of each pixel's valid samples (the person is always in
front of the background): mean = median of the samples at or behind the pixel's median, std = 1.4826 *
their median absolute deviation, then eq. 4's fallbacks and the std floor (`eq4_mean_std`).
Everything runs at the working resolution (160x120, nearest samples, as `DepthMatting` does).
"""

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.matting.background_prior import BackgroundPrior, eq4_mean_std
from engines.config import DepthConfig
from engines.matting.depth_bayes import LikelihoodTables, clean_posterior, depth_posterior, resize_depth
from engines.matting.depth_matting import DepthMatting

SEQUENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "urfd_depth_sequence"
CFG = DepthConfig()
WORK_W, WORK_H = 160, 120
EARLY = range(0, 10)  # far away, near the back wall
LATE = range(60, 70)  # walking towards the camera, before the fall


@pytest.fixture(scope="module")
def work_depths() -> np.ndarray:
    """(98, 120, 160) float32 metres at the working resolution; 0 = invalid."""
    files = sorted(SEQUENCE.glob("fall-01-cam0-d-*.png"))
    if not files:
        pytest.skip("../shared/data/urfd_depth_sequence is not available in this checkout")
    frames = []
    for path in files:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert raw is not None and raw.dtype == np.uint16 and raw.shape == (480, 640)
        depth_m = raw.astype(np.float32) * np.float32(6.0 / 65535.0)  # value * 6000 / 65535 mm
        frames.append(resize_depth(depth_m, WORK_W, WORK_H))
    assert len(frames) == 98
    return np.stack(frames)


@pytest.fixture(scope="module")
def empty_scene(work_depths) -> BackgroundPrior:
    valid = work_depths > 0
    count = valid.sum(axis=0)
    samples = np.where(valid, work_depths, np.nan)
    with warnings.catch_warnings():  # all-NaN pixels (never valid) are handled by eq. 4's fallbacks
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(samples, axis=0)
        far = np.where(samples >= median, samples, np.nan)
        mean = np.nanmedian(far, axis=0)
        spread = 1.4826 * np.nanmedian(np.abs(far - mean), axis=0)
    mean, std = eq4_mean_std(np.nan_to_num(mean), np.nan_to_num(spread), count, CFG)
    return BackgroundPrior(
        depth_mean_m=mean,
        depth_std_m=std,
        valid_count=count.astype(np.int32),
        color_mean=np.full((WORK_H, WORK_W, 3), 0.5, np.float32),  # no colour in this data set
        n_frames=int(work_depths.shape[0]),
    )


def _components(mask: np.ndarray) -> np.ndarray:
    """Areas of the 8-connected components of a boolean mask, largest first."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1] if n > 1 else np.zeros(0, np.int64)


def _largest_share_and_area(mask: np.ndarray) -> tuple[float, int]:
    areas = _components(mask)
    if areas.size == 0:
        return 0.0, 0
    return float(areas[0] / areas.sum()), int(areas[0])


def test_paper_posterior_and_cleaning_find_the_person(work_depths, empty_scene):
    tables = LikelihoodTables.from_prior(empty_scene)
    shares, areas, raw_counts = {}, {}, {}
    for i in list(EARLY) + list(LATE):
        posterior = depth_posterior(work_depths[i], tables, CFG)
        raw_counts[i] = int(np.count_nonzero(posterior > CFG.prior_fg))
        cleaned = clean_posterior(posterior, CFG)
        shares[i], areas[i] = _largest_share_and_area(cleaned > CFG.prior_fg)
    # Without cleaning, sensor flicker gives hundreds of isolated "foreground" pixels everywhere.
    assert np.median(list(raw_counts.values())) > 2 * np.median(list(areas.values()))
    # After cleaning, the person is (nearly) the only region left...
    assert np.median([shares[i] for i in LATE]) > 0.95
    assert np.median([shares[i] for i in EARLY]) > 0.5
    # ...and grows as they approach: about 20-60 work pixels (0.1-0.3%) early, several hundred later.
    early = np.median([areas[i] for i in EARLY])
    late = np.median([areas[i] for i in LATE])
    assert early >= 20 and late > 3 * early


def test_depth_only_matte_tracks_the_person(work_depths, empty_scene):
    # DepthMatting works on full-resolution frames: hand it the prior and frames upsampled 4x with
    # nearest neighbour, which its own nearest downsampling maps back to exactly these samples.
    full_prior = empty_scene.resized(640, 480)
    assert np.array_equal(full_prior.resized(WORK_W, WORK_H).depth_mean_m, empty_scene.depth_mean_m)
    matting = DepthMatting(CFG)
    matting.set_prior(full_prior)
    grey = np.full((480, 640, 3), 128, np.uint8)
    areas, shares, strays, bounding = {}, {}, {}, {}
    for i in list(EARLY) + list(LATE):
        depth = cv2.resize(work_depths[i], (640, 480), interpolation=cv2.INTER_NEAREST)
        result = matting.process(grey, depth)
        mask = result.evidence > 0.5
        shares[i], areas[i] = _largest_share_and_area(mask)
        alpha_work = cv2.resize(result.alpha, (WORK_W, WORK_H), interpolation=cv2.INTER_AREA)
        ys, xs = np.nonzero(mask)
        box = np.zeros_like(mask)
        if ys.size:
            box[max(ys.min() - 4, 0): ys.max() + 5, max(xs.min() - 4, 0): xs.max() + 5] = True
            bounding[i] = (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
        strays[i] = float(alpha_work[~box].max()) if (~box).any() else 0.0
    # One coherent region: early on, 4 m away and 0.5 m in front of the wall (coarse Kinect depth), the
    # head sometimes separates from the body; later the person is a single region.
    assert min(shares.values()) > 0.8
    assert min(shares[i] for i in LATE) > 0.99
    assert max(strays.values()) < 0.1  # the matte is empty away from the person
    early = np.median([areas[i] for i in EARLY])
    late = np.median([areas[i] for i in LATE])
    assert 100 <= early <= 700  # a small, far person: 0.5-3.5% of the image
    assert late > 2 * early
    # A standing person: taller than wide in every frame before the fall.
    assert all(h > w for h, w in bounding.values())
