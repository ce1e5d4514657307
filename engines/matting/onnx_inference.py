"""ONNX Runtime inference of the base network and the refiner (run time: no torch here).

Owns `OnnxMatting`, which runs both models on one frame (sessions from `engines.matting.providers`:
TensorRT > CUDA > CPU, IO binding on GPUs; the refiner's patch windows from `engines.matting.patches`,
whose geometry is the contract with the exported model), whole-map resampling (`resize_linear`,
`downsample_area`), the model-width checks and `benchmark` (their milliseconds). The models are written
by `engines.nets.onnx_export`.

Model spec (float32; N, h, w, K dynamic):

| model | inputs | outputs |
|---|---|---|
| base net (NCHW in) | `src` (N,3,h,w) image RGB [0,1] at 1/c; `bgr` (N,3,h,w) background RGB [0,1]; `aux` (N,A,h,w) [0,1], only if the net has A aux channels | `coarse_raw` (N,h,w,5+H) channels last, before the output activations: [alpha, foreground residual (3), H hidden features (BGMv2: 32), error]; `activate_coarse` clamps alpha and error to [0,1] and the hidden features at 0 |
| refiner patches (NHWC) | `patch_coarse` (K,8,8,4+H): [alpha, fgr_res, hidden] at 1/2 res, H as the base net's; `patch_half_img` (K,8,8,6+A): [I, B, aux] at 1/2 res; `patch_full_phases` (K,4,4,4(6+A)): [I, B, aux] at full res, the 8x8 window in the phase layout of `engines.nets.refiner_phases` | `patch_out_phases` (K,2,2,16): [alpha (unclamped), fgr_res] of the 4x4 core, phase layout |

The raw output leaves the network one transpose after its last layer: activations on channel ranges were
four slices, three clips and a concatenation in the graph, each a pass over the whole output (with INT8
quantise / dequantise pairs around them), where numpy clamps two views in place. Base nets exported
before still run: those with the activated `coarse` (N,h,w,4+H) [alpha, fgr_res, hidden] and `err`
(N,1,h,w) (`STACK_BASE_OUTPUTS`), and those with `pha`, `fgr_res`, `err`, `hid`, all NCHW
(`LEGACY_BASE_OUTPUTS`), e.g. a scene-adapted student in a user's data folder.

The refiner model holds only the patch convolutions (`RefinerPatchNet`, its stage 2 written on the
phase grid without the nearest upsampling: `engines.nets.refiner_phases`) and takes channels-last patches,
as the numpy crops of `engines.matting.patches` produce them (no transposes per frame). Refiners exported
before the phase grid (inputs `LEGACY_REFINER_INPUTS`: an 8x8 `patch_full`, output `patch_out` (K,4,4,4)),
e.g. a scene-adapted one in a user's data folder, still run.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from engines.matting.providers import (  # noqa: F401  (re-exported: the session API's old home)
    PROVIDER_PREFERENCE,
    SessionSettings,
    available_providers,
    bind,
    describe_session,
    is_gpu,
    open_session,
)
from engines.matting.beside import run_beside, settled
from engines.matting.patches import (
    CONTEXT_FULL,
    CONTEXT_HALF,
    EXACT_UPSAMPLING,
    PATCH,
    core_from_phases,
    crop_patches_hwc,
    downsampled_patches_hwc,
    replace_patches_hwc,
    select_patches_np,
    upsampled_patches_hwc,
)
from engines.matting.scratch import Scratch
from sensors.errors import UserError

log = logging.getLogger(__name__)

BASE_INPUTS = ("src", "bgr", "aux")
BASE_OUTPUTS = ("coarse_raw",)
STACK_BASE_OUTPUTS = ("coarse", "err")  # exported before the raw output
LEGACY_BASE_OUTPUTS = ("pha", "fgr_res", "err", "hid")
REFINER_INPUTS = ("patch_coarse", "patch_half_img", "patch_full_phases")
REFINER_OUTPUTS = ("patch_out_phases",)
LEGACY_REFINER_INPUTS = ("patch_coarse", "patch_half_img", "patch_full")  # exported before the phase grid
LEGACY_REFINER_OUTPUTS = ("patch_out",)


def create_session(path: str | Path, providers: list[str] | None = None, intra_op_threads: int | None = None,
                   settings: SessionSettings | None = None):
    """`engines.matting.providers.open_session`, logging the model's inputs and outputs: an onnxruntime
    InferenceSession on the preferred available providers; a missing or corrupt file raises `UserError`."""
    session = open_session(path, providers, intra_op_threads, settings)
    log.info("loaded %s on %s\n%s", Path(path).name, session.get_providers(), describe_session(session))
    return session


# ---- resampling of whole maps (the refiner's patch windows: engines.matting.patches) ----


def resize_linear(x: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize of (H, W) or (H, W, C) float32 to `size` (h, w): half-pixel centres, edges
    clamped, no antialiasing, i.e. torch's F.interpolate(mode="bilinear", align_corners=False).
    out: optional C-contiguous float32 (h, w[, C]) array written in place and returned."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 3 and x.shape[2] > 512:  # cv2's channel limit
        return np.concatenate([resize_linear(x[..., i : i + 512], size) for i in range(0, x.shape[2], 512)], axis=2)
    if out is not None:
        cv2.resize(x, (size[1], size[0]), dst=out.reshape(size + x.shape[2:3]), interpolation=cv2.INTER_LINEAR)
        return out
    out = cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return out.reshape(size + x.shape[2:])


def downsample_area(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area (box-average) resize of (H, W) or (H, W, C) float32 to `size` (h, w), for the base
    network's 1/c inputs; equals torch's F.interpolate(mode="area") for integer factors."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return out.reshape(size + x.shape[2:])


def prepare_band(color_rgb: np.ndarray, src: np.ndarray, src_small: np.ndarray, c: int, r0: int, r1: int) -> None:
    """Rows r0..r1 (multiples of c) of a uint8 RGB frame: float RGB [0, 1] into `src` (H, W, 3 float32), and its
    c x c area means (`downsample_area`) into rows r0/c..r1/c of `src_small`; each output pixel reads only its
    own block, so bands computed apart (e.g. on two threads) equal one pass over the whole frame bit for bit."""
    if r1 > r0:
        band = np.multiply(color_rgb[r0:r1], np.float32(1.0 / 255.0), out=src[r0:r1], dtype=np.float32)
        cv2.resize(band, (src_small.shape[1], (r1 - r0) // c), dst=src_small[r0 // c : r1 // c],
                   interpolation=cv2.INTER_AREA)


class ModelMismatch(UserError):
    """A student and a refiner of different widths (hidden features), e.g. from two different versions."""


def _coarse_width(shapes: dict[str, list], name: str = "coarse") -> int | None:
    """The coarse stack's channels in a model's declared shapes (name -> shape): a base network's (its
    `coarse_raw` output less the error channel, its `coarse` output, or 4 + its legacy `hid` output's channels),
    or a refiner's `patch_coarse` input; None if undeclared."""
    if name == "coarse" and BASE_OUTPUTS[0] in shapes:
        raw = shapes[BASE_OUTPUTS[0]][3]
        width = raw - 1 if isinstance(raw, int) else None
    elif name in shapes:
        width = shapes[name][3]
    elif name == "coarse" and "hid" in shapes:
        width = shapes["hid"][1] + 4 if isinstance(shapes["hid"][1], int) else None
    else:
        return None
    return width if isinstance(width, int) else None


def coarse_width_of(path: str | Path, name: str = "coarse") -> int | None:
    """`_coarse_width` of an ONNX file (name "coarse": a base network, "patch_coarse": a refiner); None when the
    file cannot be read or does not declare it."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a missing, truncated or non-ONNX file: the caller's own checks report those
        return None
    width = _coarse_width(_declared_shapes(model.graph), name)
    if width is None:  # a float export leaves the stack's width to shape inference (the INT8 copies declare it)
        try:
            width = _coarse_width(_declared_shapes(onnx.shape_inference.infer_shapes(model).graph), name)
        except Exception:  # noqa: S110  (an inference failure leaves the width unknown, not judged)
            pass
    return width


def _declared_shapes(graph) -> dict[str, list]:
    """Input and output name -> shape of an ONNX graph, None for a dimension without a fixed size."""
    return {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in list(graph.input) + list(graph.output)}


def check_models_fit(base_path: str | Path, refiner_path: str | Path) -> None:
    """Raise `ModelMismatch` when the base network and the refiner in these ONNX files differ in coarse channels
    (an unreadable file or undeclared width is not judged)."""
    _check_widths(base_path, refiner_path, coarse_width_of(base_path), coarse_width_of(refiner_path, "patch_coarse"))


def _check_widths(base_path: str | Path, refiner_path: str | Path, base_width: int | None,
                  refiner_width: int | None) -> None:
    """`check_models_fit` with the widths already known (None: unknown, not judged)."""
    if base_width is not None and refiner_width is not None and base_width != refiner_width:
        raise ModelMismatch(f"{Path(base_path).name} gives {base_width} coarse channels but {Path(refiner_path).name} "
                            f"takes {refiner_width}: use a student and refiners made together.")


@dataclass
class CoarseResult:
    """Base network outputs for one frame at 1/c resolution (h, w), channels last.

    stack: (h, w, 4 + hidden) float32 [alpha, fgr_res (3), hidden...], the refiner's channel order, maybe a
    view of the network's output (not C-contiguous); `pha` (h, w) in [0, 1], `fgr_res` (h, w, 3) and `hid`
    (h, w, hidden) >= 0 are views of it.
    err: (h, w) predicted error map in [0, 1], C-contiguous.
    """

    stack: np.ndarray
    err: np.ndarray

    @property
    def pha(self) -> np.ndarray:
        return self.stack[:, :, 0]

    @property
    def fgr_res(self) -> np.ndarray:
        return self.stack[:, :, 1:4]

    @property
    def hid(self) -> np.ndarray:
        return self.stack[:, :, 4:]


def activate_coarse(raw: np.ndarray) -> CoarseResult:
    """The base network's output activations (`engines.nets.base_net.BaseNet`: alpha and error clamped to
    [0, 1], hidden features ReLU) on its raw channels-last output (h, w, 5 + hidden) float32 [alpha, fgr_res
    (3), hidden, error], in place; the result's stack is a view of `raw`, its error map a copy."""
    lower = np.zeros(raw.shape[-1], np.float32)
    lower[1:4] = -np.inf  # the foreground residual is unbounded
    np.maximum(raw, lower, out=raw)  # one pass over all channels: faster than the hidden channels' strided view
    alpha = raw[:, :, 0]
    np.minimum(alpha, 1.0, out=alpha)
    return CoarseResult(raw[:, :, :-1], np.minimum(raw[:, :, -1], 1.0))


@dataclass
class RefineResult:
    """Refined full-resolution outputs: alpha (H, W) in [0, 1], foreground residual (H, W, 3) (None
    when not asked for), and the refined 4x4 patches as a (H/4, W/4) bool mask."""

    pha: np.ndarray
    fgr_res: np.ndarray | None
    selected: np.ndarray


class OnnxMatting:
    """Base network + refiner on onnxruntime, one frame at a time, numpy channels-last arrays.

    Args:
        base_path: exported base network (model spec above).
        refiner_path: exported refiner patch model, or None (coarse outputs are only upsampled).
        mode, k, threshold, prevent_oversampling: patch selection as in `RefinerConfig`.
        providers: onnxruntime providers (None = TensorRT > CUDA > CPU, the available ones).
        intra_op_threads: CPU threads per operator (None = onnxruntime's default, or settings').
        settings: `engines.matting.providers.SessionSettings` (threads, spinning, FP16 and IO binding on GPUs).
        executor: a one-thread executor that `refine` gathers two of its three patch inputs on while this
            thread gathers the third (cv2 releases the GIL: both cores busy); None: one after another.
        base_threads: CPU threads per operator of the base network (None: as `intra_op_threads`).
    """

    def __init__(
        self,
        base_path: str | Path,
        refiner_path: str | Path | None = None,
        mode: str = "topk",
        k: int = 300,
        threshold: float = 0.1,
        prevent_oversampling: bool = True,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        settings: SessionSettings | None = None,
        executor: Executor | None = None,
        base_threads: int | None = None,
    ):
        settings = settings or SessionSettings(intra_op_threads=None)
        self.executor = executor
        base_threads = intra_op_threads if base_threads is None else base_threads
        self._base_session = (base_path, providers, base_threads, settings)  # `fix_base_size` reopens it
        self.base = bind(create_session(base_path, providers, base_threads, settings), settings)
        self.refiner = None
        if refiner_path is not None:
            self.refiner = bind(create_session(refiner_path, providers, intra_op_threads, settings), settings)
        inputs = {i.name: i for i in self.base.get_inputs()}
        self.base_aux = int(inputs["aux"].shape[1]) if "aux" in inputs else 0
        self.refiner_aux = 0
        self._phased_refiner = False  # the refiner takes `patch_full_phases` (else the legacy 8x8 `patch_full`)
        if self.refiner is not None:
            full = {i.name: i for i in self.refiner.get_inputs()}
            self._phased_refiner = REFINER_INPUTS[2] in full
            if not self._phased_refiner and LEGACY_REFINER_INPUTS[2] not in full:
                raise UserError(f"{Path(refiner_path).name} is not a refiner of this project (its inputs are "
                                f"{', '.join(sorted(full))}); export it again with engines.nets.onnx_export.")
            full_input = full[REFINER_INPUTS[2] if self._phased_refiner else LEGACY_REFINER_INPUTS[2]]
            self.refiner_aux = int(full_input.shape[3]) // (4 if self._phased_refiner else 1) - 6
        outputs = {o.name for o in self.base.get_outputs()}
        self._base_outputs = next((names for names in (BASE_OUTPUTS, STACK_BASE_OUTPUTS, LEGACY_BASE_OUTPUTS)
                                   if set(names) <= outputs), None)
        if self._base_outputs is None:
            raise UserError(f"{Path(base_path).name} is not a base network of this project (its outputs are "
                            f"{', '.join(sorted(outputs))}); export it again with engines.nets.onnx_export.")
        if self.refiner is not None:
            shapes = {v.name: v.shape for v in list(self.base.get_outputs()) + list(self.refiner.get_inputs())}
            base_width = _coarse_width(shapes)
            if base_width is None:  # not declared by the session: the file's shape inference (a float export)
                base_width = coarse_width_of(base_path)
            _check_widths(base_path, refiner_path, base_width, _coarse_width(shapes, "patch_coarse"))
        self.mode, self.k, self.threshold, self.prevent_oversampling = mode, k, threshold, prevent_oversampling
        self._scratch = Scratch()  # refiner inputs, reused frame after frame (the calling thread's)
        self._worker_scratch = Scratch()  # those gathered by `_coarse_and_full_patches` (maybe on the executor)

    def fix_base_size(self, h: int, w: int) -> None:
        """On the CPU, reopen the base network's session for inputs of one size, (1, C, h, w)
        (`SessionSettings.dimensions`): onnxruntime folds its shape computations once instead of on every run.
        `run_base` then takes only that size (onnxruntime raises for another). GPU sessions are kept (a new
        TensorRT engine per size would cost seconds). Raises `UserError` when the model file cannot be read."""
        path, providers, threads, settings = self._base_session
        dims = (("batch", 1), ("height", int(h)), ("width", int(w)))
        if settings.dimensions != dims and not is_gpu(self.base.get_providers()):  # a GPU would rebuild its engine
            settings = replace(settings, dimensions=dims)
            self.base = bind(create_session(path, providers, threads, settings), settings)
            self._base_session = (path, providers, threads, settings)

    def run_base(self, src: np.ndarray, bgr: np.ndarray, aux: np.ndarray | None = None) -> CoarseResult:
        """Base network on one frame at 1/c resolution.

        src, bgr: (h, w, 3) float32 RGB in [0, 1]; aux: (h, w, A) float32 in [0, 1] iff the model has aux.
        """
        def nchw(a: np.ndarray) -> np.ndarray:
            a = np.asarray(a, dtype=np.float32)
            return np.ascontiguousarray((a[..., None] if a.ndim == 2 else a).transpose(2, 0, 1)[None])

        if (0 if aux is None else (1 if aux.ndim == 2 else aux.shape[2])) != self.base_aux:
            raise ValueError(f"this base network needs aux with {self.base_aux} channels")
        feed = {"src": nchw(src), "bgr": nchw(bgr)}
        if self.base_aux:
            feed["aux"] = nchw(aux)
        outputs = self.base.run(list(self._base_outputs), feed)
        if self._base_outputs == BASE_OUTPUTS:
            return activate_coarse(outputs[0][0])
        if self._base_outputs == LEGACY_BASE_OUTPUTS:
            pha, fgr_res, err, hid = outputs
            stack = np.concatenate([pha, fgr_res, hid], axis=1)[0].transpose(1, 2, 0)
            return CoarseResult(np.ascontiguousarray(stack), err[0, 0])
        coarse, err = outputs
        return CoarseResult(coarse[0], err[0, 0])

    def refine(
        self,
        src: np.ndarray,
        bgr: np.ndarray,
        coarse: CoarseResult,
        err: np.ndarray | None = None,
        aux: np.ndarray | list[np.ndarray] | None = None,
        with_foreground: bool = True,
        halves: list[np.ndarray | None] | None = None,
    ) -> RefineResult:
        """Refine one frame to full resolution; the numpy twin of `engines.nets.refiner.Refiner.forward`.

        src, bgr: (H, W, 3) float32 RGB in [0, 1], H and W multiples of 4.
        coarse: `run_base` output. err: (h', w') selection error map of any size (DART: the fused
        E_RGBD), default `coarse.err`. aux: (H, W, A) float32 in [0, 1] iff the refiner has aux channels,
        or a list of (H, W) maps, one per aux channel (saves stacking them per frame).
        with_foreground: False skips upsampling the foreground residual (`fgr_res` is then None).
        halves: for [src, bgr, aux maps...] in that order, each one's half-resolution image made beforehand
        (`downsample_area`; e.g. the plate's, once per prior) or None (`downsampled_patches_hwc`).
        """
        h_full, w_full = src.shape[:2]
        if h_full % PATCH or w_full % PATCH:
            raise ValueError(f"refiner needs full-resolution height and width divisible by 4, got {h_full}x{w_full}")
        hq, wq = h_full // PATCH, w_full // PATCH
        channels = 4 if with_foreground else 1
        selected = np.zeros((hq, wq), dtype=bool)
        y = x = gathered = None
        if self.refiner is not None:
            aux_maps = [] if aux is None else (list(aux) if isinstance(aux, list) else [aux])
            aux_channels = sum(1 if a.ndim == 2 else a.shape[2] for a in aux_maps)
            if aux_channels != self.refiner_aux:
                raise ValueError(f"this refiner needs aux with {self.refiner_aux} channels")
            err_q = resize_linear(coarse.err if err is None else err, (hq, wq))
            y, x = select_patches_np(err_q, self.mode, self.k, self.threshold, self.prevent_oversampling)
            if y.size:
                images = [src, bgr] + aux_maps
                gathered = run_beside(self.executor, self._coarse_and_full_patches, coarse.stack, images, y, x)
        with settled(gathered):
            if gathered is not None:
                half = downsampled_patches_hwc(images, y, x, PATCH // 2, CONTEXT_HALF, self._scratch, "half", halves)
            out = resize_linear(np.ascontiguousarray(coarse.stack[:, :, :channels]), (h_full, w_full))  # (H, W, ch)
        if gathered is not None:
            patch_coarse, patch_full = gathered.result()
            names, outputs = ((REFINER_INPUTS, REFINER_OUTPUTS) if self._phased_refiner
                              else (LEGACY_REFINER_INPUTS, LEGACY_REFINER_OUTPUTS))
            (refined,) = self.refiner.run(list(outputs), dict(zip(names, (patch_coarse, half, patch_full))))
            core = core_from_phases(refined, channels) if self._phased_refiner else refined[..., :channels]
            replace_patches_hwc(out, core, y, x)
            selected[y, x] = True
        alpha = out[..., 0]
        np.clip(alpha, 0.0, 1.0, out=alpha)
        return RefineResult(alpha, out[..., 1:] if with_foreground else None, selected)

    def _coarse_and_full_patches(self, stack: np.ndarray, images: list[np.ndarray], y: np.ndarray,
                                 x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The refiner's `patch_coarse` (the coarse stack's windows at 1/2 resolution) and full-resolution input
        (the images' windows, in the phase layout for a phased refiner) for cells (y, x), in this object's
        worker scratch arrays."""
        sc = self._worker_scratch
        half = (images[0].shape[0] // 2, images[0].shape[1] // 2)
        factor = half[0] // stack.shape[0]
        if factor in EXACT_UPSAMPLING and half == (stack.shape[0] * factor, stack.shape[1] * factor):
            patch_coarse = upsampled_patches_hwc(stack, factor, y, x, PATCH // 2, CONTEXT_HALF, sc, "coarse")
        else:  # a coarse size not dividing the frame, or a factor not a power of two: the whole stack resized
            half_coarse = resize_linear(stack, half, sc.get("half_coarse", half + stack.shape[2:]))
            patch_coarse = crop_patches_hwc(half_coarse, y, x, PATCH // 2, CONTEXT_HALF, sc, "coarse")
        return patch_coarse, crop_patches_hwc(images, y, x, PATCH, CONTEXT_FULL, sc, "full", self._phased_refiner)


def benchmark(
    matting: OnnxMatting, full_size: tuple[int, int] = (480, 640), downsample: int = 4, runs: int = 50
) -> dict[str, float]:
    """Milliseconds of `run_base` (at full_size / downsample) and `refine` (at full_size) on random frames:
    medians ("base_ms", "refine_ms") and 10th percentiles ("base_p10_ms", "refine_p10_ms", closer to
    the uncontended time on a shared machine). The selection error map is random, so every top-k
    patch is refined (the worst case for that k)."""
    rng = np.random.default_rng(0)
    h, w = full_size
    small = (h // downsample, w // downsample)
    src, bgr = rng.random((h, w, 3), dtype=np.float32), rng.random((h, w, 3), dtype=np.float32)
    src_s, bgr_s = downsample_area(src, small), downsample_area(bgr, small)
    aux_s = rng.random(small + (matting.base_aux,), dtype=np.float32) if matting.base_aux else None
    aux = rng.random((h, w, matting.refiner_aux), dtype=np.float32) if matting.refiner_aux else None
    err = rng.random(small, dtype=np.float32)
    times: dict[str, list[float]] = {"base_ms": [], "refine_ms": []}
    for i in range(runs + 3):
        t0 = time.perf_counter()
        coarse = matting.run_base(src_s, bgr_s, aux_s)
        t1 = time.perf_counter()
        matting.refine(src, bgr, coarse, err, aux)
        t2 = time.perf_counter()
        if i >= 3:  # warm-up
            times["base_ms"].append((t1 - t0) * 1e3)
            times["refine_ms"].append((t2 - t1) * 1e3)
    stats = {name: float(np.median(v)) for name, v in times.items()}
    stats.update({name.replace("_ms", "_p10_ms"): float(np.percentile(v, 10)) for name, v in times.items()})
    return stats
