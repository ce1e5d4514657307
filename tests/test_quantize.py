"""Tests of engines.nets.quantize and of how engines.matting.dart_matting picks INT8 files: quantised outputs
stay close to the float ones, the INT8 file is used only while it matches its float model."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.config import DepthConfig
from engines.matting.background_prior import BackgroundPriorBuilder
from engines.matting.dart_matting import NetworkMatting, int8_path, network_file
from engines.nets import quantize
from engines.nets.base_net import BaseNet, student_config
from engines.nets.onnx_export import export_base_net, export_refiner
from engines.nets.refiner import Refiner, RefinerConfig
from engines.synth.scene import SceneConfig, generate_scene
from sensors.errors import UserError

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models"


def _scene(width, height, seed, n_background=3, n_test=2):
    config = SceneConfig(width=width, height=height, n_background=n_background, n_test=n_test, seed=seed)
    return [(f.color, f.depth_m()) for f in generate_scene(config)]


def _prior(frames, n):
    h, w = frames[0][0].shape[:2]
    builder = BackgroundPriorBuilder(h, w)
    for color, depth in frames[:n]:
        builder.add(color, depth)
    return builder.build(DepthConfig())


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """Tiny random student and refiners with their INT8 copies, calibrated on two generated scenes."""
    folder = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    export_base_net(BaseNet(student_config()).eval(), folder / "student.onnx", (12, 16))
    for variant, aux in (("dart", 2), ("rgb", 0)):
        export_refiner(Refiner(RefinerConfig(aux_channels=aux)).eval(), folder / f"refiner_{variant}.onnx")
    scenes = [_scene(64, 48, seed) for seed in (11, 12)]
    written = quantize.quantize_model_dir(folder, folder, scenes, quantize.QuantizeConfig(background_frames=3, k=20))
    assert sorted(p.name for p in written) == ["refiner_dart_int8.onnx", "refiner_rgb_int8.onnx", "student_int8.onnx"]
    return folder


def test_int8_files_record_their_float_model_and_are_chosen_on_cpu(tiny_dir):
    import onnx

    float_path = tiny_dir / "student.onnx"
    props = {p.key: p.value for p in onnx.load(str(int8_path(float_path))).metadata_props}
    assert props["float_sha256"] == quantize.file_sha256(float_path)
    assert network_file(float_path, "auto") == int8_path(float_path)
    assert network_file(float_path, "auto", gpu=True) == float_path  # GPUs run the float model (FP16)
    assert network_file(float_path, "float") == float_path
    matting = NetworkMatting(tiny_dir, k=20, device="cpu")
    assert [p.name for p in matting.files] == ["student_int8.onnx", "refiner_dart_int8.onnx"]


def test_stale_or_missing_int8_file_falls_back_or_fails(tiny_dir, tmp_path, caplog):
    folder = tmp_path / "models"
    shutil.copytree(tiny_dir, folder)
    student = folder / "student.onnx"
    with caplog.at_level(logging.WARNING):
        torch.manual_seed(1)
        export_base_net(BaseNet(student_config()).eval(), student, (12, 16))  # retrained: the INT8 copy is stale
        assert network_file(student, "auto") == student
    assert "made from another student.onnx" in caplog.text
    with pytest.raises(UserError, match="was made from another student.onnx"):
        network_file(student, "int8")
    int8_path(student).unlink()
    assert network_file(student, "auto") == student
    with pytest.raises(UserError, match="missing; run `python main.py bench-speed --quantize-to"):
        network_file(student, "int8")
    with pytest.raises(UserError, match="Unknown precision"):
        network_file(student, "int4")


def test_quantised_tiny_networks_match_float_ones(tiny_dir):
    frames = _scene(64, 48, 21)
    prior = _prior(frames, 3)
    alphas = []
    for precision in ("float", "int8"):
        matting = NetworkMatting(tiny_dir, k=20, precision=precision, device="cpu")
        matting.set_prior(prior)
        alphas.append(matting.process(*frames[-1]).alpha)
    assert np.abs(alphas[0] - alphas[1]).mean() < 0.05


@pytest.mark.skipif(not (SHIPPED / "student_int8.onnx").is_file(), reason="no shipped INT8 models")
def test_shipped_int8_networks_match_float_ones():
    frames = _scene(320, 240, 31, n_background=6, n_test=1)
    prior = _prior(frames, 6)
    results = []
    for precision in ("float", "int8"):
        matting = NetworkMatting(SHIPPED, k=200, precision=precision, device="cpu")
        matting.set_prior(prior)
        results.append(matting.process(*frames[-1]))
    float_alpha, int8_alpha = results[0].alpha, results[1].alpha
    assert np.abs(float_alpha - int8_alpha).mean() < 0.01
    assert ((float_alpha > 0.5) != (int8_alpha > 0.5)).mean() < 0.01
    assert (results[0].selected & results[1].selected).sum() >= 0.7 * results[0].selected.sum()


def test_calibration_needs_frames_to_matte(tiny_dir):
    with pytest.raises(ValueError, match="more than 3 frames"):
        quantize.record_feeds(tiny_dir, [_scene(64, 48, 5, n_background=3, n_test=0)], config=quantize.QuantizeConfig(background_frames=3))
    with pytest.raises(ValueError, match="no calibration inputs"):
        quantize.quantize_model(tiny_dir / "student.onnx", tiny_dir / "x.onnx", [])


def test_shipped_int8_networks_leave_the_background_at_exactly_zero():
    # Before: the INT8 outputs, quantised in ~1/255 steps, left 0.003-0.008 on 77% of the background
    # (synthetic-suite DART SAD 3.52 -> 4.22); the float networks give 0 there.
    from engines.config import DepthConfig, EngineConfig
    from engines.matting.background_prior import build_prior
    from engines.matting.pipeline import MattingPipeline
    from engines.synth.scene import SceneConfig, generate_scene

    scene = list(generate_scene(SceneConfig(width=320, height=240, n_background=10, n_test=1, seed=2024)))
    prior, _ = build_prior(scene[:10], 10, DepthConfig())
    pipeline = MattingPipeline(EngineConfig(mode="dart", edge_refine=False))
    pipeline.set_prior(prior)
    frame = scene[-1]
    alpha = pipeline.process(frame.color, frame.depth_m()).alpha
    background = frame.alpha == 0
    assert (alpha[background] == 0).mean() > 0.9  # 0.23 before; 0.98 with ../shared textures, 0.977 without
