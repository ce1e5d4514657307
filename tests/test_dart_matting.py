"""Tests of engines.dart_matting.NetworkMatting on tiny random-init exported models (and, when present,
on the shipped trained models in assets/models)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.matting.background_prior import BackgroundPriorBuilder
from engines.config import DepthConfig
from engines.matting import dart_matting
from engines.matting.dart_matting import NetworkMatting, model_paths
from engines.matting.depth_bayes import depth_residual, fuse_error_maps, resize_depth
from engines.nets.base_net import BaseNet, student_config
from engines.matting.onnx_inference import resize_linear
from engines.matting.patches import select_patches_np
from engines.nets.onnx_export import export_base_net, export_refiner
from engines.nets.refiner import Refiner, RefinerConfig
from engines.synth.scene import SceneConfig, generate_scene
from sensors.errors import UserError

torch.set_num_threads(1)
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models"


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    student = BaseNet(student_config())
    _randomise(student, 1)
    export_base_net(student.eval(), folder / "student.onnx", (12, 16))
    for variant, aux in (("dart", 2), ("rgb", 0)):
        refiner = Refiner(RefinerConfig(aux_channels=aux))
        _randomise(refiner, 2 + aux)
        export_refiner(refiner.eval(), folder / f"refiner_{variant}.onnx")
    return folder


def _scene(width: int, height: int, seed: int):
    frames = list(generate_scene(SceneConfig(width=width, height=height, n_background=6, n_test=2, seed=seed)))
    builder = BackgroundPriorBuilder(height, width)
    for f in frames[:6]:
        builder.add(f.color, f.depth_m())
    return builder.build(DepthConfig()), frames[-1]


@pytest.fixture(scope="module")
def scene():
    return _scene(64, 48, 4)


def _run(model_dir, scene, **kw):
    prior, frame = scene
    matting = NetworkMatting(model_dir, **kw)
    matting.set_prior(prior)
    return matting, matting.process(frame.color, frame.depth_m())


def _check_selection(result, k):
    """The refined patches are exactly the top-k of the reported selection map (at 1/4 resolution)."""
    hq, wq = result.selected.shape
    y, x = select_patches_np(resize_linear(result.error_map, (hq, wq)), "topk", k)
    expected = np.zeros((hq, wq), bool)
    expected[y, x] = True
    np.testing.assert_array_equal(result.selected, expected)


def test_dart_shapes_ranges_and_fused_selection(model_dir, scene):
    matting, r = _run(model_dir, scene, k=20, depth_fusion=None)  # the paper's DART
    assert matting.refiner_aux == 2
    assert r.alpha.shape == (48, 64) and r.alpha.dtype == np.float32
    assert 0.0 <= r.alpha.min() and r.alpha.max() <= 1.0
    for m in (r.error_map, r.depth_posterior, r.raw_alpha, r.error_rgb):
        assert m.shape == (12, 16) and m.dtype == np.float32
    assert 0.0 <= r.depth_posterior.min() and r.depth_posterior.max() <= 1.0
    assert r.depth_evidence.shape == (12, 16) and 0.0 <= r.depth_evidence.min() and r.depth_evidence.max() <= 1.0
    expected = fuse_error_maps(depth_residual(r.depth_evidence, r.raw_alpha), r.error_rgb, DepthConfig().beta)
    np.testing.assert_allclose(r.error_map, expected, atol=1e-6)
    assert 0 < r.selected.sum() <= 20
    _check_selection(r, 20)
    assert {"student", "posterior", "fusion", "refiner", "total"} <= set(r.timings_ms)


def test_paper_residual_compares_raw_posterior(model_dir, scene):
    config = DepthConfig(calibrated_residual=False)
    _, r = _run(model_dir, scene, k=20, config=config, depth_fusion=None)
    assert r.depth_evidence is None
    expected = fuse_error_maps(depth_residual(r.depth_posterior, r.raw_alpha), r.error_rgb, config.beta)
    np.testing.assert_allclose(r.error_map, expected, atol=1e-6)
    _check_selection(r, 20)


def test_evidence_separates_subject_from_background(model_dir, scene):
    """The calibrated map is near 1 where the frame is clearly in front of the empty scene and near 0 on it,
    while raw A_D stays between (the reason eq. 9 uses it)."""
    prior, frame = scene
    _, r = _run(model_dir, scene, k=20)
    depth_small = resize_depth(frame.depth_m(), 16, 12)
    background = resize_depth(prior.depth_mean_m, 16, 12)
    closer = (depth_small > 0) & (depth_small < background - 0.3)
    on_background = (depth_small > 0) & (np.abs(depth_small - background) < 0.01)
    assert closer.any() and on_background.any()
    assert r.depth_evidence[closer].min() > 0.9 and r.depth_evidence[on_background].max() < 0.2
    assert r.depth_posterior[closer].max() < 0.75


def test_refiner_off_is_upsampled_coarse_alpha(model_dir, scene):
    _, r = _run(model_dir, scene, refiner=False)
    expected = np.clip(resize_linear(r.raw_alpha, (48, 64)), 0, 1)
    dart_matting._snap_alpha(expected)  # both alphas are snapped to 0 / 1 within ALPHA_SNAP
    np.testing.assert_allclose(r.alpha, expected, atol=1e-6)
    assert not r.selected.any()
    _, refined = _run(model_dir, scene, k=20)
    assert not np.allclose(refined.alpha, r.alpha)  # the refiner changed the selected patches


def test_no_error_map_correction_selects_by_rgb_error(model_dir, scene):
    matting, r = _run(model_dir, scene, use_error_map_correction=False, k=20, depth_fusion=None)
    assert matting.refiner_aux == 2  # still the RGB-D refiner
    np.testing.assert_array_equal(r.error_map, r.error_rgb)
    _check_selection(r, 20)


def test_no_depth_refiner_uses_rgb_refiner_with_fused_selection(model_dir, scene):
    matting, r = _run(model_dir, scene, use_depth_refiner=False, k=20)
    assert matting.refiner_aux == 0
    assert not np.array_equal(r.error_map, r.error_rgb)
    _check_selection(r, 20)
    matting2, both_off = _run(model_dir, scene, use_depth_refiner=False, use_error_map_correction=False, k=20,
                              depth_fusion=None)
    assert matting2.refiner_aux == 0
    np.testing.assert_array_equal(both_off.error_map, both_off.error_rgb)


def test_rgb_variant_ignores_depth(model_dir, scene):
    prior, frame = scene
    matting = NetworkMatting(model_dir, variant="rgb", k=20)
    matting.set_prior(prior)
    a = matting.process(frame.color, frame.depth_m())
    b = matting.process(frame.color, np.zeros_like(frame.depth_m()))
    assert a.depth_posterior is None and matting.refiner_aux == 0
    np.testing.assert_array_equal(a.alpha, b.alpha)


def test_missing_and_corrupt_models_raise_user_error(model_dir, tmp_path):
    with pytest.raises(UserError, match="student.onnx.*main.py train"):
        NetworkMatting(tmp_path)
    (tmp_path / "student.onnx").write_bytes((model_dir / "student.onnx").read_bytes())
    with pytest.raises(UserError, match="refiner_dart.onnx"):
        NetworkMatting(tmp_path)
    NetworkMatting(tmp_path, refiner=False)  # the student alone is enough without a refiner
    (tmp_path / "refiner_dart.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="refiner_dart.onnx is corrupt"):
        NetworkMatting(tmp_path)
    assert [p.name for p in model_paths(tmp_path, "rgb")] == ["student.onnx", "refiner_rgb.onnx"]


def test_frame_size_mismatch_and_no_prior(model_dir, scene):
    matting = NetworkMatting(model_dir, k=20)
    prior, frame = scene
    with pytest.raises(UserError):
        matting.process(frame.color, frame.depth_m())
    matting.set_prior(prior)
    with pytest.raises(UserError):
        matting.process(frame.color[:40], frame.depth_m()[:40])


@pytest.mark.skipif(not (SHIPPED / "student.onnx").is_file() or not (SHIPPED / "refiner_dart.onnx").is_file(),
                    reason="no shipped models in assets/models")
def test_shipped_dart_models_beat_all_background_answer():
    prior, frame = _scene(320, 240, 11)
    matting = NetworkMatting(SHIPPED)
    matting.set_prior(prior)
    r = matting.process(frame.color, frame.depth_m())
    gt = frame.alpha
    assert gt.sum() > 500  # the subject is in view
    sad = np.abs(r.alpha - gt).sum()
    sad_background = gt.sum()  # alpha = 0 everywhere
    assert sad < 0.35 * sad_background


def test_any_frame_size_is_padded_and_cropped_back(model_dir):
    """A size the networks cannot take (321x241: not a multiple of 4) mattes like its padded version."""
    prior, frame = _scene(65, 49, 5)
    matting = NetworkMatting(model_dir, k=20)
    matting.set_prior(prior)
    r = matting.process(frame.color, frame.depth_m())
    assert r.alpha.shape == (49, 65) and r.alpha.flags.c_contiguous
    assert r.raw_alpha.shape == r.error_map.shape == r.depth_posterior.shape == (13, 17)
    assert r.selected.shape == (13, 17)
    assert np.isfinite(r.alpha).all() and 0.0 <= r.alpha.min() and r.alpha.max() <= 1.0
    # Same as matting the edge-padded frame against the edge-padded prior, cropped.
    padded_prior = dart_matting._pad_prior(prior, 4)
    reference = NetworkMatting(model_dir, k=20)
    reference.set_prior(padded_prior)
    shape = padded_prior.shape
    expected = reference.process(dart_matting._pad_edge(frame.color, shape), dart_matting._pad_edge(frame.depth_m(), shape))
    np.testing.assert_allclose(r.alpha, expected.alpha[:49, :65], atol=1e-6)


def test_snap_alpha_is_the_same_on_a_frame_and_on_a_strided_view():
    """Full frames are snapped by OpenCV, views (the coarse stack's alpha channel) by numpy: the same values,
    with ALPHA_SNAP itself and 1 - ALPHA_SNAP kept, and out-of-range values snapped too."""
    snap = np.float32(dart_matting.ALPHA_SNAP)
    edge = [snap, np.nextafter(snap, np.float32(0)), np.float32(1) - snap, np.nextafter(np.float32(1) - snap, np.float32(2)),
            np.float32(-0.2), np.float32(1.3), np.float32(0.5), np.float32(0.0), np.float32(1.0)]
    values = np.concatenate([np.array(edge, np.float32), np.random.default_rng(3).random(991, dtype=np.float32)])
    frame = values.reshape(10, 100).copy()
    stack = np.zeros((10, 100, 3), np.float32)
    stack[..., 0] = frame
    dart_matting._snap_alpha(frame)
    dart_matting._snap_alpha(stack[..., 0])
    assert np.array_equal(frame, stack[..., 0])
    assert frame[0, 0] == snap and frame[0, 1] == 0 and frame[0, 2] == np.float32(1) - snap and frame[0, 3] == 1
    assert frame[0, 4] == 0 and frame[0, 5] == 1 and frame[0, 6] == np.float32(0.5)


def test_overlapped_stages_give_the_same_frames_as_one_thread(model_dir, scene):
    """With `overlap` the student runs on a worker thread beside the depth stages and the refiner's gathers
    are split over two threads: every output is bit-identical to the one-thread run, frame after frame, for
    both variants; one thread's stage timings add up to at most its total."""
    prior, frame = scene
    for variant in ("dart", "rgb"):
        runs = {}
        for overlap in (False, True):
            matting = NetworkMatting(model_dir, variant=variant, k=30, overlap=overlap)
            matting.set_prior(prior)
            runs[overlap] = [matting.process(frame.color, frame.depth_m()) for _ in range(2)]
            assert (matting._executor is not None) == overlap
            # beside the depth stages the student leaves them a core; the rgb variant has none to leave it for
            assert matting._onnx._base_session[2] == (1 if overlap and variant == "dart" else None)
        for serial, overlapped in zip(runs[False], runs[True]):
            for field in ("alpha", "error_map", "raw_alpha", "error_rgb", "selected"):
                np.testing.assert_array_equal(getattr(serial, field), getattr(overlapped, field))
            assert set(serial.timings_ms) == set(overlapped.timings_ms) >= {"student", "posterior", "refiner", "total"}
            stages = sum(serial.timings_ms[name] for name in ("prepare", "student", "posterior", "fusion", "refiner"))
            assert stages <= serial.timings_ms["total"] + 1e-6  # one thread: the stages do not overlap


def test_frame_preparation_in_two_bands_equals_the_whole_frame():
    """`prepare_band` (the top band on the worker, the rest here) gives the float frame and its area
    downsampling bit for bit as one pass over the whole frame, for frame sizes and downsamplings the engine uses."""
    from engines.matting.onnx_inference import downsample_area, prepare_band

    rng = np.random.default_rng(0)
    for height, width, c in [(480, 640, 4), (720, 1280, 8), (484, 644, 4), (136, 96, 8)]:
        color = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        whole = color.astype(np.float32) * np.float32(1.0 / 255.0)
        src, small = np.empty_like(whole), np.empty((height // c, width // c, 3), np.float32)
        split = (height // c // 2) * c
        prepare_band(color, src, small, c, 0, split)
        prepare_band(color, src, small, c, split, height)
        np.testing.assert_array_equal(src, whole)
        np.testing.assert_array_equal(small, downsample_area(whole, (height // c, width // c)))


def test_a_prior_whose_session_cannot_be_reopened_is_not_taken(model_dir, scene, monkeypatch):
    """`set_prior` fixes the student's input size first: when that fails (the model file gone) the error says
    so and no half-made prior is left behind for frames to fail on."""
    prior, _ = scene
    matting = NetworkMatting(model_dir, k=30)

    def gone(h, w):
        raise UserError("Model file student.onnx does not exist; check the path or export the model first.")

    monkeypatch.setattr(matting._onnx, "fix_base_size", gone)
    with pytest.raises(UserError, match="does not exist"):
        matting.set_prior(prior)
    assert not matting.has_prior
