"""DART's training stages (paper sec. II-A, II-C, II-F; BGMv2 sec. 4.3), `train_all` and scene fine-tuning.

Stages, each a function with a time budget (seconds) and a step limit, resumable from its checkpoint
(`engines.training.checkpoint`), reproducible from a seed (batch i is drawn from rng(seed, i)):
(a) `train_teacher`: BaseNet(teacher_config()) initialised from DeepLab, BGMv2 base loss (eq. 4).
(b) `train_student(..., teacher_weights=path)`: BaseNet(student_config()) from DeepLab, DART eq. 3
    (KL to the frozen teacher's raw alpha + GT alpha L1 + GT error-map L2).
(c) `train_student(..., teacher_weights=None)`: the same student and budget with the plain BGMv2 base
    loss, for the "distillation helps" comparison.
(d) `train_refiner(..., variant="dart")`: RGB-D patch refiner (aux = live depth / d_max and background
    depth / d_max) with patches chosen from the fused error map E_RGBD = fuse_error_maps(|A_D - A_raw|,
    E_RGB, beta), A_D from the depth posterior against a prior built from the sample's background
    depth; student frozen; BGMv2 refine loss (eq. 5).
(e) `train_refiner(..., variant="rgb")`: BGMv2's RGB refiner (aux = 0, patches from E_RGB).
`train_all` runs (a)-(e) and exports the ONNX models; `finetune_on_scene` adapts a student to one
recording's background. Every stage logs through `logging` and an optional `on_log(dict)` callback.

Resolution: samples are H x W at full resolution (default 320 x 240); the base networks see them
area-downsampled by `downsample` (4 -> 80 x 60); refiners work at full resolution.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from engines.config import DepthConfig
from engines.matting.dart_matting import DISTILLED_STUDENT_FILE
from engines.nets.base_net import (BaseNet, BaseNetConfig, config_metadata, foreground_from_residual, load_state,
                                   load_student, load_weights, pointwise_final_layer, read_weights, student_config,
                                   student_config_of, teacher_config)
from engines.nets.losses import base_loss, distillation_loss, refine_loss
from engines.nets.refiner import Refiner, RefinerConfig, load_refiner, refiner_config_of
from engines.training.checkpoint import StageLog, load_stage_log, paths, resume, save_checkpoint
from engines.training.data import (AugmentConfig, Batch, SamplePool, depth_posterior_batch, load_or_build_pool,
                                   make_batch, sample_rng)

log = logging.getLogger(__name__)

LogCallback = Callable[[dict], None]
TEACHER, STUDENT, STUDENT_PLAIN, REFINER_DART, REFINER_RGB = (
    "teacher", "student", "student_plain", "refiner_dart", "refiner_rgb")
ONNX_FILES = {"student": "student.onnx", "dart": "refiner_dart.onnx", "rgb": "refiner_rgb.onnx"}
PLAIN_STUDENT_FILE = "student_plain.onnx"
# The refiners' patch selection while training: the paper's eqs. 9-10 as printed (raw A_D, beta 0.05),
# as the shipped refiners were trained; run time selects with the calibrated residual (engines.config).
TRAIN_SELECTION_DEPTH = DepthConfig(beta=0.05, calibrated_residual=False)
AUX_CHANNELS = {"dart": 2, "rgb": 0}


def default_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class StageConfig:
    """One stage's optimisation settings.

    budget_s: wall-clock budget (seconds, counted across resumes); max_steps: step limit.
    lr: (backbone, ASPP, decoder) learning rates for base networks (DART: 1e-4, 5e-4, 5e-4); a
    refiner uses `lr_refiner`. log_every: steps between history entries; checkpoint_every_s: seconds
    between checkpoints (one is always written at the end). k_train: refiner patches per image.
    """

    budget_s: float = 600.0
    max_steps: int = 100_000
    batch_size: int = 8
    lr: tuple[float, float, float] = (1e-4, 5e-4, 5e-4)
    lr_refiner: float = 3e-4
    log_every: int = 20
    checkpoint_every_s: float = 120.0
    k_train: int = 300
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train_all` needs. Budgets in seconds per stage.

    height, width: full-resolution sample size (multiples of 4 * downsample... of 4 and of downsample).
    pool_size: training samples pre-generated into memory; val_size: held-out samples (seed + 1000).
    pool_cache: optional .npz path to reuse a generated pool across runs.
    """

    height: int = 240
    width: int = 320
    downsample: int = 4
    pool_size: int = 2400
    val_size: int = 96
    pool_cache: str | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = 2
    teacher: StageConfig = StageConfig(budget_s=20 * 60)
    student: StageConfig = StageConfig(budget_s=18 * 60)
    student_plain: StageConfig = StageConfig(budget_s=18 * 60)
    refiner_dart: StageConfig = StageConfig(budget_s=8 * 60, batch_size=4)
    refiner_rgb: StageConfig = StageConfig(budget_s=8 * 60, batch_size=4)
    augment: AugmentConfig = AugmentConfig()  # base networks
    augment_refiner: AugmentConfig = AugmentConfig(zoom_p=0.0)  # refiners: native full-resolution pixels
    depth: DepthConfig = TRAIN_SELECTION_DEPTH
    noise_k: float = 0.0015  # depth noise model of the prior's std, k * z^2 (the generator's sensor)
    # which student the refiners are trained on and student.onnx holds ("plain": trained without the
    # teacher, the shipped choice, see assets/MODEL_CARD.md; "distilled": DART eq. 3). The other one is
    # exported too (student_distilled.onnx / student_plain.onnx) for the distillation comparison.
    runtime_student: str = "plain"

    @classmethod
    def with_budget_minutes(cls, minutes: float, **kwargs) -> TrainConfig:
        """A config whose five stage budgets split `minutes` like the defaults (20:18:18:8:8)."""
        shares = {"teacher": 20, "student": 18, "student_plain": 18, "refiner_dart": 8, "refiner_rgb": 8}
        total = sum(shares.values())
        base = cls(**kwargs)
        stages = {k: dataclasses.replace(getattr(base, k), budget_s=minutes * 60.0 * v / total) for k, v in shares.items()}
        return dataclasses.replace(base, **stages)


def _emit(on_log: LogCallback | None, event: dict) -> None:
    log.info("%s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in event.items()))
    if on_log is not None:
        on_log(event)


def _tensors(arrays: dict[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}


def base_param_groups(net: BaseNet, lr: tuple[float, float, float]) -> list[dict]:
    """Adam parameter groups for a base network: backbone, ASPP, decoder (DART's three rates)."""
    return [
        {"params": list(net.backbone.parameters()), "lr": lr[0]},
        {"params": list(net.aspp.parameters()), "lr": lr[1]},
        {"params": list(net.decoder.parameters()), "lr": lr[2]},
    ]


def _run_loop(
    name: str,
    out_dir: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, torch.Tensor]],
    cfg: StageConfig,
    stage_config: dict,
    on_log: LogCallback | None,
    metadata: dict[str, str],
    fresh_init: Callable[[], None] | None = None,
) -> StageLog:
    """The shared loop: resume or init, step until the budget or step limit, checkpoint, log."""
    stage_log = resume(out_dir, name, module, optimizer)
    if stage_log is None:
        if fresh_init is not None:
            fresh_init()
        stage_log = StageLog(stage=name, config=stage_config)
    elif stage_log.done:
        _emit(on_log, {"stage": name, "event": "already_done", "step": stage_log.step})
        return stage_log
    module.train()
    start = time.perf_counter()
    offset = stage_log.elapsed_s
    last_ckpt = start
    running: dict[str, float] = {}
    count = 0
    _emit(on_log, {"stage": name, "event": "start", "step": stage_log.step, "budget_s": cfg.budget_s})
    while stage_log.step < cfg.max_steps and offset + (time.perf_counter() - start) < cfg.budget_s:
        terms = step_fn(stage_log.step)
        optimizer.zero_grad(set_to_none=True)
        if terms["total"].requires_grad:  # a refiner batch without any selected patch has nothing to learn
            terms["total"].backward()
            optimizer.step()
        stage_log.step += 1
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        count += 1
        now = time.perf_counter()
        if stage_log.step % cfg.log_every == 0:
            entry = {"step": stage_log.step, "time_s": round(offset + now - start, 1),
                     **{k: round(v / count, 5) for k, v in running.items()}}
            stage_log.history.append(entry)
            _emit(on_log, {"stage": name, **entry})
            running, count = {}, 0
        if now - last_ckpt > cfg.checkpoint_every_s:
            stage_log.elapsed_s = offset + now - start
            save_checkpoint(out_dir, name, module, optimizer, stage_log, metadata)
            last_ckpt = now
    stage_log.elapsed_s = offset + time.perf_counter() - start
    stage_log.done = True
    save_checkpoint(out_dir, name, module, optimizer, stage_log, metadata)
    _emit(on_log, {"stage": name, "event": "done", "step": stage_log.step, "elapsed_s": stage_log.elapsed_s})
    return stage_log


def _finish_metrics(out_dir: Path, name: str, metrics: dict) -> None:
    stage_log = load_stage_log(out_dir, name)
    if stage_log is not None:
        stage_log.metrics.update(metrics)
        paths(out_dir, name)[2].write_text(json.dumps(stage_log.to_json(), indent=1))


# --------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_base(net: BaseNet, pool: SamplePool, downsample: int = 4, device: str = "cpu",
                  batch_size: int = 16) -> dict[str, float]:
    """Coarse-alpha accuracy of a base network on un-augmented samples at base resolution:
    mean |alpha - alpha*| ("alpha_mad"), mean squared error ("alpha_mse"), and the same for the
    all-background answer alpha = 0 ("zero_mad") as a reference."""
    was_training = net.training
    net.eval()
    sums = {"alpha_mad": 0.0, "alpha_mse": 0.0, "zero_mad": 0.0}
    n = 0
    for start in range(0, len(pool), batch_size):
        index = np.arange(start, min(start + batch_size, len(pool)))
        batch = make_batch(pool, np.random.default_rng(0), len(index), downsample, AugmentConfig.none(), index)
        t = _tensors(batch.small, device)
        pha = net(t["image"], t["background"])[0]
        gt = t["alpha"]
        sums["alpha_mad"] += float((pha - gt).abs().mean(dim=(1, 2, 3)).sum())
        sums["alpha_mse"] += float(((pha - gt) ** 2).mean(dim=(1, 2, 3)).sum())
        sums["zero_mad"] += float(gt.mean(dim=(1, 2, 3)).sum())
        n += len(index)
    net.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


# --------------------------------------------------------------------------------- base networks


def _new_base(config, device: str, init_from_deeplab: bool, seed: int) -> tuple[BaseNet, Callable[[], None]]:
    from engines.nets.convert_deeplab import init_base_net_from_deeplab

    torch.manual_seed(seed)
    net = BaseNet(config)

    def init() -> None:
        if init_from_deeplab:
            init_base_net_from_deeplab(net, generator=torch.Generator().manual_seed(seed))
            net.to(device)

    return net.to(device), init


def train_teacher(pool: SamplePool, out_dir: str | Path, cfg: StageConfig, downsample: int = 4,
                  device: str = "cpu", augment: AugmentConfig = AugmentConfig(),
                  on_log: LogCallback | None = None, name: str = TEACHER,
                  val_pool: SamplePool | None = None) -> Path:
    """Stage (a): the teacher base network (MobileNetV2 1.0, DeepLab init) with BGMv2's base loss.
    Returns the weights path (`out_dir/teacher.safetensors`)."""
    out_dir = Path(out_dir)
    net, init = _new_base(teacher_config(), device, True, cfg.seed)
    optimizer = torch.optim.Adam(base_param_groups(net, cfg.lr))

    def step(i: int) -> dict[str, torch.Tensor]:
        batch = make_batch(pool, sample_rng(cfg.seed, i, 1), cfg.batch_size, downsample, augment)
        t = _tensors(batch.small, device)
        pha, fgr_res, err, _ = net(t["image"], t["background"])
        return base_loss(pha, foreground_from_residual(fgr_res, t["image"]), err, t["alpha"], t["foreground"])

    _run_loop(name, out_dir, net, optimizer, step, cfg, {"stage_config": dataclasses.asdict(cfg), "net": "teacher"},
              on_log, config_metadata(net.config), init)
    if val_pool is not None:
        _finish_metrics(out_dir, name, {"val": evaluate_base(net, val_pool, downsample, device)})
    return paths(out_dir, name)[0]


def train_student(pool: SamplePool, out_dir: str | Path, cfg: StageConfig, teacher_weights: str | Path | None,
                  downsample: int = 4, device: str = "cpu", augment: AugmentConfig = AugmentConfig(),
                  on_log: LogCallback | None = None, name: str | None = None,
                  val_pool: SamplePool | None = None, init_weights: str | Path | None = None,
                  config: BaseNetConfig | None = None) -> Path:
    """Stages (b) and (c): the student base network (MobileNetV2 0.5, DeepLab init).

    teacher_weights: a teacher file -> DART eq. 3 distillation (stage b, default name "student");
    None -> BGMv2's base loss without a teacher (stage c, default name "student_plain").
    init_weights: start from these student weights instead of DeepLab (scene fine-tuning).
    config: the network's shape; None: that of the run already in `out_dir` (resumed or reused), else of
    `init_weights` (`load_student`), else `student_config()`. A 1x1 last layer started from a student with BGMv2's 3x3 one gets the summed taps
    (`pointwise_final_layer`).
    """
    out_dir = Path(out_dir)
    name = name or (STUDENT if teacher_weights is not None else STUDENT_PLAIN)
    if config is None:  # an unfinished or finished run in out_dir keeps the shape it was started with
        existing = paths(out_dir, name)[0]
        source = existing if existing.is_file() else init_weights
        config = student_config() if source is None else student_config_of(read_weights(source), source)
    net, init = _new_base(config, device, init_weights is None, cfg.seed)
    if init_weights is not None:
        def init() -> None:
            state = read_weights(init_weights)
            load_state(net, pointwise_final_layer(state) if config.final_kernel == 1 else state, init_weights)
            net.to(device)
    optimizer = torch.optim.Adam(base_param_groups(net, cfg.lr))
    teacher = None
    if teacher_weights is not None:
        teacher = load_weights(BaseNet(teacher_config()), teacher_weights).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    def step(i: int) -> dict[str, torch.Tensor]:
        batch = make_batch(pool, sample_rng(cfg.seed, i, 2), cfg.batch_size, downsample, augment)
        t = _tensors(batch.small, device)
        pha, fgr_res, err, _ = net(t["image"], t["background"])
        if teacher is None:
            return base_loss(pha, foreground_from_residual(fgr_res, t["image"]), err, t["alpha"], t["foreground"])
        with torch.no_grad():
            pha_teacher = teacher(t["image"], t["background"])[0]
        return distillation_loss(pha, err, pha_teacher, t["alpha"])

    stage_config = {"stage_config": dataclasses.asdict(cfg), "net": "student",
                    "loss": "distillation (DART eq. 3)" if teacher is not None else "base (BGMv2 eq. 4)",
                    "teacher": str(teacher_weights) if teacher_weights else None}
    _run_loop(name, out_dir, net, optimizer, step, cfg, stage_config, on_log, config_metadata(net.config), init)
    if val_pool is not None:
        _finish_metrics(out_dir, name, {"val": evaluate_base(net, val_pool, downsample, device)})
    return paths(out_dir, name)[0]


# --------------------------------------------------------------------------------- refiners


def refiner_inputs(batch: Batch, student: BaseNet, variant: str, depth: DepthConfig, noise_k: float,
                   device: str) -> dict[str, torch.Tensor]:
    """The frozen student's outputs and the refiner's selection map and aux for one batch.

    Returns tensors: src, bgr, alpha, foreground (full res), pha, fgr_res, hid, err (base res; err is
    E_RGBD for "dart", E_RGB for "rgb"), aux ((N, 2, H, W) depth / d_max, background depth / d_max
    for "dart", absent for "rgb").
    """
    small = _tensors({k: batch.small[k] for k in ("image", "background")}, device)
    with torch.no_grad():
        pha, fgr_res, err, hid = student(small["image"], small["background"])
    full = _tensors({k: batch.full[k] for k in ("image", "background", "alpha", "foreground")}, device)
    out = {"src": full["image"], "bgr": full["background"], "alpha": full["alpha"], "foreground": full["foreground"],
           "pha": pha, "fgr_res": fgr_res, "hid": hid, "err": err}
    if variant == "dart":
        a_d = depth_posterior_batch(batch.small["depth_m"], batch.small["background_depth_m"], depth, noise_k)
        e_d = np.abs(a_d - pha.cpu().numpy())
        e_rgbd = np.float32(depth.beta) * e_d + np.float32(1.0 - depth.beta) * err.cpu().numpy()
        out["err"] = torch.from_numpy(e_rgbd.astype(np.float32)).to(device)
        aux = np.concatenate([batch.full["depth_m"], batch.full["background_depth_m"]], axis=1) / np.float32(depth.d_max_m)
        out["aux"] = torch.from_numpy(np.clip(aux, 0.0, 1.0).astype(np.float32)).to(device)
    elif variant != "rgb":
        raise ValueError(f"unknown refiner variant {variant!r}; use 'dart' or 'rgb'")
    return out


def train_refiner(pool: SamplePool, out_dir: str | Path, cfg: StageConfig, student_weights: str | Path,
                  variant: str = "dart", downsample: int = 4, device: str = "cpu",
                  augment: AugmentConfig = AugmentConfig(), depth: DepthConfig = TRAIN_SELECTION_DEPTH,
                  noise_k: float = 0.0015, on_log: LogCallback | None = None, name: str | None = None,
                  init_weights: str | Path | None = None) -> Path:
    """Stages (d) "dart" (RGB-D patches, E_RGBD selection) and (e) "rgb" (BGMv2, E_RGB selection).

    The student (from `student_weights`) is frozen in eval mode; loss: BGMv2 eq. 5 on the refined
    full-resolution alpha and foreground. init_weights: start from these refiner weights (fine-tuning on a
    changed student) instead of a fresh initialisation. Returns the weights path (`refiner_dart` / `refiner_rgb`).
    """
    out_dir = Path(out_dir)
    name = name or (REFINER_DART if variant == "dart" else REFINER_RGB)
    student = load_student(student_weights).to(device).eval()
    for p in student.parameters():
        p.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    config = RefinerConfig(student.config.hidden_channels, AUX_CHANNELS[variant], k=cfg.k_train)
    if init_weights is not None:  # the initial weights' own stage widths (e.g. an older 12-wide stage 2)
        config = dataclasses.replace(config, stage_channels=refiner_config_of(read_weights(init_weights), init_weights).stage_channels)
    refiner = Refiner(config).to(device)
    optimizer = torch.optim.Adam(refiner.parameters(), lr=cfg.lr_refiner)
    init = None if init_weights is None else (lambda: load_weights(refiner, init_weights).to(device))

    def step(i: int) -> dict[str, torch.Tensor]:
        batch = make_batch(pool, sample_rng(cfg.seed, i, 3), cfg.batch_size, downsample, augment)
        t = refiner_inputs(batch, student, variant, depth, noise_k, device)
        pha, fgr_res, _ = refiner(t["src"], t["bgr"], t["pha"], t["fgr_res"], t["hid"], t["err"], t.get("aux"))
        return refine_loss(pha, foreground_from_residual(fgr_res, t["src"]), t["alpha"], t["foreground"])

    stage_config = {"stage_config": dataclasses.asdict(cfg), "variant": variant, "student": str(student_weights),
                    "beta": depth.beta, "noise_k": noise_k, "init": str(init_weights) if init_weights else None}
    metadata = {"variant": variant, "aux_channels": str(AUX_CHANNELS[variant])}
    _run_loop(name, out_dir, refiner, optimizer, step, cfg, stage_config, on_log, metadata, init)
    return paths(out_dir, name)[0]


def evaluate_refiner(refiner_weights: str | Path, student_weights: str | Path, pool: SamplePool, variant: str,
                     downsample: int = 4, device: str = "cpu", depth: DepthConfig = TRAIN_SELECTION_DEPTH,
                     noise_k: float = 0.0015, k: int = 300) -> dict[str, float]:
    """Full-resolution alpha MAD of student + refiner ("refined_mad") vs. upsampled coarse ("coarse_mad")."""
    student = load_student(student_weights)
    refiner = load_refiner(refiner_weights, AUX_CHANNELS[variant], k)
    return refined_mad(refiner, student, pool, variant, downsample, device, depth, noise_k)


@torch.no_grad()
def refined_mad(refiner: Refiner, student: BaseNet, pool: SamplePool, variant: str, downsample: int = 4,
                device: str = "cpu", depth: DepthConfig = TRAIN_SELECTION_DEPTH, noise_k: float = 0.0015
                ) -> dict[str, float]:
    """`evaluate_refiner` on loaded modules (left in eval mode): {"refined_mad", "coarse_mad"} over the
    un-augmented pool, mean |alpha - alpha*| at full resolution, alpha in [0, 1]."""
    student, refiner = student.to(device).eval(), refiner.to(device).eval()
    sums = {"refined_mad": 0.0, "coarse_mad": 0.0}
    for start in range(0, len(pool), 8):
        index = np.arange(start, min(start + 8, len(pool)))
        batch = make_batch(pool, np.random.default_rng(0), len(index), downsample, AugmentConfig.none(), index)
        t = refiner_inputs(batch, student, variant, depth, noise_k, device)
        pha = refiner(t["src"], t["bgr"], t["pha"], t["fgr_res"], t["hid"], t["err"], t.get("aux"))[0]
        coarse = F.interpolate(t["pha"], size=pha.shape[2:], mode="bilinear", align_corners=False)
        sums["refined_mad"] += float((pha - t["alpha"]).abs().mean(dim=(1, 2, 3)).sum())
        sums["coarse_mad"] += float((coarse - t["alpha"]).abs().mean(dim=(1, 2, 3)).sum())
    return {k: v / len(pool) for k, v in sums.items()}


# --------------------------------------------------------------------------------- export


def export_models(out_dir: str | Path, student_weights: str | Path, refiner_weights: dict[str, str | Path],
                  trace_size: tuple[int, int] = (120, 160),
                  extra_students: dict[str, str | Path] | None = None) -> dict[str, float]:
    """Export the student base net (student.onnx), any `extra_students` (ONNX file name -> weights) and
    the refiners' patch nets to ONNX in `out_dir` and validate each against torch on random inputs;
    returns file name -> max abs difference."""
    from engines.nets.onnx_export import export_base_net, export_refiner, refiner_probe_inputs, validate_export

    out_dir = Path(out_dir)
    rng = np.random.default_rng(0)
    diffs = {}
    h, w = trace_size
    inputs = {"src": rng.random((1, 3, h, w), dtype=np.float32), "bgr": rng.random((1, 3, h, w), dtype=np.float32)}
    hidden: set[int] = set()  # of every student exported here: each runs with these refiners
    for file_name, weights in {ONNX_FILES["student"]: student_weights, **(extra_students or {})}.items():
        student = load_student(weights).eval()
        hidden.add(student.config.hidden_channels)
        path = export_base_net(student, out_dir / file_name, trace_size)
        diffs[path.name] = validate_export(student, path, inputs)
    for variant, weights in refiner_weights.items():
        refiner = load_refiner(weights, AUX_CHANNELS[variant]).eval()
        if hidden != {refiner.config.hidden_channels}:  # a mix that OnnxMatting would refuse
            raise ValueError(f"refiner {weights} takes {refiner.config.hidden_channels} hidden features, the students {sorted(hidden)}")
        path = export_refiner(refiner, out_dir / ONNX_FILES[variant])
        diffs[path.name] = validate_export(refiner, path, refiner_probe_inputs(refiner, rng))
    for name, diff in diffs.items():
        if not diff < 1e-3:
            raise RuntimeError(f"ONNX export {name} differs from torch by {diff}")
    return diffs


def train_all(config: TrainConfig, out_dir: str | Path, on_log: LogCallback | None = None) -> dict:
    """Run stages (a)-(e) with their budgets, evaluate, export ONNX; resumable (finished stages are
    skipped, an interrupted one continues). Returns the summary also written to `out_dir/summary.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    t0 = time.perf_counter()
    progress = (lambda i, n: _emit(on_log, {"stage": "pool", "generated": i, "of": n}))
    pool = load_or_build_pool(config.pool_cache, config.pool_size, config.height, config.width, config.seed, progress)
    val_cache = None if config.pool_cache is None else str(Path(config.pool_cache).with_suffix("")) + "_val.npz"
    val_pool = load_or_build_pool(val_cache, config.val_size, config.height, config.width, config.seed + 1000)
    _emit(on_log, {"stage": "pool", "event": "ready", "train": len(pool), "val": len(val_pool),
                   "elapsed_s": time.perf_counter() - t0})
    common = {"downsample": config.downsample, "device": config.device, "augment": config.augment, "on_log": on_log}
    teacher = train_teacher(pool, out_dir, config.teacher, val_pool=val_pool, **common)
    distilled = train_student(pool, out_dir, config.student, teacher, val_pool=val_pool, **common)
    plain = train_student(pool, out_dir, config.student_plain, None, val_pool=val_pool, **common)
    if config.runtime_student not in ("plain", "distilled"):
        raise ValueError(f"runtime_student must be 'plain' or 'distilled', got {config.runtime_student!r}")
    student, other = (plain, distilled) if config.runtime_student == "plain" else (distilled, plain)
    refiners = {}
    for variant, cfg in (("dart", config.refiner_dart), ("rgb", config.refiner_rgb)):
        refiners[variant] = train_refiner(pool, out_dir, cfg, student, variant, depth=config.depth,
                                          noise_k=config.noise_k, **{**common, "augment": config.augment_refiner})
        name = REFINER_DART if variant == "dart" else REFINER_RGB
        _finish_metrics(out_dir, name, {"val": evaluate_refiner(refiners[variant], student, val_pool, variant,
                                                                config.downsample, config.device, config.depth,
                                                                config.noise_k)})
    other_file = DISTILLED_STUDENT_FILE if config.runtime_student == "plain" else PLAIN_STUDENT_FILE
    diffs = export_models(out_dir, student, refiners, extra_students={other_file: other})
    summary = {"config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
               "onnx_max_abs_diff": diffs, "wall_s": round(time.perf_counter() - t0, 1), "stages": {}}
    for name in (TEACHER, STUDENT, STUDENT_PLAIN, REFINER_DART, REFINER_RGB):
        stage_log = load_stage_log(out_dir, name)
        if stage_log is not None:
            last = stage_log.history[-1] if stage_log.history else {}
            summary["stages"][name] = {"steps": stage_log.step, "elapsed_s": round(stage_log.elapsed_s, 1),
                                       "final_losses": last, "metrics": stage_log.metrics}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    _emit(on_log, {"stage": "all", "event": "done", "wall_s": summary["wall_s"]})
    return summary
