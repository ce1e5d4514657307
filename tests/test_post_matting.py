"""Tests of the optional post-matting stage: trimaps, closed-form and ViTMatte backends, pipeline glue."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from engines.matting.background_prior import BackgroundPriorBuilder
from engines.config import DepthConfig
from engines.matting.depth_bayes import LikelihoodTables, alpha_posterior_given_depth, make_trimap
from engines.evaluation.metrics import sad
from engines.matting.result import MattingResult
from engines.matting.post_matting import (
    NoPostMatting,
    PostMatting,
    PostMattingStage,
    make_post_matting,
    post_matte,
    trimap_from_alpha,
    trimap_from_depth_posterior,
)
from engines.matting.post_inputs import unknown_box
from sensors.errors import UserError

H, W = 40, 40
BG_DEPTH_M = 2.0


# ---------------------------------------------------------------- fixtures


def _prior(h: int = H, w: int = W, seed: int = 0):
    rng = np.random.default_rng(seed)
    builder = BackgroundPriorBuilder(h, w)
    color = np.full((h, w, 3), 60, np.uint8)
    for _ in range(4):
        builder.add(color, (BG_DEPTH_M + rng.normal(0, 0.005, (h, w))).astype(np.float32))
    return builder.build(DepthConfig())


def _disk_scene(h: int = H, w: int = W, radius: float = 11.0, edge_px: float = 3.0, band: float = 4.0):
    """Smooth orange-ish foreground over a smooth blue-ish background with a soft-edged disk.

    Returns (image uint8 RGB, alpha ground truth float32, trimap float32 {0, 0.5, 1}).
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - h / 2 + 0.5, xx - w / 2 + 0.5)
    alpha = np.clip((radius - r) / edge_px + 0.5, 0.0, 1.0).astype(np.float32)
    fg = np.stack([0.85 + 0.1 * xx / w, 0.45 + 0.2 * yy / h, 0.15 + 0.0 * xx], axis=2)
    bg = np.stack([0.1 + 0.1 * yy / h, 0.3 + 0.1 * xx / w, 0.8 - 0.1 * yy / h], axis=2)
    image = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg
    image_u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[r < radius - band] = 1.0
    trimap[r > radius + band] = 0.0
    return image_u8, alpha, trimap


# ---------------------------------------------------------------- trimaps


def test_trimap_from_alpha_is_eq12_then_eq13_and_uses_depth():
    cfg = DepthConfig()
    prior = _prior()
    alpha = np.full((H, W), 0.75, np.float32)
    depth = np.full((H, W), BG_DEPTH_M, np.float32)  # left: at the background's depth
    depth[:, W // 3: 2 * W // 3] = 0.0  # middle: unknown depth keeps alpha 0.75
    depth[:, 2 * W // 3:] = 1.0  # right: clearly in front of the background
    trimap = trimap_from_alpha(alpha, depth, prior, cfg)
    expected = make_trimap(alpha_posterior_given_depth(alpha, depth, prior, cfg), cfg)
    np.testing.assert_array_equal(trimap, expected)
    assert trimap.dtype == np.float32 and set(np.unique(trimap)) <= {0.0, 0.5, 1.0}
    # away from the blurred column borders: background -> 0, unknown depth -> 0.5, in front -> 1
    assert np.all(trimap[:, :W // 3 - 3] == 0.0)
    assert np.all(trimap[:, W // 3 + 3: 2 * W // 3 - 3] == 0.5)
    assert np.all(trimap[:, 2 * W // 3 + 3:] == 1.0)
    # tables give the same answer as the prior
    np.testing.assert_array_equal(trimap_from_alpha(alpha, depth, LikelihoodTables.from_prior(prior), cfg), trimap)


def test_trimap_band_px_widens_the_unknown_region():
    cfg = DepthConfig()
    prior = _prior()
    _, alpha, _ = _disk_scene()
    depth = np.where(alpha > 0.5, np.float32(1.0), np.float32(BG_DEPTH_M)).astype(np.float32)
    narrow = trimap_from_alpha(alpha, depth, prior, cfg)
    wide = trimap_from_alpha(alpha, depth, prior, cfg, band_px=3)
    n_narrow, n_wide = int((narrow == 0.5).sum()), int((wide == 0.5).sum())
    assert 0 < n_narrow < n_wide
    assert np.all(wide[narrow == 0.5] == 0.5)  # widening never shrinks the band
    assert (wide == 1.0).any() and (wide == 0.0).any()


def test_trimap_from_depth_posterior_upsamples_and_thresholds(caplog):
    cfg = DepthConfig()
    post = np.full((20, 20), 0.07, np.float32)  # background
    post[4:14, 2:9] = 0.6  # clearly in front (the paper's A_D never gets much higher)
    post[4:14, 11:18] = 0.5  # unknown depth: exactly P_F
    with caplog.at_level(logging.WARNING, logger="engines.matting.post_matting"):
        paper = trimap_from_depth_posterior(post, cfg, (80, 80))
    assert paper.shape == (80, 80) and not (paper == 1.0).any()  # 0.8 is above every A_D
    assert "no definite foreground" in caplog.text
    trimap = trimap_from_depth_posterior(post, cfg, (80, 80), high=0.55)
    assert trimap[36, 22] == 1.0  # centre of the in-front block
    assert trimap[36, 58] == 0.5  # centre of the unknown-depth block
    assert trimap[2, 2] == 0.0 and trimap[78, 78] == 0.0 and trimap[36, 40] == 0.0
    wide = trimap_from_depth_posterior(post, cfg, (80, 80), band_px=2, high=0.55)
    assert (wide == 0.5).sum() > (trimap == 0.5).sum()


def test_unknown_box_margin_clip_and_multiple():
    trimap = np.zeros((100, 120), np.float32)
    assert unknown_box(trimap, 5) is None
    trimap[40:50, 60:70] = 0.5
    assert unknown_box(trimap, 5) == (slice(35, 55), slice(55, 75))
    rows, cols = unknown_box(trimap, 5, multiple=32)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (32, 32)
    assert rows.start <= 35 and rows.stop >= 55 and cols.start <= 55 and cols.stop >= 75
    trimap[0:3, 115:120] = 0.5  # near a corner: clipped to the image, then grown inside it
    rows, cols = unknown_box(trimap, 8, multiple=32)
    assert rows.start == 0 and cols.stop == 120 and (rows.stop - rows.start) % 32 == 0
    assert 0 <= cols.start and (cols.stop - cols.start) % 32 == 0
    rows, cols = unknown_box(np.full((20, 30), 0.5, np.float32), 4, multiple=32)  # frame smaller than 32
    assert (rows, cols) == (slice(0, 20), slice(0, 30))


# ---------------------------------------------------------------- interface


def test_make_post_matting_kinds_and_errors(tmp_path):
    assert isinstance(make_post_matting("none"), NoPostMatting)
    backend = make_post_matting("closed-form")
    assert backend.name == "closed-form" and isinstance(backend, PostMatting)
    with pytest.raises(UserError) as err:
        make_post_matting("magic")
    assert err.value.exit_code == 2 and "closed-form" in str(err.value)
    with pytest.raises(UserError, match="--vitmatte"):
        make_post_matting("vitmatte")
    with pytest.raises(UserError, match="hf download"):
        make_post_matting("vitmatte", vitmatte_dir=tmp_path)  # empty folder


def test_none_backend_returns_a_copy_of_alpha():
    image, alpha, trimap = _disk_scene()
    out = NoPostMatting().refine(image, alpha, np.zeros((H, W), np.float32), trimap)
    np.testing.assert_array_equal(out, alpha)
    assert out is not alpha


# ---------------------------------------------------------------- closed form


def test_closed_form_beats_trimap_alpha_in_the_unknown_band():
    from engines.matting.post_closed_form import ClosedFormMatting

    image, gt, trimap = _disk_scene()
    unknown = trimap == 0.5
    out = ClosedFormMatting().refine(image, np.full((H, W), 0.5, np.float32), np.zeros((H, W), np.float32), trimap)
    assert out.shape == (H, W) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[~unknown], trimap[~unknown])  # known regions kept
    sad_trimap = sad(trimap, gt, mask=unknown)
    sad_cf = sad(out, gt, mask=unknown)
    assert sad_cf < 0.1 * sad_trimap, (sad_cf, sad_trimap)


def test_closed_form_crop_only_and_degenerate_trimaps():
    from engines.matting.post_closed_form import ClosedFormMatting

    cf = ClosedFormMatting()
    image, gt, trimap = _disk_scene()
    depth = np.zeros((H, W), np.float32)
    # the same disk inside a larger frame with a distant far-away region known: same unknown-band answer
    big_image = np.zeros((H + 30, W + 50, 3), np.uint8)
    big_image[:] = image[0, 0]
    big_image[:H, :W] = image
    big_trimap = np.zeros((H + 30, W + 50), np.float32)
    big_trimap[:H, :W] = trimap
    big = cf.refine(big_image, np.full(big_trimap.shape, 0.5, np.float32), np.zeros(big_trimap.shape, np.float32),
                    big_trimap)
    small = cf.refine(image, np.full((H, W), 0.5, np.float32), depth, trimap)
    np.testing.assert_allclose(big[:H, :W], small, atol=2e-3)
    # no unknown pixel: the trimap itself
    known = (gt > 0.5).astype(np.float32)
    np.testing.assert_array_equal(cf.refine(image, gt, depth, known), known)
    # unknown next to background only: background
    only_bg = np.zeros((H, W), np.float32)
    only_bg[5:10, 5:10] = 0.5
    assert np.all(cf.refine(image, gt, depth, only_bg) == 0.0)
    # nothing known at all: the input alpha is kept
    out = cf.refine(image, gt, depth, np.full((H, W), 0.5, np.float32))
    np.testing.assert_array_equal(out, gt)


def test_closed_form_sizes_the_preconditioner_to_the_system(monkeypatch):
    """pymatting's incomplete Cholesky reserves two 2 GB arrays per solve by default; the backend sizes
    them to the Laplacian (and grows them when a factor needs more), with the same solution."""
    import sys

    import pymatting
    import pymatting.preconditioner.ichol  # noqa: F401 (the package's name `ichol` is the function)

    from engines.matting.post_closed_form import ClosedFormMatting

    image, _, trimap = _disk_scene()
    start, depth = np.full((H, W), 0.5, np.float32), np.zeros((H, W), np.float32)
    asked: list[int] = []
    ichol_module = sys.modules["pymatting.preconditioner.ichol"]
    real = ichol_module.ichol

    def recording_ichol(matrix, max_nnz=int(4e9 / 16), **kwargs):
        asked.append(max_nnz)
        if len(asked) == 1 and max_nnz < int(4e9 / 16):  # the first sized try is found too small
            raise ValueError("... more than max_nnz non-zero elements were created ...")
        return real(matrix, max_nnz=max_nnz, **kwargs)

    monkeypatch.setattr(ichol_module, "ichol", recording_ichol)
    sized = ClosedFormMatting().refine(image, start, depth, trimap)
    # the first room: at least 2^23 entries (each array above glibc's 32 MB mmap threshold), far under 250 million
    assert len(asked) == 2 and asked[0] == 2**23 and asked[1] == 4 * asked[0], asked
    default = ClosedFormMatting()  # with pymatting's default preconditioner
    default._solver = lambda *args, preconditioner=None, **kwargs: pymatting.estimate_alpha_cf(*args, **kwargs)
    np.testing.assert_allclose(sized, default.refine(image, start, depth, trimap), atol=1e-6)


def test_closed_form_rejects_bad_inputs():
    from engines.matting.post_closed_form import ClosedFormMatting

    image, alpha, trimap = _disk_scene()
    with pytest.raises(ValueError):
        ClosedFormMatting().refine(image.astype(np.float32), alpha, alpha, trimap)
    with pytest.raises(ValueError):
        ClosedFormMatting().refine(image, alpha[:-1], alpha, trimap)


# ---------------------------------------------------------------- pipeline glue


def _frame_with_subject():
    image, gt, _ = _disk_scene()
    depth = np.where(gt > 0.5, np.float32(1.0), np.float32(BG_DEPTH_M)).astype(np.float32)
    return image, gt, depth


def test_post_matte_updates_the_result_and_the_stage_matches():
    cfg = DepthConfig()
    prior = _prior()
    image, gt, depth = _frame_with_subject()
    coarse = (gt > 0.5).astype(np.float32)  # a hard, slightly wrong matte
    backend = make_post_matting("closed-form")
    result = MattingResult(alpha=coarse.copy(), timings_ms={"total": 1.0})
    out = post_matte(result, image, depth, prior, cfg, backend, band_px=2)
    assert out is result
    assert result.trimap is not None and (result.trimap == 0.5).any()
    np.testing.assert_array_equal(result.trimap, trimap_from_alpha(coarse, depth, prior, cfg, band_px=2))
    assert {"post_trimap", "post_closed-form", "total"} <= set(result.timings_ms)
    unknown = result.trimap == 0.5
    assert sad(result.alpha, gt, mask=unknown) < sad(coarse, gt, mask=unknown)

    stage = PostMattingStage(backend, cfg, band_px=2)
    with pytest.raises(UserError):
        stage(MattingResult(alpha=coarse.copy()), image, depth)
    stage.set_prior(prior)
    staged = stage(MattingResult(alpha=coarse.copy()), image, depth)
    np.testing.assert_allclose(staged.alpha, result.alpha, atol=1e-6)
    np.testing.assert_array_equal(staged.trimap, result.trimap)


def test_post_matte_from_depth_posterior_and_errors():
    cfg = DepthConfig()
    prior = _prior()
    image, gt, depth = _frame_with_subject()
    posterior = np.full((10, 10), 0.07, np.float32)
    posterior[3:7, 3:7] = 0.6
    result = MattingResult(alpha=gt.copy(), depth_posterior=posterior)
    post_matte(result, image, depth, prior, cfg, NoPostMatting(), trimap_source="posterior", posterior_high=0.55)
    np.testing.assert_array_equal(result.trimap, trimap_from_depth_posterior(posterior, cfg, (H, W), high=0.55))
    np.testing.assert_array_equal(result.alpha, gt)  # "none" keeps the alpha
    with pytest.raises(UserError):
        post_matte(MattingResult(alpha=gt.copy()), image, depth, prior, cfg, NoPostMatting(), trimap_source="posterior")
    with pytest.raises(UserError):
        post_matte(result, image, depth, prior, cfg, NoPostMatting(), trimap_source="magic")
    with pytest.raises(UserError):
        PostMattingStage(NoPostMatting(), cfg, band_px=-1)


# ---------------------------------------------------------------- ViTMatte (tiny random model)


@pytest.fixture(scope="module")
def tiny_vitmatte(tmp_path_factory):
    """A tiny randomly initialised ViTMatte saved like a hub checkpoint; its head outputs sigmoid(1.5)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    backbone = transformers.VitDetConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=64,
        pretrain_image_size=64, patch_size=16, num_channels=4, out_features=["stage1"],
    )
    config = transformers.VitMatteConfig(backbone_config=backbone, hidden_size=32, convstream_hidden_sizes=[8, 8, 8],
                                         fusion_hidden_sizes=[16, 8, 8, 8])
    torch.manual_seed(0)
    model = transformers.VitMatteForImageMatting(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-trivial weights everywhere ...
            p.normal_(0.0, 0.2)
    random_dir = tmp_path_factory.mktemp("vitmatte_random")
    model.save_pretrained(random_dir)
    transformers.VitMatteImageProcessor().save_pretrained(random_dir)
    with torch.no_grad():  # ... and a copy whose last layer outputs a known constant
        last = model.decoder.matting_head.matting_convs[-1]
        last.weight.zero_()
        last.bias.fill_(1.5)
    constant_dir = tmp_path_factory.mktemp("vitmatte_constant")
    model.save_pretrained(constant_dir)
    return random_dir, constant_dir


def _ring_trimap(h: int, w: int) -> np.ndarray:
    trimap = np.zeros((h, w), np.float32)
    trimap[20:40, 30:50] = 0.5
    trimap[25:35, 35:45] = 1.0
    return trimap


def test_vitmatte_loads_from_disk_and_respects_the_trimap(tiny_vitmatte):
    from engines.matting.post_vitmatte import ViTMatteBackend

    random_dir, _ = tiny_vitmatte
    backend = ViTMatteBackend(random_dir, device="cpu")
    assert backend.name == "vitmatte" and str(backend.device) == "cpu"
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    trimap = _ring_trimap(70, 90)
    out = backend.refine(image, np.zeros((70, 90), np.float32), np.zeros((70, 90), np.float32), trimap)
    assert out.shape == (70, 90) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    known = trimap != 0.5
    np.testing.assert_array_equal(out[known], trimap[known])
    values = out[trimap == 0.5]
    assert values.std() > 0.0 and not np.isin(values, (0.0, 0.5, 1.0)).all()  # the model's own output


def test_vitmatte_writes_the_model_output_and_crops(tiny_vitmatte):
    from engines.matting.post_vitmatte import ViTMatteBackend

    _, constant_dir = tiny_vitmatte  # no preprocessor_config.json: the defaults are used
    backend = ViTMatteBackend(constant_dir, device="cpu", margin_px=8)
    shapes = []
    backend.model.register_forward_pre_hook(lambda module, args, kwargs: shapes.append(
        tuple(kwargs["pixel_values"].shape)), with_kwargs=True)
    image = np.full((160, 192, 3), 90, np.uint8)
    trimap = _ring_trimap(160, 192)
    out = backend.refine(image, np.zeros((160, 192), np.float32), np.zeros((160, 192), np.float32), trimap)
    expected = 1.0 / (1.0 + np.exp(-1.5))
    np.testing.assert_allclose(out[trimap == 0.5], expected, atol=1e-5)
    np.testing.assert_array_equal(out[trimap != 0.5], trimap[trimap != 0.5])
    assert shapes == [(1, 4, 64, 64)]  # 20x20 unknown box + 2 x 8 margin, grown to 64, not the 160x192 frame
    # no unknown pixel: the model is not run
    known = (trimap == 1.0).astype(np.float32)
    np.testing.assert_array_equal(backend.refine(image, known, known, known), known)
    assert len(shapes) == 1


def test_vitmatte_weights_folder_checks(tiny_vitmatte, tmp_path):
    from engines.matting.post_vitmatte import ViTMatteBackend, check_weights_dir, resolve_weights_dir

    random_dir, _ = tiny_vitmatte
    with pytest.raises(UserError, match="not a folder"):
        ViTMatteBackend(tmp_path / "missing")
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text((random_dir / "config.json").read_text())
    with pytest.raises(UserError, match="no weight file") as err:
        ViTMatteBackend(incomplete)
    assert "hf download hustvl/vitmatte-small-composition-1k" in str(err.value)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="not ViTMatte"):
        check_weights_dir(other)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((random_dir / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="could not be loaded"):
        ViTMatteBackend(corrupt, device="cpu")
    # a Hugging Face cache layout resolves to the refs/main snapshot
    hub = tmp_path / "hub"
    entry = hub / "models--hustvl--vitmatte-small-composition-1k"
    snapshot = entry / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for f in random_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("abc123\n")
    assert resolve_weights_dir(hub) == snapshot
    assert resolve_weights_dir(entry) == snapshot
    assert isinstance(ViTMatteBackend(hub, device="cpu").model, object)
    with pytest.raises(UserError, match="Unknown torch device"):
        ViTMatteBackend(random_dir, device="no-such-device")


def test_vitmatte_unusable_device_is_a_user_error(tiny_vitmatte):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from engines.matting.post_vitmatte import ViTMatteBackend

    with pytest.raises(UserError, match="cannot run on 'cuda'"):
        ViTMatteBackend(tiny_vitmatte[0], device="cuda")
