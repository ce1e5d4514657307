"""The semi-real accuracy suite (engines/evaluation/semireal.py) on a small real run.

Needs ../shared/data/alphamatting_dev (evaluation-only photos, never shipped): those tests skip without
it. The command-line message for a missing data folder is checked everywhere.
"""

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from engines.config import EngineConfig
from engines.evaluation import semireal
from engines.evaluation.benchmark import ALL_BACKGROUND

SMALL = semireal.SemiRealConfig(width=160, height=120, background_frames=6, test_frames=2, seed=11,
                                backgrounds=("room", "tum"), foregrounds=("GT05", "GT14"))


@pytest.fixture
def data(shared_data: Path) -> Path:
    if not (shared_data / semireal.FOREGROUND_DIR).is_dir():
        pytest.skip("../shared/data/alphamatting_dev is not available")
    return shared_data


@lru_cache(maxsize=1)
def _foregrounds(root: str) -> list:
    return semireal.load_foregrounds(root, SMALL.foregrounds)


def _scenes(root: Path, config=SMALL) -> list:
    return list(semireal.semireal_scenes(config, root, _foregrounds(str(root))))


def test_scenes_are_deterministic_for_a_seed(data):
    first, again = _scenes(data), _scenes(data)
    assert [s.name for s in first] == ["room", semireal.BACKGROUND_NAMES["tum"]]
    for a, b in zip(first, again):
        assert a.foregrounds == b.foregrounds and a.placements == b.placements
        assert len(a.frames) == SMALL.background_frames + 1
        for fa, fb in zip(a.frames, b.frames):
            assert np.array_equal(fa.color, fb.color) and np.array_equal(fa.depth_raw, fb.depth_raw)
            assert np.array_equal(fa.alpha, fb.alpha)
    other = _scenes(data, replace(SMALL, seed=12))
    assert not np.array_equal(other[0].tests[0].color, first[0].tests[0].color)


def test_frame_alpha_is_the_composited_ground_truth(data):
    fgs = {fg.name: fg for fg in _foregrounds(str(data))}
    for scene in _scenes(data):
        assert all(not f.alpha.any() for f in scene.frames[:scene.background_frames])
        background = scene.frames[0].color.astype(np.float32)
        for frame, name, p in zip(scene.tests, scene.foregrounds, scene.placements):
            fg = fgs[name]
            # The ground truth placed independently: the photo's alpha, cropped, resized, pasted.
            y0, y1, x0, x1 = p.box
            resized = cv2.resize(fg.alpha[y0:y1, x0:x1], p.size[::-1], interpolation=cv2.INTER_AREA)
            canvas = np.zeros((SMALL.height + 2 * p.size[0], SMALL.width + 2 * p.size[1]), np.float32)
            oy, ox = p.offset[0] + p.size[0], p.offset[1] + p.size[1]
            canvas[oy:oy + p.size[0], ox:ox + p.size[1]] = resized
            expected = canvas[p.size[0]:p.size[0] + SMALL.height, p.size[1]:p.size[1] + SMALL.width]
            shown = frame.alpha > 0
            assert shown.mean() > 0.02
            assert np.abs(frame.alpha - expected)[shown].max() < 2e-3  # equal up to snapping at 0 and 1
            assert (frame.alpha[~shown] == 0).all() and (expected[~shown] > 0.5).mean() < 0.02  # few occluded
            # The colour image is that composite: the opaque core shows the foreground, not the room.
            core = cv2.erode((frame.alpha == 1).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            away = cv2.dilate(shown.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
            change = np.abs(frame.color.astype(np.float32) - background).mean(axis=2)
            assert change[core].mean() > 2 * change[away].mean()


def test_depth_mode_is_far_better_than_all_background(data):
    config = replace(SMALL, backgrounds=("room",))
    rows = {r.mode: r for r in semireal.semireal_benchmark({"depth": EngineConfig(mode="depth")}, config, data)}
    assert list(rows) == [ALL_BACKGROUND, semireal.HARD_MASK, "depth"]
    assert all(r.frames == 2 for r in rows.values())
    sad = {name: r.metrics["SAD"] for name, r in rows.items()}
    assert sad["depth"] < 0.3 * sad[ALL_BACKGROUND]
    assert sad[semireal.HARD_MASK] < 0.1 * sad[ALL_BACKGROUND]


def test_cli_without_the_data_says_one_sentence(tmp_path, capsys, monkeypatch):
    code = main.main(["bench-accuracy", "--suite", "semi-real", "--data", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0 and err.endswith(".") and ". " not in err, err
    assert f"{tmp_path / 'missing'}/alphamatting_dev" in err and "--suite synthetic" in err
    assert "Traceback" not in err
    monkeypatch.setattr(semireal, "default_data_root", lambda: tmp_path / "absent")
    assert main.main(["bench-accuracy"]) == 1  # the default suite is semi-real
    err = capsys.readouterr().err.strip()
    assert "needs ../shared/data/alphamatting_dev (evaluation-only data not shipped with the project)" in err
    assert main.main(["bench-accuracy", "--scenes", "6"]) == 2  # a synthetic-only option is not ignored
    assert "--suite synthetic" in capsys.readouterr().err
