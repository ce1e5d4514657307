"""The refiner's second stage rewritten on a 2x2 phase grid for export (`engines.nets.onnx_export`).

Owns `PhasedPatchNet`: the same function as a trained `RefinerPatchNet` (BGMv2's refiner, appendix B),
without its nearest upsampling. BGMv2's stage 2 upsamples the 4x4 stage-1 features to 8x8 (nearest),
concatenates the 8x8 full-resolution patch and runs two valid 3x3 convolutions (8x8 -> 6x6 -> 4x4).
Written on the phase grid, where an 8x8 map M becomes four 4x4 maps M_ab[n, m] = M[2n + a, 2m + b]
(space-to-depth), a valid 3x3 convolution of an interleaved map is a valid 2x2 convolution of its
phases: output pixel 2p + a reads input rows 2p + a + d (d = 0, 1, 2), which are row p + s of phase
a' with s, a' = divmod(a + d, 2), so s is 0 or 1. The nearest-upsampled features are the same in all
four phases, so their weights are summed and the 4x4 features enter once. Batch norm is folded into
the first convolution. Equal to the original up to float rounding (tests/test_onnx.py); in INT8 on
onnxruntime's CPU kernels it skips the Resize (a generic uint8 resampling over the whole upsampled
map) and runs channel counts (48 -> 64 -> 16) that its channels-last kernels favour.

Layout (channels last): `patch_full_phases` (K, 4, 4, 4 (6 + A)) holds the full-resolution window's
pixel (2n + a, 2m + b) at [n, m, (2a + b)(6 + A) + c]; the output (K, 2, 2, 16) holds refined core pixel
(2p + a, 2q + b) channel c at [p, q, (2a + b) 4 + c]. `engines.matting.patches` gathers and reads these
layouts on numpy. Export-time only: nothing here runs in the app.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from engines.nets.refiner import RefinerPatchNet

PHASES = 4  # (a, b) in {0, 1}^2, index 2a + b


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of `conv` followed by `bn` in eval mode (running statistics)."""
    weight = conv.weight.detach().clone()
    bias = torch.zeros(weight.shape[0]) if conv.bias is None else conv.bias.detach().clone()
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - bn.running_mean) * scale + bn.bias.detach()
    return weight, bias


def phase_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A valid 3x3 convolution's weight (O, I, 3, 3) as the valid 2x2 convolution of the phase grid:
    (4 O, 4 I, 2, 2), output channel (2a + b) O + o, input channel (2a' + b') I + i (module docstring)."""
    out_c, in_c = weight.shape[:2]
    kernel = torch.zeros(PHASES * out_c, PHASES * in_c, 2, 2, dtype=weight.dtype)
    for a in range(2):
        for b in range(2):
            rows = slice((2 * a + b) * out_c, (2 * a + b + 1) * out_c)
            for di in range(3):
                s, a_in = divmod(a + di, 2)
                for dj in range(3):
                    t, b_in = divmod(b + dj, 2)
                    cols = slice((2 * a_in + b_in) * in_c, (2 * a_in + b_in + 1) * in_c)
                    kernel[rows, cols, s, t] += weight[:, :, di, dj]
    return kernel


class PhasedPatchNet(nn.Module):
    """Export form of a trained `RefinerPatchNet` (in eval mode: its batch norms are folded).

    forward(patch_coarse (K, 8, 8, 4 + hidden), patch_half_img (K, 8, 8, 6 + A), patch_full_phases
    (K, 4, 4, 4 (6 + A))), channels last -> (K, 2, 2, 16): [alpha (unclamped), fgr_res] of the 4x4 core
    in the phase layout of the module docstring.
    """

    def __init__(self, patch_net: RefinerPatchNet):
        super().__init__()
        self.stage1 = copy.deepcopy(patch_net.stage1)
        features = patch_net.stage1[3].out_channels
        full = patch_net.full_channels
        weight, bias = _folded(patch_net.stage2[0], patch_net.stage2[1])
        kernel = phase_kernel(weight)
        per_phase = features + full
        upsampled = sum(kernel[:, p * per_phase: p * per_phase + features] for p in range(PHASES))
        full_phases = torch.cat([kernel[:, p * per_phase + features: (p + 1) * per_phase] for p in range(PHASES)], 1)
        self.conv_a = nn.Conv2d(features + PHASES * full, kernel.shape[0], 2)
        weight_b, bias_b = _folded(patch_net.stage2[3], None)
        self.conv_b = nn.Conv2d(kernel.shape[0], PHASES * weight_b.shape[0], 2)
        with torch.no_grad():
            self.conv_a.weight.copy_(torch.cat([upsampled, full_phases], 1))
            self.conv_a.bias.copy_(bias.repeat(PHASES))
            self.conv_b.weight.copy_(phase_kernel(weight_b))
            self.conv_b.bias.copy_(bias_b.repeat(PHASES))

    def forward(self, patch_coarse: torch.Tensor, patch_half_img: torch.Tensor,
                patch_full_phases: torch.Tensor) -> torch.Tensor:
        features = self.stage1(torch.cat([patch_coarse, patch_half_img], dim=3).permute(0, 3, 1, 2))
        x = torch.cat([features, patch_full_phases.permute(0, 3, 1, 2)], dim=1)
        return self.conv_b(F.relu(self.conv_a(x))).permute(0, 2, 3, 1)
