"""Tests of engines.nets: backbone, base network, refiner (vectorised vs. reference loops) and losses."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.nets.base_net import (
    BaseNet,
    BaseNetConfig,
    foreground_from_residual,
    load_student,
    pointwise_final_layer,
    save_weights,
    student_config,
    teacher_config,
)
from engines.nets.decoder import Decoder
from engines.nets.losses import (
    alpha_loss,
    base_loss,
    bernoulli_kl,
    distillation_loss,
    error_loss,
    foreground_loss,
    refine_loss,
    sobel,
)
from engines.nets.mobilenetv2 import MobileNetV2Backbone, block_specs
from engines.nets.refiner import Refiner, RefinerConfig, crop_patches, replace_patches, select_patches
from sensors.errors import UserError

torch.set_num_threads(2)

TINY = BaseNetConfig(aspp_channels=32, decoder_channels=(16, 12, 8), hidden_channels=32)


def _randomise_batch_norm(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics so eval-mode tests exercise them."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


# ---- backbone and base network ----


def test_block_specs_follow_tensorflow_output_stride_convention():
    _, os8 = block_specs(0.5, 8)
    assert [s.stride for s in os8[:6]] == [1, 2, 1, 2, 1, 1]
    assert [(s.stride, s.dilation) for s in os8[6:]] == [(1, 1)] + [(1, 2)] * 7 + [(1, 4)] * 3
    _, os16 = block_specs(0.5, 16)
    assert os16[6].stride == 2 and os16[13].stride == 1
    assert [s.dilation for s in os16[13:]] == [1, 2, 2, 2]
    assert [s.out_channels for s in os16][-1] == 160
    with pytest.raises(ValueError):
        block_specs(0.5, 4)


@pytest.mark.parametrize("output_stride,out_hw", [(16, (8, 10)), (8, (15, 20))])
def test_backbone_feature_shapes_at_odd_size(output_stride, out_hw):
    bb = MobileNetV2Backbone(6, 0.5, output_stride).eval()
    with torch.no_grad():
        x, x8, x4, x2 = bb(torch.rand(1, 6, 120, 160))
    assert bb.feature_channels == (160, 16, 12, 8)
    assert x.shape == (1, 160, *out_hw)
    assert x8.shape == (1, 16, 15, 20) and x4.shape == (1, 12, 30, 40) and x2.shape == (1, 8, 60, 80)


def test_base_net_output_shapes_and_ranges():
    torch.manual_seed(0)
    net = BaseNet(TINY).eval()
    with torch.no_grad():
        net.decoder.final.weight.mul_(50.0)  # push raw outputs far outside [0, 1] so the clamps matter
        src, bgr = torch.rand(2, 3, 60, 84), torch.rand(2, 3, 60, 84)
        pha, fgr, err, hid = net(src, bgr)
        raw = net.decoder(net.aspp(net.backbone(torch.cat([src, bgr], 1))[0]), _skips(net, src, bgr))
    assert pha.shape == (2, 1, 60, 84) and fgr.shape == (2, 3, 60, 84)
    assert err.shape == (2, 1, 60, 84) and hid.shape == (2, 32, 60, 84)
    assert (raw[:, 0] < 0).any() and (raw[:, 0] > 1).any() and (raw[:, 5:] < 0).any()
    assert pha.min() >= 0 and pha.max() <= 1 and err.min() >= 0 and err.max() <= 1 and hid.min() >= 0
    assert torch.equal(pha, raw[:, :1].clamp(0, 1)) and torch.equal(fgr, raw[:, 1:4])


def _skips(net, src, bgr):
    x0 = torch.cat([src, bgr], 1)
    _, x8, x4, x2 = net.backbone(x0)
    return (x8, x4, x2, x0)


def test_student_and_teacher_configs_run_at_student_resolution():
    for config in (student_config(), teacher_config()):
        net = BaseNet(config).eval()
        with torch.no_grad():
            outs = net(torch.rand(1, 3, 120, 160), torch.rand(1, 3, 120, 160))
        assert [o.shape[1] for o in outs] == [1, 3, 1, config.hidden_channels]
        assert all(o.shape[2:] == (120, 160) for o in outs)
    assert student_config().width_mult == 0.5 and teacher_config().width_mult == 1.0
    assert student_config().hidden_channels == 8 and teacher_config().hidden_channels == 32


def test_pointwise_last_layer_runs_before_the_upsampling_and_equals_it_after():
    """The 1x1 last layer is applied to the low-resolution features and upsampled: the same as BGMv2's order
    (upsample, concatenate with the input, convolve), odd sizes and frame edges included."""
    torch.manual_seed(1)
    decoder = Decoder(24, (8, 6, 4, 6), (10, 8, 6), out_channels=9, final_kernel=1).eval()
    x = torch.rand(2, 24, 4, 6)
    skips = (torch.rand(2, 8, 8, 11), torch.rand(2, 6, 15, 21), torch.rand(2, 4, 30, 42), torch.rand(2, 6, 60, 83))
    with torch.no_grad():
        got = decoder(x, skips)
        y = x
        for conv, skip in zip(decoder.layers, skips[:3]):
            y = conv(torch.cat([F.interpolate(y, size=skip.shape[2:], mode="bilinear"), skip], 1))
        expected = decoder.final(torch.cat([F.interpolate(y, size=(60, 83), mode="bilinear"), skips[3]], 1))
    assert got.shape == (2, 9, 60, 83) and torch.allclose(got, expected, atol=1e-5)
    assert student_config().final_kernel == 1 and teacher_config().final_kernel == 3
    with pytest.raises(ValueError, match="final_kernel"):
        Decoder(24, (8, 6, 4, 6), final_kernel=5)


def test_students_with_either_last_layer_load_and_a_3x3_one_converts(tmp_path):
    """load_student reads students made before the last layer became 1x1; pointwise_final_layer turns such a
    state into a 1x1 one that gives the same output wherever the layer's input is constant."""
    torch.manual_seed(2)
    old = BaseNet(dataclasses.replace(student_config(), final_kernel=3)).eval()
    save_weights(old, tmp_path / "old.safetensors")
    assert load_student(tmp_path / "old.safetensors").config.final_kernel == 3
    converted = pointwise_final_layer(old.state_dict())
    assert converted["decoder.final.weight"].shape[-2:] == (1, 1) and pointwise_final_layer(converted) is converted
    new = BaseNet(student_config()).eval()
    new.load_state_dict(converted)
    flat = torch.full((1, old.decoder.final.in_channels, 9, 9), 0.3)
    with torch.no_grad():
        assert torch.allclose(old.decoder.final(flat)[..., 1:-1, 1:-1], new.decoder.final(flat)[..., 1:-1, 1:-1], atol=1e-5)
    save_weights(new, tmp_path / "new.safetensors")
    assert load_student(tmp_path / "new.safetensors").config.final_kernel == 1
    save_weights(torch.nn.Linear(2, 2), tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="does not fit"):
        load_student(tmp_path / "other.safetensors")
    other = {"w": torch.zeros(2)}
    assert pointwise_final_layer(other) is other  # not a base network: returned as is, load_state then says so
    wide = dict(converted, **{"decoder.final.weight": torch.zeros(37, 38, 5, 5)})
    from safetensors.torch import save_file

    save_file(wide, str(tmp_path / "wide.safetensors"))
    with pytest.raises(UserError, match="not a student"):
        load_student(tmp_path / "wide.safetensors")


def test_students_and_refiners_load_with_their_own_number_of_hidden_features(tmp_path):
    """load_student reads the hidden features from the last layer's outputs, load_refiner from its first
    layer's inputs; a refiner file of another depth-channel count, or no refiner at all, is refused."""
    from engines.nets.refiner import load_refiner

    narrow = BaseNet(dataclasses.replace(student_config(), hidden_channels=16)).eval()
    save_weights(narrow, tmp_path / "student16.safetensors")
    assert load_student(tmp_path / "student16.safetensors").config.hidden_channels == 16
    refiner = Refiner(RefinerConfig(hidden_channels=16, aux_channels=2))
    save_weights(refiner, tmp_path / "refiner16.safetensors")
    loaded = load_refiner(tmp_path / "refiner16.safetensors", 2, k=50)
    assert loaded.config.hidden_channels == 16 and loaded.config.aux_channels == 2 and loaded.config.k == 50
    with pytest.raises(UserError, match="does not fit Refiner"):  # an RGB-D refiner read as an RGB one
        load_refiner(tmp_path / "refiner16.safetensors", 0)
    save_weights(narrow, tmp_path / "not_a_refiner.safetensors")
    with pytest.raises(UserError, match="does not fit Refiner"):
        load_refiner(tmp_path / "not_a_refiner.safetensors", 2)


def test_base_net_aux_channels_are_checked_and_used():
    torch.manual_seed(0)
    net = BaseNet(BaseNetConfig(in_channels=8, aspp_channels=32, decoder_channels=(16, 12, 8))).eval()
    src, bgr = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        a = net(src, bgr, torch.zeros(1, 2, 48, 64))[1]
        b = net(src, bgr, torch.ones(1, 2, 48, 64))[1]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError):
        net(src, bgr)
    with pytest.raises(ValueError):
        BaseNet(TINY)(src, bgr, torch.zeros(1, 2, 48, 64))


def test_foreground_from_residual_clamps():
    src = torch.tensor([0.2, 0.9, 0.5]).view(1, 3, 1, 1)
    res = torch.tensor([-0.5, 0.3, 0.1]).view(1, 3, 1, 1)
    assert torch.allclose(foreground_from_residual(res, src).flatten(), torch.tensor([0.0, 1.0, 0.6]))


# ---- refiner: selection, crop, replace ----


def test_select_patches_topk_threshold_and_oversampling():
    err = torch.zeros(2, 1, 3, 4)
    err[0, 0, 1, 2] = 0.9
    err[0, 0, 2, 3] = 0.5
    err[0, 0, 0, 0] = 0.2
    err[1, 0, 2, 1] = 0.3
    b, y, x = select_patches(err, "topk", k=2, prevent_oversampling=True)
    assert sorted(zip(b.tolist(), y.tolist(), x.tolist())) == [(0, 1, 2), (0, 2, 3), (1, 2, 1)]
    b, y, x = select_patches(err, "topk", k=2, prevent_oversampling=False)
    assert len(b) == 4 and (b == 0).sum() == 2
    b, y, x = select_patches(err, "threshold", threshold=0.25)
    assert sorted(zip(b.tolist(), y.tolist(), x.tolist())) == [(0, 1, 2), (0, 2, 3), (1, 2, 1)]
    assert len(select_patches(err, "topk", k=100)[0]) == 4  # k above the cell count, zeros skipped
    with pytest.raises(ValueError):
        select_patches(err, "random")


def _crop_loop(x, b, y, xx, size, padding):
    padded = F.pad(x, (padding,) * 4, mode="replicate")
    win = size + 2 * padding
    return torch.stack(
        [padded[bi, :, yi * size : yi * size + win, xi * size : xi * size + win] for bi, yi, xi in zip(b, y, xx)]
    )


def test_crop_patches_equals_loop_reference():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 5, 24, 32, generator=g)
    b = torch.tensor([0, 1, 1, 0, 1])
    y = torch.tensor([0, 5, 2, 5, 0])
    xx = torch.tensor([0, 7, 3, 0, 7])
    for size, padding in [(4, 2), (2, 3)]:
        grid_x = x if size == 4 else F.avg_pool2d(x, 2)
        got = crop_patches(grid_x, b, y, xx, size, padding)
        assert got.shape == (5, 5, size + 2 * padding, size + 2 * padding)
        assert torch.equal(got, _crop_loop(grid_x, b.tolist(), y.tolist(), xx.tolist(), size, padding))


def test_replace_patches_equals_loop_reference_and_is_out_of_place():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 16, 20, generator=g)
    patches = torch.rand(3, 3, 4, 4, generator=g)
    b, y, xx = torch.tensor([0, 1, 1]), torch.tensor([0, 3, 1]), torch.tensor([4, 0, 2])
    expected = x.clone()
    for i, (bi, yi, xi) in enumerate(zip(b.tolist(), y.tolist(), xx.tolist())):
        expected[bi, :, yi * 4 : yi * 4 + 4, xi * 4 : xi * 4 + 4] = patches[i]
    before = x.clone()
    got = replace_patches(x, patches, b, y, xx)
    assert torch.equal(got, expected) and torch.equal(x, before)


def _refine_loop_reference(refiner, src, bgr, pha, fgr, hid, err, aux):
    """Slow BGMv2 refinement: one patch at a time with explicit padding and slicing."""
    n, _, h, w = src.shape
    images = torch.cat([src, bgr] + ([aux] if aux is not None else []), 1)
    coarse = torch.cat([pha, fgr], 1)
    out = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    half = torch.cat(
        [F.interpolate(torch.cat([coarse, hid], 1), size=(h // 2, w // 2), mode="bilinear", align_corners=False),
         F.interpolate(images, size=(h // 2, w // 2), mode="bilinear", align_corners=False)], 1)
    half_p = F.pad(half, (3, 3, 3, 3), mode="replicate")
    full_p = F.pad(images, (2, 2, 2, 2), mode="replicate")
    err_q = F.interpolate(err, size=(h // 4, w // 4), mode="bilinear", align_corners=False)
    b, y, x = select_patches(err_q, refiner.config.mode, refiner.config.k, refiner.config.threshold)
    for bi, yi, xi in zip(b.tolist(), y.tolist(), x.tolist()):
        ph = half_p[bi : bi + 1, :, 2 * yi : 2 * yi + 8, 2 * xi : 2 * xi + 8]
        pf = full_p[bi : bi + 1, :, 4 * yi : 4 * yi + 8, 4 * xi : 4 * xi + 8]
        out[bi, :, 4 * yi : 4 * yi + 4, 4 * xi : 4 * xi + 4] = refiner.patch_net(ph, pf)[0]
    return out[:, :1].clamp(0, 1), out[:, 1:], (b, y, x)


@pytest.mark.parametrize("aux_channels", [0, 2])
def test_refiner_equals_slow_loop_and_only_touches_selected_patches(aux_channels):
    torch.manual_seed(3)
    refiner = Refiner(RefinerConfig(hidden_channels=32, k=40, aux_channels=aux_channels)).eval()
    _randomise_batch_norm(refiner)
    n, h, w = 2, 64, 96
    src, bgr = torch.rand(n, 3, h, w), torch.rand(n, 3, h, w)
    aux = torch.rand(n, aux_channels, h, w) if aux_channels else None
    pha, fgr, hid = torch.rand(n, 1, 16, 24), torch.rand(n, 3, 16, 24) - 0.5, torch.rand(n, 32, 16, 24)
    err = torch.rand(n, 1, 16, 24)
    with torch.no_grad():
        got_pha, got_fgr, selected = refiner(src, bgr, pha, fgr, hid, err, aux)
        ref_pha, ref_fgr, (b, y, x) = _refine_loop_reference(refiner, src, bgr, pha, fgr, hid, err, aux)
    assert got_pha.shape == (n, 1, h, w) and got_fgr.shape == (n, 3, h, w) and selected.shape == (n, 1, h // 4, w // 4)
    assert got_pha.min() >= 0 and got_pha.max() <= 1
    assert int(selected.sum()) == 2 * 40 and bool(selected[b, 0, y, x].all())
    assert torch.allclose(got_pha, ref_pha, atol=1e-6) and torch.allclose(got_fgr, ref_fgr, atol=1e-6)

    coarse_up = F.interpolate(torch.cat([pha, fgr], 1), size=(h, w), mode="bilinear", align_corners=False)
    got = torch.cat([got_pha, got_fgr], 1)
    refined_px = selected.repeat_interleave(4, 2).repeat_interleave(4, 3).expand_as(got)
    assert torch.equal(got[~refined_px], torch.cat([coarse_up[:, :1].clamp(0, 1), coarse_up[:, 1:]], 1)[~refined_px])
    changed = (got != coarse_up).view(n, 4, h // 4, 4, w // 4, 4).any(5).any(3).any(1)
    assert bool(changed[selected[:, 0]].all())  # every selected patch was actually rewritten


def test_refiner_rgbd_patches_use_depth_at_both_stages():
    torch.manual_seed(4)  # the weights too: with some random ones every refined alpha clamps to 0 or 1
    refiner = Refiner(RefinerConfig(hidden_channels=32, k=10, aux_channels=2)).eval()
    assert refiner.patch_net.stage1[0].in_channels == 1 + 3 + 32 + 6 + 2
    assert refiner.patch_net.stage2[0].in_channels == 16 + 6 + 2
    args = [torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8),
            torch.rand(1, 32, 8, 8), torch.rand(1, 1, 8, 8)]
    with torch.no_grad():
        a = refiner(*args, torch.zeros(1, 2, 32, 32))[0]
        b = refiner(*args, torch.ones(1, 2, 32, 32))[0]
    assert not torch.equal(a, b)
    with pytest.raises(ValueError):
        refiner(*args)
    with pytest.raises(ValueError):
        refiner(torch.rand(1, 3, 30, 32), torch.rand(1, 3, 30, 32), *args[2:], torch.zeros(1, 2, 30, 32))


def test_refiner_threshold_mode_and_gradients():
    torch.manual_seed(5)
    refiner = Refiner(RefinerConfig(hidden_channels=32, mode="threshold", threshold=0.5)).train()
    err = torch.zeros(1, 1, 8, 8)
    err[0, 0, 2, 3] = 0.9
    err[0, 0, 5, 5] = 0.7
    hid = torch.rand(1, 32, 8, 8, requires_grad=True)
    pha, fgr, sel = refiner(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 1, 8, 8),
                            torch.rand(1, 3, 8, 8), hid, err)
    assert sel.sum() == 2 and sel[0, 0, 2, 3] and sel[0, 0, 5, 5]
    (pha.sum() + fgr.sum()).backward()
    assert hid.grad is not None and hid.grad.abs().sum() > 0
    assert refiner.patch_net.stage1[0].weight.grad.abs().sum() > 0


# ---- losses ----


def test_sobel_of_ramp():
    ramp = torch.arange(6, dtype=torch.float32).mul(0.1).view(1, 1, 1, 6).expand(1, 1, 4, 6)
    gx, gy = sobel(ramp)
    assert torch.allclose(gx[..., 1:-1], torch.full_like(gx[..., 1:-1], 0.1))
    assert torch.allclose(gx[..., 0], torch.full_like(gx[..., 0], 0.05))  # replicated border
    assert gy.abs().max() < 1e-7


def test_alpha_loss_hand_computed():
    gt = torch.tensor([0.0, 0.1, 0.2, 0.3]).view(1, 1, 1, 4).expand(1, 1, 2, 4).contiguous()
    pred = torch.zeros_like(gt)
    # L1: mean(0, .1, .2, .3) = .15; Sobel x of gt (replicated border): .05 .1 .1 .05 -> mean .075; y: 0
    assert alpha_loss(pred, gt).item() == pytest.approx(0.225, abs=1e-6)
    assert alpha_loss(gt, gt).item() == 0.0


def test_foreground_loss_counts_only_alpha_positive_pixels():
    pha_gt = torch.tensor([0.0, 0.5, 1.0, 0.0]).view(1, 1, 2, 2)
    fgr = torch.zeros(1, 3, 2, 2)
    fgr_gt = torch.ones(1, 3, 2, 2)
    assert foreground_loss(fgr, fgr_gt, pha_gt).item() == pytest.approx(0.5)  # 6 of 12 elements differ by 1


def test_error_loss_targets_detached_alpha_error():
    pha = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    err = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss = error_loss(err, pha, torch.zeros(1, 1, 2, 2))
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    assert pha.grad is None and err.grad.abs().sum() > 0


def test_bernoulli_kl_hand_computed():
    t = torch.tensor([0.5, 0.0, 1.0, 0.3])
    s = torch.tensor([0.25, 0.5, 1.0, 0.3])
    expected = [0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75), math.log(2), 0.0, 0.0]
    per = [bernoulli_kl(t[i].view(1, 1, 1, 1), s[i].view(1, 1, 1, 1)).item() for i in range(4)]
    assert per == pytest.approx(expected, abs=1e-5)
    assert bernoulli_kl(t.view(1, 1, 2, 2), s.view(1, 1, 2, 2)).item() == pytest.approx(sum(expected) / 4, abs=1e-5)
    teacher = torch.tensor([0.7], requires_grad=True)
    student = torch.tensor([0.2], requires_grad=True)
    bernoulli_kl(teacher, student).backward()
    assert teacher.grad is None and student.grad.item() < 0  # pushes the student towards the teacher
    # logit-space gradient (s - t) / N: bounded even where the student is almost 0
    t = torch.tensor([0.01, 0.7, 0.0, 1.0]).view(1, 1, 2, 2)
    s = torch.tensor([1e-5, 0.2, 0.0, 0.9]).view(1, 1, 2, 2).requires_grad_(True)
    bernoulli_kl(t, s).backward()
    np.testing.assert_allclose(s.grad.view(-1).numpy(), ((s.detach() - t) / 4).view(-1).numpy(), atol=1e-7)


def test_distillation_and_bgmv2_losses_sum_their_terms():
    pha = torch.tensor([0.2, 0.8]).view(1, 1, 1, 2)
    err = torch.tensor([0.1, 0.0]).view(1, 1, 1, 2)
    teacher = torch.tensor([0.2, 0.8]).view(1, 1, 1, 2)
    gt = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    terms = distillation_loss(pha, err, teacher, gt)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["alpha_l1"].item() == pytest.approx(0.2)
    assert terms["err_l2"].item() == pytest.approx(((0.1 - 0.2) ** 2 + 0.2**2) / 2)
    parts = terms["kl"].item() + terms["alpha_l1"].item() + terms["err_l2"].item()
    assert terms["total"].item() == pytest.approx(parts)
    assert distillation_loss(pha, err, teacher, gt, err_gt=err)["err_l2"].item() == 0.0

    fgr = torch.rand(1, 3, 1, 2)
    base = base_loss(pha, fgr, err, gt, fgr)
    assert base["fgr"].item() == 0.0
    assert base["total"].item() == pytest.approx(alpha_loss(pha, gt).item() + error_loss(err, pha, gt).item())
    assert refine_loss(gt, fgr, gt, fgr)["total"].item() == 0.0


def test_clamp_unit_passes_gradients_outside_the_range_while_training():
    from engines.nets.base_net import clamp_unit

    x = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    y = clamp_unit(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.5, 1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))  # a plain clamp would give [0, 1, 0]: a dead output stays dead
    with torch.no_grad():
        assert torch.equal(clamp_unit(x), torch.tensor([0.0, 0.5, 1.0]))
