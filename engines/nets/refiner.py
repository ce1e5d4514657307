"""Patch refiner G_refine (BGMv2 sec. 4.2, appendix B) with DART's RGB-D patches (DART eq. 11).

Owns patch selection, vectorised patch cropping and replacement, the per-patch convolution stages
(`RefinerPatchNet`, the part exported to ONNX) and `Refiner`, which wires them:

1. the selection error map (BGMv2: E_c; DART: the fused E_RGBD from `engines.matting.depth_bayes`) is resampled
   to 1/4 resolution; each of its pixels stands for one 4x4 patch of the full-resolution frame; the
   top-k pixels (or all above a threshold) are selected;
2. coarse alpha, foreground residual and hidden features, I, B (and the auxiliary maps) are resampled to
   1/2 resolution and 8x8 patches are cropped around the selected locations (2x2 core + 3 px context);
3. stage 1: two valid 3x3 convs + BN + ReLU -> 4x4; nearest upsampling to 8x8; concatenation with 8x8
   patches of the full-resolution I, B (and auxiliary maps) (4x4 core + 2 px context);
4. stage 2: valid 3x3 conv + BN + ReLU, valid 3x3 conv -> 4x4 alpha + foreground residual (exported as the
   same function on the 2x2 phase grid, without the upsampling: `engines.nets.refiner_phases`);
5. coarse alpha and foreground residual are bilinearly upsampled to full resolution and the refined 4x4
   patches are swapped in.

Patch crops pad the frame by edge replication. The RGB-D variant (DART) passes `aux` with the live depth
and the background depth prior, both normalised to [0, 1] (e.g. depth_m / d_max_m, 0 = unknown), which
join the patch inputs of both stages; the RGB variant (BGMv2) has `aux_channels=0`.
Full-resolution height and width must be multiples of 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.matting.patches import CONTEXT_FULL, CONTEXT_HALF, PATCH
from engines.nets.base_net import STUDENT_HIDDEN, clamp_unit, load_state, read_weights
from sensors.errors import UserError



@dataclass(frozen=True)
class RefinerConfig:
    """Refiner shape and patch selection.

    hidden_channels: channels of the base network's hidden features H_c (the shipped student's 8; BGMv2: 32).
    aux_channels: extra full-resolution maps in the patches (DART RGB-D: 2 = live depth, background
        depth; BGMv2 RGB: 0).
    mode: "topk" (k patches per image, BGMv2's "sampling") or "threshold" (every patch whose error
        exceeds `threshold`).
    k: patches per image in "topk" mode. BGMv2 uses 5,000 for HD video; at 640x480 (19,200 patches)
        300 patches (about a person's outline at 1.5-3 m) keep student + refiner near 24 ms on two
        CPU cores, leaving room for the depth stages within DART's 30 fps (500: ~28 ms, 1000: ~38 ms).
    threshold: error threshold in "threshold" mode.
    prevent_oversampling: in "topk" mode, skip patches whose error is exactly 0.
    stage_channels: (C*BR, C*BR, C*BR) widths; BGMv2: 24, 16, 12. The third is 16 here: onnxruntime's INT8
        channels-last convolution on x86 runs a layer with 12 output channels several times slower than
        one with 16 (its profiler, a throwaway run), so the wider layer is the faster one
        (`assets/MODEL_CARD.md`, "Refiner stage 2 at 16 channels"; older 12-wide files still load).
    """

    hidden_channels: int = STUDENT_HIDDEN
    aux_channels: int = 0
    mode: str = "topk"
    k: int = 300
    threshold: float = 0.1
    prevent_oversampling: bool = True
    stage_channels: tuple[int, int, int] = (24, 16, 16)


def select_patches(
    err_q: torch.Tensor, mode: str = "topk", k: int = 300, threshold: float = 0.1, prevent_oversampling: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patch locations from a 1/4-resolution error map.

    err_q: (N, 1, Hq, Wq) error map, larger = more likely wrong.
    Returns (b, y, x): int64 tensors of equal length K: batch index and 1/4-resolution row/column of
    each selected patch (no duplicates). "topk": the min(k, Hq*Wq) largest per image (minus those with
    error 0 if `prevent_oversampling`); "threshold": every pixel with error > threshold.
    """
    n, _, hq, wq = err_q.shape
    flat = err_q.detach().reshape(n, hq * wq)
    if mode == "topk":
        kk = min(int(k), hq * wq)
        values, idx = flat.topk(kk, dim=1, sorted=False)
        b = torch.arange(n, device=err_q.device).repeat_interleave(kk)
        idx = idx.reshape(-1)
        if prevent_oversampling:
            keep = values.reshape(-1) > 0
            b, idx = b[keep], idx[keep]
    elif mode == "threshold":
        b, idx = torch.nonzero(flat > threshold, as_tuple=True)
    else:
        raise ValueError(f"unknown refiner selection mode {mode!r}; use 'topk' or 'threshold'")
    return b, idx // wq, idx % wq


def crop_patches(
    x: torch.Tensor, b: torch.Tensor, y: torch.Tensor, xx: torch.Tensor, size: int, padding: int
) -> torch.Tensor:
    """Crop (K, C, size + 2*padding, size + 2*padding) windows around grid cells, vectorised.

    x: (N, C, H, W); the grid has cells of `size` px, cell (y, xx) covers rows y*size..y*size+size-1.
    The frame is padded by edge replication so windows at the border are complete.
    """
    win = size + 2 * padding
    padded = F.pad(x, (padding, padding, padding, padding), mode="replicate")
    windows = padded.unfold(2, win, size).unfold(3, win, size)  # (N, C, H/size, W/size, win, win)
    return windows[b, :, y, xx]


def replace_patches(
    x: torch.Tensor, patches: torch.Tensor, b: torch.Tensor, y: torch.Tensor, xx: torch.Tensor
) -> torch.Tensor:
    """Return `x` (N, C, H, W) with the (K, C, p, p) `patches` written into grid cells (b, y, xx).

    H and W must be multiples of p. Out of place: `x` itself is not modified.
    """
    n, c, h, w = x.shape
    p = patches.shape[-1]
    out = x.clone()
    cells = out.view(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (N, H/p, W/p, C, p, p), a view
    cells[b, y, xx] = patches.to(out.dtype)
    return out


class RefinerPatchNet(nn.Module):
    """The refiner's convolutions on patches (appendix B: C*BR24 - C*BR16 | C*BR12 - C*4; here the third
    layer has `stage_channels[2]` = 16 by default, see `RefinerConfig`).

    Input:
        patch_half: (K, 1 + 3 + hidden + 6 + aux, 8, 8) at 1/2 resolution, channel order
            [alpha, fgr_res, hidden, I, B, aux].
        patch_full: (K, 6 + aux, 8, 8) at full resolution, [I, B, aux].
    Output: (K, 4, 4, 4): refined [alpha (unclamped), fgr_res] of the 4x4 core.
    """

    def __init__(
        self, hidden_channels: int = STUDENT_HIDDEN, aux_channels: int = 0,
        stage_channels: tuple[int, int, int] = RefinerConfig.stage_channels,
    ):
        super().__init__()
        c1, c2, c3 = stage_channels
        half_in = 1 + 3 + hidden_channels + 6 + aux_channels
        full_in = 6 + aux_channels
        self.half_channels = half_in
        self.full_channels = full_in
        self.stage1 = nn.Sequential(
            nn.Conv2d(half_in, c1, 3, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(c2 + full_in, c3, 3, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, 4, 3),
        )

    def forward(self, patch_half: torch.Tensor, patch_full: torch.Tensor) -> torch.Tensor:
        x = self.stage1(patch_half)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.stage2(torch.cat([x, patch_full], dim=1))


class Refiner(nn.Module):
    """BGMv2 refiner with optional RGB-D patch inputs (DART eq. 11).

    forward(src, bgr, pha, fgr_res, hid, err, aux=None) with
        src, bgr: (N, 3, H, W) image and background RGB in [0, 1] at full resolution (H, W % 4 == 0).
        pha, fgr_res, hid: the base network's coarse outputs (N, 1 | 3 | hidden, h, w), any h, w.
        err: (N, 1, h', w') error map used for selection (E_c, or DART's fused E_RGBD), any size.
        aux: (N, aux_channels, H, W) in [0, 1] (DART: live depth, background depth, normalised), or None.
    Returns (pha_full (N, 1, H, W) in [0, 1], fgr_res_full (N, 3, H, W), selected (N, 1, H/4, W/4) bool).
    """

    def __init__(self, config: RefinerConfig = RefinerConfig()):
        super().__init__()
        self.config = config
        self.patch_net = RefinerPatchNet(config.hidden_channels, config.aux_channels, config.stage_channels)

    def select(self, err: torch.Tensor, full_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Selected patch locations (b, y, x) for an error map of any size and a full size (H, W)."""
        hq, wq = full_size[0] // PATCH, full_size[1] // PATCH
        err_q = F.interpolate(err, size=(hq, wq), mode="bilinear", align_corners=False)
        c = self.config
        return select_patches(err_q, c.mode, c.k, c.threshold, c.prevent_oversampling)

    def forward(
        self,
        src: torch.Tensor,
        bgr: torch.Tensor,
        pha: torch.Tensor,
        fgr_res: torch.Tensor,
        hid: torch.Tensor,
        err: torch.Tensor,
        aux: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, _, h_full, w_full = src.shape
        if h_full % PATCH or w_full % PATCH:
            raise ValueError(f"refiner needs full-resolution height and width divisible by 4, got {h_full}x{w_full}")
        images = [src, bgr]
        if self.config.aux_channels:
            if aux is None or aux.shape[1] != self.config.aux_channels:
                raise ValueError(f"refiner expects aux with {self.config.aux_channels} channels")
            images.append(aux)
        elif aux is not None:
            raise ValueError("refiner was built without aux channels but got aux")
        full_images = torch.cat(images, dim=1)

        b, y, x = self.select(err, (h_full, w_full))
        coarse = torch.cat([pha, fgr_res], dim=1)
        out = F.interpolate(coarse, size=(h_full, w_full), mode="bilinear", align_corners=False)
        if b.numel() > 0:
            half_size = (h_full // 2, w_full // 2)
            half_coarse = F.interpolate(
                torch.cat([coarse, hid], dim=1), size=half_size, mode="bilinear", align_corners=False
            )
            half_images = F.avg_pool2d(full_images, 2)  # == bilinear 2x downsampling
            patch_half = crop_patches(torch.cat([half_coarse, half_images], dim=1), b, y, x, PATCH // 2, CONTEXT_HALF)
            patch_full = crop_patches(full_images, b, y, x, PATCH, CONTEXT_FULL)
            refined = self.patch_net(patch_half, patch_full)
            out = replace_patches(out, refined, b, y, x)
        selected = torch.zeros(n, 1, h_full // PATCH, w_full // PATCH, dtype=torch.bool, device=src.device)
        selected[b, 0, y, x] = True
        return clamp_unit(out[:, :1]), out[:, 1:], selected


STAGE1_WEIGHT = "patch_net.stage1.0.weight"  # reads [alpha, fgr_res, hidden, I, B, aux] at 1/2 resolution
STAGE1_MIDDLE_WEIGHT = "patch_net.stage1.3.weight"  # stage 1's second layer: its outputs are the stage-1 features
STAGE2_WEIGHT = "patch_net.stage2.0.weight"  # reads [stage-1 features, I, B, aux] at full resolution
COARSE_LEAD = 4  # the coarse inputs before the hidden features: alpha, foreground residual (3)
IMAGE_INPUTS = 6  # I and B (RGB each) in both stages' patches


def refiner_config_of(state: dict[str, torch.Tensor], path: str | Path, k: int = RefinerConfig.k) -> RefinerConfig:
    """The `RefinerConfig` that `state` (a refiner's state dict) was made with, read from its weights' shapes:
    hidden and aux input channels (first layer: 4 + hidden + 6 + aux inputs; stage 2: stage-1 features + 6 +
    aux) and the three stage widths; `k` as given. Raises `UserError` naming `path` for a state that is not a
    refiner of this project."""
    first, second = state.get(STAGE1_WEIGHT), state.get(STAGE2_WEIGHT)
    middle = state.get(STAGE1_MIDDLE_WEIGHT)
    if first is None or second is None or middle is None or first.ndim != 4:
        raise UserError(f"Weight file {path} does not fit Refiner: it is not a refiner of this project.")
    aux = int(second.shape[1]) - int(middle.shape[0]) - IMAGE_INPUTS
    hidden = int(first.shape[1]) - COARSE_LEAD - IMAGE_INPUTS - aux
    if hidden < 1 or aux < 0:
        raise UserError(f"Weight file {path} does not fit Refiner: it is not a refiner of this project.")
    stages = (int(first.shape[0]), int(middle.shape[0]), int(second.shape[0]))
    return RefinerConfig(hidden_channels=hidden, aux_channels=aux, k=k, stage_channels=stages)


def load_refiner(path: str | Path, aux_channels: int, k: int = RefinerConfig.k) -> Refiner:
    """The refiner in `path` (safetensors) with its own shape (`refiner_config_of`: hidden input channels,
    stage widths, e.g. an older file's 12-wide stage 2), `aux_channels` (DART 2, BGMv2 0) and top-k `k`.
    Raises `UserError` for a missing or unreadable file, one that is not a refiner, or one with another
    number of aux channels."""
    state = read_weights(path)
    config = refiner_config_of(state, path, k)
    if config.aux_channels != aux_channels:
        raise UserError(f"Weight file {path} does not fit Refiner: it takes {config.aux_channels} depth channels, "
                        f"not {aux_channels}.")
    return load_state(Refiner(config), state, path)
