"""ONNX export of the base network and the refiner, and the check that an export matches torch.

Owns `export_base_net` / `export_refiner` (named inputs/outputs, dynamic sizes, legacy TorchScript
exporter, model metadata) and `validate_export` (max abs difference to torch on given inputs). The
model spec (names, shapes, patch geometry) and the inference side are `engines.matting.onnx_inference`.
"""

from __future__ import annotations

import copy
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.matting.onnx_inference import BASE_INPUTS, BASE_OUTPUTS, REFINER_INPUTS, REFINER_OUTPUTS, create_session
from engines.matting.patches import core_from_phases, windows_from_phases
from engines.nets.base_net import BaseNet
from engines.nets.refiner import Refiner, RefinerPatchNet
from engines.nets.refiner_phases import PhasedPatchNet

log = logging.getLogger(__name__)

OPSET = 17


class _ChannelsLastBaseNet(nn.Module):
    """Export wrapper: a copy of a `BaseNet` whose output is the spec's `coarse_raw` (N, h, w, 5 + hidden),
    channels last, before the activations, in the order [alpha, fgr_res, hidden, error]: the copy's last layer
    has its output channels in that order, so the graph ends in one transpose (no slices or concatenation)."""

    def __init__(self, net: BaseNet):
        super().__init__()
        self.net = copy.deepcopy(net)
        final = self.net.decoder.final
        hidden = net.config.hidden_channels
        order = [0, 1, 2, 3, *range(5, 5 + hidden), 4]  # BaseNet's own order: alpha, fgr_res, error, hidden
        with torch.no_grad():
            final.weight.copy_(final.weight[order])
            final.bias.copy_(final.bias[order])

    def forward(self, src: torch.Tensor, bgr: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.raw(src, bgr, aux).permute(0, 2, 3, 1)


class _ChannelsLastPatchNet(nn.Module):
    """NHWC patches in (the 8x8 `patch_full` of refiner files before `patch_full_phases`), NHWC refined
    patches out, around a `RefinerPatchNet`: what `validate_export` checks an exported refiner against."""

    def __init__(self, patch_net: RefinerPatchNet):
        super().__init__()
        self.patch_net = patch_net

    def forward(
        self, patch_coarse: torch.Tensor, patch_half_img: torch.Tensor, patch_full: torch.Tensor
    ) -> torch.Tensor:
        half = torch.cat([patch_coarse, patch_half_img], dim=3).permute(0, 3, 1, 2)
        out = self.patch_net(half, patch_full.permute(0, 3, 1, 2))
        return out.permute(0, 2, 3, 1)


@contextmanager
def _eval_mode(module: nn.Module):
    """Put `module` in eval mode and restore every submodule's own training flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes, metadata) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(module):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns that it is legacy
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
            )
    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))
    log.info("exported %s to %s", type(module).__name__, path)
    return path


def export_base_net(net: BaseNet, path: str | Path, size: tuple[int, int] = (120, 160)) -> Path:
    """Export `net` (in eval mode) as the base-net model of the spec; `size` (h, w) is only the trace size."""
    h, w = size
    cfg = net.config
    args: tuple = (torch.rand(1, 3, h, w), torch.rand(1, 3, h, w))
    names = list(BASE_INPUTS[:2])
    if cfg.aux_channels:
        args = args + (torch.rand(1, cfg.aux_channels, h, w),)
        names.append(BASE_INPUTS[2])
    dynamic = {n: {0: "batch", 2: "height", 3: "width"} for n in names}
    dynamic[BASE_OUTPUTS[0]] = {0: "batch", 1: "height", 2: "width"}
    metadata = {"model": "dart_base_net", **vars(cfg)}
    return _export(_ChannelsLastBaseNet(net), args, Path(path), names, BASE_OUTPUTS, dynamic, metadata)


def export_refiner(refiner: Refiner | RefinerPatchNet, path: str | Path) -> Path:
    """Export the refiner's patch convolutions (its batch norms' running statistics folded) as the
    channels-last patch model of the spec, stage 2 on the phase grid (`engines.nets.refiner_phases`)."""
    patch_net = refiner.patch_net if isinstance(refiner, Refiner) else refiner
    args = tuple(torch.from_numpy(a) for a in refiner_probe_inputs(patch_net, np.random.default_rng(0), 5).values())
    dynamic = {n: {0: "patches"} for n in REFINER_INPUTS + REFINER_OUTPUTS}
    metadata = {"model": "dart_refiner_patches", "aux_channels": patch_net.full_channels - 6}
    return _export(PhasedPatchNet(patch_net), args, Path(path), REFINER_INPUTS, REFINER_OUTPUTS, dynamic, metadata)


def refiner_probe_inputs(refiner: Refiner | RefinerPatchNet, rng: np.random.Generator,
                         patches: int = 7) -> dict[str, np.ndarray]:
    """Random float32 inputs in [0, 1) for `refiner`'s export (`validate_export`), channels last, of the
    refiner's widths: `patch_coarse` (patches, 8, 8, 4 + hidden), `patch_half_img` (patches, 8, 8, 6 + A) and
    `patch_full_phases` (patches, 4, 4, 4 (6 + A))."""
    patch_net = refiner.patch_net if isinstance(refiner, Refiner) else refiner
    c = patch_net.full_channels
    return {"patch_coarse": rng.random((patches, 8, 8, patch_net.half_channels - c), dtype=np.float32),
            "patch_half_img": rng.random((patches, 8, 8, c), dtype=np.float32),
            "patch_full_phases": rng.random((patches, 4, 4, 4 * c), dtype=np.float32)}


def validate_export(module: nn.Module, path: str | Path, inputs: dict[str, np.ndarray]) -> float:
    """Max abs difference between torch `module` (eval) and the ONNX model at `path` on `inputs` (CPU).

    `module` is what was exported (a `BaseNet`, a `Refiner` / `RefinerPatchNet` for a refiner model).
    """
    session = create_session(path, ["CPUExecutionProvider"], intra_op_threads=2)
    got = session.run(None, inputs)
    if isinstance(module, Refiner):
        module = module.patch_net
    if isinstance(module, RefinerPatchNet):  # the original refiner on 8x8 full-resolution windows
        module = _ChannelsLastPatchNet(module)
        if REFINER_OUTPUTS[0] in {o.name for o in session.get_outputs()}:
            got = [core_from_phases(got[0], 4)]
            inputs = {**inputs, REFINER_INPUTS[2]: windows_from_phases(inputs[REFINER_INPUTS[2]])}
    if isinstance(module, BaseNet):
        module = _ChannelsLastBaseNet(module)
    with _eval_mode(module), torch.no_grad():
        expected = module(*[torch.from_numpy(inputs[i.name]) for i in session.get_inputs()])
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
