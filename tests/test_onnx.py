"""Tests of engines.matting.onnx_inference and engines.nets.onnx_export: export round trips, the numpy refiner against torch, sessions."""

import logging

import onnx
import numpy as np
import pytest
import torch

from engines.matting import onnx_inference as rt
from engines.matting import patches as pt
from engines.nets import onnx_export
from engines.nets.base_net import BaseNet, BaseNetConfig
from engines.nets.refiner import Refiner, RefinerConfig, crop_patches, replace_patches, select_patches
from sensors.errors import UserError

torch.set_num_threads(2)

TINY = BaseNetConfig(aspp_channels=32, decoder_channels=(16, 12, 8))


def _randomise_batch_norm(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t[0].permute(1, 2, 0).numpy())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny RGB-D base net and refiner (random weights, non-trivial batch norm) and their ONNX files."""
    tmp_path = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    net = BaseNet(TINY).eval()
    refiner = Refiner(RefinerConfig(hidden_channels=TINY.hidden_channels, k=30, aux_channels=2)).eval()
    _randomise_batch_norm(net, 1)
    _randomise_batch_norm(refiner, 2)
    base_path = onnx_export.export_base_net(net, tmp_path / "base.onnx", size=(40, 56))
    refiner_path = onnx_export.export_refiner(refiner, tmp_path / "refiner.onnx")
    return net, refiner, base_path, refiner_path


def test_base_net_export_round_trip_with_dynamic_size(exported):
    net, _, base_path, _ = exported
    for h, w in [(40, 56), (33, 47)]:
        feed = {n: np.random.rand(1, 3, h, w).astype(np.float32) for n in ("src", "bgr")}
        assert onnx_export.validate_export(net, base_path, feed) < 1e-4
    session = rt.create_session(base_path, ["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["src", "bgr"]
    assert [o.name for o in session.get_outputs()] == ["coarse_raw"]
    ops = [n.op_type for n in onnx.load(str(base_path)).graph.node]
    assert ops[-1] == "Transpose" and ops[-2] in ("Conv", "Add")  # the last layer, then channels last: no activation
    assert net.training is False and all(not m.training for m in net.modules())


def test_aux_base_net_export_has_aux_input(tmp_path):
    net = BaseNet(BaseNetConfig(in_channels=8, aspp_channels=16, decoder_channels=(8, 8, 8))).train()
    path = onnx_export.export_base_net(net, tmp_path / "base_rgbd.onnx", size=(32, 32))
    assert net.training and net.decoder.training  # export restores every submodule's mode
    feed = {n: np.random.rand(1, c, 24, 40).astype(np.float32) for n, c in [("src", 3), ("bgr", 3), ("aux", 2)]}
    assert onnx_export.validate_export(net, path, feed) < 1e-4


def test_refiner_export_round_trip(exported):
    """The exported refiner (stage 2 on the phase grid) against the original torch refiner on 8x8 windows
    (`validate_export` converts the layouts), and its inputs and output as the spec names them."""
    _, refiner, _, refiner_path = exported
    feed = onnx_export.refiner_probe_inputs(refiner, np.random.default_rng(2))
    assert feed["patch_coarse"].shape == (7, 8, 8, 36) and feed["patch_full_phases"].shape == (7, 4, 4, 32)
    assert onnx_export.validate_export(refiner, refiner_path, feed) < 1e-4
    session = rt.create_session(refiner_path, ["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(rt.REFINER_INPUTS)
    assert [o.name for o in session.get_outputs()] == list(rt.REFINER_OUTPUTS)
    assert "Resize" not in [n.op_type for n in onnx.load(str(refiner_path)).graph.node]


def test_phased_refiner_equals_the_original_in_torch():
    """`PhasedPatchNet`: the trained refiner's stage 2 on the phase grid is the same function (batch norm with
    running statistics folded, the nearest upsampling gone); the numpy layouts invert each other."""
    from engines.nets.refiner_phases import PhasedPatchNet

    refiner = Refiner(RefinerConfig(hidden_channels=4, aux_channels=2)).eval()
    _randomise_batch_norm(refiner, 7)
    rng = np.random.default_rng(8)
    coarse, half, full = (rng.random((9, 8, 8, c), dtype=np.float32) for c in (8, 8, 8))
    with torch.no_grad():
        expected = onnx_export._ChannelsLastPatchNet(refiner.patch_net)(*map(torch.from_numpy, (coarse, half, full)))
        phased = PhasedPatchNet(refiner.patch_net).eval()(
            torch.from_numpy(coarse), torch.from_numpy(half), torch.from_numpy(pt.phases_from_windows(full)))
    assert phased.shape == (9, 2, 2, 16)
    np.testing.assert_allclose(pt.core_from_phases(phased.numpy(), 4), expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(pt.core_from_phases(phased.numpy(), 1), pt.core_from_phases(phased.numpy(), 4)[..., :1])
    np.testing.assert_array_equal(pt.windows_from_phases(pt.phases_from_windows(full)), full)
    assert pt.phases_from_windows(full)[3, 1, 2, (2 * 1 + 0) * 8 + 5] == full[3, 2 * 1 + 1, 2 * 2 + 0, 5]


def test_a_refiner_exported_before_the_phase_grid_still_runs(exported, tmp_path):
    """A refiner file with the 8x8 `patch_full` input and `patch_out` output (e.g. a scene-adapted one in the
    user's data folder) refines the same patches to the same alpha as the phased export."""
    _, refiner, base_path, refiner_path = exported
    legacy = onnx_export._export(
        onnx_export._ChannelsLastPatchNet(refiner.patch_net),
        tuple(torch.rand(5, 8, 8, c) for c in (36, 8, 8)), tmp_path / "legacy_refiner.onnx",
        rt.LEGACY_REFINER_INPUTS, rt.LEGACY_REFINER_OUTPUTS,
        {n: {0: "patches"} for n in rt.LEGACY_REFINER_INPUTS + rt.LEGACY_REFINER_OUTPUTS}, {})
    rng = np.random.default_rng(9)
    src, bgr, aux = (rng.random((48, 64, c), dtype=np.float32) for c in (3, 3, 2))
    err = rng.random((12, 16), dtype=np.float32)
    results = []
    for path in (refiner_path, legacy):
        matting = rt.OnnxMatting(base_path, path, k=40)
        assert matting.refiner_aux == 2
        coarse = matting.run_base(rt.downsample_area(src, (12, 16)), rt.downsample_area(bgr, (12, 16)))
        results.append(matting.refine(src, bgr, coarse, err, aux))
    assert np.array_equal(results[0].selected, results[1].selected) and results[0].selected.sum() == 40
    np.testing.assert_allclose(results[0].pha, results[1].pha, atol=1e-5)
    np.testing.assert_allclose(results[0].fgr_res, results[1].fgr_res, atol=1e-5)


@pytest.mark.parametrize("w,small", [(128, (24, 32)), (144, (16, 24))])  # c = 4 (remap), c = 6 (whole resize)
def test_onnx_matting_equals_torch_base_and_refiner(exported, w, small):
    net, refiner, base_path, refiner_path = exported
    matting = rt.OnnxMatting(base_path, refiner_path, k=30, intra_op_threads=2)
    torch.manual_seed(5)
    h = 96
    src, bgr, aux = torch.rand(1, 3, h, w), torch.rand(1, 3, h, w), torch.rand(1, 2, h, w)
    src_s = torch.nn.functional.interpolate(src, size=small, mode="area")
    bgr_s = torch.nn.functional.interpolate(bgr, size=small, mode="area")
    with torch.no_grad():
        pha, fgr, err, hid = net(src_s, bgr_s)
        fused_err = torch.rand_like(err)  # stands in for DART's E_RGBD
        ref_pha, ref_fgr, ref_sel = refiner(src, bgr, pha, fgr, hid, fused_err, aux)

    assert np.abs(rt.downsample_area(_hwc(src), small) - _hwc(src_s)).max() < 1e-6
    coarse = matting.run_base(rt.downsample_area(_hwc(src), small), rt.downsample_area(_hwc(bgr), small))
    assert np.abs(coarse.pha - pha[0, 0].numpy()).max() < 1e-4
    assert np.abs(coarse.hid - _hwc(hid)).max() < 1e-4 and np.abs(coarse.err - err[0, 0].numpy()).max() < 1e-4

    result = matting.refine(_hwc(src), _hwc(bgr), coarse, fused_err[0, 0].numpy(), _hwc(aux))
    assert result.pha.shape == (h, w) and result.fgr_res.shape == (h, w, 3)
    assert result.selected.shape == (h // 4, w // 4)
    assert np.array_equal(result.selected, ref_sel[0, 0].numpy()) and result.selected.sum() == 30
    assert np.abs(result.pha - ref_pha[0, 0].numpy()).max() < 1e-4
    assert np.abs(result.fgr_res - _hwc(ref_fgr)).max() < 1e-4

    with pytest.raises(ValueError):
        matting.refine(_hwc(src), _hwc(bgr), coarse, None, None)  # this refiner needs depth
    with pytest.raises(ValueError):
        matting.refine(_hwc(src)[:94], _hwc(bgr)[:94], coarse, None, _hwc(aux)[:94])


def test_a_refiner_for_another_number_of_hidden_features_is_refused(exported, tmp_path):
    """A student and refiners must be made together: the refiner's patch input has the student's channels."""
    _, _, base_path, _ = exported
    narrow = onnx_export.export_refiner(Refiner(RefinerConfig(hidden_channels=16, aux_channels=2)), tmp_path / "r16.onnx")
    with pytest.raises(UserError, match="36 coarse channels but r16.onnx takes 20"):
        rt.OnnxMatting(base_path, narrow)


class _StackOutputs(torch.nn.Module):
    """The export wrapper of the version before `coarse_raw`: activated `coarse` (channels last) and `err`."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, src, bgr):
        pha, fgr_res, err, hid = self.net(src, bgr)
        return torch.cat([pha, fgr_res, hid], dim=1).permute(0, 2, 3, 1), err


def test_base_nets_exported_before_the_raw_output_still_run(exported, tmp_path):
    """Students written by older versions (e.g. a scene-adapted one in the user's data folder) give the same
    coarse stack and error map as the raw export: those with outputs pha, fgr_res, err, hid in NCHW, and
    those with the activated channels-last `coarse` and `err`."""
    net, _, base_path, _ = exported
    args = (torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56))
    legacy_path = onnx_export._export(
        net, args, tmp_path / "legacy.onnx", ["src", "bgr"], rt.LEGACY_BASE_OUTPUTS,
        {n: {0: "batch", 2: "height", 3: "width"} for n in ["src", "bgr", *rt.LEGACY_BASE_OUTPUTS]}, {})
    stack_path = onnx_export._export(
        _StackOutputs(net), args, tmp_path / "stack.onnx", ["src", "bgr"], rt.STACK_BASE_OUTPUTS,
        {"src": {0: "batch", 2: "height", 3: "width"}, "bgr": {0: "batch", 2: "height", 3: "width"},
         "coarse": {0: "batch", 1: "height", 2: "width"}, "err": {0: "batch", 2: "height", 3: "width"}}, {})
    rng = np.random.default_rng(1)
    src, bgr = rng.random((24, 32, 3), dtype=np.float32), rng.random((24, 32, 3), dtype=np.float32)
    new = rt.OnnxMatting(base_path).run_base(src, bgr)
    assert new.stack.shape == (24, 32, 36) and new.err.flags.c_contiguous
    assert new.pha.min() >= 0 and new.pha.max() <= 1 and new.hid.min() >= 0 and 0 <= new.err.min() <= new.err.max() <= 1
    for path in (legacy_path, stack_path):
        old = rt.OnnxMatting(path).run_base(src, bgr)
        assert old.stack.shape == new.stack.shape and old.err.shape == new.err.shape
        assert np.abs(new.stack - old.stack).max() < 1e-5 and np.abs(new.err - old.err).max() < 1e-5
    assert rt.coarse_width_of(stack_path) == rt.coarse_width_of(base_path) == 36
    with pytest.raises(UserError, match="not a refiner"):
        rt.OnnxMatting(base_path, base_path)  # the base network's file given as the refiner
    with pytest.raises(UserError, match="not a base network"):
        rt.OnnxMatting(exported[3])  # the refiner's file given as the base network
    narrow = onnx_export.export_refiner(Refiner(RefinerConfig(hidden_channels=16, aux_channels=2)), tmp_path / "r16.onnx")
    with pytest.raises(rt.ModelMismatch, match="gives 36 coarse channels"):  # legacy outputs are checked too
        rt.OnnxMatting(legacy_path, narrow)
    assert rt.coarse_width_of(legacy_path) == 36 and rt.coarse_width_of(narrow, "patch_coarse") == 20
    assert rt.coarse_width_of(tmp_path / "missing.onnx") is None


def test_onnx_matting_without_refiner_only_upsamples(exported):
    _, _, base_path, _ = exported
    matting = rt.OnnxMatting(base_path, None)
    rng = np.random.default_rng(0)
    coarse = matting.run_base(rng.random((12, 16, 3), dtype=np.float32), rng.random((12, 16, 3), dtype=np.float32))
    full_src, full_bgr = rng.random((48, 64, 3), dtype=np.float32), rng.random((48, 64, 3), dtype=np.float32)
    result = matting.refine(full_src, full_bgr, coarse)
    up = torch.nn.functional.interpolate(torch.from_numpy(coarse.pha)[None, None], size=(48, 64), mode="bilinear")
    assert np.abs(result.pha - up[0, 0].clamp(0, 1).numpy()).max() < 1e-5 and not result.selected.any()


def test_a_base_session_fixed_to_one_size_gives_the_same_outputs(exported):
    """`fix_base_size` reopens the base session with its symbolic sizes fixed: the same coarse outputs at that
    size (up to float rounding: static shapes may pick other float kernels), another size refused by
    onnxruntime; fixing the same size again keeps the session."""
    _, _, base_path, _ = exported
    rng = np.random.default_rng(4)
    src, bgr = rng.random((12, 16, 3), dtype=np.float32), rng.random((12, 16, 3), dtype=np.float32)
    matting = rt.OnnxMatting(base_path, None, intra_op_threads=1)
    free = matting.run_base(src, bgr)
    matting.fix_base_size(12, 16)
    session = matting.base
    fixed = matting.run_base(src, bgr)
    np.testing.assert_allclose(fixed.stack, free.stack, atol=1e-5)
    np.testing.assert_allclose(fixed.err, free.err, atol=1e-5)
    matting.fix_base_size(12, 16)
    assert matting.base is session
    with pytest.raises(Exception, match="dimension"):
        matting.run_base(src[:8], bgr[:8])


def test_numpy_selection_crop_and_replace_equal_torch():
    rng = np.random.default_rng(3)
    err = rng.random((12, 16), dtype=np.float32)
    err[0, :5] = 0
    for mode, k in [("topk", 25), ("topk", 1000), ("threshold", 0)]:
        y, x = pt.select_patches_np(err, mode, k, threshold=0.8)
        b_t, y_t, x_t = select_patches(torch.from_numpy(err)[None, None], mode, k, threshold=0.8)
        assert sorted(zip(y.tolist(), x.tolist())) == sorted(zip(y_t.tolist(), x_t.tolist()))
    assert len(pt.select_patches_np(err, "topk", 1000)[0]) == 12 * 16 - 5  # zero-error cells skipped

    frame = rng.random((48, 64, 5), dtype=np.float32)
    y, x = np.array([0, 11, 3, 11]), np.array([15, 0, 7, 15])
    t = torch.from_numpy(frame).permute(2, 0, 1)[None]
    zeros = torch.zeros(4, dtype=torch.long)
    for size, padding in [(4, 2), (2, 3)]:
        expected = crop_patches(t, zeros, torch.from_numpy(y), torch.from_numpy(x), size, padding).permute(0, 2, 3, 1)
        assert np.array_equal(pt.crop_patches_hwc(frame, y, x, size, padding), expected.numpy())
        split = [frame[..., :3], frame[..., 3], frame[..., 4:]]  # a list is cropped as its channel concatenation
        assert np.array_equal(pt.crop_patches_hwc(split, y, x, size, padding), expected.numpy())
        for frames in (frame, split):  # gathered straight into the phase layout
            phased = pt.crop_patches_hwc(frames, y, x, size, padding, phases=True)
            assert np.array_equal(phased, pt.phases_from_windows(expected.numpy()))

    patches = rng.random((4, 4, 4, 5), dtype=np.float32)
    patches_t = torch.from_numpy(patches).permute(0, 3, 1, 2)
    expected = replace_patches(t, patches_t, zeros, torch.from_numpy(y), torch.from_numpy(x))
    got = pt.replace_patches_hwc(frame.copy(), patches, y, x)
    assert np.array_equal(got, expected[0].permute(1, 2, 0).numpy())


def test_resize_linear_matches_torch_bilinear():
    x = np.random.default_rng(4).random((30, 40, 7), dtype=np.float32)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    for size in [(60, 80), (120, 160), (15, 20)]:
        expected = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
        assert np.abs(rt.resize_linear(x, size) - expected[0].permute(1, 2, 0).numpy()).max() < 1e-5


def test_upsampled_patches_equal_crops_of_the_resized_map():
    """The refiner's coarse patches are interpolated per window; they must equal cropping the whole map
    upsampled (every phase of the window against the source grid, the clamped frame edges, factors 1-16)."""
    rng = np.random.default_rng(5)
    for h, w, factor in [(12, 16, 2), (9, 20, 4), (5, 7, 8), (6, 6, 1), (3, 4, 16)]:
        low = rng.random((h, w, 5), dtype=np.float32)
        resized = rt.resize_linear(low, (h * factor, w * factor))
        for size, padding in [(2, 3), (4, 2)]:
            cells = (h * factor // size) * (w * factor // size)
            pick = rng.permutation(cells)[:40]
            y, x = pick // (w * factor // size), pick % (w * factor // size)
            got = pt.upsampled_patches_hwc(low, factor, y, x, size, padding)
            assert got.shape == (len(y), size + 2 * padding, size + 2 * padding, 5)
            assert np.abs(got - pt.crop_patches_hwc(resized, y, x, size, padding)).max() < 1e-6
    with pytest.raises(ValueError, match="factor"):  # cv2.remap would round a third of a pixel to 11/32
        pt.upsampled_patches_hwc(rng.random((4, 4, 2), dtype=np.float32), 3, np.array([0]), np.array([0]), 2, 3)


def test_downsampled_patches_equal_crops_of_the_half_resolution_frames():
    """The refiner's half-resolution image patches come straight from the full-resolution frames (2x2 means
    read by bilinear remap); they must equal cropping the frames downsampled whole, frame edges included."""
    rng = np.random.default_rng(9)
    frames = [rng.random((48, 64, 3), dtype=np.float32), rng.random((48, 64), dtype=np.float32),
              rng.random((48, 64, 2), dtype=np.float32)]
    half = [rt.resize_linear(f, (24, 32)) for f in frames]
    cells = np.arange(12 * 16)
    y, x = cells // 16, cells % 16  # every cell: each edge and corner window
    got = pt.downsampled_patches_hwc(frames, y, x, 2, 3)
    assert got.shape == (len(y), 8, 8, 6)
    assert np.abs(got - pt.crop_patches_hwc(half, y, x, 2, 3)).max() < 1e-6
    assert pt.downsampled_patches_hwc(frames, y[:0], x[:0], 2, 3).shape == (0, 8, 8, 6)
    with pytest.raises(ValueError, match="even size"):
        pt.downsampled_patches_hwc([frames[0][:47]], y, x, 2, 3)
    # half-resolution images made beforehand (the plate's, once per prior) are read by nearest neighbour
    made = [None, rt.downsample_area(frames[1], (24, 32)), rt.downsample_area(frames[2], (24, 32))]
    mixed = pt.downsampled_patches_hwc(frames, y, x, 2, 3, halves=made)
    assert np.abs(mixed - got).max() < 1e-6
    shifted = pt.downsampled_patches_hwc(frames, y, x, 2, 3, halves=[None, made[1] + 1.0, made[2]])  # read, not recomputed
    assert np.abs(shifted[..., 3] - got[..., 3] - 1.0).max() < 1e-5 and np.array_equal(shifted[..., :3], mixed[..., :3])
    with pytest.raises(ValueError, match="half-resolution image"):
        pt.downsampled_patches_hwc(frames, y, x, 2, 3, halves=[None, frames[1], None])


def test_window_gathers_in_chunks_equal_one_gather(monkeypatch):
    """More windows than cv2.remap takes in one image are gathered chunk by chunk into the same arrays."""
    rng = np.random.default_rng(8)
    frame, plane = rng.random((48, 64, 3), dtype=np.float32), rng.random((48, 64), dtype=np.float32)
    low = rng.random((12, 16, 5), dtype=np.float32)
    y, x = rng.integers(0, 12, 50), rng.integers(0, 16, 50)
    whole = [pt.crop_patches_hwc([frame, plane], y, x, 4, 2).copy(), pt.crop_patches_hwc(plane, y, x, 4, 2).copy(),
             pt.upsampled_patches_hwc(low, 2, y, x, 2, 3).copy(),
             pt.downsampled_patches_hwc([frame, plane], y // 2, x // 2, 2, 3).copy()]
    monkeypatch.setattr(pt, "REMAP_MAX_ROWS", 7 * 8)  # 7 windows a chunk
    chunked = [pt.crop_patches_hwc([frame, plane], y, x, 4, 2), pt.crop_patches_hwc(plane, y, x, 4, 2),
               pt.upsampled_patches_hwc(low, 2, y, x, 2, 3),
               pt.downsampled_patches_hwc([frame, plane], y // 2, x // 2, 2, 3)]
    for a, b in zip(whole, chunked):
        assert np.array_equal(a, b)
    assert np.array_equal(whole[1][..., 0], whole[0][..., 3])
    with pytest.raises(ValueError, match="one size"):
        pt.crop_patches_hwc([frame, plane[:10]], y, x, 4, 2)
    with pytest.raises(ValueError, match="pixels a side"):
        pt.crop_patches_hwc(np.zeros((4, 32766), np.float32), y[:1] * 0, x[:1] * 0, 4, 2)


def test_create_session_errors_and_logging(tmp_path, exported, caplog):
    with pytest.raises(UserError, match="does not exist"):
        rt.create_session(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(UserError, match="corrupt"):
        rt.create_session(corrupt)
    providers = rt.available_providers()
    assert providers[-1] == "CPUExecutionProvider" or "CPUExecutionProvider" in providers
    assert rt.available_providers(("NoSuchExecutionProvider",)) == ["CPUExecutionProvider"]
    _, _, base_path, _ = exported
    with caplog.at_level(logging.INFO, logger="engines.matting.onnx_inference"):
        session = rt.create_session(base_path, intra_op_threads=1)
    assert "in  src" in caplog.text and "out coarse" in caplog.text
    assert session.get_providers()[-1] == "CPUExecutionProvider"


def test_weight_files_round_trip_and_errors(tmp_path):
    from engines.nets.base_net import load_weights, save_weights

    torch.manual_seed(0)
    net = BaseNet(TINY)
    save_weights(net, tmp_path / "w.safetensors")
    other = BaseNet(TINY)
    load_weights(other, tmp_path / "w.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    with pytest.raises(UserError, match="does not fit"):
        load_weights(BaseNet(BaseNetConfig(aspp_channels=16, decoder_channels=(16, 12, 8))), tmp_path / "w.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        load_weights(net, tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"{}" * 10)
    with pytest.raises(UserError, match="corrupt"):
        load_weights(net, tmp_path / "bad.safetensors")


def test_a_width_left_to_shape_inference_is_still_checked(exported, tmp_path):
    """A float export may not declare its coarse stack's width (the shipped student.onnx does not): it is read
    by ONNX shape inference, so a refiner of another width is still refused with one sentence."""
    import onnx

    _, _, base_path, _ = exported
    model = onnx.load(str(base_path))
    coarse = next(v for v in model.graph.output if v.name == "coarse_raw")
    coarse.type.tensor_type.shape.dim[3].Clear()  # as the float exports leave it
    stripped = tmp_path / "stripped.onnx"
    onnx.save(model, str(stripped))
    assert not onnx.load(str(stripped)).graph.output[0].type.tensor_type.shape.dim[3].HasField("dim_value")
    assert rt.coarse_width_of(stripped) == rt.coarse_width_of(base_path) == 36
    narrow = onnx_export.export_refiner(Refiner(RefinerConfig(hidden_channels=16, aux_channels=2)), tmp_path / "r16.onnx")
    with pytest.raises(rt.ModelMismatch, match="36 coarse channels but r16.onnx takes 20"):
        rt.OnnxMatting(stripped, narrow)


def test_settled_waits_for_the_task_beside_before_an_error_propagates():
    """`settled`: when the calling thread fails while a task runs on the executor, the task has finished by
    the time the error reaches the caller (it must not read inputs the next frame overwrites)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    finished = threading.Event()

    def task():
        time.sleep(0.2)
        finished.set()

    with ThreadPoolExecutor(1) as executor:
        future = rt.run_beside(executor, task)
        with pytest.raises(ValueError, match="calling thread"):
            with rt.settled(future):
                raise ValueError("the calling thread failed")
        assert finished.is_set()
    assert rt.run_beside(None, lambda a, b: a + b, 2, 3).result() == 5  # without an executor: here and now
