"""MobileNetV2 backbone of the base network (BGMv2 sec. 4.1 / appendix B.1, DART sec. II-A).

Owns `MobileNetV2Backbone`: the inverted-residual feature extractor with a width multiplier, a
configurable output stride (later blocks switch from stride to dilation, as in DeepLabV3) and any
number of input channels (6 = image + background, more for RGB-D variants).

Layout follows TensorFlow's DeepLab MobileNetV2 (`MobilenetV2/Conv`, `expanded_conv`, ...
`expanded_conv_16`, no final 1x1 "1280" layer) so the pretrained DeepLabV3 weights map one to one
(see `engines.nets.convert_deeplab`). Batch norm is *not* used: every convolution carries a bias,
because the only pretrained weights we have come with batch norm folded into the convolutions, and
re-introducing batch norm would renormalise those features by batch statistics as soon as training
starts (and breaks on batch size 1 at small resolutions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (expansion t, output channels at width 1.0, repeats n, first stride s): MobileNetV2 table 2.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32
# Indices (into `blocks`) after which the decoder's skip connections are taken: strides 2, 4, 8.
_SKIP_AFTER = (0, 2, 5)


def scaled_channels(channels: int, width_mult: float) -> int:
    """Channel count at a width multiplier: round(channels * width_mult), at least 8.

    This is the rule TensorFlow's DeepLab MobileNetV2 (depth multiplier 0.5) was built with: 32 -> 16,
    24 -> 12, 320 -> 160.
    """
    return max(8, int(round(channels * width_mult)))


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block: channels, expansion, stride and dilation of its depthwise conv."""

    in_channels: int
    out_channels: int
    expansion: int
    stride: int
    dilation: int


def block_specs(width_mult: float, output_stride: int) -> tuple[int, list[BlockSpec]]:
    """Stem channels and the 17 block specs for a width multiplier and output stride (8, 16 or 32).

    Striding follows TensorFlow's convention: once the running stride reaches `output_stride`, a
    block's stride becomes 1 and every later depthwise conv is dilated by the accumulated rate
    (the converted block itself keeps the rate it had before), e.g. output stride 8 gives dilation 1
    for block 6, 2 for blocks 7-13 and 4 for blocks 14-16.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    stem = scaled_channels(_STEM_CHANNELS, width_mult)
    specs: list[BlockSpec] = []
    current_stride, rate = 2, 1  # the stem has stride 2
    in_ch = stem
    for t, c, n, s in _SETTINGS:
        out_ch = scaled_channels(c, width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            if current_stride == output_stride:
                layer_stride, layer_rate = 1, rate
                rate *= stride
            else:
                layer_stride, layer_rate = stride, 1
                current_stride *= stride
            specs.append(BlockSpec(in_ch, out_ch, t, layer_stride, layer_rate))
            in_ch = out_ch
    return stem, specs


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand + ReLU6] -> 3x3 depthwise + ReLU6 -> 1x1 linear project (+ skip).

    Input (N, in_channels, H, W) -> output (N, out_channels, H / stride, W / stride).
    """

    def __init__(self, spec: BlockSpec):
        super().__init__()
        hidden = spec.in_channels * spec.expansion
        self.expand = nn.Conv2d(spec.in_channels, hidden, 1) if spec.expansion != 1 else None
        self.depthwise = nn.Conv2d(
            hidden, hidden, 3, stride=spec.stride, padding=spec.dilation, dilation=spec.dilation, groups=hidden
        )
        self.project = nn.Conv2d(hidden, spec.out_channels, 1)
        self.use_residual = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand is not None:
            y = F.relu6(self.expand(y))
        y = F.relu6(self.depthwise(y))
        y = self.project(y)
        return x + y if self.use_residual else y


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 feature extractor for the base network.

    Args:
        in_channels: input channels; 6 = image RGB + background RGB, more for RGB-D variants.
        width_mult: channel width multiplier (0.5 = the pretrained DeepLab model, 1.0 = standard).
        output_stride: 8, 16 (BGMv2) or 32; deeper blocks use dilation instead of stride.

    Input: (N, in_channels, h, w) float32, every channel in [0, 1]; it is mapped to [-1, 1] inside
    (the range the pretrained DeepLab weights were trained on).
    Output: (x_out, x_8, x_4, x_2): features at stride `output_stride` and strides 8, 4, 2 with
    `feature_channels` channels (spatial size ceil(h / stride) x ceil(w / stride)).
    """

    def __init__(self, in_channels: int = 6, width_mult: float = 0.5, output_stride: int = 16):
        super().__init__()
        self.in_channels = in_channels
        self.width_mult = width_mult
        self.output_stride = output_stride
        stem_ch, specs = block_specs(width_mult, output_stride)
        self.stem = nn.Conv2d(in_channels, stem_ch, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(InvertedResidual(s) for s in specs)
        self.feature_channels = (
            specs[-1].out_channels,
            specs[_SKIP_AFTER[2]].out_channels,
            specs[_SKIP_AFTER[1]].out_channels,
            specs[_SKIP_AFTER[0]].out_channels,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.relu6(self.stem(x * 2.0 - 1.0))
        skips = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in _SKIP_AFTER:
                skips.append(x)
        x2, x4, x8 = skips
        return x, x8, x4, x2
