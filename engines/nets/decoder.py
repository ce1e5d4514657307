"""Decoder of BGMv2's base network (appendix B.1: CBR128 - CBR64 - CBR48 - C37).

Owns `Decoder`: before every 3x3 convolution the running features are bilinearly upsampled to the
next skip connection's size (x2 per step) and concatenated with it; the skips are the backbone's
stride-8, -4 and -2 features and finally the network input itself. "CBR k" = 3x3 conv without bias +
batch norm + ReLU; the last layer "C k" is a plain conv with bias, 3x3 in BGMv2 or 1x1 (the student's,
see `engines.nets.base_net.student_config`).

A 1x1 last layer is computed without the full-resolution concatenation: a 1x1 convolution (across
channels, per pixel) and bilinear upsampling (across pixels, per channel) are both linear and commute, so
conv(cat(up(x), x0)) = up(conv_x(x)) + conv_0(x0) with the bias in the second term, equal up to float
rounding, and the features' share runs at a quarter of the pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Decoder(nn.Module):
    """BGMv2 decoder.

    Args:
        in_channels: channels of the ASPP output.
        skip_channels: channels of the skips (stride 8, stride 4, stride 2, input), in that order.
        channels: output channels of the three CBR layers (paper: 128, 64, 48).
        out_channels: channels of the final conv (paper: 37 = alpha 1 + foreground 3 + error 1 + hidden 32).
        final_kernel: kernel size of the final conv, 3 (paper) or 1.

    Input: `x` (N, in_channels, h/s, w/s) and `skips` = (x8, x4, x2, x0) with x0 (N, *, h, w).
    Output: (N, out_channels, h, w), no activation.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: tuple[int, int, int, int],
        channels: tuple[int, int, int] = (128, 64, 48),
        out_channels: int = 37,
        final_kernel: int = 3,
    ):
        super().__init__()
        if len(skip_channels) != 4 or len(channels) != 3:
            raise ValueError("Decoder needs 4 skip channel counts and 3 CBR channel counts")
        if final_kernel not in (1, 3):
            raise ValueError(f"final_kernel must be 1 or 3, got {final_kernel}")
        self.layers = nn.ModuleList()
        prev = in_channels
        for skip, ch in zip(skip_channels[:3], channels):
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(prev + skip, ch, 3, padding=1, bias=False),
                    nn.BatchNorm2d(ch),
                    nn.ReLU(inplace=True),
                )
            )
            prev = ch
        self.final = nn.Conv2d(prev + skip_channels[3], out_channels, final_kernel, padding=final_kernel // 2)
        self.feature_channels = prev  # input channels of `final` that come from the features, not the skip

    def forward(self, x: torch.Tensor, skips: tuple[torch.Tensor, ...]) -> torch.Tensor:
        for conv, skip in zip(self.layers, skips[:3]):
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = conv(torch.cat([x, skip], dim=1))
        x0 = skips[3]
        if self.final.kernel_size == (1, 1):  # convolve, then upsample (module docstring)
            w, c = self.final.weight, self.feature_channels
            x = F.interpolate(F.conv2d(x, w[:, :c]), size=x0.shape[2:], mode="bilinear", align_corners=False)
            return x + F.conv2d(x0, w[:, c:], self.final.bias)
        x = F.interpolate(x, size=x0.shape[2:], mode="bilinear", align_corners=False)
        return self.final(torch.cat([x, x0], dim=1))
