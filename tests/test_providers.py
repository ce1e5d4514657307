"""Tests of engines.matting.providers: provider choice, session settings, IO binding and FP16, all run on
the CPU provider (the GPU path's code runs here; GPU speed is not measured by tests)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from engines.matting import providers as pv
from engines.matting.dart_matting import NetworkMatting
from engines.matting.background_prior import BackgroundPriorBuilder
from engines.config import DepthConfig
from engines.synth.scene import SceneConfig, generate_scene
from sensors.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "models"
CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_providers_are_chosen_by_preference_and_device():
    assert pv.resolve_providers("auto", [CPU]) == [CPU]
    assert pv.resolve_providers("auto", [CPU, CUDA]) == [CUDA, CPU]
    assert pv.resolve_providers("auto", [CUDA, CPU, TRT]) == [TRT, CUDA, CPU]
    assert pv.resolve_providers("cpu", [TRT, CUDA, CPU]) == [CPU]
    assert pv.resolve_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    assert pv.is_gpu([CUDA, CPU]) and not pv.is_gpu([CPU])


def test_cuda_without_gpu_provider_and_unknown_device_are_one_sentence():
    with pytest.raises(UserError, match="No GPU provider") as info:
        pv.resolve_providers("cuda", [CPU])
    assert info.value.exit_code == 2 and str(info.value).count(". ") == 0
    with pytest.raises(UserError, match="Unknown device"):
        pv.resolve_providers("tpu", [CPU])


@pytest.mark.skipif(any(p in ort.get_available_providers() for p in pv.GPU_PROVIDERS), reason="a GPU provider exists")
def test_bench_speed_device_cuda_fails_with_one_line():
    done = subprocess.run([sys.executable, "main.py", "bench-speed", "--device", "cuda"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "No GPU provider" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_session_settings_and_tensorrt_options():
    options = pv.session_options(pv.SessionSettings(intra_op_threads=1, inter_op_threads=1))
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert pv.session_options(pv.SessionSettings(spinning=True)).get_session_config_entry(
        "session.intra_op.allow_spinning") == "1"
    with pytest.raises(ValueError, match="optimisation level"):
        pv.session_options(pv.SessionSettings(optimization="max"))
    entries = pv.provider_entries([TRT, CUDA, CPU], fp16=True, cache_dir=Path("/tmp/cache"))
    assert entries[0][0] == TRT and entries[0][1]["trt_fp16_enable"] is True
    assert entries[0][1]["trt_engine_cache_path"] == "/tmp/cache" and entries[1:] == [CUDA, CPU]


def _patch_feed(session, n=7):
    rng = np.random.default_rng(0)
    return {i.name: rng.random((n, *i.shape[1:]), dtype=np.float32) for i in session.get_inputs()}


def test_io_binding_gives_the_plain_session_outputs():
    path = SHIPPED / "refiner_dart.onnx"
    plain = pv.open_session(path, [CPU], 1)
    assert pv.bind(plain, pv.SessionSettings()) is plain  # CPU: no binding unless asked
    bound = pv.bind(plain, pv.SessionSettings(io_binding=True))
    assert isinstance(bound, pv.BoundSession) and bound.get_providers() == plain.get_providers()
    feed = _patch_feed(plain)
    (expected,) = plain.run(["patch_out_phases"], feed)
    (got,) = bound.run(["patch_out_phases"], feed)
    np.testing.assert_array_equal(got, expected)


def test_fp16_model_is_close_to_float():
    path = SHIPPED / "refiner_dart.onnx"
    plain = pv.open_session(path, [CPU], 1)
    half = ort.InferenceSession(pv.fp16_model_bytes(path), providers=[CPU])
    feed = _patch_feed(plain)
    assert np.abs(half.run(None, feed)[0] - plain.run(None, feed)[0]).max() < 0.01


def test_fp16_student_keeps_float_outputs_close_to_float():
    """The student's channels-last `coarse_raw` stays float32 (keep_io_types) and close to float."""
    path = SHIPPED / "student.onnx"
    plain = pv.open_session(path, [CPU], 1)
    half = ort.InferenceSession(pv.fp16_model_bytes(path), providers=[CPU])
    rng = np.random.default_rng(6)
    feed = {name: rng.random((1, 3, 120, 160), dtype=np.float32) for name in ("src", "bgr")}
    for got, expected in zip(half.run(["coarse_raw"], feed), plain.run(["coarse_raw"], feed)):
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() < 0.02


def test_network_matting_through_io_binding_matches():
    frames = list(generate_scene(SceneConfig(width=160, height=120, n_background=4, n_test=1, seed=2)))
    builder = BackgroundPriorBuilder(120, 160)
    for f in frames[:4]:
        builder.add(f.color, f.depth_m())
    prior, frame = builder.build(DepthConfig()), frames[-1]
    results = []
    for settings in (pv.SessionSettings(intra_op_threads=1), pv.SessionSettings(intra_op_threads=1, io_binding=True)):
        matting = NetworkMatting(SHIPPED, k=50, device="cpu", precision="float", session=settings)
        matting.set_prior(prior)
        results.append(matting.process(frame.color, frame.depth_m()).alpha)
    np.testing.assert_array_equal(results[0], results[1])
