"""Pretrained initialisation of the base network from TensorFlow's DeepLabV3 MobileNetV2 (BGMv2 sec. 4.3).

Owns the conversion of `deeplab_v3_1_default_1.onnx` (DeepLabV3, MobileNetV2 depth multiplier 0.5,
PASCAL VOC, batch norm folded; input NHWC RGB in [-1, 1]) into our modules, and every use of the
converted file:

- `DeepLabV3Reference`: our backbone (output stride 8, as exported) + reduced ASPP (1x1 branch + image
  pooling) + 21-class classifier; with converted weights it reproduces the ONNX model's tensors.
- `convert_deeplab_onnx` / `write_backbone_init`: read the ONNX initialisers with the `onnx` package and
  produce the reference's state dict. The first convolution is extended to `in_channels` inputs
  BGMv2-style: the image channels get the pretrained RGB weights, the background (and any auxiliary)
  channels get zeros, so the converted network initially computes exactly DeepLab's features of the
  image. The [-1, 1] vs [0, 1] input range is handled by the backbone itself (it maps [0, 1] inputs to
  [-1, 1] before the first convolution), so weights are copied unchanged and borders stay exact.
- `init_base_net_from_deeplab`: load that state into a `BaseNet` (student or teacher): backbone
  strict; ASPP 1x1 and pooling branches and the matching slices of the projection from DeepLab, the
  projection slices of BGMv2's new dilated branches set to zero (so the initial ASPP output equals
  DeepLab's while the new branches still receive gradients after the first step).
- `widen_state`: Net2WiderNet widening of the width-0.5 weights to a wider backbone (the
  teacher, width 1.0): channels are duplicated, and each consumer's weights on the duplicated inputs
  are split by random positive fractions that sum to one, so the widened network computes the same
  function while its duplicated channels get different gradients and can diverge during training.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.nets.aspp import ASPP
from engines.nets.base_net import BaseNet, read_weights
from engines.nets.mobilenetv2 import MobileNetV2Backbone, block_specs
from sensors.errors import UserError

log = logging.getLogger(__name__)

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "backbone_init"
DEFAULT_INIT_PATH = ASSET_DIR / "mobilenetv2_w0.5_deeplabv3_voc.safetensors"

DEEPLAB_INPUT = "sub_7"  # [1, 257, 257, 3] NHWC RGB in [-1, 1]
DEEPLAB_SIZE = 257
DEEPLAB_WIDTH = 0.5
DEEPLAB_OUTPUT_STRIDE = 8
DEEPLAB_ASPP_CHANNELS = 256
VOC_CLASSES = 21
VOC_PERSON = 15
_NUM_BLOCKS = 17


class DeepLabV3Reference(nn.Module):
    """The pretrained DeepLabV3 model rebuilt from our modules.

    Input: (N, in_channels, h, w) in [0, 1]; channels 0-2 are the image RGB (the others are ignored by
    the converted weights). Output: VOC logits (N, 21, ceil(h/8), ceil(w/8)) at the backbone resolution.
    """

    def __init__(self, in_channels: int = 6):
        super().__init__()
        self.backbone = MobileNetV2Backbone(in_channels, DEEPLAB_WIDTH, DEEPLAB_OUTPUT_STRIDE)
        self.aspp = ASPP(self.backbone.feature_channels[0], DEEPLAB_ASPP_CHANNELS, dilations=())
        self.classifier = nn.Conv2d(DEEPLAB_ASPP_CHANNELS, VOC_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.aspp(self.backbone(x)[0]))


def _onnx_conv_names() -> dict[str, str]:
    """Our module name -> the ONNX Conv node that holds its (folded) weight and bias."""
    names = {"backbone.stem": "MobilenetV2/Conv/Relu6"}
    for i in range(_NUM_BLOCKS):
        scope = "MobilenetV2/expanded_conv" + ("" if i == 0 else f"_{i}")
        if i > 0:
            names[f"backbone.blocks.{i}.expand"] = f"{scope}/expand/Relu6"
        names[f"backbone.blocks.{i}.depthwise"] = f"{scope}/depthwise/Relu6"
        names[f"backbone.blocks.{i}.project"] = f"{scope}/project/BatchNorm/FusedBatchNorm"
    names["aspp.conv1x1"] = "aspp0/Relu"
    names["aspp.pool_conv"] = "image_pooling/Relu"
    names["aspp.project"] = "concat_projection/Relu"
    names["classifier"] = "logits/semantic/BiasAdd"
    return names


def deeplab_tensor_names() -> dict[str, str]:
    """Our feature name -> ONNX tensor holding the same activation (for verification).

    Names: "stem", "blocks.<i>" (block outputs after the residual add), "aspp", "logits".
    """
    names = {"stem": "Relu6__5:0"}
    _, specs = block_specs(DEEPLAB_WIDTH, DEEPLAB_OUTPUT_STRIDE)
    for i, spec in enumerate(specs):
        scope = "MobilenetV2/expanded_conv" + ("" if i == 0 else f"_{i}")
        residual = spec.stride == 1 and spec.in_channels == spec.out_channels
        names[f"blocks.{i}"] = f"{scope}/add" if residual else f"{scope}/project/BatchNorm/FusedBatchNorm"
    names["aspp"] = "Relu__94:0"
    names["logits"] = "logits/semantic/BiasAdd"
    return names


def _load_onnx(onnx_path: str | Path):
    import onnx

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"DeepLab ONNX file {onnx_path} does not exist; pass the path to deeplab_v3_1_default_1.onnx.")
    try:
        return onnx.load(str(onnx_path))
    except Exception as exc:  # onnx raises DecodeError and friends for a corrupt protobuf
        raise UserError(f"DeepLab ONNX file {onnx_path} is corrupt or not an ONNX model.") from exc


def convert_deeplab_onnx(onnx_path: str | Path, in_channels: int = 6) -> dict[str, torch.Tensor]:
    """State dict of `DeepLabV3Reference(in_channels)` from the DeepLab ONNX model's initialisers.

    The first conv gets the RGB weights on input channels 0-2 and zeros on channels 3..in_channels-1.
    The ASPP projection's input halves are reordered from DeepLab's [pooling, 1x1] to our [1x1, pooling].
    """
    from onnx import numpy_helper

    model = _load_onnx(onnx_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    state: dict[str, torch.Tensor] = {}
    for ours, theirs in _onnx_conv_names().items():
        node = convs.get(theirs)
        if node is None or len(node.input) < 3:
            raise UserError(
                f"DeepLab ONNX file {onnx_path} lacks the convolution {theirs}; it is not the expected model."
            )
        weight = np.array(inits[node.input[1]], dtype=np.float32)
        bias = np.array(inits[node.input[2]], dtype=np.float32)
        state[f"{ours}.weight"] = torch.from_numpy(weight)
        state[f"{ours}.bias"] = torch.from_numpy(bias)

    stem = state["backbone.stem.weight"]
    if in_channels < stem.shape[1]:
        raise ValueError(f"in_channels must be at least {stem.shape[1]}")
    extra = torch.zeros(stem.shape[0], in_channels - stem.shape[1], *stem.shape[2:])
    state["backbone.stem.weight"] = torch.cat([stem, extra], dim=1)

    proj = state["aspp.project.weight"]
    half = DEEPLAB_ASPP_CHANNELS
    state["aspp.project.weight"] = torch.cat([proj[:, half:], proj[:, :half]], dim=1)

    reference = DeepLabV3Reference(in_channels)
    expected = reference.state_dict()
    for key, value in state.items():
        if expected[key].shape != value.shape:
            raise UserError(
                f"DeepLab ONNX tensor for {key} has shape {tuple(value.shape)}, "
                f"expected {tuple(expected[key].shape)}; it is not the expected model."
            )
    if set(expected) != set(state):
        raise RuntimeError(f"conversion misses {sorted(set(expected) - set(state))}")
    return {k: state[k].contiguous() for k in expected}


def write_backbone_init(onnx_path: str | Path, out_path: str | Path = DEFAULT_INIT_PATH, in_channels: int = 6) -> Path:
    """Convert the DeepLab ONNX model and write the state dict of `DeepLabV3Reference` as safetensors."""
    from safetensors.torch import save_file

    state = convert_deeplab_onnx(onnx_path, in_channels)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "source": (
            "TensorFlow DeepLab deeplabv3 MobileNetV2 dm0.5 PASCAL VOC "
            "(TFLite deeplabv3_257_mv_gpu, ONNX deeplab_v3_1_default_1)"
        ),
        "license": "Apache-2.0",
        "module": "engines.nets.convert_deeplab.DeepLabV3Reference",
        "in_channels": str(in_channels),
        "input_range": "[0, 1] per channel; the backbone maps it to [-1, 1]",
    }
    save_file(state, str(out_path), metadata=metadata)
    log.info("wrote %d tensors to %s", len(state), out_path)
    return out_path


def load_reference(path: str | Path = DEFAULT_INIT_PATH) -> DeepLabV3Reference:
    """`DeepLabV3Reference` loaded strictly from a converted safetensors file (eval mode)."""
    state = read_weights(path)
    model = DeepLabV3Reference(int(state["backbone.stem.weight"].shape[1]))
    model.load_state_dict(state, strict=True)
    return model.eval()


def _split_widen(weight: torch.Tensor, dim: int, factor: int, generator: torch.Generator) -> torch.Tensor:
    """Tile `weight` `factor` times along input dim `dim` and scale copies by random fractions summing to 1."""
    tiled = torch.cat([weight] * factor, dim=dim)
    shape = list(tiled.shape)
    shape[dim] = weight.shape[dim]
    fractions = torch.rand([factor] + shape, generator=generator) + 0.5  # in [0.5, 1.5): no copy near 0
    fractions = fractions / fractions.sum(dim=0, keepdim=True)
    return tiled * torch.cat(list(fractions), dim=dim)


def widen_state(
    state: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Widen conv weights in `state` to the shapes in `target` (Net2WiderNet, function-preserving).

    Both dicts share keys (e.g. a backbone's and an ASPP's `state_dict()`); every target dimension must
    be an integer multiple of the source one. Output channels are tiled (copy j holds source channel
    j mod C); input channels of dense convs are tiled with weights split by random fractions (per
    element, summing to one over the copies); depthwise convs (1 input per group) are tiled. Given
    inputs whose duplicated channels are equal, the widened layers produce tiled copies of the source
    outputs, so a widened backbone followed by widened consumers computes the source function exactly.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for key, tgt in target.items():
        src = state[key]
        if src.dim() != tgt.dim():
            raise ValueError(f"{key}: rank {src.dim()} cannot be widened to rank {tgt.dim()}")
        w = src
        if w.dim() == 4 and tgt.shape[1] != w.shape[1]:
            if tgt.shape[1] % w.shape[1]:
                raise ValueError(f"{key}: {w.shape[1]} input channels do not divide {tgt.shape[1]}")
            w = _split_widen(w, 1, tgt.shape[1] // w.shape[1], generator)
        if tgt.shape[0] != w.shape[0]:
            if tgt.shape[0] % w.shape[0]:
                raise ValueError(f"{key}: {w.shape[0]} output channels do not divide {tgt.shape[0]}")
            w = torch.cat([w] * (tgt.shape[0] // w.shape[0]), dim=0)
        if w.shape != tgt.shape:
            raise ValueError(f"{key}: cannot widen {tuple(src.shape)} to {tuple(tgt.shape)}")
        out[key] = w.contiguous()
    return out


def _subdict(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def init_base_net_from_deeplab(
    net: BaseNet,
    path: str | Path = DEFAULT_INIT_PATH,
    generator: torch.Generator | None = None,
) -> BaseNet:
    """Initialise `net`'s backbone and ASPP from the converted DeepLab file (decoder left as is).

    - Backbone: loaded strictly; extra input channels beyond the file's get zero weights; a wider
      backbone (teacher) is widened with `widen_state`.
    - ASPP (only if it has 256 channels, DeepLab's): 1x1 and pooling branches from DeepLab (input side
      widened if needed), projection columns of those branches from DeepLab, projection columns of the
      dilated branches zero; dilated branches keep their random init. Otherwise ASPP stays random.
    """
    deeplab = read_weights(path)
    bb_src = _subdict(deeplab, "backbone.")
    bb_tgt = net.backbone.state_dict()
    stem = bb_src["stem.weight"]
    want_in = bb_tgt["stem.weight"].shape[1]
    if want_in > stem.shape[1]:
        pad = torch.zeros(stem.shape[0], want_in - stem.shape[1], *stem.shape[2:])
        bb_src["stem.weight"] = torch.cat([stem, pad], dim=1)
    elif want_in < stem.shape[1]:
        bb_src["stem.weight"] = stem[:, :want_in]
    if any(bb_src[k].shape != v.shape for k, v in bb_tgt.items()):
        bb_src = widen_state(bb_src, bb_tgt, generator)
    net.backbone.load_state_dict(bb_src, strict=True)

    aspp_tgt = net.aspp.state_dict()
    if net.aspp.out_channels != DEEPLAB_ASPP_CHANNELS:
        log.warning(
            "ASPP has %d channels, DeepLab's has %d: ASPP left at random init",
            net.aspp.out_channels,
            DEEPLAB_ASPP_CHANNELS,
        )
        return net
    branch_src = {k: v for k, v in _subdict(deeplab, "aspp.").items() if not k.startswith("project.")}
    branch_tgt = {k: aspp_tgt[k] for k in branch_src}
    new_state = dict(aspp_tgt)
    new_state.update(widen_state(branch_src, branch_tgt, generator))
    c = DEEPLAB_ASPP_CHANNELS
    proj = deeplab["aspp.project.weight"]  # columns: [1x1 | pooling]
    n_dil = len(net.aspp.dilations)
    new_proj = torch.zeros_like(aspp_tgt["project.weight"])
    new_proj[:, :c] = proj[:, :c]
    new_proj[:, (1 + n_dil) * c:] = proj[:, c:]
    new_state["project.weight"] = new_proj
    new_state["project.bias"] = deeplab["aspp.project.bias"].clone()
    net.aspp.load_state_dict(new_state, strict=True)
    log.info("initialised %s backbone and ASPP from %s", type(net).__name__, path)
    return net


def deeplab_onnx_intermediates(
    onnx_path: str | Path, image_rgb: np.ndarray, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Run the DeepLab ONNX model with extra graph outputs and return those tensors as NCHW float32.

    image_rgb: (257, 257, 3) float32 RGB in [0, 1] (mapped to the model's [-1, 1] here).
    names: keys of `deeplab_tensor_names()` to fetch (default all).
    """
    import onnx
    import onnxruntime as ort

    model = _load_onnx(onnx_path)
    tensor_names = deeplab_tensor_names()
    names = list(tensor_names) if names is None else names
    existing = {o.name for o in model.graph.output}
    for name in names:
        if tensor_names[name] not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor_names[name]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = (np.asarray(image_rgb, dtype=np.float32) * 2.0 - 1.0)[None]
    fetched = session.run([tensor_names[n] for n in names], {DEEPLAB_INPUT: x})
    return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, fetched)}


def reference_intermediates(model: DeepLabV3Reference, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The activations named by `deeplab_tensor_names()`, from our reference model (NCHW), via hooks."""
    out: dict[str, torch.Tensor] = {}
    handles = [model.backbone.blocks[0].register_forward_pre_hook(lambda m, args: out.__setitem__("stem", args[0]))]
    for i, block in enumerate(model.backbone.blocks):
        handles.append(block.register_forward_hook(lambda m, a, y, i=i: out.__setitem__(f"blocks.{i}", y)))
    handles.append(model.aspp.register_forward_hook(lambda m, a, y: out.__setitem__("aspp", y)))
    try:
        with torch.no_grad():
            out["logits"] = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out
