"""The data of scene adaptation (issue 15; capture-stage paper sec. 4.3): a take of the user in their own
room, labelled by the offline teacher, and batches that mix it with the generic synthetic data.

Owns `Take` and `read_take` (a recording's background frames -> `BackgroundPrior`, the frames after
them -> the take; the ground-truth alpha/ folder is never opened), `TeacherConfig` and `label_take`
(the offline path as teacher: DART with depth fusion and edge refinement -> trimap (DART eqs. 12-13)
-> closed-form post-matting; unsure frames dropped, unsure pixels down-weighted; the user's scribbles
overrule it), `take_pool` (the labelled frames as a `SamplePool` at training size plus a per-pixel
weight) and `mixed_batch` (the paper's 80 % base / 20 % scene batches, with BGMv2 augmentation, at
base-network resolution).

Conventions: colour uint8 HxWx3 RGB; depth float32 HxW metres (0 = unknown); alpha and weights float32
HxW in [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from engines.config import DEFAULT_MODEL_DIR, DepthConfig, EngineConfig
from engines.matting.background_prior import BackgroundPrior, build_prior
from engines.matting.scribbles import SCRIBBLE_BACKGROUND, SCRIBBLE_FOREGROUND
from engines.training.data import AugmentConfig, SamplePool, augment_sample, pool_from_samples
from sensors.errors import UserError

ProgressCallback = Callable[[int, int], None]


@dataclass
class Take:
    """The empty scene and the user's take.

    prior: the background prior of the empty-scene frames; color: uint8 (T, H, W, 3) RGB; depth_m:
    float32 (T, H, W) metres (0 = unknown); index: (T,) the frames' indices in the recording.
    """

    prior: BackgroundPrior
    color: np.ndarray
    depth_m: np.ndarray
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scribbles: np.ndarray | None = None  # uint8 (T, H, W): the user's corrections (engines.matting.scribbles)

    def __len__(self) -> int:
        return int(self.color.shape[0])

    def marked(self) -> np.ndarray:
        """bool (T,): the frames the user marked with scribbles."""
        if self.scribbles is None:
            return np.zeros(len(self), bool)
        return self.scribbles.reshape(len(self), -1).any(axis=1)



def read_take(path: str | Path, background_frames: int | None = None, take_frames: int | None = None,
              max_frames: int = 64, depth: DepthConfig = DepthConfig()) -> Take:
    """The take of a recording: its first `background_frames` frames (default: meta.json's count) build
    the prior; the next `take_frames` frames (default: all the rest) are the take, evenly subsampled to
    at most `max_frames`. Ground-truth alpha is never read. Raises `UserError` (exit 2) for a recording
    without an empty-scene count or without frames after it."""
    from sensors.image_io import without_ground_truth
    from sensors.source import open_source

    path = Path(path)
    if "://" not in str(path) and not path.exists():
        raise UserError(f"Recording '{path}' does not exist: give the folder or file of a recording.", 2)
    if background_frames is None and (path / "meta.json").is_file():
        background_frames = json.loads((path / "meta.json").read_text()).get("background_frames")
    if not background_frames:
        raise UserError(f"Recording {path} does not say how many empty-scene frames it starts with: record "
                        "the empty scene first (its meta.json needs background_frames).", 2)
    b = int(background_frames)
    plate, colors, depths, indices = [], [], [], []
    with without_ground_truth(open_source(str(path))) as source:  # adaptation never sees the ground truth
        for frame in source:
            if len(plate) < b:
                plate.append(frame)
                continue
            if take_frames is not None and len(colors) >= take_frames:
                break
            colors.append(frame.color)
            depths.append(frame.depth_m())
            indices.append(frame.index)
    if len(plate) < b or not colors:
        raise UserError(f"Recording {path} has no frames after its {b} empty-scene frames: record yourself "
                        "in view after the background.", 2)
    prior, _ = build_prior(plate, b, depth)
    keep = np.unique(np.linspace(0, len(colors) - 1, min(max_frames, len(colors))).round().astype(int))
    return Take(prior, np.stack([colors[i] for i in keep]), np.stack([depths[i] for i in keep]),
                np.asarray([indices[i] for i in keep], np.int64))


# A take saved by the app: uint8 (T, H, W, 3) RGB, uint16 (T, H, W) mm, and optionally "scribbles",
# uint8 (T, H, W) of SCRIBBLE_* values.
TAKE_KEYS = ("color", "depth_mm")


def read_saved_take(take_path: str | Path, prior_path: str | Path) -> Take:
    """A take the app saved (.npz with `TAKE_KEYS` and maybe "scribbles", no pickle) and the scene's
    saved background prior (`BackgroundPrior.save`). Raises `UserError` (exit 2) for a missing or
    malformed file."""
    prior = BackgroundPrior.load(prior_path)
    try:
        with np.load(str(take_path), allow_pickle=False) as data:
            color, depth_mm = data["color"], data["depth_mm"]
            scribbles = data["scribbles"] if "scribbles" in data.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"'{take_path}' is not a take saved by the app ({exc}).", 2) from None
    if (color.ndim != 4 or color.dtype != np.uint8 or depth_mm.shape != color.shape[:3]
            or color.shape[1:3] != prior.shape or len(color) == 0
            or (scribbles is not None and (scribbles.shape != color.shape[:3] or scribbles.dtype != np.uint8
                                           or scribbles.max(initial=0) > SCRIBBLE_FOREGROUND))):
        raise UserError(f"The take '{take_path}' does not match its background ({color.shape} frames, "
                        f"background {prior.shape}).", 2)
    return Take(prior, color, depth_mm.astype(np.float32) / np.float32(1000.0), np.arange(len(color)), scribbles)


@dataclass(frozen=True)
class TeacherConfig:
    """The offline teacher and how its doubt is handled.

    mode: the matte the trimap comes from ("dart": DART with depth fusion and the networks being adapted,
    the better one on the semi-real suite; "depth": the depth matte alone).
    edge_refine: refine that matte against the plate's colours before the trimap is drawn
    (`engines.matting.edge_refine`, as the default real-time mode does).
    refine_patches: k, the 4x4 patches the refiner recomputes per frame. Offline there is no frame
    budget: 3000 instead of the live 700 (teacher SAD on a synthetic take 4.23 -> 3.98).
    post: post-matting on the depth-derived trimap ("closed-form"; "vitmatte" needs `vitmatte_dir`).
    band_px: widening of the trimap's unknown band (pixels at 640 px width, scaled with the frame).
    A frame is dropped when its unknown band covers more than `max_unknown_fraction` of the image or
    depth is missing on more than `max_hole_fraction` of the region around the subject (alpha > 0.5,
    dilated by 7 px; not the faint halo of the refined edge). The "dart" teacher fills depth holes with
    its networks, so only frames where most of the subject lacks depth are dropped. Pixel weights:
    `unknown_weight` inside the unknown band (the teacher's own estimate), `hole_weight` where depth is
    missing (the trimap there is a guess), 1 elsewhere.
    """

    mode: str = "dart"
    edge_refine: bool = True
    refine_patches: int = 3000
    post: str = "closed-form"
    band_px: int = 3
    vitmatte_dir: str | None = None
    max_unknown_fraction: float = 0.25
    max_hole_fraction: float = 0.6
    unknown_weight: float = 0.7
    hole_weight: float = 0.25


@dataclass
class TeacherLabels:
    """The teacher's answer for each take frame: alpha float32 (T, H, W) in [0, 1]; weight float32
    (T, H, W) in [0, 1]; kept bool (T,); dropped: {frame position: reason}; ms_per_frame."""

    alpha: np.ndarray
    weight: np.ndarray
    kept: np.ndarray
    dropped: dict[int, str]
    ms_per_frame: float


def teacher_engine(config: TeacherConfig, depth: DepthConfig = DepthConfig(), width: int = 640,
                   model_dir: str | Path = DEFAULT_MODEL_DIR) -> EngineConfig:
    """The teacher as an engine configuration for frames `width` pixels wide: the `config.mode` matte (its
    networks from `model_dir`, `config.refine_patches` patches refined, edge-refined with
    `config.edge_refine`) with `config.post` post-matting on the trimap of eqs. 12-13 (the unknown
    band widened by `band_px` * width / 640 pixels)."""
    return EngineConfig(mode=config.mode, depth=depth, model_dir=str(model_dir), edge_refine=config.edge_refine,
                        refine_patches=config.refine_patches, post=config.post,
                        post_band_px=round(config.band_px * width / 640), vitmatte_dir=config.vitmatte_dir,
                        overlap_stages=False)  # it runs beside the live window: no second engine thread


def label_take(take: Take, config: TeacherConfig = TeacherConfig(), depth: DepthConfig = DepthConfig(),
               on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
               model_dir: str | Path = DEFAULT_MODEL_DIR) -> TeacherLabels:
    """Label every take frame with the teacher (issue 15 item 1; DART sec. II-D as the offline path), whose
    networks (`TeacherConfig.mode` "dart") come from `model_dir`. The user's scribbles (`Take.scribbles`,
    item 3) overrule it: alpha 1 / 0 with weight 1 where marked, and a marked frame is never dropped.

    Returns `TeacherLabels`; `on_progress(done, total)` after each frame; `should_stop()` true ends the
    labelling early (the rest of the frames are marked dropped, reason "stopped").
    """
    import time

    from engines.matting.pipeline import MattingPipeline

    pipeline = MattingPipeline(teacher_engine(config, depth, take.color.shape[2], model_dir))
    pipeline.set_prior(take.prior)
    n, (h, w) = len(take), take.color.shape[1:3]
    alpha = np.zeros((n, h, w), np.float32)
    weight = np.zeros((n, h, w), np.float32)
    kept = np.zeros(n, bool)
    dropped: dict[int, str] = {}
    start = time.perf_counter()
    for i in range(n):
        if should_stop is not None and should_stop():
            dropped.update({j: "stopped" for j in range(i, n)})
            break
        result = pipeline.process(take.color[i], take.depth_m[i])
        alpha[i] = result.alpha
        weight[i], reason = teacher_doubt(result.alpha, result.trimap, take.depth_m[i], config)
        if take.scribbles is not None and take.scribbles[i].any():  # the user's labels overrule the teacher
            fg, bg = take.scribbles[i] == SCRIBBLE_FOREGROUND, take.scribbles[i] == SCRIBBLE_BACKGROUND
            alpha[i][fg], alpha[i][bg] = 1.0, 0.0
            weight[i][fg | bg] = 1.0
            reason = None
        if reason is None:
            kept[i] = True
        else:
            dropped[i] = reason
        if on_progress is not None:
            on_progress(i + 1, n)
    done = max(1, n - sum(1 for r in dropped.values() if r == "stopped"))
    return TeacherLabels(alpha, weight, kept, dropped, (time.perf_counter() - start) * 1e3 / done)


def teacher_doubt(alpha: np.ndarray, trimap: np.ndarray | None, depth_m: np.ndarray, config: TeacherConfig
                  ) -> tuple[np.ndarray, str | None]:
    """How far to trust the teacher on one frame: (per-pixel weight float32 HxW in [0, 1], the reason to
    drop the frame or None), by `TeacherConfig`'s rules.

    alpha: float32 HxW in [0, 1], the teacher's; trimap: float32 HxW in {0, 0.5, 1} or None (then alpha
    thresholded at 0.5); depth_m: float32 HxW metres (0 = unknown). The region around the subject is
    alpha > 0.5 dilated by 7 px, so a refined edge's faint halo over missing depth does not count."""
    if trimap is None:
        trimap = np.where(alpha > 0.5, 1.0, 0.0)
    unknown = np.isclose(trimap, 0.5)
    holes = ~(depth_m > 0)
    near = cv2.dilate((alpha > 0.5).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    hole_share = float(holes[near].mean()) if near.any() else 0.0
    reason = None
    if unknown.mean() > config.max_unknown_fraction:
        reason = f"unknown band {unknown.mean():.0%} of the image"
    elif hole_share > config.max_hole_fraction:
        reason = f"depth missing on {hole_share:.0%} around the subject"
    weight = np.ones(alpha.shape, np.float32)
    weight[unknown] = config.unknown_weight
    weight[holes & near] = np.minimum(weight[holes & near], config.hole_weight)
    return weight, reason


def take_pool(take: Take, labels: TeacherLabels, frames: np.ndarray, height: int, width: int
              ) -> tuple[SamplePool, np.ndarray]:
    """The take frames at positions `frames` as training samples of `height` x `width`: image = the
    frame, background = the captured plate, alpha = the teacher's, foreground estimated from them
    (`engines.matting.foreground`), depths from the frame and the prior. Returns the pool and the
    teacher's weights as uint8 (N, height, width) (weight * 255)."""
    from engines.matting.depth_bayes import resize_depth
    from engines.matting.foreground import estimate_foreground

    def size(x: np.ndarray) -> np.ndarray:
        return cv2.resize(np.ascontiguousarray(x, np.float32), (width, height), interpolation=cv2.INTER_AREA)

    plate = size(take.prior.color_mean)
    plate_depth = resize_depth(take.prior.depth_mean_m, width, height)
    samples, weights = [], []
    for i in frames:
        image = size(take.color[i].astype(np.float32) / np.float32(255.0))
        alpha = np.clip(size(labels.alpha[i]), 0, 1)
        fg = estimate_foreground(image, alpha, plate) * (alpha > 0)[..., None]
        samples.append({"image": image, "background": plate, "foreground": fg, "alpha": alpha,
                        "depth_m": resize_depth(take.depth_m[i], width, height), "background_depth_m": plate_depth})
        weights.append(np.clip(size(labels.weight[i]) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return pool_from_samples(samples), np.stack(weights)


def mixed_batch(generic: SamplePool, scene: SamplePool, scene_weight: np.ndarray, rng: np.random.Generator,
                batch_size: int, scene_fraction: float, downsample: int, augment: AugmentConfig
                ) -> dict[str, np.ndarray]:
    """One augmented batch at base resolution: round(`scene_fraction` * batch_size) (at least one)
    samples of the take, the rest generic (capture-stage paper sec. 5.1: 80 % / 20 %).

    Returns float32 NCHW arrays: image, background, foreground (N, 3, h, w); alpha, weight (N, 1, h, w)
    with h, w = the pools' size // `downsample` (weight 1 on generic samples, the teacher's on the
    take's). Both pools must have the same size.
    """
    if generic.size != scene.size:
        raise ValueError(f"generic pool {generic.size} and take pool {scene.size} differ in size")
    n_scene = min(batch_size, max(1, int(round(scene_fraction * batch_size))))
    h, w = generic.size
    hs, ws = h // downsample, w // downsample
    out: dict[str, list] = {k: [] for k in ("image", "background", "foreground", "alpha", "weight")}
    picks = [(scene, int(i)) for i in rng.integers(0, len(scene), n_scene)]
    picks += [(generic, int(i)) for i in rng.integers(0, len(generic), batch_size - n_scene)]
    for pool, i in picks:
        s = pool.sample(i)
        s["weight"] = (scene_weight[i].astype(np.float32) / np.float32(255.0) if pool is scene
                       else np.ones((h, w), np.float32))
        s = augment_sample(s, rng, augment)
        for k in out:
            small = cv2.resize(s[k], (ws, hs), interpolation=cv2.INTER_AREA)
            out[k].append(small[None] if small.ndim == 2 else small.transpose(2, 0, 1))
    return {k: np.ascontiguousarray(np.stack(v), np.float32) for k, v in out.items()}
