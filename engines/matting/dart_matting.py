"""Network matting backends: DART (student + Bayesian error-map correction + RGB-D refiner) and the
BGMv2 RGB baseline, on onnxruntime.

Owns `NetworkMatting` (per-prior constants in `set_prior`, one `process` per frame), `DartResult`,
`model_paths` (which files a configuration needs), the choice of INT8 or float files (`network_file`:
on the CPU a `<name>_int8.onnx` made by `engines.nets.quantize` from the very float file beside it is
used; GPUs run the float file, in FP16), `choose_downsample` (the base network's c per frame size) and
`PatchBudget` (refined patches per frame adapted to a time budget, at most k); speed:
`engines.evaluation.speed`.

Per frame (colour H x W, base resolution h x w = H/c x W/c, c = `downsample`, default 4):
1. "prepare": colour to float RGB [0, 1], area-downsampled to h x w; depth nearest-resized to h x w;
2. "student": the distilled MobileNetV2 student (student.onnx) on (I_c, B_c) -> A_raw, F^R, E_RGB, H_c;
3. "posterior": A_D, DART eqs. 7-8, against the prior's depth statistics at h x w (`depth_bayes`);
4. "fusion": E_D = |A_D - A_raw| (eq. 9), E_RGBD = beta E_D + (1 - beta) E_RGB (eq. 10). By default
   (`DepthConfig.calibrated_residual`) eq. 9 compares A_raw with A_D calibrated per pixel to [0, 1]
   (`engines.matting.depth_evidence`): the paper's A_D tops out near 0.6, so |A_D - A_raw| is ~0.4 on every
   correctly matted subject pixel and the top-k selection wastes patches there;
5. "refiner": top-k 4x4 patches of the selection map refined at full resolution (eq. 11), the rest
   bilinearly upsampled (`engines.matting.onnx_inference.OnnxMatting.refine`).
With `overlap` (the default) the student runs on a worker thread while this thread runs the depth stages
(3, the depth evidence and sure regions of 4, the refiner's depth input), and the refiner's patch gathers
are split between the two threads: both cores work on one frame. `timings_ms` then overlap ("student"
is the worker's time); "total" is the frame's wall-clock time.

Variants and ablations (DART's table of ablations):
- variant="dart": selection by E_RGBD, RGB-D refiner (refiner_dart.onnx, aux = live depth / d_max and
  background depth / d_max); `use_error_map_correction=False` selects by E_RGB (still the RGB-D
  refiner); `use_depth_refiner=False` uses the RGB refiner (refiner_rgb.onnx) with E_RGBD selection.
- variant="rgb" (BGMv2 baseline): the same distilled student and the RGB refiner with E_RGB selection;
  depth is not used (both flags are ignored).
- refiner=False: the coarse alpha bilinearly upsampled (no refiner file needed).
Both variants share the student; the two refiners are trained on it (`engines.training.stages.train_all`).
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engines.matting.background_prior import BackgroundPrior, check_frame
from engines.config import DepthConfig
from engines.matting.depth_bayes import depth_posterior, depth_residual, fuse_error_maps, resize_depth
from engines.matting.depth_evidence import DepthEvidence
from engines.matting.depth_fusion import FusionConfig, mask_selection, overrule_alpha, sure_regions
from engines.matting.onnx_inference import (
    ModelMismatch,
    OnnxMatting,
    downsample_area,
    prepare_band,
    resize_linear,
)
from engines.matting.beside import run_beside, settled
from engines.matting.patches import PATCH
from engines.matting.providers import SessionSettings, is_gpu, resolve_providers
from engines.matting.scratch import Scratch
from sensors.errors import UserError

log = logging.getLogger(__name__)

VARIANTS = ("dart", "rgb")
STUDENT_FILE = "student.onnx"
DISTILLED_STUDENT_FILE = "student_distilled.onnx"  # DART eq. 3 student, for the distillation comparison
REFINER_FILES = {"dart": "refiner_dart.onnx", "rgb": "refiner_rgb.onnx"}
REGENERATE_HINT = "run `python main.py train --out {dir}` to train and export the models"
INT8_SUFFIX = "_int8.onnx"  # engines.nets.quantize writes student_int8.onnx next to student.onnx
FLOAT_SHA256_KEY = "float_sha256"  # INT8 model metadata: SHA-256 of the float file it was quantised from
PRECISIONS = ("auto", "float", "int8")
QUANTIZE_HINT = "run `python main.py bench-speed --quantize-to {dir}` to make the INT8 models"
BASE_WIDTH_MAX = 256  # choose_downsample: the base network's input is at most this wide (640x480 -> c = 4)


@dataclass
class DartResult:
    """One frame's network matte.

    alpha: float32 H x W in [0, 1] at colour resolution (refined, or the upsampled coarse alpha).
    error_map: float32 h x w in [0, 1]: the map the refiner selected patches from (E_RGBD of eq. 10;
        E_RGB when error-map correction is off or for the RGB variant).
    depth_posterior: float32 h x w in [0, 1], A_D of eq. 8 (None for the RGB variant).
    depth_evidence: float32 h x w in [0, 1], A_D calibrated (`engines.matting.depth_evidence`), the map eq. 9
        compared with A_raw and depth fusion's input (None when neither used it).
    raw_alpha: float32 h x w in [0, 1], the student's coarse alpha A_raw (after depth fusion, when on).
    error_rgb: float32 h x w in [0, 1], the student's own error map E_RGB.
    selected: bool H/4 x W/4, the refined 4x4 patches (all False without a refiner).
    timings_ms: stage name -> milliseconds ("prepare", "student", "posterior", "fusion", "refiner", "total").
    """

    alpha: np.ndarray
    error_map: np.ndarray
    depth_posterior: np.ndarray | None
    depth_evidence: np.ndarray | None
    raw_alpha: np.ndarray
    error_rgb: np.ndarray
    selected: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """What one configuration runs: refiner file (or None), selection by E_RGBD, whether A_D is computed
    (always for "dart", also when it only goes into the result)."""

    refiner_file: str | None
    select_fused: bool
    uses_depth: bool


def _plan(variant: str, use_error_map_correction: bool, use_depth_refiner: bool, refiner: bool) -> _Plan:
    if variant not in VARIANTS:
        raise UserError(f"Unknown network variant '{variant}': choose one of {', '.join(VARIANTS)}.", 2)
    if variant == "rgb":
        return _Plan(REFINER_FILES["rgb"] if refiner else None, False, False)
    refiner_file = (REFINER_FILES["dart"] if use_depth_refiner else REFINER_FILES["rgb"]) if refiner else None
    return _Plan(refiner_file, bool(use_error_map_correction), True)


def model_paths(model_dir: str | Path, variant: str = "dart", use_error_map_correction: bool = True,
                use_depth_refiner: bool = True, refiner: bool = True, student_file: str = STUDENT_FILE) -> list[Path]:
    """The ONNX files a configuration needs, student first."""
    plan = _plan(variant, use_error_map_correction, use_depth_refiner, refiner)
    files = [student_file] + ([plan.refiner_file] if plan.refiner_file else [])
    return [Path(model_dir) / f for f in files]


def int8_path(path: Path) -> Path:
    """student.onnx -> student_int8.onnx in the same folder."""
    return path.with_name(path.name[: -len(".onnx")] + INT8_SUFFIX)


def _int8_source_hash(path: Path) -> str | None:
    import onnx

    try:
        props = onnx.load(str(path), load_external_data=False).metadata_props
    except Exception:  # a corrupt file: reported by _check_model_file when it is used
        return None
    return next((p.value for p in props if p.key == FLOAT_SHA256_KEY), None)


def network_file(path: Path, precision: str = "auto", gpu: bool = False) -> Path:
    """The file to load for the float model `path`: its INT8 copy or `path` itself.

    precision "float": `path`. "auto": the INT8 copy on the CPU when it exists and was made from this very
    float file (SHA-256 in its metadata), else `path` (a stale copy is logged and skipped). "int8": the
    INT8 copy, `UserError` when it is missing or stale.
    """
    if precision not in PRECISIONS:
        raise UserError(f"Unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}.", 2)
    if precision == "float" or (precision == "auto" and gpu):
        return path
    quantized = int8_path(path)
    hint = QUANTIZE_HINT.format(dir=path.parent)
    if not quantized.is_file():
        if precision == "int8":
            raise UserError(f"Model file {quantized} is missing; {hint}.")
        return path
    import hashlib

    if path.is_file() and _int8_source_hash(quantized) != hashlib.sha256(path.read_bytes()).hexdigest():
        if precision == "int8":
            raise UserError(f"Model file {quantized} was made from another {path.name}; {hint}.")
        log.warning("%s was made from another %s: using the float model", quantized.name, path.name)
        return path
    return quantized


def choose_downsample(width: int, height: int, max_base_width: int = BASE_WIDTH_MAX) -> int:
    """The base network's downsampling c for a frame size: the smallest power of two >= 4 that makes the
    base input at most `max_base_width` pixels wide (and high), so the network sees subjects at the scale
    it was trained on (640x480 -> 4, 1280x720 -> 8, 3840x2160 -> 16) and its cost stays bounded."""
    c = 4
    while max(width, height) / c > max_base_width:
        c *= 2
    return c


@dataclass(frozen=True)
class PatchBudget:
    """Refined patches per frame adapted to a time budget (BGMv2's sampling mode bounds the cost by k).

    frame_ms: milliseconds the whole `NetworkMatting.process` may take; after each frame the next frame's
    patch count is (frame_ms - the other stages' ms) / (refiner ms per patch), both running means, kept
    within [min_k, k]. smoothing: weight of the newest frame in the running means (0, 1].
    """

    frame_ms: float
    min_k: int = 100
    smoothing: float = 0.2


class _AdaptiveK:
    """The patch count of the next frame under a `PatchBudget` (k_max without one)."""

    def __init__(self, k_max: int, budget: PatchBudget | None) -> None:
        self.k_max, self.budget = int(k_max), budget
        self.k = self.k_max
        self._other_ms: float | None = None
        self._patch_ms: float | None = None

    def update(self, other_ms: float, refiner_ms: float, refined: int) -> int:
        """Record a frame (stages other than the refiner, the refiner, patches refined); the next k."""
        b = self.budget
        if b is None:
            return self.k
        s = b.smoothing
        mean = lambda old, new: new if old is None else (1 - s) * old + s * new  # noqa: E731
        self._other_ms = mean(self._other_ms, other_ms)
        if refined > 0:
            self._patch_ms = mean(self._patch_ms, refiner_ms / refined)
        if self._patch_ms:
            room = (b.frame_ms - self._other_ms) / self._patch_ms
            self.k = int(min(self.k_max, max(min(b.min_k, self.k_max), room)))
        return self.k


def _check_model_file(path: Path) -> None:
    """A missing, empty or non-ONNX file raises `UserError` naming it and how to regenerate it."""
    hint = REGENERATE_HINT.format(dir=path.parent)
    if not path.is_file():
        raise UserError(f"Model file {path} is missing; {hint}.")
    try:
        import onnx

        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx raises DecodeError / ValidationError for a corrupt or truncated file
        raise UserError(f"Model file {path} is corrupt; {hint}.") from exc


@dataclass(frozen=True, eq=False)
class _PriorState:
    full_shape: tuple[int, int]  # (H, W)
    base_shape: tuple[int, int]  # (h, w)
    plate_small: np.ndarray  # float32 h x w x 3 background RGB [0, 1]
    plate_full: np.ndarray  # float32 H x W x 3
    evidence: DepthEvidence | None  # depth prior at h x w (likelihood tables, calibration)
    background_aux: np.ndarray | None  # float32 H x W: background depth / d_max, 0 = unknown
    halves: list  # refine()'s half-resolution images made once: [None, plate(, None, background_aux)]


class NetworkMatting:
    """DART / BGMv2 network matting of one stream against a captured background.

    model_dir: folder with student.onnx, refiner_dart.onnx, refiner_rgb.onnx (`main.py train`).
    variant: "dart" or "rgb" (module docstring). config: DART's depth parameters (beta, d_max, ...).
    use_error_map_correction, use_depth_refiner, refiner: the ablations (module docstring).
    k: refined patches per frame (top-k of the selection map), the most a `patch_budget` allows.
    providers: onnxruntime providers (None: those of `device`, "auto" = TensorRT > CUDA > CPU, those
    installed; "cuda" without a GPU provider raises `UserError`). intra_op_threads: CPU threads per operator
    (None: `session`'s, 2 by default).
    downsample: c, the base network's downsampling (None: `choose_downsample` for the prior's size).
    student_file: the base network's file name in model_dir (`DISTILLED_STUDENT_FILE` for the eq. 3 student).
    precision: "auto" (INT8 files on the CPU when made from these float files), "float" or "int8"
    (`network_file`). session: onnxruntime settings (spinning off; FP16 and IO binding on GPUs).
    patch_budget: adapt the patch count to a time per frame (None: always k).
    depth_fusion: overrule the coarse alpha where depth is sure (`engines.matting.depth_fusion`; None: off,
    the paper's DART; the "dart" variant only).
    overlap: run the student (on one thread fewer) beside the depth stages, and the refiner's patch gathers,
    on two threads (module docstring; one worker thread per instance); False: all on the calling thread.
    Missing or corrupt model files raise `UserError` naming the file.
    """

    def __init__(
        self,
        model_dir: str | Path,
        variant: str = "dart",
        config: DepthConfig = DepthConfig(),
        use_error_map_correction: bool = True,
        use_depth_refiner: bool = True,
        refiner: bool = True,
        k: int = 700,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        downsample: int | None = None,
        student_file: str = STUDENT_FILE,
        precision: str = "auto",
        device: str = "auto",
        session: SessionSettings = SessionSettings(),
        patch_budget: PatchBudget | None = None,
        depth_fusion: FusionConfig | None = FusionConfig(),
        overlap: bool = True,
    ) -> None:
        self.config, self.variant = config, variant
        self._fixed_downsample = None if downsample is None else int(downsample)
        self.downsample = self._fixed_downsample or 4
        self._plan = _plan(variant, use_error_map_correction, use_depth_refiner, refiner)
        providers = list(providers) if providers else resolve_providers(device)
        files = model_paths(model_dir, variant, use_error_map_correction, use_depth_refiner, refiner, student_file)
        for path in files:
            _check_model_file(path)
        chosen = [network_file(path, precision, is_gpu(providers)) for path in files]
        for path, float_path in zip(chosen, files):
            if path != float_path:
                _check_model_file(path)
        self.files = files = chosen
        self._patches = _AdaptiveK(k, patch_budget)
        self._fusion = depth_fusion if self._plan.uses_depth else None
        self.last_refined = 0  # patches the refiner recomputed in the last frame
        self._scratch = Scratch()  # the frame's float inputs (`_process_padded`), reused frame after frame
        # one worker thread for the student beside the depth stages and for two of the refiner's patch gathers
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dart-overlap") if overlap else None
        threads = session.intra_op_threads if intra_op_threads is None else intra_op_threads
        beside = overlap and self._plan.uses_depth and not is_gpu(providers)  # depth stages beside the student
        student_threads = threads - 1 if beside and threads and threads > 1 else None
        try:
            self._onnx = OnnxMatting(files[0], files[1] if len(files) > 1 else None, mode="topk", k=k,
                                     providers=providers, intra_op_threads=intra_op_threads, settings=session,
                                     executor=self._executor, base_threads=student_threads)
        except ModelMismatch:
            raise  # retraining would not help: the folder mixes two versions' files
        except UserError as exc:
            raise UserError(f"{exc} ({REGENERATE_HINT.format(dir=Path(model_dir))})") from exc
        if self._onnx.base_aux:
            raise UserError(f"Model file {files[0]} expects auxiliary inputs; {REGENERATE_HINT.format(dir=model_dir)}.")
        self._state: _PriorState | None = None
        self._input_shape: tuple[int, int] | None = None  # (H, W) of the prior before padding
        log.info("network matting: variant %s, refiner %s, selection by %s", variant, self._plan.refiner_file,
                 "E_RGBD" if self._plan.select_fused else "E_RGB")

    has_prior = property(lambda self: self._state is not None)

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers of the student's session, in the order onnxruntime tries them."""
        return list(self._onnx.base.get_providers())

    @property
    def refiner_aux(self) -> int:
        """Auxiliary channels of the loaded refiner (2 = RGB-D, 0 = RGB or no refiner)."""
        return self._onnx.refiner_aux

    def set_prior(self, prior: BackgroundPrior) -> None:
        """Precompute the background plate (full, base and half resolution), the depth evidence at base
        resolution and the normalised background depth (full and half) for the RGB-D refiner."""
        self._input_shape = prior.shape
        c = self.downsample = self._fixed_downsample or choose_downsample(prior.shape[1], prior.shape[0])
        prior = _pad_prior(prior, math.lcm(PATCH, c))  # any frame size: edge-padded, cropped back in `process`
        h_full, w_full = prior.shape
        h, w = h_full // c, w_full // c
        plate_full = np.ascontiguousarray(prior.color_mean, dtype=np.float32)
        evidence = DepthEvidence.from_prior(prior.resized(w, h), self.config) if self._plan.uses_depth else None
        d = np.where(prior.valid_count > 0, prior.depth_mean_m, 0.0).astype(np.float32) if self.refiner_aux else None
        background_aux = np.clip(d / np.float32(self.config.d_max_m), 0.0, 1.0) if self.refiner_aux else None
        half = (h_full // 2, w_full // 2)
        halves = [None, downsample_area(plate_full, half)] + ([None, downsample_area(background_aux, half)]
                                                              if self.refiner_aux else [])
        self._onnx.fix_base_size(h, w)  # every frame's base input has this size from now on (first: it may raise)
        self._state = _PriorState((h_full, w_full), (h, w), downsample_area(plate_full, (h, w)), plate_full,
                                  evidence, background_aux, halves)

    def process(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> DartResult:
        """Matte one frame: colour uint8 H x W x 3 RGB, depth float32 H x W metres (0 = unknown).

        Any H x W works: a size the networks cannot take (not a multiple of 4 and of the downsampling)
        is padded by edge replication, like the prior, and every map is cropped back (no copy otherwise).
        Raises `UserError` before a background is captured or when the frame does not match the prior.
        """
        s = self._state
        if s is None:
            raise UserError("No background has been captured yet: capture the empty scene first.")
        check_frame(color_rgb, depth_m, self._input_shape)
        if self._input_shape == s.full_shape:
            return self._process_padded(color_rgb, depth_m)
        result = self._process_padded(_pad_edge(color_rgb, s.full_shape), _pad_edge(depth_m, s.full_shape))
        (hi, wi), c = self._input_shape, self.downsample
        small = (slice(0, -(-hi // c)), slice(0, -(-wi // c)))
        crop = lambda a: None if a is None else np.ascontiguousarray(a[small])  # noqa: E731
        return DartResult(
            alpha=np.ascontiguousarray(result.alpha[:hi, :wi]), error_map=crop(result.error_map),
            depth_posterior=crop(result.depth_posterior), depth_evidence=crop(result.depth_evidence),
            raw_alpha=crop(result.raw_alpha), error_rgb=crop(result.error_rgb),
            selected=np.ascontiguousarray(result.selected[: -(-hi // PATCH), : -(-wi // PATCH)]),
            timings_ms=result.timings_ms)

    def _process_padded(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> DartResult:
        """`process` on a frame of the padded size the prior was prepared for."""
        s = self._state
        h, w = s.base_shape
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        sc = self._scratch
        src, src_small = sc.get("src", color_rgb.shape), sc.get("src_small", (h, w, 3))
        split = (h // 2) * self.downsample  # the top band on the worker, if any (each band is exact on its own)
        top = run_beside(self._executor, prepare_band, color_rgb, src, src_small, self.downsample, 0, split)
        with settled(top):
            prepare_band(color_rgb, src, src_small, self.downsample, split, color_rgb.shape[0])
        top.result()
        t1 = time.perf_counter()
        student = run_beside(self._executor, _timed, self._onnx.run_base, src_small, s.plate_small)
        t_depth = time.perf_counter()  # without overlap the student has run by now
        posterior = evidence = sure = aux = None
        with settled(student):
            if self._plan.uses_depth:  # the depth stages need no network output: they run beside the student
                depth_small = resize_depth(depth_m, w, h)
                posterior = depth_posterior(depth_small, s.evidence.tables, self.config)
                if self._fusion is not None or (self._plan.select_fused and self.config.calibrated_residual):
                    evidence = s.evidence(depth_small, posterior, src_small)
                if self._fusion is not None:
                    sure = sure_regions(evidence, depth_small, s.evidence.usually_invalid, self.config, self._fusion)
            if self._plan.refiner_file is not None and self.refiner_aux:
                live = np.multiply(depth_m, np.float32(1.0 / self.config.d_max_m), out=sc.get("live", depth_m.shape),
                                   dtype=np.float32)
                np.fmax(live, 0.0, out=live)  # fmax / fmin also map NaN to the bound
                np.fmin(live, 1.0, out=live)
                aux = [live, s.background_aux]
        t2 = time.perf_counter()
        coarse, timings["student"] = student.result()
        _snap_alpha(coarse.pha)
        t3 = time.perf_counter()
        error_rgb = coarse.err
        selection = error_rgb
        if sure is not None:
            overrule_alpha(coarse.pha, sure)
        if self._plan.select_fused:
            foreground = evidence if self.config.calibrated_residual else posterior
            selection = fuse_error_maps(depth_residual(foreground, coarse.pha), error_rgb, self.config.beta)
        if sure is not None:
            selection = mask_selection(selection, sure)
        t4 = time.perf_counter()
        if self._plan.refiner_file is not None:
            self._onnx.k = self._patches.k
            refined = self._onnx.refine(src, s.plate_full, coarse, selection, aux, False, s.halves)
            alpha, selected = refined.pha, refined.selected
        else:
            alpha = np.clip(resize_linear(coarse.pha, s.full_shape), 0.0, 1.0)
            selected = np.zeros((s.full_shape[0] // 4, s.full_shape[1] // 4), bool)
        _snap_alpha(alpha)
        t5 = time.perf_counter()
        timings["prepare"] = (t1 - t0) * 1e3
        timings["posterior"] = (t2 - t_depth) * 1e3  # with the evidence, sure regions and the refiner's depth input
        timings["fusion"] = (t4 - t3) * 1e3
        timings["refiner"] = (t5 - t4) * 1e3
        timings["total"] = (t5 - t0) * 1e3
        self.last_refined = int(selected.sum())
        self._patches.update(timings["total"] - timings["refiner"], timings["refiner"], self.last_refined)
        return DartResult(
            alpha=np.ascontiguousarray(alpha, dtype=np.float32),
            error_map=np.ascontiguousarray(selection, dtype=np.float32),
            depth_posterior=posterior,
            depth_evidence=evidence,
            raw_alpha=np.ascontiguousarray(coarse.pha, dtype=np.float32),
            error_rgb=np.ascontiguousarray(error_rgb, dtype=np.float32),
            selected=selected,
            timings_ms=timings,
        )


def _timed(fn, *args):
    """(fn(*args), its wall-clock milliseconds)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1e3


ALPHA_SNAP = 0.01  # alpha within this of 0 or 1 is quantisation noise of the INT8 networks


def _snap_alpha(alpha: np.ndarray) -> None:
    """In place: alpha within `ALPHA_SNAP` of 0 or 1 becomes exactly 0 or 1. The INT8 networks' outputs
    are quantised in steps of about 1/255 and leave 1-2 steps over most of the background where the
    float networks give 0: SAD +0.7/1000 per 640x480 frame on the synthetic suite, and 1/255 or 2/255
    written into an 8-bit alpha PNG. (Alpha holds no NaN here; OpenCV's path, for contiguous frames, would not
    keep one on every build.)"""
    high = np.float32(1.0 - ALPHA_SNAP)
    if alpha.dtype == np.float32 and alpha.flags.c_contiguous:  # a full frame: OpenCV's threshold is faster
        cv2.threshold(alpha, _SNAP_BELOW, 0.0, cv2.THRESH_TOZERO, dst=alpha)  # keeps alpha > _SNAP_BELOW
        np.copyto(alpha, np.float32(1.0), where=alpha > high)
        return
    alpha[alpha < np.float32(ALPHA_SNAP)] = 0.0
    alpha[alpha > high] = 1.0


_SNAP_BELOW = float(np.nextafter(np.float32(ALPHA_SNAP), np.float32(0.0)))  # alpha > this <=> alpha >= ALPHA_SNAP


def _pad_edge(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`a` (H x W or H x W x C) grown at the bottom and right to `shape` by repeating its last row / column."""
    pad = ((0, shape[0] - a.shape[0]), (0, shape[1] - a.shape[1])) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode="edge")


def _pad_prior(prior: BackgroundPrior, multiple: int) -> BackgroundPrior:
    """`prior` edge-padded so that both sides are multiples of `multiple` (itself when they already are)."""
    h, w = prior.shape
    shape = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
    if shape == (h, w):
        return prior
    return BackgroundPrior(
        depth_mean_m=_pad_edge(prior.depth_mean_m, shape), depth_std_m=_pad_edge(prior.depth_std_m, shape),
        valid_count=_pad_edge(prior.valid_count, shape), color_mean=_pad_edge(prior.color_mean, shape),
        n_frames=prior.n_frames, color_std=None if prior.color_std is None else _pad_edge(prior.color_std, shape),
    )
