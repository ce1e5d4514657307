"""BGMv2's base network G_base / DART's Phi (DART eq. 1-2, BGMv2 sec. 4.1) and weight files.

Owns `BaseNetConfig` (with `student_config()` / `teacher_config()`), `BaseNet` (backbone -> ASPP ->
decoder -> the four coarse outputs), `foreground_from_residual`, `save_weights` / `load_weights`
(safetensors, strict, one-sentence `UserError` for a missing or unreadable file), and `load_student` /
`pointwise_final_layer` for students made before the last layer became 1x1.

Student vs teacher. DART distils a MobileNetV2 student from BGMv2's ResNet-50 base network. Here there
are no ImageNet ResNet weights (torchvision is not available and nothing downloads at run time) and a
ResNet-50 trained from scratch on a 2-core CPU would be worse than a pretrained small network, so the
teacher is a MobileNetV2 width 1.0 (about 4x the backbone parameters of the student, 1.8 M vs 0.47 M) whose
weights are the pretrained width-0.5 DeepLabV3 backbone widened function-preservingly (Net2WiderNet,
`engines.nets.convert_deeplab.widen_state`), with BGMv2's full-size ASPP (256) and decoder
(128-64-48). The student is the pretrained width-0.5 backbone, the same ASPP (initialised from DeepLab)
and a decoder of 96-48-32 whose last layer is 1x1 instead of BGMv2's 3x3. That 3x3 layer, at the full
base resolution on 38 channels, was a third of the student's time in INT8 (about 3 ms of 10 on one
CPU thread at 160x120, a 640x480 frame at c = 4); the 1x1 one runs on the decoder's features before their
last upsampling (`engines.nets.decoder`). It hands the refiner 8 hidden features, not BGMv2's 32: the
ones the refiners weighed most were kept (32 -> 16 -> 8, `engines.training.prune`, the refiners fine-tuned
after each cut), which made the student's output stack, the refiner's patches and its first layer cheaper
at no loss of accuracy (assets/MODEL_CARD.md). Students
made before (3x3, 32 hidden features) still load (`load_student`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from engines.nets.aspp import ASPP
from engines.nets.decoder import Decoder
from engines.nets.mobilenetv2 import MobileNetV2Backbone
from sensors.errors import UserError

log = logging.getLogger(__name__)

IMAGE_CHANNELS = 3  # RGB of the image and of the background, each in [0, 1]
STUDENT_HIDDEN = 8  # hidden features the student hands the refiner (BGMv2: 32; engines.training.prune)


@dataclass(frozen=True)
class BaseNetConfig:
    """Shape of a base network. Defaults are BGMv2's (appendix B.1) on a MobileNetV2 width 0.5.

    in_channels: network input channels: image RGB (3) + background RGB (3) + `in_channels - 6`
        auxiliary channels (e.g. normalised live depth and background depth for an RGB-D variant).
    width_mult: MobileNetV2 width multiplier (0.5 = the pretrained DeepLabV3 model).
    output_stride: backbone output stride (BGMv2: 16).
    aspp_channels: channels of every ASPP branch (DeepLabV3/BGMv2: 256).
    aspp_dilations: dilated ASPP branches (BGMv2: 3, 6, 9).
    decoder_channels: the three CBR layers of the decoder (BGMv2: 128, 64, 48).
    hidden_channels: hidden features H_c handed to the refiner (BGMv2: 32).
    final_kernel: kernel size of the decoder's last convolution (BGMv2: 3; 1 is computed before the last
        upsampling, `engines.nets.decoder`).
    """

    in_channels: int = 6
    width_mult: float = 0.5
    output_stride: int = 16
    aspp_channels: int = 256
    aspp_dilations: tuple[int, ...] = (3, 6, 9)
    decoder_channels: tuple[int, int, int] = (128, 64, 48)
    hidden_channels: int = 32
    final_kernel: int = 3

    @property
    def aux_channels(self) -> int:
        """Auxiliary input channels beyond image + background."""
        return self.in_channels - 2 * IMAGE_CHANNELS


def student_config(in_channels: int = 6) -> BaseNetConfig:
    """DART's real-time student Phi_m: MobileNetV2 width 0.5, DeepLab ASPP, decoder slimmed to 96-48-32 with
    a 1x1 last layer and 8 hidden features for the refiner (module docstring)."""
    return BaseNetConfig(
        in_channels=in_channels,
        width_mult=0.5,
        output_stride=16,
        aspp_channels=256,
        aspp_dilations=(3, 6, 9),
        decoder_channels=(96, 48, 32),
        hidden_channels=STUDENT_HIDDEN,
        final_kernel=1,
    )


def teacher_config(in_channels: int = 6) -> BaseNetConfig:
    """DART's teacher Phi_r: MobileNetV2 width 1.0 with BGMv2's full-size ASPP and decoder."""
    return BaseNetConfig(in_channels=in_channels, width_mult=1.0)


def clamp_unit(x: torch.Tensor) -> torch.Tensor:
    """x clamped to [0, 1]; while training, gradients pass straight through the clamp.

    A plain clamp has zero gradient outside [0, 1], so an output that starts (or drifts) below 0
    everywhere never recovers: the alpha head of a freshly initialised network did exactly that.
    The forward value is the same clamp in training and inference (and in exported ONNX).
    """
    clamped = x.clamp(0.0, 1.0)
    if torch.is_grad_enabled() and x.requires_grad:
        return x + (clamped - x).detach()
    return clamped


def foreground_from_residual(fgr_residual: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Foreground F = clamp(F^R + I, 0, 1) (BGMv2 sec. 4). Both (N, 3, H, W); RGB in [0, 1]."""
    return (fgr_residual + src).clamp(0.0, 1.0)


class BaseNet(nn.Module):
    """Base network: (I_c, B_c[, aux]) at 1/c resolution -> coarse alpha, foreground residual, error, hidden.

    Input:
        src: (N, 3, h, w) float32 image RGB in [0, 1] at 1/c of the full resolution.
        bgr: (N, 3, h, w) float32 background RGB in [0, 1], same size.
        aux: (N, in_channels - 6, h, w) float32 in [0, 1], required iff the config has aux channels.
    Output (tuple, in this order):
        pha: (N, 1, h, w) coarse alpha, clamped to [0, 1].
        fgr_res: (N, 3, h, w) foreground residual F^R (F = clamp(F^R + I, 0, 1)), unbounded.
        err: (N, 1, h, w) predicted error map, clamped to [0, 1].
        hid: (N, hidden_channels, h, w) hidden features, ReLU-activated.
    """

    def __init__(self, config: BaseNetConfig = BaseNetConfig()):
        super().__init__()
        if config.in_channels < 2 * IMAGE_CHANNELS:
            raise ValueError(f"in_channels must be at least 6 (image + background), got {config.in_channels}")
        self.config = config
        self.backbone = MobileNetV2Backbone(config.in_channels, config.width_mult, config.output_stride)
        c_out, c8, c4, c2 = self.backbone.feature_channels
        self.aspp = ASPP(c_out, config.aspp_channels, config.aspp_dilations)
        self.decoder = Decoder(
            config.aspp_channels,
            (c8, c4, c2, config.in_channels),
            config.decoder_channels,
            out_channels=1 + 3 + 1 + config.hidden_channels,
            final_kernel=config.final_kernel,
        )

    def raw(self, src: torch.Tensor, bgr: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output before the activations: (N, 5 + hidden, h, w) [alpha, fgr_res (3), error,
        hidden], unbounded (`forward` splits and activates it)."""
        parts = [src, bgr]
        if not torch.jit.is_tracing() and (0 if aux is None else int(aux.shape[1])) != self.config.aux_channels:
            raise ValueError(f"BaseNet expects aux with {self.config.aux_channels} channels")
        if aux is not None:
            parts.append(aux)
        x0 = torch.cat(parts, dim=1)
        x, x8, x4, x2 = self.backbone(x0)
        return self.decoder(self.aspp(x), (x8, x4, x2, x0))

    def forward(
        self, src: torch.Tensor, bgr: torch.Tensor, aux: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.raw(src, bgr, aux)
        pha = clamp_unit(out[:, 0:1])
        fgr_res = out[:, 1:4]
        err = clamp_unit(out[:, 4:5])
        hid = out[:, 5:].relu()
        return pha, fgr_res, err, hid


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write `module.state_dict()` as safetensors (tensors made contiguous; metadata values are strings)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a CPU state dict; a missing or unreadable file raises `UserError`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weight file {path} does not exist; check the path or reinstall the assets.")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for corrupt headers / sizes
        raise UserError(f"Weight file {path} is corrupt or not a safetensors file; replace it.") from exc


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a safetensors state dict into `module` with strict=True; a mismatch raises `UserError`."""
    return load_state(module, read_weights(path), path)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    """`load_weights` of a state dict already read from `path` (named in the `UserError` of a mismatch)."""
    expected = module.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    misshaped = {k for k in set(expected) & set(state) if expected[k].shape != state[k].shape}
    if missing or unexpected or misshaped:
        raise UserError(
            f"Weight file {path} does not fit {type(module).__name__} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(misshaped)} mis-shaped tensors)."
        )
    module.load_state_dict(state, strict=True)
    log.info("loaded %d tensors from %s into %s", len(state), path, type(module).__name__)
    return module


FINAL_WEIGHT = "decoder.final.weight"
FINAL_BIAS = "decoder.final.bias"
LEAD_OUTPUTS = 5  # the last layer's outputs before the hidden features: alpha, foreground residual (3), error


def student_config_of(state: dict[str, torch.Tensor], path: str | Path) -> BaseNetConfig:
    """The student shape of a state dict read from `path`: `student_config()` with the last layer it has (BGMv2's
    3x3 for a student made before it became 1x1) and as many hidden features as that layer outputs (32 before
    they were pruned to 16). A last layer of another size raises `UserError`."""
    base = student_config()
    final = state.get(FINAL_WEIGHT)
    if final is None or final.ndim != 4:
        return base  # not a base network: load_state says so
    kernel, hidden = int(final.shape[-1]), int(final.shape[0]) - LEAD_OUTPUTS
    if kernel not in (1, 3) or hidden < 1:
        raise UserError(f"Weight file {path} is not a student of this project (its last layer is {kernel}x{kernel} "
                        f"with {hidden + LEAD_OUTPUTS} outputs).")
    return replace(base, final_kernel=kernel, hidden_channels=hidden)


def load_student(path: str | Path) -> BaseNet:
    """The student network in `path` (safetensors), of the shape it was made with (`student_config_of`, e.g. a
    user's scene-adapted student from before the 1x1 last layer). Raises `UserError` for a missing,
    unreadable or non-student file."""
    state = read_weights(path)
    return load_state(BaseNet(student_config_of(state, path)), state, path)


def pointwise_final_layer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A base-network state dict with the decoder's 3x3 last layer replaced by a 1x1 one whose weights are
    the sums of its nine taps: the same output wherever the layer's input is locally constant, and the start
    of fine-tuning a 1x1 student from a 3x3 one. A state whose last layer is 1x1 already (or that has no such
    layer) is returned as is."""
    weight = state.get(FINAL_WEIGHT)
    if weight is None or weight.ndim != 4 or weight.shape[-2:] == (1, 1):  # not a base network: load_state says so
        return state
    return {**state, FINAL_WEIGHT: weight.sum(dim=(2, 3), keepdim=True)}


def config_metadata(config: BaseNetConfig) -> dict[str, str]:
    """The config as string metadata for a safetensors header."""
    return {k: str(v) for k, v in asdict(config).items()}
