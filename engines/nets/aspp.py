"""Atrous Spatial Pyramid Pooling (DeepLabV3) as used by BGMv2's base network (sec. 4.1, appendix B.1).

Owns `ASPP`: a 1x1 branch, one dilated 3x3 branch per dilation rate (BGMv2: 3, 6, 9), an image-pooling
branch, and a 1x1 projection of their concatenation. With `dilations=()` it is exactly the reduced ASPP
of TensorFlow's DeepLabV3 MobileNetV2 models (1x1 branch + image pooling), which is how the pretrained
head is reproduced in `engines.nets.convert_deeplab`.

Convolutions carry a bias and no batch norm, like the folded pretrained weights they are initialised
from (batch norm on the 1x1 pooled branch would also fail at batch size 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ASPP(nn.Module):
    """DeepLabV3 ASPP.

    Args:
        in_channels: channels of the backbone output.
        out_channels: channels of every branch and of the projection (DeepLab/BGMv2: 256).
        dilations: rates of the dilated 3x3 branches, in order.

    Input: (N, in_channels, h, w). Output: (N, out_channels, h, w), ReLU-activated.
    Concatenation order fed to `project`: [1x1 branch, dilated branches in order, image pooling].
    """

    def __init__(self, in_channels: int, out_channels: int = 256, dilations: tuple[int, ...] = (3, 6, 9)):
        super().__init__()
        self.dilations = tuple(dilations)
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1)
        self.atrous = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d) for d in self.dilations
        )
        self.pool_conv = nn.Conv2d(in_channels, out_channels, 1)
        self.project = nn.Conv2d(out_channels * (2 + len(self.dilations)), out_channels, 1)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [F.relu(self.conv1x1(x))]
        branches.extend(F.relu(conv(x)) for conv in self.atrous)
        pooled = F.relu(self.pool_conv(x.mean(dim=(2, 3), keepdim=True)))
        branches.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
        return F.relu(self.project(torch.cat(branches, dim=1)))
