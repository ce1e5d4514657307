"""Scene adaptation (issue 15): the teacher labels a take without reading ground truth, mixed batches,
the adapted student is written only when it validates better, cancel writes nothing, the command line,
and the benchmark's bookkeeping. Tiny frames and a few training steps only."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.nets.base_net import BaseNet, save_weights, student_config
from engines.training.adapt import AdaptCancelled, AdaptConfig, adapt_to_take
from engines.training.adapt_data import (
    TeacherConfig,
    label_take,
    mixed_batch,
    read_saved_take,
    read_take,
    take_pool,
    teacher_doubt,
)
from engines.training.data import AugmentConfig, build_pool

torch.set_num_threads(1)
H, W = 48, 64
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from engines.synth.scene import SceneConfig, write_scene

    return write_scene(SceneConfig(width=W, height=H, n_background=4, n_test=6, seed=5),
                       tmp_path_factory.mktemp("adapt") / "rec")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    from engines.nets.onnx_export import export_base_net, export_refiner
    from engines.nets.refiner import Refiner, RefinerConfig

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    student = BaseNet(student_config()).eval()
    save_weights(student, folder / "student.safetensors")
    export_base_net(student, folder / "student.onnx", (12, 16))
    refiner = Refiner(RefinerConfig(aux_channels=2)).eval()
    save_weights(refiner, folder / "refiner_dart.safetensors")
    export_refiner(refiner, folder / "refiner_dart.onnx")
    return folder


def _config(**kw) -> AdaptConfig:
    base = dict(budget_s=600.0, max_steps=2, height=H, width=W, batch_size=2, generic_samples=3, generic_val=2)
    base.update(kw)
    return AdaptConfig(**base)


def test_read_take_never_opens_ground_truth(recording, tmp_path):
    import shutil

    copy = Path(shutil.copytree(recording, tmp_path / "rec"))
    for path in (copy / "alpha").iterdir():
        path.write_bytes(b"not a png")  # reading any of them would fail
    take = read_take(copy, take_frames=5, max_frames=3)
    assert take.color.shape == (3, H, W, 3) and take.depth_m.shape == (3, H, W)
    assert list(take.index) == [4, 6, 8] and take.prior.shape == (H, W)


def test_read_take_without_background_count_is_one_sentence(tmp_path):
    from sensors.errors import UserError

    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(UserError, match="empty-scene frames"):
        read_take(tmp_path)


def test_teacher_labels_and_drops_unsure_frames(recording):
    take = read_take(recording)
    labels = label_take(take)
    assert labels.alpha.shape == labels.weight.shape == (6, H, W)
    assert labels.alpha.min() >= 0 and labels.alpha.max() <= 1 and labels.alpha.max() > 0.5
    assert set(np.unique(labels.weight)) <= {np.float32(1.0), np.float32(0.7), np.float32(0.25)}
    strict = label_take(take, TeacherConfig(max_unknown_fraction=0.0))
    assert not strict.kept.any() and len(strict.dropped) == 6
    stopped = label_take(take, should_stop=lambda: True)
    assert set(stopped.dropped.values()) == {"stopped"}


def test_teacher_doubt_judges_the_subject_not_the_faint_halo():
    alpha = np.zeros((120, 160), np.float32)
    alpha[30:90, 60:100] = 1.0  # the subject
    halo = alpha.copy()
    halo[10:110, 20:140] = np.maximum(halo[10:110, 20:140], 0.1)  # a faint, wide halo around it
    depth = np.full(alpha.shape, 2.0, np.float32)
    depth[halo > 0] = 0.0
    depth[alpha > 0.5] = 1.0  # depth is missing on the halo only, not on the subject
    weight, reason = teacher_doubt(halo, None, depth, TeacherConfig())
    assert reason is None
    assert weight[50, 80] == 1.0 and weight[60, 55] == np.float32(0.25) and weight[15, 25] == 1.0
    depth[alpha > 0.5] = 0.0  # now the subject itself has no depth
    weight, reason = teacher_doubt(halo, None, depth, TeacherConfig())
    assert reason is not None and "depth missing" in reason and weight[50, 80] == np.float32(0.25)
    trimap = np.where(alpha > 0.5, 1.0, 0.0)
    trimap[:, :60] = 0.5  # an unknown band over more than a quarter of the image
    assert "unknown band" in teacher_doubt(alpha, trimap, np.ones_like(depth), TeacherConfig())[1]


def test_mixed_batch_takes_the_scene_share_with_its_weights(recording):
    take = read_take(recording)
    labels = label_take(take)
    labels.weight[:] = 0.5
    scene, scene_w = take_pool(take, labels, np.arange(3), H, W)
    generic = build_pool(3, H, W, seed=1)
    batch = mixed_batch(generic, scene, scene_w, np.random.default_rng(0), 5, 0.4, 4, AugmentConfig.none())
    assert batch["image"].shape == (5, 3, H // 4, W // 4) and batch["weight"].shape == (5, 1, H // 4, W // 4)
    means = batch["weight"].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, [0.5, 0.5, 1, 1, 1], atol=0.01)


def test_rejected_adaptation_keeps_the_generic_student(recording, models, tmp_path):
    take = read_take(recording)
    result = adapt_to_take(take, models, tmp_path / "out", _config(generic_tolerance=-1.0, refiner_share=0.25))
    assert not result.accepted and "kept the generic" in result.reason
    out = tmp_path / "out"
    assert (out / "student.onnx").read_bytes() == (models / "student.onnx").read_bytes()
    assert (out / "refiner_dart.onnx").read_bytes() == (models / "refiner_dart.onnx").read_bytes()
    saved = json.loads((out / "adapt.json").read_text())
    assert saved["steps"] == 2 and saved["frames"]["take"] == 6 and not saved["accepted"]
    assert saved["refiner"]["steps"] == 2 and not saved["refiner"]["accepted"]
    assert set(saved["refiner"]["errors"]) == {"take_before", "take_after", "generic_before", "generic_after"}


def test_adapted_refiner_is_written_and_runs(recording, models, tmp_path, monkeypatch):
    import engines.training.adapt as adapt
    import engines.training.adapt_refiner as adapt_refiner

    student_errors = iter([0.1, 0.2, 0.3, 0.2])  # the student is not better: only the refiner is adapted
    monkeypatch.setattr(adapt, "coarse_error", lambda *a, **k: next(student_errors))
    refined = iter([0.3, 0.2, 0.1, 0.2])  # take before, generic before, take after, generic after
    monkeypatch.setattr(adapt_refiner, "refined_mad", lambda *a, **k: {"refined_mad": next(refined)})
    result = adapt.adapt_to_take(read_take(recording), models, tmp_path / "out", _config(refiner_share=0.5))
    assert result.accepted and result.refiner["accepted"] and "refiner adapted" in result.reason
    out = tmp_path / "out"
    assert (out / "student.onnx").read_bytes() == (models / "student.onnx").read_bytes()
    assert (out / "refiner_dart.onnx").read_bytes() != (models / "refiner_dart.onnx").read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    from engines.config import EngineConfig
    from engines.matting.pipeline import MattingPipeline

    take = read_take(recording)
    pipeline = MattingPipeline(EngineConfig(mode="dart", model_dir=str(out)))
    pipeline.set_prior(take.prior)
    assert pipeline.process(take.color[0], take.depth_m[0]).alpha.shape == (H, W)


def test_accepted_adaptation_writes_a_working_student(recording, models, tmp_path, monkeypatch):
    import engines.training.adapt as adapt

    errors = iter([0.3, 0.2, 0.1, 0.2])  # take before, generic before, take after, generic after
    monkeypatch.setattr(adapt, "coarse_error", lambda *a, **k: next(errors))
    events = []
    result = adapt.adapt_to_take(read_take(recording), models, tmp_path / "out", _config(), on_log=events.append)
    assert result.accepted and result.refiner == {}  # by default only the student is adapted
    out = tmp_path / "out"
    assert (out / "student.onnx").read_bytes() != (models / "student.onnx").read_bytes()
    assert (out / "refiner_dart.onnx").read_bytes() == (models / "refiner_dart.onnx").read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    progress = [e["fraction"] for e in events if e.get("event") == "progress"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    from engines.config import EngineConfig
    from engines.matting.pipeline import MattingPipeline

    take = read_take(recording)
    pipeline = MattingPipeline(EngineConfig(mode="dart", model_dir=str(out)))
    pipeline.set_prior(take.prior)
    assert pipeline.process(take.color[0], take.depth_m[0]).alpha.shape == (H, W)


def test_refiner_weights_that_do_not_fit_leave_the_student_adapted(recording, models, tmp_path, monkeypatch):
    import shutil

    import engines.training.adapt as adapt

    broken = Path(shutil.copytree(models, tmp_path / "models"))
    save_weights(BaseNet(student_config()).eval(), broken / "refiner_dart.safetensors")  # not a refiner
    errors = iter([0.3, 0.2, 0.1, 0.2])
    monkeypatch.setattr(adapt, "coarse_error", lambda *a, **k: next(errors))
    result = adapt.adapt_to_take(read_take(recording), broken, tmp_path / "out", _config(refiner_share=0.5))
    assert result.accepted and result.student_accepted and not result.refiner_accepted
    assert "does not fit" in result.refiner["failed"]
    assert (tmp_path / "out" / "refiner_dart.onnx").read_bytes() == (broken / "refiner_dart.onnx").read_bytes()


def test_cancel_writes_nothing(recording, models, tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(AdaptCancelled):
        adapt_to_take(read_take(recording), models, tmp_path / "out", _config(), should_stop=stop)
    assert not (tmp_path / "out").exists()


def test_saved_take_roundtrip_and_mismatch(recording, tmp_path):
    from sensors.errors import UserError

    take = read_take(recording)
    prior_path = tmp_path / "prior.npz"
    take.prior.save(prior_path)
    np.savez(tmp_path / "take.npz", color=take.color, depth_mm=(take.depth_m * 1000).astype(np.uint16))
    again = read_saved_take(tmp_path / "take.npz", prior_path)
    assert again.color.shape == take.color.shape
    np.testing.assert_allclose(again.depth_m, take.depth_m, atol=1e-3)
    np.savez(tmp_path / "bad.npz", color=take.color[:, :8], depth_mm=np.zeros((6, 8, W), np.uint16))
    with pytest.raises(UserError, match="does not match"):
        read_saved_take(tmp_path / "bad.npz", prior_path)


def _main(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_train_scene_command_adapts_and_process_uses_it(recording, models, tmp_path):
    out = tmp_path / "adapted"
    run = _main("train", "--scene", str(recording), "--out", str(out), "--models", str(models), "--size", "64x48",
                "--generic-samples", "3", "--budget-minutes", "0.01", "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert "models in" in run.stdout and (out / "adapt.json").is_file() and (out / "student.onnx").is_file()
    processed = _main("process", str(recording), "--out", str(tmp_path / "p"), "--mode", "dart", "--models", str(out))
    assert processed.returncode == 0, processed.stderr
    assert len(list((tmp_path / "p" / "alpha").glob("*.png"))) == 6


def test_train_take_without_prior_is_a_usage_error(tmp_path):
    run = _main("train", "--take", str(tmp_path / "t.npz"), "--out", str(tmp_path / "o"))
    assert run.returncode == 2 and "--prior" in run.stderr and "Traceback" not in run.stderr


def test_benchmark_scores_every_row_and_reuses_checkpoints(tmp_path, models):
    from engines.evaluation.adaptation import (ADAPTED, DEPTH_ROW, GENERIC, AdaptBenchConfig, adaptation_benchmark,
                                               synthetic_adapt_scenes)
    from engines.training.adapt_data import teacher_engine

    config = AdaptBenchConfig(scenes=1, width=W, height=H, background_frames=3, take_frames=3, test_frames=2)
    seen = []

    def fake_adapt(scene, out_dir):
        assert all(f.alpha is None for f in scene.take) and all(f.alpha is not None for f in scene.tests)
        seen.append(scene.name)
        import shutil

        shutil.copytree(models, out_dir)
        return {"accepted": True, "wall_s": 0.0}

    report = adaptation_benchmark(synthetic_adapt_scenes(config), fake_adapt, str(models),
                                  teacher_engine(TeacherConfig()), tmp_path)
    assert report["frames"] == 2 and {DEPTH_ROW, GENERIC, ADAPTED} <= set(report["mean"])
    np.testing.assert_allclose(report["mean"][GENERIC]["SAD"], report["mean"][ADAPTED]["SAD"])
    again = adaptation_benchmark(synthetic_adapt_scenes(config), fake_adapt, str(models),
                                 teacher_engine(TeacherConfig()), tmp_path)
    assert seen == [seen[0]] and again["mean"] == report["mean"]
    rescored = adaptation_benchmark(synthetic_adapt_scenes(config), fake_adapt, str(models),
                                    teacher_engine(TeacherConfig()), tmp_path, rescore=True)
    assert seen == [seen[0]] and rescored["mean"] == report["mean"]  # scored again, not adapted again
    assert dataclasses.replace(config, suite="semi-real").suite == "semi-real"


def test_a_refiner_of_older_width_is_written_and_validated(tmp_path):
    """An older scene's refiner (32 hidden features) goes through the adapted-refiner export like a new one."""
    from engines.nets.refiner import Refiner, RefinerConfig
    from engines.training.adapt import _write_refiner

    refiner = Refiner(RefinerConfig(hidden_channels=32, aux_channels=2)).eval()
    assert _write_refiner(refiner, tmp_path) < 1e-4
    assert (tmp_path / "refiner_dart.onnx").is_file() and (tmp_path / "refiner_dart.safetensors").is_file()
