"""Tests of engines.nets.convert_deeplab: the converted DeepLabV3 backbone against the ONNX original,
the shipped initialisation file, and the student / teacher initialisation from it."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engines.nets.base_net import BaseNet, read_weights, student_config, teacher_config
from engines.nets.convert_deeplab import (
    DEEPLAB_INPUT,
    DEFAULT_INIT_PATH,
    VOC_PERSON,
    DeepLabV3Reference,
    convert_deeplab_onnx,
    deeplab_onnx_intermediates,
    init_base_net_from_deeplab,
    load_reference,
    reference_intermediates,
    widen_state,
)
from engines.nets.mobilenetv2 import MobileNetV2Backbone
from sensors.errors import UserError

torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[2] / "shared"
ONNX_PATH = SHARED / "weights" / "deeplabv3_mobilenetv2" / "deeplab_v3_1_default_1.onnx"


@pytest.fixture
def deeplab_onnx() -> Path:
    if not ONNX_PATH.is_file():
        pytest.skip("../shared/weights (the DeepLab ONNX model) is not available in this checkout")
    return ONNX_PATH


def _rgb_257(path: Path) -> np.ndarray:
    """A real photo as (257, 257, 3) float32 RGB in [0, 1]."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.resize(bgr[:, :, ::-1], (257, 257), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _nchw(image: np.ndarray, background: float | None = None) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    other = torch.rand_like(x) if background is None else torch.full_like(x, background)
    return torch.cat([x, other], 1)  # image + a background the converted weights must ignore


def test_converted_backbone_reproduces_onnx_intermediate_features(deeplab_onnx, shared_data):
    image = _rgb_257(shared_data / "tum_frame" / "TUM_color.png")
    reference = DeepLabV3Reference(6).eval()
    reference.load_state_dict(convert_deeplab_onnx(deeplab_onnx, in_channels=6), strict=True)
    theirs = deeplab_onnx_intermediates(deeplab_onnx, image)
    ours = reference_intermediates(reference, _nchw(image))
    assert len(theirs) == 20  # stem, 17 blocks, ASPP, logits
    for name, expected in theirs.items():
        got = ours[name].numpy()
        assert got.shape == expected.shape, name
        scale = float(np.abs(expected).max())
        assert scale > 0.1, name
        assert np.abs(got - expected).max() <= 1e-3 + 1e-5 * scale, name


def test_shipped_init_equals_a_fresh_conversion(deeplab_onnx):
    shipped = read_weights(DEFAULT_INIT_PATH)
    fresh = convert_deeplab_onnx(deeplab_onnx, in_channels=6)
    assert set(shipped) == set(fresh)
    for key in fresh:
        assert torch.equal(shipped[key], fresh[key]), key


def test_shipped_reference_segments_the_person(deeplab_onnx, shared_data):
    import onnxruntime as ort

    session = ort.InferenceSession(str(deeplab_onnx), providers=["CPUExecutionProvider"])
    model = load_reference()
    photos = shared_data / "bgmv1_photos" / "input"
    for name, has_person in [("0001_img.png", True), ("1000_img.png", True), ("0001_back.png", False)]:
        image = _rgb_257(photos / name)
        with torch.no_grad():
            logits = model(_nchw(image, background=0.5))
        logits = torch.nn.functional.interpolate(logits, size=(257, 257), mode="bilinear", align_corners=True)
        ours = (logits[0].argmax(0) == VOC_PERSON).numpy()
        onnx_logits = session.run(None, {DEEPLAB_INPUT: (image * 2 - 1)[None]})[0][0]
        theirs = onnx_logits.argmax(-1) == VOC_PERSON
        if has_person:
            assert ours.mean() > 0.1
            # logits agree to 1e-4 (test above); the masks differ only by the final upsampling
            # (TF's resize vs torch's align_corners=True bilinear) along the outline
            assert (ours & theirs).sum() / (ours | theirs).sum() > 0.85
            rows, cols = np.nonzero(ours)
            assert 60 < rows.mean() < 200 and 60 < cols.mean() < 200  # the subject stands mid-frame
        else:
            assert ours.mean() < 0.01 and theirs.mean() < 0.01


def test_shipped_init_loads_strictly_into_the_student_backbone():
    state = read_weights(DEFAULT_INIT_PATH)
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    student = BaseNet(student_config())
    student.backbone.load_state_dict(backbone, strict=True)
    DeepLabV3Reference(6).load_state_dict(state, strict=True)
    assert state["backbone.stem.weight"].shape == (16, 6, 3, 3)
    assert torch.equal(state["backbone.stem.weight"][:, 3:], torch.zeros(16, 3, 3, 3))  # background starts ignored


def test_student_init_keeps_deeplab_aspp_function():
    torch.manual_seed(0)
    reference = load_reference()
    student = init_base_net_from_deeplab(BaseNet(student_config())).eval()
    assert torch.equal(student.backbone.stem.weight, reference.backbone.stem.weight)
    features = torch.rand(1, 160, 8, 10) * 4
    with torch.no_grad():
        assert torch.allclose(student.aspp(features), reference.aspp(features), atol=1e-5)
    assert student.aspp.project.weight[:, 256:1024].abs().max() == 0  # dilated branches start switched off


def test_teacher_widening_preserves_the_pretrained_function():
    reference = load_reference()
    student_bb = MobileNetV2Backbone(6, 0.5, 16).eval()
    student_bb.load_state_dict({k[9:]: v for k, v in reference.state_dict().items() if k.startswith("backbone.")})
    teacher = init_base_net_from_deeplab(BaseNet(teacher_config()), generator=torch.Generator().manual_seed(1)).eval()
    x = torch.rand(1, 6, 64, 96)
    with torch.no_grad():
        small = student_bb(x)
        wide = teacher.backbone(x)
        for s, w in zip(small, wide):
            assert w.shape[1] == 2 * s.shape[1]
            assert torch.allclose(w[:, : s.shape[1]], s, atol=1e-4) and torch.allclose(w[:, s.shape[1] :], s, atol=1e-4)
        assert torch.allclose(teacher.aspp(wide[0]), reference.aspp(small[0]), atol=1e-4)
    w = teacher.backbone.blocks[1].expand.weight  # input channels 0..7 and 8..15 are copies
    assert not torch.allclose(w[:, :8], w[:, 8:])  # split unevenly: the copies can diverge in training
    source = reference.backbone.blocks[1].expand.weight
    assert torch.allclose(w[:, :8] + w[:, 8:], torch.cat([source, source]), atol=1e-6)  # splits sum to the source


def test_widen_state_rejects_non_multiples():
    with pytest.raises(ValueError):
        widen_state({"w": torch.zeros(3, 2, 1, 1)}, {"w": torch.zeros(4, 2, 1, 1)})


def test_missing_or_corrupt_inputs_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        convert_deeplab_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(UserError):
        convert_deeplab_onnx(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_reference(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="corrupt"):
        init_base_net_from_deeplab(BaseNet(student_config()), corrupt)


def test_rgbd_student_init_pads_extra_input_channels_with_zeros():
    reference = load_reference()
    net = init_base_net_from_deeplab(BaseNet(student_config(in_channels=8)))
    stem = net.backbone.stem.weight
    assert stem.shape == (16, 8, 3, 3)
    assert torch.equal(stem[:, :6], reference.backbone.stem.weight) and stem[:, 6:].abs().max() == 0
