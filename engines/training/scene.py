"""Scene fine-tuning (DART sec. II-F) with synthetic subjects: adapt the student to one recording's own
background (`main.py train --scene REC --scene-method synthetic`). The default scene adaptation is the
teacher's (`engines.training.adapt`: the offline path labels the user's own take).

Owns `read_recording` (background and ground-truth test frames of a recording), `scene_pool`
(synthetic subjects from `engines.synth.scene` composited over the recording's background frames, colour
and depth, with the generator's capture model via `engines.synth.render_frame`), `evaluate_scene`
(`engines.evaluation.metrics` on the recording's test frames through `NetworkMatting`) and `finetune_on_scene`.

The paper distils its student "based upon the background images merely from the target scene" and
fine-tunes the refiner on the target scene; here the student is fine-tuned for a few CPU minutes
(BGMv2 base loss, or DART eq. 3 when a teacher is given) and the refiners are reused unchanged.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.config import DepthConfig
from engines.training.data import AugmentConfig, SamplePool, build_pool, pool_from_samples
from engines.training.stages import ONNX_FILES, LogCallback, StageConfig, _emit, train_student
from sensors.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Recording:
    """A recording split into its empty-scene frames and the rest.

    background_color: uint8 (B, H, W, 3) RGB; background_depth_m: float32 (B, H, W) metres (0 = unknown);
    test_color, test_depth_m: the frames after them; test_alpha: float32 (T, H, W) ground truth, or
    None when the recording has no alpha.
    """

    background_color: np.ndarray
    background_depth_m: np.ndarray
    test_color: np.ndarray
    test_depth_m: np.ndarray
    test_alpha: np.ndarray | None


def read_recording(path: str | Path, background_frames: int | None = None, max_test: int | None = None) -> Recording:
    """Read a recording; the first `background_frames` frames (default: meta.json's "background_frames")
    are the empty scene. A recording without that count and no argument raises `UserError`."""
    from sensors.source import open_source

    path = Path(path)
    if background_frames is None:
        meta = path / "meta.json"
        if meta.is_file():
            background_frames = json.loads(meta.read_text()).get("background_frames")
    if not background_frames:
        raise UserError(f"Recording {path} does not say how many empty-scene frames it starts with; "
                        "record the empty scene first (its meta.json needs background_frames).", 2)
    colors, depths, alphas = [], [], []
    with open_source(str(path)) as source:
        for frame in source:
            colors.append(frame.color)
            depths.append(frame.depth_m())
            alphas.append(frame.alpha)
            if max_test is not None and len(colors) >= background_frames + max_test:
                break
    if len(colors) < background_frames:
        raise UserError(f"Recording {path} has {len(colors)} frames, fewer than its {background_frames} "
                        "empty-scene frames.", 2)
    b = int(background_frames)
    test_alpha = None
    if len(colors) > b and all(a is not None for a in alphas[b:]):
        test_alpha = np.stack(alphas[b:]).astype(np.float32)
    empty = np.zeros((0,) + colors[0].shape, np.uint8)
    return Recording(
        background_color=np.stack(colors[:b]),
        background_depth_m=np.stack(depths[:b]),
        test_color=np.stack(colors[b:]) if len(colors) > b else empty,
        test_depth_m=np.stack(depths[b:]) if len(colors) > b else np.zeros((0,) + depths[0].shape, np.float32),
        test_alpha=test_alpha,
    )


def scene_pool(recording: Recording, n: int, height: int, width: int, seed: int = 0, n_subjects: int = 120,
               depth_max_m: float = 5.46) -> SamplePool:
    """`n` training samples: subjects of `n_subjects` synthetic samples (their foreground, alpha and
    depth) over random background frames of the recording resized to `height` x `width`, captured with
    the generator's model (`render_frame`: lighting change, noise, shadow, depth sensor). Subjects are
    kept in front of the recording's background (depth at most 90 % of it)."""
    from engines.matting.depth_bayes import resize_depth
    from engines.synth.samples import render_frame

    rng = np.random.default_rng([seed, 7])
    subjects = build_pool(n_subjects, height, width, seed=seed + 500)
    bgs = [cv2.resize(c, (width, height), interpolation=cv2.INTER_AREA) for c in recording.background_color]
    bg_depths = [resize_depth(d, width, height) for d in recording.background_depth_m]
    samples = []
    for _ in range(n):
        s = subjects.sample(int(rng.integers(len(subjects))))
        j = int(rng.integers(len(bgs)))
        bg_d = bg_depths[j]
        fg_d = s["depth_m"]
        limit = np.where(bg_d > 0, np.float32(0.9) * bg_d, np.float32(depth_max_m))
        fg_d = np.where(fg_d > 0, np.minimum(fg_d, limit), 0.0).astype(np.float32)
        samples.append(render_frame(rng, s["foreground"], s["alpha"], fg_d, bgs[j], bg_d))
    return pool_from_samples(samples)


def evaluate_scene(model_dir: str | Path, recording: Recording, config: DepthConfig = DepthConfig(),
                   **matting_kwargs) -> dict[str, float]:
    """Mean `engines.metrics.evaluate` of `NetworkMatting(model_dir, config=config, **matting_kwargs)` on the
    recording's test frames (prior built from its background frames). Needs ground-truth alpha."""
    from engines.matting.background_prior import BackgroundPriorBuilder
    from engines.matting.dart_matting import NetworkMatting
    from engines.evaluation.metrics import evaluate, mean_metrics

    if recording.test_alpha is None or len(recording.test_color) == 0:
        raise UserError("The recording has no ground-truth alpha for its test frames, so gains cannot be measured.")
    h, w = recording.background_color.shape[1:3]
    builder = BackgroundPriorBuilder(h, w)
    for c, d in zip(recording.background_color, recording.background_depth_m):
        builder.add(c, d)
    matting = NetworkMatting(model_dir, config=config, **matting_kwargs)
    matting.set_prior(builder.build(config))
    results = [evaluate(matting.process(c, d).alpha, a)
               for c, d, a in zip(recording.test_color, recording.test_depth_m, recording.test_alpha)]
    return mean_metrics(results)


def finetune_on_scene(
    recording_path: str | Path,
    student_weights: str | Path,
    budget_s: float = 180.0,
    out_dir: str | Path | None = None,
    background_frames: int | None = None,
    n_samples: int = 400,
    n_subjects: int = 120,
    max_steps: int = 100_000,
    height: int = 240,
    width: int = 320,
    downsample: int = 4,
    batch_size: int = 8,
    lr: tuple[float, float, float] = (5e-5, 2.5e-4, 2.5e-4),
    teacher_weights: str | Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    evaluate: bool = True,
    on_log: LogCallback | None = None,
) -> dict:
    """Fine-tune the student on a recording's backgrounds for `budget_s` seconds and write a scene model folder.

    out_dir (default: `<student folder>/scene_<recording name>`) receives student.safetensors, its
    ONNX export student.onnx (validated against torch), copies of the refiner ONNX files found next to
    `student_weights`, and scene.json; `NetworkMatting(out_dir)` then runs the scene-specific model.
    With `evaluate` and ground-truth alpha in the recording, the DART pipeline (and the coarse alpha)
    is measured on the recording's test frames before and after ("before", "after" in the result).
    The fine-tuning data's backgrounds are the recording's own empty-scene frames, never its test frames.
    A finished fine-tune already in `out_dir` is reused (delete the folder to start over).
    Returns a summary dict (also scene.json).
    """
    from engines.nets.base_net import load_student
    from engines.nets.onnx_export import export_base_net, validate_export

    t0 = time.perf_counter()
    recording_path, student_weights = Path(recording_path), Path(student_weights)
    source_dir = student_weights.parent
    out_dir = Path(out_dir) if out_dir is not None else source_dir / f"scene_{recording_path.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    recording = read_recording(recording_path, background_frames)
    _emit(on_log, {"stage": "scene", "event": "read", "background_frames": len(recording.background_color),
                   "test_frames": len(recording.test_color)})
    pool = scene_pool(recording, n_samples, height, width, seed, n_subjects)
    _emit(on_log, {"stage": "scene", "event": "pool", "samples": len(pool), "elapsed_s": time.perf_counter() - t0})
    cfg = StageConfig(budget_s=budget_s, max_steps=max_steps, batch_size=batch_size, lr=lr, log_every=10, seed=seed)
    weights = train_student(pool, out_dir, cfg, teacher_weights, downsample, device, AugmentConfig(),
                            on_log, name="student", init_weights=student_weights)
    student = load_student(weights).eval()
    onnx_path = export_base_net(student, out_dir / ONNX_FILES["student"])
    rng = np.random.default_rng(0)
    diff = validate_export(student, onnx_path, {"src": rng.random((1, 3, 60, 80), dtype=np.float32),
                                                "bgr": rng.random((1, 3, 60, 80), dtype=np.float32)})
    for variant in ("dart", "rgb"):
        src = source_dir / ONNX_FILES[variant]
        if src.is_file():
            shutil.copyfile(src, out_dir / ONNX_FILES[variant])
    summary: dict = {"recording": str(recording_path), "student_weights": str(student_weights),
                     "budget_s": budget_s, "n_samples": n_samples, "size": [height, width], "onnx_max_abs_diff": diff}
    have_refiner = (source_dir / ONNX_FILES["dart"]).is_file()
    if evaluate and recording.test_alpha is not None and (source_dir / ONNX_FILES["student"]).is_file():
        for label, folder in (("before", source_dir), ("after", out_dir)):
            summary[label] = {"coarse": evaluate_scene(folder, recording, refiner=False)}
            if have_refiner:
                summary[label]["dart"] = evaluate_scene(folder, recording, refiner=True)
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    (out_dir / "scene.json").write_text(json.dumps(summary, indent=1))
    _emit(on_log, {"stage": "scene", "event": "done", "wall_s": summary["wall_s"]})
    return summary
