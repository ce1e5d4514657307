"""Scene adaptation the capture-stage way (issue 15; capture-stage paper sec. 4.3, DART sec. II-F): the
offline teacher labels the user's own take, the real-time student is fine-tuned on it.

Owns `AdaptConfig`, `AdaptResult`, `adapt_to_take` (teacher labels -> student fine-tuned on 80 %
generic / 20 % take batches within a wall-clock budget -> validated on held-out take frames against the
teacher and on generic validation samples -> written as a model folder, adapted only if better) and
`adapt_recording` (the same for a recording: `main.py train --scene REC`). The data side (reading the
take, the teacher, the mixed batches) is `engines.training.adapt_data`.

The model folder `out_dir` always ends up usable by `NetworkMatting(out_dir)`: student.onnx (+ its
safetensors) is the adapted student when it was accepted, otherwise a copy of the generic one; the
DART refiner likewise (`engines.training.adapt_refiner`, `AdaptConfig.refiner_share` of the training
time), the RGB refiner is copied; adapt.json records the decision, the validation errors, the steps and the times.
Every file is written atomically (`sensors.safe_write`), so a crash or a cancel never leaves a broken one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engines.config import DepthConfig
from engines.training.adapt_data import Take, TeacherConfig, label_take, mixed_batch, read_take, take_pool
from engines.training.data import AugmentConfig, SamplePool, load_or_build_pool
from sensors.errors import UserError

log = logging.getLogger(__name__)

RESULT_FILE = "adapt.json"
MIN_REFINER_S = 10.0  # less time left than this: the refiner is not adapted (its validation alone takes seconds)
MODEL_FILES = ("student.onnx", "student.safetensors", "refiner_dart.onnx", "refiner_dart.safetensors",
               "refiner_rgb.onnx")
LogCallback = Callable[[dict], None]


class AdaptCancelled(Exception):
    """Raised inside `adapt_to_take` when `should_stop()` became true; nothing was written."""


@dataclass(frozen=True)
class AdaptConfig:
    """Budget and settings of one adaptation.

    budget_s: wall-clock seconds for everything (teacher, generic data, training, validation, export);
    training gets what is left after the rest (at least `min_train_s`). height, width: training size
    (take frames and generic samples; the base network sees them / `downsample`, with zoom augmentation
    up to the pixel scale of a 640x480 frame). scene_fraction: share of take samples per batch (the
    paper's 0.2 suits its 2,000 iterations; a few hundred CPU steps adapt better with 0.5, README
    "Scene adaptation", while the generic validation guards against forgetting). holdout_fraction: the
    take's last frames kept out of training for validation. generic_samples, generic_val: generic
    synthetic samples for training / validation (built, or read from `generic_cache`, an .npz).
    generic_tolerance: the generic validation error may grow by this share at most (10 %: at 5 % a
    semi-real scene was rejected for +5.04 % although its held-out take error fell from 0.145 to 0.010),
    and the held-out take error must drop, for the adapted student to be accepted. refiner_share: the
    share of the training time given to the DART refiner afterwards (`engines.training.adapt_refiner`,
    on the student that is kept; 0 = the generic refiner), accepted by the same two rules. Default 0:
    on the semi-real suite (seeds 2024 and 2025) and the synthetic one, giving those 25% to the student
    instead scored better after edge refinement (SAD 4.24 / 4.19 / 2.47 against 4.32 / 4.25 / 2.52).
    """

    budget_s: float = 270.0
    min_train_s: float = 5.0
    max_steps: int = 100_000
    height: int = 240
    width: int = 320
    downsample: int = 4
    batch_size: int = 10
    scene_fraction: float = 0.5
    lr: tuple[float, float, float] = (5e-5, 2.5e-4, 2.5e-4)
    holdout_fraction: float = 0.2
    generic_samples: int = 160
    generic_val: int = 32
    generic_cache: str | None = None
    generic_tolerance: float = 0.10
    refiner_share: float = 0.0
    teacher: TeacherConfig = TeacherConfig()
    augment: AugmentConfig = AugmentConfig(misalign_p=0.2)
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0


@dataclass
class AdaptResult:
    """What `adapt_to_take` did. accepted: the adapted student is in `out_dir`; reason: one sentence;
    errors: weighted coarse-alpha MAD ("take_before/after" on held-out take frames against the teacher,
    "generic_before/after" on generic validation samples against ground truth); seconds per phase;
    refiner: the refiner's adaptation ({"accepted", "steps", "errors": refined-alpha MAD}, or
    {"failed": reason}; empty when not run). accepted: the student or the refiner (or both) were
    adapted and are in `out_dir`; student_accepted, refiner_accepted: which (a part not adapted is a
    copy of `model_dir`'s)."""

    accepted: bool
    reason: str
    out_dir: str
    steps: int = 0
    frames: dict[str, int] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    refiner: dict = field(default_factory=dict)
    student_accepted: bool = False
    refiner_accepted: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def weighted_base_loss(pha, fgr, err, pha_gt, fgr_gt, weight) -> dict:
    """BGMv2 eq. 4 (alpha L1 + Sobel gradient L1, foreground L1 where alpha* > 0, error-map L2) with a
    per-pixel weight (N, 1, h, w) in [0, 1] on every term: the teacher's confidence on take samples,
    1 on generic ones. Tensors (N, C, h, w); returns the terms and their sum under "total"."""
    from engines.nets.losses import error_target, sobel

    gx, gy = sobel(pha)
    tx, ty = sobel(pha_gt)
    terms = {
        "alpha": ((pha - pha_gt).abs() * weight).mean() + (((gx - tx).abs() + (gy - ty).abs()) * weight).mean(),
        "fgr": ((fgr - fgr_gt).abs() * (pha_gt > 0).to(fgr.dtype) * weight).mean(),
        "err": (((err - error_target(pha, pha_gt)) ** 2) * weight).mean(),
    }
    terms["total"] = terms["alpha"] + terms["fgr"] + terms["err"]
    return terms


def _small(pool: SamplePool, weights: np.ndarray | None, downsample: int) -> dict[str, np.ndarray]:
    """Un-augmented base-resolution arrays of a whole pool (validation)."""
    import cv2

    h, w = pool.size
    size = (w // downsample, h // downsample)
    out: dict[str, list] = {"image": [], "background": [], "alpha": [], "weight": []}
    for i in range(len(pool)):
        s = pool.sample(i)
        s["weight"] = np.ones((h, w), np.float32) if weights is None else weights[i].astype(np.float32) / 255.0
        for k in out:
            small = cv2.resize(s[k], size, interpolation=cv2.INTER_AREA)
            out[k].append(small[None] if small.ndim == 2 else small.transpose(2, 0, 1))
    return {k: np.ascontiguousarray(np.stack(v), np.float32) for k, v in out.items()}


def coarse_error(net, arrays: dict[str, np.ndarray], device: str = "cpu", batch_size: int = 16) -> float:
    """Weighted mean |alpha - alpha*| of the base network's coarse alpha on `_small` arrays."""
    import torch

    was_training = net.training
    net.eval()
    total, norm = 0.0, 0.0
    with torch.no_grad():
        for s in range(0, len(arrays["image"]), batch_size):
            t = {k: torch.from_numpy(v[s:s + batch_size]).to(device) for k, v in arrays.items()}
            pha = net(t["image"], t["background"])[0]
            total += float(((pha - t["alpha"]).abs() * t["weight"]).sum())
            norm += float(t["weight"].sum())
    net.train(was_training)
    return total / max(norm, 1e-6)


def _atomic_copy(src: Path, dst: Path) -> None:
    from sensors.safe_write import atomic_write_bytes

    atomic_write_bytes(dst, src.read_bytes())


def _write_model(module, out_dir: Path, stem: str, metadata: dict[str, str], export, probe: dict) -> float:
    """`stem`.safetensors and `stem`.onnx (`export(module, path)`, validated against torch on `probe`)
    into `out_dir`, each atomically; returns the export's max abs difference. Raises RuntimeError when
    it exceeds 1e-3."""
    from engines.nets.base_net import save_weights
    from engines.nets.onnx_export import validate_export

    module = module.cpu().eval()
    tmp_w, tmp_o = out_dir / f".{stem}.safetensors.part", out_dir / f".{stem}.part.onnx"
    try:
        save_weights(module, tmp_w, metadata)
        export(module, tmp_o)
        diff = validate_export(module, tmp_o, probe)
        if not diff < 1e-3:
            raise RuntimeError(f"the adapted {stem}'s ONNX export differs from torch by {diff}")
        os.replace(tmp_w, out_dir / f"{stem}.safetensors")
        os.replace(tmp_o, out_dir / f"{stem}.onnx")
    finally:
        for tmp in (tmp_w, tmp_o):
            tmp.unlink(missing_ok=True)
    return diff


def _write_student(net, out_dir: Path) -> float:
    """student.safetensors and student.onnx into `out_dir` (`_write_model`)."""
    from engines.nets.onnx_export import export_base_net

    rng = np.random.default_rng(0)
    probe = {"src": rng.random((1, 3, 60, 80), dtype=np.float32), "bgr": rng.random((1, 3, 60, 80), dtype=np.float32)}
    return _write_model(net, out_dir, "student", {"stage": "adapted"}, export_base_net, probe)


def _write_refiner(refiner, out_dir: Path) -> float:
    """refiner_dart.safetensors and refiner_dart.onnx into `out_dir` (`_write_model`)."""
    from engines.nets.onnx_export import export_refiner, refiner_probe_inputs

    probe = refiner_probe_inputs(refiner, np.random.default_rng(0))
    return _write_model(refiner, out_dir, "refiner_dart", {"stage": "adapted", "variant": "dart"}, export_refiner, probe)


def adapt_to_take(take: Take, model_dir: str | Path, out_dir: str | Path, config: AdaptConfig = AdaptConfig(),
                  depth: DepthConfig = DepthConfig(), on_log: LogCallback | None = None,
                  should_stop: Callable[[], bool] | None = None) -> AdaptResult:
    """Adapt the student of `model_dir` (student.safetensors + ONNX files) to `take`; write `out_dir`.

    on_log(event dict): progress events {"stage": "adapt", "event": "progress", "phase", "fraction" in
    [0, 1], "eta_s"} and phase results. should_stop(): polled between frames and steps; true raises
    `AdaptCancelled` before anything is written. Returns `AdaptResult` (also `out_dir/adapt.json`).
    Raises `UserError` when `model_dir` lacks the generic student's weights or the take is unusable.
    """
    import torch

    from engines.nets.base_net import foreground_from_residual, load_student
    from engines.training.stages import base_param_groups

    t0 = time.perf_counter()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    stop = should_stop or (lambda: False)
    seconds: dict[str, float] = {}

    def emit(event: dict) -> None:
        log.info("%s", event)
        if on_log is not None:
            on_log({"stage": "adapt", **event})

    def progress(phase: str, fraction: float) -> None:
        elapsed = time.perf_counter() - t0
        emit({"event": "progress", "phase": phase, "fraction": round(min(max(fraction, 0.0), 1.0), 4),
              "eta_s": round(max(config.budget_s - elapsed, 0.0), 1)})

    def check() -> None:
        if stop():
            raise AdaptCancelled("adaptation cancelled")

    if not (model_dir / "student.safetensors").is_file():
        raise UserError(f"'{model_dir}' has no student.safetensors to adapt: give the shipped models folder.", 2)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    # 1. the teacher labels the take
    labels = label_take(take, config.teacher, depth, lambda i, n: progress("teacher", 0.2 * i / n), stop, model_dir)
    check()
    kept = np.flatnonzero(labels.kept)
    if len(kept) < 2:
        why = "; ".join(sorted(set(labels.dropped.values())))[:200]
        raise UserError(f"The teacher was unsure on {len(take) - len(kept)} of the take's {len(take)} frames ({why}), "
                        "too few left to learn from: stay in full view of the camera and try again.", 1)
    # held out: the last unmarked frames (the user's scribbled frames are trained on; only when every kept
    # frame is marked is the last one held out)
    candidates = np.flatnonzero(labels.kept & ~take.marked())
    n_hold = min(len(candidates), max(1, int(round(config.holdout_fraction * len(kept)))))
    hold_idx = candidates[len(candidates) - n_hold:] if n_hold else kept[-1:]
    train_idx = np.setdiff1d(kept, hold_idx)
    seconds["teacher"] = time.perf_counter() - t0
    # 2. training data: the take at training size, generic samples for the mix and for validation
    h, w = config.height, config.width
    scene, scene_w = take_pool(take, labels, train_idx, h, w)
    hold, hold_w = take_pool(take, labels, hold_idx, h, w)
    generic = load_or_build_pool(config.generic_cache, config.generic_samples, h, w, config.seed)
    check()
    val_cache = None if config.generic_cache is None else str(Path(config.generic_cache).with_suffix("")) + "_val.npz"
    generic_val = load_or_build_pool(val_cache, config.generic_val, h, w, config.seed + 1000)
    hold_arrays, val_arrays = _small(hold, hold_w, config.downsample), _small(generic_val, None, config.downsample)
    seconds["data"] = time.perf_counter() - t0 - seconds["teacher"]
    progress("data", 0.25)
    # 3. fine-tune the student
    net = load_student(model_dir / "student.safetensors").to(config.device)
    errors = {"take_before": coarse_error(net, hold_arrays, config.device),
              "generic_before": coarse_error(net, val_arrays, config.device)}
    optimizer = torch.optim.Adam(base_param_groups(net, config.lr))
    net.train()
    train_start = time.perf_counter()
    train_total_s = max(config.min_train_s, config.budget_s - (train_start - t0) - 15.0)
    train_s = train_total_s * (1.0 - config.refiner_share)
    step = 0
    while step < config.max_steps and time.perf_counter() - train_start < train_s:
        check()
        rng = np.random.default_rng([config.seed, 15, step])
        batch = mixed_batch(generic, scene, scene_w, rng, config.batch_size, config.scene_fraction,
                            config.downsample, config.augment)
        t = {k: torch.from_numpy(v).to(config.device) for k, v in batch.items()}
        pha, fgr_res, err, _ = net(t["image"], t["background"])
        terms = weighted_base_loss(pha, foreground_from_residual(fgr_res, t["image"]), err, t["alpha"],
                                   t["foreground"], t["weight"])
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        step += 1
        if step % 10 == 0:
            done = (time.perf_counter() - train_start) / train_s
            progress("training", 0.25 + 0.7 * (1.0 - config.refiner_share) * min(done, 1.0))
            emit({"event": "step", "step": step, **{k: round(float(v.detach()), 5) for k, v in terms.items()}})
    check()
    seconds["training"] = time.perf_counter() - train_start
    # 4. validate, decide, write
    errors["take_after"] = coarse_error(net, hold_arrays, config.device)
    errors["generic_after"] = coarse_error(net, val_arrays, config.device)
    better = errors["take_after"] < errors["take_before"]
    kept_generic = errors["generic_after"] <= errors["generic_before"] * (1.0 + config.generic_tolerance)
    accepted = better and kept_generic
    if accepted:
        reason = (f"adapted: held-out take error {errors['take_before']:.4f} -> {errors['take_after']:.4f}, "
                  f"generic {errors['generic_before']:.4f} -> {errors['generic_after']:.4f}")
    elif not better:
        reason = (f"kept the generic student: the held-out take error did not drop "
                  f"({errors['take_before']:.4f} -> {errors['take_after']:.4f})")
    else:
        reason = (f"kept the generic student: the generic validation error grew too much "
                  f"({errors['generic_before']:.4f} -> {errors['generic_after']:.4f})")
    check()
    # 5. the refiner, on the student that is kept
    refined, refiner_info = None, {}
    refiner_start = time.perf_counter()
    left = train_total_s - (refiner_start - train_start)
    if config.refiner_share > 0 and left >= MIN_REFINER_S:
        from engines.training.adapt_refiner import adapt_refiner

        kept_student = net if accepted else load_student(model_dir / "student.safetensors")
        first = 0.25 + 0.7 * (1.0 - config.refiner_share)
        progress("refiner", first)
        try:
            refined = adapt_refiner(kept_student, model_dir, generic, scene, hold, generic_val, left,
                                    config.batch_size, config.scene_fraction, config.downsample, config.augment,
                                    config.generic_tolerance, config.seed, config.device, stop, config.max_steps,
                                    lambda f: progress("refiner", first + (0.95 - first) * f))
        except (UserError, RuntimeError, ValueError) as exc:  # e.g. refiner weights that do not fit: the student stays
            log.warning("refiner adaptation failed: %s", exc)
            refiner_info = {"failed": str(exc)[:300]}
        seconds["refiner"] = time.perf_counter() - refiner_start
        check()
        if refined is not None:
            refiner_info = {"accepted": refined.better, "steps": refined.steps, "errors": refined.errors}
            reason += (f"; refiner {'adapted' if refined.better else 'kept'}: held-out take error "
                       f"{refined.errors['take_before']:.4f} -> {refined.errors['take_after']:.4f}, generic "
                       f"{refined.errors['generic_before']:.4f} -> {refined.errors['generic_after']:.4f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES[2:]:
        if (model_dir / name).is_file():
            _atomic_copy(model_dir / name, out_dir / name)
    if accepted:
        _write_student(net, out_dir)
    else:
        for name in MODEL_FILES[:2]:
            _atomic_copy(model_dir / name, out_dir / name)
    student_accepted, refiner_accepted = accepted, refined is not None and refined.better
    if refiner_accepted:
        _write_refiner(refined.refiner, out_dir)
    accepted = student_accepted or refiner_accepted
    seconds["total"] = time.perf_counter() - t0
    result = AdaptResult(
        accepted=accepted, reason=reason, out_dir=str(out_dir), steps=step,
        frames={"take": len(take), "trained": len(train_idx), "held_out": len(hold_idx),
                "dropped": len(labels.dropped), "generic": len(generic)},
        errors={k: round(v, 5) for k, v in errors.items()},
        seconds={k: round(v, 1) for k, v in seconds.items()},
        dropped={str(int(take.index[i]) if len(take.index) else i): r for i, r in labels.dropped.items()},
        config=json.loads(json.dumps(asdict(config), default=str)),
        refiner=refiner_info, student_accepted=student_accepted, refiner_accepted=refiner_accepted)
    from sensors.safe_write import atomic_write_bytes

    atomic_write_bytes(out_dir / RESULT_FILE, json.dumps(result.to_json(), indent=1).encode())
    progress("done", 1.0)
    emit({"event": "done", "accepted": accepted, "reason": reason, "wall_s": seconds["total"]})
    return result


def adapt_recording(recording: str | Path, model_dir: str | Path, out_dir: str | Path,
                    config: AdaptConfig = AdaptConfig(), background_frames: int | None = None,
                    take_frames: int | None = None, max_take_frames: int = 64, on_log: LogCallback | None = None
                    ) -> AdaptResult:
    """`adapt_to_take` on a recording: its empty-scene frames give the prior, the next `take_frames`
    (default: all the rest, subsampled to `max_take_frames`) are the take; ground truth is never read.
    The reading time is counted in the result's "read" seconds (not in the budget)."""
    start = time.perf_counter()
    take = read_take(recording, background_frames, take_frames, max_take_frames)
    read_s = time.perf_counter() - start
    result = adapt_to_take(take, model_dir, out_dir, config, on_log=on_log)
    result.seconds["read"] = round(read_s, 1)
    return result
