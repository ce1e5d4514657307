"""The refiner's patch geometry on numpy, one frame, channels last: the twin of `engines.nets.refiner`'s
selection, crop and replacement (equal to it up to float rounding, tests/test_onnx.py).

Owns the patch constants (the contract with the exported refiner model, `engines.matting.onnx_inference`'s
model spec), `select_patches_np` (top-k or threshold cells of an error map), the window gathers
(`crop_patches_hwc`, `downsampled_patches_hwc`, `upsampled_patches_hwc`: cv2.remap of whole windows, edges
replicated, into `Scratch` arrays), the phase layout of the exported refiner's full-resolution input and
output (`phases_from_windows`, `windows_from_phases`, `core_from_phases`; `engines.nets.refiner_phases`)
and `replace_patches_hwc`.
"""

from __future__ import annotations

import cv2
import numpy as np

from engines.matting.scratch import Scratch

PATCH = 4  # refined patch size at full resolution (one 1/4-resolution pixel)
CONTEXT_HALF = 3  # context around the 2x2 core at 1/2 resolution -> 8x8 crop
CONTEXT_FULL = 2  # context around the 4x4 core at full resolution -> 8x8 crop


def select_patches_np(
    err_q: np.ndarray, mode: str = "topk", k: int = 300, threshold: float = 0.1, prevent_oversampling: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """`engines.nets.refiner.select_patches` for one (Hq, Wq) error map -> int64 (y, x) of the selected cells."""
    hq, wq = err_q.shape
    flat = err_q.reshape(-1)
    if mode == "topk":
        kk = max(0, min(int(k), flat.size))
        if kk == flat.size:
            idx = np.arange(flat.size)
        else:
            idx = np.argpartition(-flat, kk - 1)[:kk] if kk else np.zeros(0, dtype=np.int64)
        if prevent_oversampling:
            idx = idx[flat[idx] > 0]
    elif mode == "threshold":
        idx = np.flatnonzero(flat > threshold)
    else:
        raise ValueError(f"unknown refiner selection mode {mode!r}; use 'topk' or 'threshold'")
    idx = idx.astype(np.int64)
    return idx // wq, idx % wq


REMAP_MAX_SIDE = 32767  # cv2.remap takes images (and int16 map coordinates) under this many rows and columns
REMAP_MAX_ROWS = 32000  # so the windows go in chunks of at most this many rows
EXACT_UPSAMPLING = (1, 2, 4, 8, 16)  # factors whose bilinear weights cv2.remap's 1/32 pixel table holds exactly


def _remap_windows(
    source: np.ndarray, out: np.ndarray, map_x: np.ndarray, map_y: np.ndarray | None, interpolation: int
) -> None:
    """cv2.remap of `source` into `out` (K, win, win[, C]) through maps (K, win, win[, 2]) of the same
    window layout, edges replicated; in chunks of windows so that no remapped image reaches cv2's size limit.
    map_y None: `map_x` holds int16 (x, y) pairs (nearest neighbour)."""
    if not out.flags.c_contiguous:
        raise ValueError("_remap_windows writes in place and needs a C-contiguous output")
    k, win = out.shape[0], out.shape[1]
    step = max(1, REMAP_MAX_ROWS // win)
    for i in range(0, k, step):
        j = min(k, i + step)
        rows = (j - i) * win
        cv2.remap(source, map_x[i:j].reshape((rows, win) + map_x.shape[3:]),
                  None if map_y is None else map_y[i:j].reshape(rows, win), interpolation,
                  dst=out[i:j].reshape((rows, win) + out.shape[3:]), borderMode=cv2.BORDER_REPLICATE)


def crop_patches_hwc(
    frames: np.ndarray | list[np.ndarray], y: np.ndarray, xx: np.ndarray, size: int, padding: int,
    scratch: Scratch | None = None, name: str = "patches", phases: bool = False,
) -> np.ndarray:
    """`engines.nets.refiner.crop_patches` for one frame -> (K, win, win, C) float32, win = size + 2*padding.

    frames: one (H, W, C) frame, or a list of (H, W[, C_i]) frames of one size whose patches are
    concatenated along channels (cropping each and merging the small patches is much cheaper than
    merging whole frames). Cell (y, xx) covers rows y*size..y*size+size-1; indices outside the frame
    are clamped, which is edge replication, so no padded copy of the frame is made. The windows are
    gathered by cv2.remap (nearest, integer map): whole window rows at a time, about twice as fast as
    gathering pixel by pixel. Frames of one size, under 32767 - padding pixels a side (ValueError otherwise).
    scratch / name: the result (and the per-frame pieces and the map) are written into `scratch`'s arrays of
    that name, valid until the next call with the same name. phases: the windows in the refiner's phase
    layout instead, (K, win / 2, win / 2, 4 C) as `phases_from_windows` gives it (win even), gathered so at
    no extra cost (the map lists the pixels in that order).
    """
    frames = frames if isinstance(frames, list) else [frames]
    win = size + 2 * padding
    k = len(y)
    h, w = frames[0].shape[:2]
    if any(frame.shape[:2] != (h, w) for frame in frames):
        raise ValueError("crop_patches_hwc needs frames of one size")
    if max(h, w) + padding >= REMAP_MAX_SIDE:
        raise ValueError(f"crop_patches_hwc takes frames under {REMAP_MAX_SIDE - padding} pixels a side, got {w}x{h}")
    if phases and win % 2:
        raise ValueError(f"crop_patches_hwc gathers phases of even windows only, got {win} pixels")
    channels = [frame.shape[2] if frame.ndim == 3 else 1 for frame in frames]
    store = scratch or Scratch()
    dx = np.broadcast_to(np.arange(win) - padding, (win, win))  # each window pixel's offset from the cell
    dy = dx.T
    if phases:  # window pixel (2n + a, 2m + b) at [n, m, a, b]: the memory that [2n + a, 2m + b] takes otherwise
        dx, dy = (d.reshape(win // 2, 2, win // 2, 2).transpose(0, 2, 1, 3).reshape(win, win) for d in (dx, dy))
    grid = store.get(f"{name}/map", (k, win, win, 2), np.int16)
    grid[..., 0] = (np.asarray(xx) * size)[:, None, None] + dx[None]
    grid[..., 1] = (np.asarray(y) * size)[:, None, None] + dy[None]
    patches = store.get(name, (k, win, win, sum(channels)))
    sources = [np.ascontiguousarray(frame, dtype=np.float32) for frame in frames]
    if k and len(sources) == 1:
        _remap_windows(sources[0], patches if sources[0].ndim == 3 else patches[..., 0], grid, None, cv2.INTER_NEAREST)
    elif k:
        _remap_interleaved([(source, grid, None, cv2.INTER_NEAREST) for source in sources], patches, store, name)
    return patches.reshape(k, win // 2, win // 2, 4 * sum(channels)) if phases else patches


def phases_from_windows(windows: np.ndarray) -> np.ndarray:
    """(K, 2s, 2s, C) windows -> (K, s, s, 4 C) in the refiner's phase layout: pixel (2n + a, 2m + b), channel c
    at [n, m, (2a + b) C + c] (`engines.nets.refiner_phases`). A copy."""
    k, win, _, c = windows.shape
    return np.ascontiguousarray(windows.reshape(k, win // 2, 2, win // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
                                .reshape(k, win // 2, win // 2, 4 * c))


def windows_from_phases(phased: np.ndarray) -> np.ndarray:
    """The inverse of `phases_from_windows`: (K, s, s, 4 C) -> (K, 2s, 2s, C). A copy."""
    k, s, _, c4 = phased.shape
    c = c4 // 4
    windows = phased.reshape(k, s, s, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(windows).reshape(k, 2 * s, 2 * s, c)


def core_from_phases(phased: np.ndarray, channels: int) -> np.ndarray:
    """The phased refiner's output (K, 2, 2, 16): [p, q, (2a + b) 4 + c] -> the 4x4 cores (K, 4, 4, channels),
    the first `channels` of [alpha, fgr_res]. A copy."""
    k = phased.shape[0]
    core = phased.reshape(k, 2, 2, 2, 2, 4)[..., :channels].transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(core).reshape(k, 4, 4, channels)


def _remap_interleaved(remaps: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, int]], patches: np.ndarray,
                       store: Scratch, name: str) -> None:
    """`_remap_windows` of each (source, map_x, map_y, interpolation) into its own contiguous piece of `store`,
    then all pieces interleaved along channels into `patches` (K, win, win, sum C) by one cv2.mixChannels."""
    k, win = patches.shape[:2]
    pieces = []
    for i, (source, map_x, map_y, interpolation) in enumerate(remaps):
        piece = store.get(f"{name}/{i}", (k, win, win) + source.shape[2:])
        _remap_windows(source, piece, map_x, map_y, interpolation)
        pieces.append(piece.reshape(k * win, win, -1))
    pairs = [i for c in range(patches.shape[3]) for i in (c, c)]
    cv2.mixChannels(pieces, [patches.reshape(k * win, win, -1)], pairs)


def downsampled_patches_hwc(
    frames: list[np.ndarray], y: np.ndarray, xx: np.ndarray, size: int, padding: int,
    scratch: Scratch | None = None, name: str = "downsampled", halves: list[np.ndarray | None] | None = None,
) -> np.ndarray:
    """`crop_patches_hwc([resize_linear(f, (H / 2, W / 2)) for f in frames], y, xx, size, padding)` without
    downsampling the frames: a pixel of the half-resolution frame is the mean of a 2x2 block (exact 2x
    bilinear downsampling), which cv2.remap's bilinear interpolation reads at the block's centre (weights 1/2,
    exact in its 1/32 pixel table). Only the windows' pixels are computed, not whole frames.

    frames: (H, W[, C_i]) float32 frames of one size, H and W even; y, xx: int64 cells of the half-resolution
    frame's `size` grid, window indices outside it clamped (edge replication). Returns (K, win, win, sum C_i)
    float32, win = size + 2 * padding, equal to the cropped resize up to float rounding, written into
    `scratch`'s array `name` when given (valid until the next call with that name). halves: per frame, its
    half-resolution image made beforehand (`downsample_area` to (H / 2, W / 2), e.g. the background plate
    once per prior), read by nearest neighbour at a fraction of the bilinear reads' cost, or None.
    """
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2 or any(frame.shape[:2] != (h, w) for frame in frames):
        raise ValueError(f"downsampled_patches_hwc needs frames of one even size, got {[f.shape[:2] for f in frames]}")
    halves = halves or [None] * len(frames)
    if len(halves) != len(frames) or any(half is not None and half.shape != (h // 2, w // 2) + frame.shape[2:]
                                         for half, frame in zip(halves, frames)):
        raise ValueError("downsampled_patches_hwc needs one half-resolution image (or None) per frame")
    if max(h, w) >= REMAP_MAX_SIDE:
        raise ValueError(f"downsampled_patches_hwc takes frames under {REMAP_MAX_SIDE} pixels a side, got {w}x{h}")
    win = size + 2 * padding
    k = len(y)
    store = scratch or Scratch()
    offsets = np.arange(win) - padding
    half_x = np.clip((np.asarray(xx) * size)[:, None] + offsets[None, :], 0, w // 2 - 1)  # (K, win)
    half_y = np.clip((np.asarray(y) * size)[:, None] + offsets[None, :], 0, h // 2 - 1)
    channels = [frame.shape[2] if frame.ndim == 3 else 1 for frame in frames]
    patches = store.get(name, (k, win, win, sum(channels)))
    if k == 0:
        return patches
    remaps = []
    if any(half is None for half in halves):
        map_x = store.get(f"{name}/map_x", (k, win, win))
        map_y = store.get(f"{name}/map_y", (k, win, win))
        map_x[:] = (2 * half_x + 0.5).astype(np.float32)[:, None, :]  # the centre of the 2x2 block
        map_y[:] = (2 * half_y + 0.5).astype(np.float32)[:, :, None]
    if any(half is not None for half in halves):
        grid = store.get(f"{name}/grid", (k, win, win, 2), np.int16)
        grid[..., 0] = half_x[:, None, :]
        grid[..., 1] = half_y[:, :, None]
    for frame, half in zip(frames, halves):
        remaps.append((np.ascontiguousarray(frame, dtype=np.float32), map_x, map_y, cv2.INTER_LINEAR) if half is None
                      else (np.ascontiguousarray(half, dtype=np.float32), grid, None, cv2.INTER_NEAREST))
    _remap_interleaved(remaps, patches, store, name)
    return patches


def upsampled_patches_hwc(
    low: np.ndarray, factor: int, y: np.ndarray, xx: np.ndarray, size: int, padding: int,
    scratch: Scratch | None = None, name: str = "upsampled",
) -> np.ndarray:
    """`crop_patches_hwc(resize_linear(low, (h * factor, w * factor)), y, xx, size, padding)` without
    resizing the whole map: each window is interpolated from the few `low` pixels under it (cv2.remap,
    bilinear, edges replicated, which is resize_linear's clamping). For the refiner's coarse stack (4 + hidden
    channels) this is a fraction of the cost of upsampling it whole when a few hundred patches are refined.

    low: (h, w, C) float32, C <= 512; factor: integer upsampling in `EXACT_UPSAMPLING` (other factors raise
    ValueError: cv2.remap rounds their weights to 1/32 pixel); y, xx: int64 cells of the upsampled map's
    `size` grid. Returns (K, win, win, C) float32, win = size + 2 * padding, equal to the resized crop up to
    float rounding, written into `scratch`'s array `name` when given.
    """
    if factor not in EXACT_UPSAMPLING:
        raise ValueError(f"upsampled_patches_hwc needs a factor in {EXACT_UPSAMPLING}, got {factor}")
    win = size + 2 * padding
    store = scratch or Scratch()
    source = np.ascontiguousarray(low, dtype=np.float32)
    out = store.get(name, (len(y), win, win, source.shape[2]))
    # output pixel o of the upsampled map reads source coordinate (o + 0.5) / factor - 0.5
    offsets = (np.arange(win, dtype=np.float32) - np.float32(padding - 0.5)) / np.float32(factor) - np.float32(0.5)
    step = np.float32(size / factor)
    map_x = store.get(f"{name}/map_x", (len(y), win, win))
    map_y = store.get(f"{name}/map_y", (len(y), win, win))
    map_x[:] = (np.asarray(xx, np.float32) * step)[:, None, None] + offsets[None, None, :]
    map_y[:] = (np.asarray(y, np.float32) * step)[:, None, None] + offsets[None, :, None]
    _remap_windows(source, out, map_x, map_y, cv2.INTER_LINEAR)
    return out


def replace_patches_hwc(x: np.ndarray, patches: np.ndarray, y: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """`engines.nets.refiner.replace_patches` in place on one C-contiguous (H, W, C) frame; patches (K, p, p, C)."""
    if not x.flags.c_contiguous:
        raise ValueError("replace_patches_hwc writes in place and needs a C-contiguous frame")
    h, w, c = x.shape
    p = patches.shape[1]
    cells = x.reshape(h // p, p, w // p, p, c).transpose(0, 2, 1, 3, 4)  # (H/p, W/p, p, p, C), a view
    cells[y, xx] = patches
    return x
