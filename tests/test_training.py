"""Tests of engines.training: data pool and augmentation, stages (2-step runs at 64x48), checkpoints,
resume, distillation, refiner stages, ONNX export of trained files."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from engines.config import DepthConfig
from engines.nets.base_net import BaseNet, load_weights, save_weights, student_config, teacher_config
from engines.nets.refiner import Refiner, RefinerConfig, load_refiner
from engines.training.checkpoint import load_stage_log, paths
from engines.training.data import (
    AugmentConfig,
    SamplePool,
    augment_sample,
    build_pool,
    depth_posterior_batch,
    make_batch,
    sample_rng,
)
from engines.training.stages import StageConfig, export_models, train_refiner, train_student, train_teacher

torch.set_num_threads(1)
H, W = 48, 64


@pytest.fixture(scope="module")
def pool() -> SamplePool:
    return build_pool(6, H, W, seed=3)


def _cfg(**kw) -> StageConfig:
    base = dict(budget_s=120.0, max_steps=2, batch_size=2, log_every=1, checkpoint_every_s=1e9, seed=1)
    base.update(kw)
    return StageConfig(**base)


def test_pool_dtypes_and_roundtrip(pool, tmp_path):
    assert len(pool) == 6 and pool.size == (H, W)
    assert pool.image.dtype == np.uint8 and pool.depth_mm.dtype == np.uint16 and pool.alpha.dtype == np.uint8
    assert pool.alpha.max() > 200  # a subject is in every sample
    path = pool.save(tmp_path / "p.npz")
    again = SamplePool.load(path)
    np.testing.assert_array_equal(again.depth_mm, pool.depth_mm)
    s = pool.sample(0)
    assert s["depth_m"].dtype == np.float32 and 0.3 < np.median(s["depth_m"][s["depth_m"] > 0]) < 10.0


def test_augment_identity_and_ranges(pool):
    s = pool.sample(1)
    same = augment_sample(s, np.random.default_rng(0), AugmentConfig.none())
    for k in s:
        np.testing.assert_array_equal(same[k], s[k])
    strong = AugmentConfig(flip_p=1.0, zoom_p=1.0, misalign_p=1.0, shadow_p=1.0, jitter_p=1.0, noise_p=1.0)
    for seed in range(3):
        a = augment_sample(s, np.random.default_rng(seed), strong)
        for k in ("image", "background", "foreground", "alpha"):
            assert a[k].shape == s[k].shape and a[k].dtype == np.float32
            assert a[k].min() >= 0.0 and a[k].max() <= 1.0
        assert np.all(a["foreground"][a["alpha"] == 0] == 0)
        assert not np.array_equal(a["image"], s["image"])
    flipped = augment_sample(s, np.random.default_rng(0), AugmentConfig(flip_p=1.0, zoom_p=0, misalign_p=0, shadow_p=0,
                                                                        jitter_p=0, noise_p=0))
    np.testing.assert_array_equal(flipped["alpha"], s["alpha"][:, ::-1])


def test_batch_shapes_and_determinism(pool):
    b1 = make_batch(pool, sample_rng(0, 5), 3, 4, AugmentConfig())
    b2 = make_batch(pool, sample_rng(0, 5), 3, 4, AugmentConfig())
    assert b1.full["image"].shape == (3, 3, H, W) and b1.small["alpha"].shape == (3, 1, H // 4, W // 4)
    np.testing.assert_array_equal(b1.full["image"], b2.full["image"])
    b3 = make_batch(pool, sample_rng(0, 6), 3, 4, AugmentConfig())
    assert not np.array_equal(b1.full["image"], b3.full["image"])


def test_depth_posterior_batch_separates_subject_from_background():
    bg = np.full((1, 1, 8, 8), 3.0, np.float32)
    live = bg.copy()
    live[0, 0, :4] = 1.5  # subject in front of the wall
    a_d = depth_posterior_batch(live, bg, DepthConfig())
    assert a_d.shape == live.shape
    assert a_d[0, 0, :4].min() > 0.55 and a_d[0, 0, 4:].max() < 0.2


def test_stage_writes_loadable_checkpoint_and_log(pool, tmp_path):
    events = []
    weights = train_student(pool, tmp_path, _cfg(), None, on_log=events.append)
    assert weights == paths(tmp_path, "student_plain")[0] and weights.is_file()
    net = load_weights(BaseNet(student_config()), weights)
    assert isinstance(net, BaseNet)
    stage_log = json.loads(paths(tmp_path, "student_plain")[2].read_text())
    assert stage_log["step"] == 2 and stage_log["done"] is True
    assert [h["step"] for h in stage_log["history"]] == [1, 2]
    assert all(np.isfinite(h["total"]) for h in stage_log["history"])
    assert any(e.get("event") == "done" for e in events)
    # a finished stage is not run again
    before = weights.stat().st_mtime_ns
    train_student(pool, tmp_path, _cfg(max_steps=5), None)
    assert load_stage_log(tmp_path, "student_plain").step == 2 and weights.stat().st_mtime_ns == before


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(pool, tmp_path):
    cfg = _cfg(max_steps=4, checkpoint_every_s=0.0)
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    train_student(pool, full_dir, cfg, None)

    def stop_at_3(event):
        if event.get("step") == 3 and "total" in event:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_student(pool, cut_dir, cfg, None, on_log=stop_at_3)
    assert load_stage_log(cut_dir, "student_plain").step == 2  # the checkpoint after step 2 survived
    train_student(pool, cut_dir, cfg, None)
    assert load_stage_log(cut_dir, "student_plain").step == 4
    a = load_weights(BaseNet(student_config()), paths(full_dir, "student_plain")[0]).state_dict()
    b = load_weights(BaseNet(student_config()), paths(cut_dir, "student_plain")[0]).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_distillation_stage_is_finite_and_learns(pool, tmp_path):
    teacher = BaseNet(teacher_config())
    teacher_path = tmp_path / "teacher_random.safetensors"
    save_weights(teacher, teacher_path)
    one = pool.subset(np.array([0]))  # the same un-augmented batch every step: the loss must go down
    train_student(one, tmp_path, _cfg(max_steps=6, lr=(1e-3, 1e-3, 1e-3)), teacher_path, augment=AugmentConfig.none())
    history = load_stage_log(tmp_path, "student").history
    assert set(history[0]) >= {"kl", "alpha_l1", "err_l2", "total"}
    totals = [h["total"] for h in history]
    assert all(np.isfinite(totals))
    assert np.mean(totals[-2:]) < np.mean(totals[:2])


def test_teacher_and_refiner_stages_and_export(pool, tmp_path):
    teacher = train_teacher(pool, tmp_path, _cfg(max_steps=1))
    load_weights(BaseNet(teacher_config()), teacher)
    student = train_student(pool, tmp_path, _cfg(max_steps=1), teacher)
    refiners = {}
    for variant, aux in (("dart", 2), ("rgb", 0)):
        refiners[variant] = train_refiner(pool, tmp_path, _cfg(k_train=20), student, variant)
        load_weights(Refiner(RefinerConfig(aux_channels=aux)), refiners[variant])
        assert load_stage_log(tmp_path, f"refiner_{variant}").step == 2
    diffs = export_models(tmp_path, student, refiners, trace_size=(12, 16))
    assert set(diffs) == {"student.onnx", "refiner_dart.onnx", "refiner_rgb.onnx"}
    assert max(diffs.values()) < 1e-3


def test_students_and_refiners_fine_tune_from_earlier_weights(pool, tmp_path):
    """A student made with BGMv2's 3x3 last layer starts the 1x1 student (summed taps) or, without a config,
    is fine-tuned as it is; a refiner fine-tunes from its own weights."""
    torch.manual_seed(4)
    old = BaseNet(dataclasses.replace(student_config(), final_kernel=3)).eval()
    save_weights(old, tmp_path / "old.safetensors")
    slim = train_student(pool, tmp_path / "slim", _cfg(max_steps=1, lr=(0.0, 0.0, 0.0)), None,
                         init_weights=tmp_path / "old.safetensors", config=student_config())
    slim_net = load_weights(BaseNet(student_config()), slim)
    summed = old.decoder.final.weight.sum(dim=(2, 3), keepdim=True)
    assert torch.allclose(slim_net.decoder.final.weight, summed)  # zero learning rate: the converted start
    kept = train_student(pool, tmp_path / "kept", _cfg(max_steps=1), None, init_weights=tmp_path / "old.safetensors")
    assert load_weights(BaseNet(old.config), kept).decoder.final.kernel_size == (3, 3)
    # the finished 1x1 run is reused even when asked again without a config (the shape of the run in out_dir)
    assert train_student(pool, tmp_path / "slim", _cfg(max_steps=1), None, init_weights=tmp_path / "old.safetensors") == slim
    first = train_refiner(pool, tmp_path / "r1", _cfg(k_train=20, max_steps=2), slim, "rgb")
    again = train_refiner(pool, tmp_path / "r2", _cfg(k_train=20, max_steps=1, lr_refiner=0.0), slim, "rgb",
                          init_weights=first)
    a, b = (dict(load_weights(Refiner(RefinerConfig()), w).named_parameters()) for w in (first, again))
    assert all(torch.equal(a[k], b[k]) for k in a)  # parameters (batch-norm statistics still move)
    torch.manual_seed(1)  # the stage's seed: what a refiner starts from without init_weights
    fresh = dict(Refiner(RefinerConfig()).named_parameters())
    assert not all(torch.equal(a[k], fresh[k]) for k in a)  # `first` learned, so the check above means something
    save_weights(Refiner(RefinerConfig(stage_channels=(24, 16, 12))), tmp_path / "narrow.safetensors")  # older width
    tuned = train_refiner(pool, tmp_path / "r3", _cfg(k_train=20, max_steps=1), slim, "rgb",
                          init_weights=tmp_path / "narrow.safetensors")
    assert load_refiner(tuned, 0).config.stage_channels == (24, 16, 12)


def test_train_all_ships_the_chosen_student_and_exports_the_other(tmp_path):
    """One command makes the whole set: student.onnx is the runtime student (plain by default, as shipped),
    the distilled one is exported next to it for the distillation comparison."""
    import onnxruntime as ort

    from engines.training.stages import TrainConfig, train_all

    tiny = _cfg(max_steps=1)
    config = TrainConfig(height=48, width=64, pool_size=6, val_size=2, threads=None, teacher=tiny, student=tiny,
                         student_plain=tiny, refiner_dart=_cfg(max_steps=1, k_train=10),
                         refiner_rgb=_cfg(max_steps=1, k_train=10))
    summary = train_all(config, tmp_path)
    assert set(summary["onnx_max_abs_diff"]) == {"student.onnx", "student_distilled.onnx", "refiner_dart.onnx",
                                                 "refiner_rgb.onnx"}
    rng = np.random.default_rng(0)
    feed = {"src": rng.random((1, 3, 12, 16), dtype=np.float32), "bgr": rng.random((1, 3, 12, 16), dtype=np.float32)}
    for onnx_name, weights in (("student.onnx", "student_plain"), ("student_distilled.onnx", "student")):
        net = load_weights(BaseNet(student_config()), tmp_path / f"{weights}.safetensors").eval()
        with torch.no_grad():
            expected = net(torch.from_numpy(feed["src"]), torch.from_numpy(feed["bgr"]))[0].numpy()
        raw = ort.InferenceSession(str(tmp_path / onnx_name)).run(["coarse_raw"], feed)[0]
        got = np.clip(raw[..., :1].transpose(0, 3, 1, 2), 0.0, 1.0)  # alpha, activated as activate_coarse does
        np.testing.assert_allclose(got, expected, atol=1e-4)
    with pytest.raises(ValueError):
        train_all(dataclasses.replace(config, runtime_student="teacher"), tmp_path)


def test_finetune_on_scene_writes_scene_model_and_measures(tmp_path):
    from engines.nets.onnx_export import export_base_net, export_refiner
    from engines.synth.scene import SceneConfig, write_scene
    from engines.training.scene import finetune_on_scene, read_recording

    recording = write_scene(SceneConfig(width=W, height=H, n_background=3, n_test=2, seed=2), tmp_path / "rec")
    rec = read_recording(recording)
    assert rec.background_color.shape == (3, H, W, 3) and rec.test_alpha.shape == (2, H, W)
    models = tmp_path / "models"
    models.mkdir()
    student = BaseNet(student_config()).eval()
    save_weights(student, models / "student.safetensors")
    export_base_net(student, models / "student.onnx", (12, 16))
    export_refiner(Refiner(RefinerConfig(aux_channels=2)).eval(), models / "refiner_dart.onnx")
    summary = finetune_on_scene(recording, models / "student.safetensors", budget_s=60, max_steps=2, n_samples=4,
                                n_subjects=2, height=H, width=W, batch_size=2)
    out = models / f"scene_{recording.name}"
    assert (out / "student.onnx").is_file() and (out / "refiner_dart.onnx").is_file()
    load_weights(BaseNet(student_config()), out / "student.safetensors")
    assert load_stage_log(out, "student").step == 2
    for label in ("before", "after"):
        assert set(summary[label]) == {"coarse", "dart"}
        assert np.isfinite(summary[label]["dart"]["SAD"])
    assert summary["onnx_max_abs_diff"] < 1e-3


def test_pruned_hidden_features_leave_the_student_and_refiner_outputs_alone(pool):
    """prune_hidden drops hidden channels from the student's last layer and the refiners' first layer: the
    student's alpha, foreground and error stay the same, and a refiner that gave the dropped channels no
    weight gives the same alpha after pruning. The scores rank such channels last."""
    from engines.nets.refiner import STAGE1_WEIGHT
    from engines.training.prune import hidden_feature_scores, prune_hidden

    torch.manual_seed(5)
    student = BaseNet(dataclasses.replace(student_config(), hidden_channels=32)).eval()  # BGMv2's 32
    refiner = Refiner(RefinerConfig(hidden_channels=32, aux_channels=2, k=20)).eval()
    dropped = [1, 5, 30]
    with torch.no_grad():
        refiner.patch_net.stage1[0].weight[:, [4 + c for c in dropped]] = 0.0
    keep = np.array([c for c in range(32) if c not in dropped])
    scores = hidden_feature_scores(student, {"dart": refiner.state_dict()}, pool)
    assert scores.shape == (32,) and np.isclose(scores.sum(), 1.0) and np.all(scores[dropped] == 0)
    state, refiners = prune_hidden(student.state_dict(), {"dart": refiner.state_dict()}, keep)
    small = BaseNet(dataclasses.replace(student_config(), hidden_channels=29)).eval()
    small.load_state_dict(state)
    narrow = Refiner(RefinerConfig(hidden_channels=29, aux_channels=2, k=20)).eval()
    narrow.load_state_dict(refiners["dart"])
    assert refiners["dart"][STAGE1_WEIGHT].shape[1] == 1 + 3 + 29 + 6 + 2
    g = torch.Generator().manual_seed(0)
    src, bgr = torch.rand(1, 3, H, W, generator=g), torch.rand(1, 3, H, W, generator=g)
    aux = torch.rand(1, 2, H, W, generator=g)
    small_in = [torch.nn.functional.interpolate(x, size=(H // 4, W // 4), mode="area") for x in (src, bgr)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # other tests' thread counts split the convolutions differently: last-bit noise
    try:
        with torch.no_grad():
            full_out, pruned_out = student(*small_in), small(*small_in)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        for a, b in zip(full_out[:3], pruned_out[:3]):
            assert torch.equal(a, b)
        assert torch.equal(full_out[3][:, keep], pruned_out[3])
        ref = refiner(src, bgr, full_out[0], full_out[1], full_out[3], full_out[2], aux)[0]
        got = narrow(src, bgr, pruned_out[0], pruned_out[1], pruned_out[3], pruned_out[2], aux)[0]
    assert torch.allclose(ref, got, atol=1e-6)
    with pytest.raises(ValueError, match="distinct"):
        prune_hidden(student.state_dict(), {}, np.array([0, 0]))


def test_widened_stage2_computes_the_same_and_loads_by_its_own_shape(tmp_path):
    """widen_stage2 grows an older refiner's 12-wide stage 2 to 16 channels: the refined patches are the same
    (the new channels are read with weight 0) and load_refiner reads the widths back from the file.
    Shrinking is refused."""
    from safetensors.torch import save_file

    from engines.nets.refiner import refiner_config_of
    from engines.training.prune import widen_stage2

    torch.manual_seed(3)
    old = Refiner(RefinerConfig(aux_channels=2, stage_channels=(24, 16, 12))).eval()
    with torch.no_grad():  # trained-looking batch-norm statistics, so that the check means something
        for module in old.patch_net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    wide_state = widen_stage2(old.state_dict(), 16)
    save_file({k: v.contiguous() for k, v in wide_state.items()}, str(tmp_path / "wide.safetensors"))
    wide = load_refiner(tmp_path / "wide.safetensors", 2).eval()
    assert wide.config.stage_channels == (24, 16, 16)
    assert refiner_config_of(old.state_dict(), "old").stage_channels == (24, 16, 12)
    g = torch.Generator().manual_seed(0)
    half = torch.rand(30, old.patch_net.half_channels, 8, 8, generator=g)
    full = torch.rand(30, old.patch_net.full_channels, 8, 8, generator=g)
    with torch.no_grad():
        assert torch.allclose(old.patch_net(half, full), wide.patch_net(half, full), atol=1e-6)
    with pytest.raises(ValueError, match="grows"):
        widen_stage2(wide_state, 12)
    assert RefinerConfig().stage_channels == (24, 16, 16)  # what train_refiner builds from scratch
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    widen_stage2(old.state_dict(), 16)
    assert torch.equal(torch.rand(1), before)  # the caller's random state is left alone
