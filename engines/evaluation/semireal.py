"""The semi-real accuracy suite (`main.py bench-accuracy --suite semi-real`): real foregrounds with
hand-made ground-truth alpha over real and generated RGB-D backgrounds, seen through the generator's
sensor and lighting model.

A scene is one background (a real RGB-D frame or a generator room) under one set of camera conditions
(`engines.synth.scene.sample_conditions`): `background_frames` captures of the empty scene, then test
frames, each with one real foreground on a gently curved surface 0.8-1.8 m away (in front of the
background behind it; where the background is nearer, it occludes the foreground and the ground truth
is cut there). Every frame goes through the generator's own `SceneCamera`: between the background
capture and the test frames an exposure, white-balance and gamma change, a lamp and the foreground's
cast shadow; in every frame colour noise and `sense_depth` (noise std k*z^2, holes on dark, fuzzy and
thin parts of the foreground, invalid pixels along depth edges, flying pixels, the stereo occlusion
shadow, a 1-2 px depth-to-colour shift). Deterministic for a seed.

Data, read from `data_root` (default ../shared/data; nothing is cached, written or copied elsewhere):
- alphamatting_dev/: 13 real photos with hand-made alpha (alphamatting.com training set, research use
  only: EVALUATION ONLY, never training); foreground colours from `pymatting.estimate_foreground_ml`.
- tum_frame/: one real Kinect v1 frame of an office desk (TUM RGB-D, CC BY 4.0).
- azure_kinect_recording/: one real Azure Kinect capture of a desk by a window (pyk4a test data, MIT);
  its depth is registered to its colour image here, from the factory calibration.
- rooms: ray-cast rooms of the generator (`engines.synth.room.render_room`), textured with crops of the
  tum_frame/ and redwood_synthetic/ photos.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engines.config import DepthConfig, EngineConfig
from engines.evaluation.benchmark import ALL_BACKGROUND, AccuracyRow
from engines.evaluation.metrics import evaluate, mean_metrics
from engines.matting.background_prior import build_prior
from engines.matting.pipeline import MattingPipeline
from engines.synth.look import SubjectLayer
from engines.synth.room import BackgroundScene, plate_scene, render_room
from engines.synth.scene import Capture, SceneCamera, SceneConfig, sample_conditions
from engines.synth.sensor import to_depth_raw
from engines.synth.textures import (
    TUM_DEPTH_PER_M,
    TUM_FOCAL_PX,
    RealPlate,
    TextureBank,
    luminance,
    srgb_to_linear,
)
from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.image_io import read_alpha, read_color, read_depth

FOREGROUND_DIR = "alphamatting_dev"
BACKGROUNDS = ("tum", "azure", "room", "room", "room")
BACKGROUND_NAMES = {"tum": "TUM RGB-D desk (real Kinect v1)", "azure": "Azure Kinect desk (real)",
                    "room": "generator room"}
HARD_MASK = "perfect hard mask"
DEPTH_SCALE = 0.001
FPS = 30.0


def default_data_root() -> Path:
    """`../shared/data` next to the repository root (absent in users' clones)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def require_data(data_root: str | Path, shown: str | None = None) -> Path:
    """The foregrounds folder under `data_root`, or a one-sentence `UserError` (exit 1) when it is absent.

    shown: how to name the folder in the message (default: its path).
    """
    folder = Path(data_root) / FOREGROUND_DIR
    if not ((folder / "input").is_dir() and (folder / "alpha").is_dir()):
        raise UserError(f"The semi-real suite needs {shown or folder} (evaluation-only data not shipped with the "
                        f"project); '--suite synthetic' runs without it.", 1)
    return folder


@dataclass(frozen=True)
class SemiRealConfig:
    """The suite: frame size and counts, seed, the backgrounds (one scene each, from `BACKGROUND_NAMES`)
    and the foregrounds (file stems such as "GT01"; None = all). `test_frames` is the total, split over
    the scenes as evenly as possible; test frame g shows foreground g modulo their number."""

    width: int = 640
    height: int = 480
    background_frames: int = 30
    test_frames: int = 60
    seed: int = 2024
    backgrounds: tuple[str, ...] = BACKGROUNDS
    foregrounds: tuple[str, ...] | None = None
    subject_distance_m: tuple[float, float] = (0.8, 1.8)

    def __post_init__(self) -> None:
        unknown = [b for b in self.backgrounds if b not in BACKGROUND_NAMES]
        if unknown or not self.backgrounds:
            raise ValueError(f"backgrounds must be some of {', '.join(BACKGROUND_NAMES)}, got {self.backgrounds}")
        if min(self.width, self.height) < 16 or self.background_frames < 1 or self.test_frames < 1:
            raise ValueError("need at least 16x16 pixels, one background frame and one test frame")


# -- foregrounds ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RealForeground:
    """A real photo's object: estimated foreground colours (float32 HxWx3 sRGB in [0, 1]), ground-truth
    alpha (float32 HxW) and which photo edges cut the object (top, bottom, left, right)."""

    name: str
    color: np.ndarray
    alpha: np.ndarray
    touches: tuple[bool, bool, bool, bool]


def _touches(alpha: np.ndarray) -> tuple[bool, bool, bool, bool]:
    h, w = alpha.shape
    rows, cols = np.nonzero((alpha > 0).any(axis=1))[0], np.nonzero((alpha > 0).any(axis=0))[0]
    ty, tx = max(2, int(0.015 * h)), max(2, int(0.015 * w))
    return bool(rows[0] <= ty), bool(rows[-1] >= h - 1 - ty), bool(cols[0] <= tx), bool(cols[-1] >= w - 1 - tx)


def load_foregrounds(data_root: str | Path, names: tuple[str, ...] | None = None) -> list[RealForeground]:
    """The alphamatting_dev photos (all, or those whose stem is in `names`), sorted by name, with their
    foreground colours estimated by `pymatting.estimate_foreground_ml` (in memory only)."""
    from pymatting import estimate_foreground_ml

    folder = require_data(data_root)
    paths = sorted((folder / "alpha").glob("*.png"))
    if names is not None:
        missing = sorted(set(names) - {p.stem for p in paths})
        if missing:
            raise UserError(f"No foreground named {', '.join(missing)} in {folder}.", 2)
        paths = [p for p in paths if p.stem in names]
    out = []
    for path in paths:
        alpha = read_alpha(path)
        image = read_color(folder / "input" / path.name)
        if image.shape[:2] != alpha.shape or not (alpha > 0).any():
            raise UserError(f"The foreground '{path.name}' has no alpha of its photo's size.", 1)
        color = estimate_foreground_ml(image.astype(np.float64) / 255.0, alpha.astype(np.float64))
        out.append(RealForeground(path.stem, np.clip(color, 0, 1).astype(np.float32), alpha, _touches(alpha)))
    return out


@dataclass(frozen=True)
class Placement:
    """Where a foreground goes: its photo's crop `box` (y0, y1, x0, x1: the object's bounding box, widened
    to the photo edges that cut it) scaled to `size` (height, width) with its top-left corner at `offset`
    (row, column; may lie outside the frame), on a surface whose rim is `depth_m` away and whose centre
    is `bulge_m` nearer."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]
    offset: tuple[int, int]
    depth_m: float
    bulge_m: float


def _offset(rng: np.random.Generator, n: int, frame: int, low: bool, high: bool) -> int:
    """Position along one axis of an object n px long: edges cut in the photo stay at (or beyond) the
    frame's edges, edges not cut stay inside when they fit."""
    if low and not high:
        return 0
    if high and not low:
        return frame - n
    lo, hi = min(frame - n, 0), max(frame - n, 0)
    return int(rng.integers(lo, hi + 1))


def place_foreground(rng: np.random.Generator, fg: RealForeground, scene: BackgroundScene,
                     distance_m: tuple[float, float] = (0.8, 1.8)) -> Placement:
    """A random placement: 55-95 % of the largest size whose uncut sides fit the frame (an object cut on
    two opposite sides spans the frame there), at a depth in `distance_m` at least 0.3 m in front of most
    (95 %) of the background behind it, where the background allows."""
    h, w = fg.alpha.shape
    top, bottom, left, right = fg.touches
    rows, cols = np.nonzero((fg.alpha > 0).any(axis=1))[0], np.nonzero((fg.alpha > 0).any(axis=0))[0]
    box = (0 if top else int(rows[0]), h if bottom else int(rows[-1]) + 1,
           0 if left else int(cols[0]), w if right else int(cols[-1]) + 1)
    axes = ((box[1] - box[0], scene.height, top, bottom), (box[3] - box[2], scene.width, left, right))
    lo = max([f / c for c, f, a, b in axes if a and b], default=0.0)
    hi = min([f / c for c, f, a, b in axes if not (a and b)], default=np.inf)
    s = max(rng.uniform(0.55, 0.95) * hi, lo) if np.isfinite(hi) else lo * rng.uniform(1.0, 1.15)
    size = tuple(max(round(c * s), 1) for c, _, _, _ in axes)
    offset = tuple(_offset(rng, n, f, a, b) for n, (_, f, a, b) in zip(size, axes))
    region = (slice(max(offset[0], 0), offset[0] + size[0]), slice(max(offset[1], 0), offset[1] + size[1]))
    behind = scene.depth_m[region]
    behind = behind[behind > 0]
    near = float(np.percentile(behind, 5)) if behind.size > 50 else 5.0
    d0, d1 = distance_m
    depth = rng.uniform(d0, float(np.clip(near - 0.3, d0, d1)))
    return Placement(box, size, offset, float(depth), float(rng.uniform(0.05, 0.15)))


def subject_layer(fg: RealForeground, p: Placement, scene: BackgroundScene, gain: float) -> SubjectLayer:
    """The placed foreground as the generator's `SubjectLayer`: linear colour (times `gain`), alpha (cut
    where the background is nearer), the depth the sensor meets (where alpha >= 0.5) and depth dropout
    (fuzzy edges 0.08 < alpha < 0.5 return none, as hair strands; thin and dark parts mostly none)."""
    hh, ww = scene.height, scene.width
    y0, y1, x0, x1 = p.box
    (sh, sw), (oy, ox) = p.size, p.offset
    interp = cv2.INTER_AREA if sh < y1 - y0 else cv2.INTER_LINEAR
    a = np.ascontiguousarray(fg.alpha[y0:y1, x0:x1])
    prem = cv2.resize(fg.color[y0:y1, x0:x1] * a[:, :, None], (sw, sh), interpolation=interp)
    a = np.clip(cv2.resize(a, (sw, sh), interpolation=interp), 0, 1)
    fy0, fx0, fy1, fx1 = max(oy, 0), max(ox, 0), min(oy + sh, hh), min(ox + sw, ww)
    src = (slice(fy0 - oy, fy1 - oy), slice(fx0 - ox, fx1 - ox))
    dst = (slice(fy0, fy1), slice(fx0, fx1))
    alpha = np.zeros((hh, ww), np.float32)
    alpha[dst] = np.where(a[src] > 1 - 1e-3, 1, np.where(a[src] < 1e-3, 0, a[src]))
    # The surface: an elliptic bulge over the placed box, `bulge_m` nearer at its centre than at its rim.
    vv = (np.arange(fy0, fy1, dtype=np.float32) - np.float32(oy + sh / 2)) / np.float32(sh / 2)
    uu = (np.arange(fx0, fx1, dtype=np.float32) - np.float32(ox + sw / 2)) / np.float32(sw / 2)
    z = np.float32(p.depth_m) - np.float32(p.bulge_m) * np.clip(1 - vv[:, None] ** 2 - uu[None, :] ** 2, 0, 1)
    background = scene.depth_m[dst]
    alpha[dst] = np.where((background > 0) & (background <= z), 0, alpha[dst])
    color = np.zeros((hh, ww, 3), np.float32)
    np.divide(prem[src], np.maximum(alpha[dst], 1e-4)[:, :, None], out=color[dst], where=alpha[dst][:, :, None] > 0)
    color = srgb_to_linear(np.clip(color, 0, 1)) * np.float32(gain)
    depth = np.full((hh, ww), np.inf, np.float32)
    depth[dst] = np.where(alpha[dst] >= 0.5, z, np.inf)
    solid = alpha >= 0.5
    dark = 0.7 * np.clip((0.006 - luminance(color)) / 0.006, 0, 1)
    dropout = np.where(solid, np.maximum(dark, 0.02), np.where(alpha > 0.08, 1.0, 0.0)).astype(np.float32)
    ksize = max(3, round(5 * ww / 640) | 1)
    thin = solid & (cv2.morphologyEx(solid.astype(np.uint8), cv2.MORPH_OPEN, np.ones((ksize, ksize), np.uint8)) == 0)
    dropout = np.where(thin, np.maximum(dropout, 0.85), dropout).astype(np.float32)
    intr = scene.intrinsics
    uc, vc = ox + sw / 2, oy + sh / 2
    center = np.array([(uc - intr.cx) / intr.fx * p.depth_m, (vc - intr.cy) / intr.fy * p.depth_m, p.depth_m])
    return SubjectLayer(color, alpha, depth, dropout, alpha.copy(), center)


# -- backgrounds ----------------------------------------------------------------------------------
def _k4a_intrinsics(camera: dict, binned: tuple[int, int], crop: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Camera matrix and OpenCV rational distortion (k1 k2 p1 p2 k3 k4 k5 k6) of one Azure Kinect camera
    in one mode: the calibration's normalised intrinsics scaled to the mode's binned resolution, minus its
    crop offset and half a pixel (the Azure Kinect SDK's conversion)."""
    p = camera["Intrinsics"]["ModelParameters"]
    (w, h), (ox, oy) = binned, crop
    k = np.array([[p[2] * w, 0, p[0] * w - ox - 0.5], [0, p[3] * h, p[1] * h - oy - 0.5], [0, 0, 1]], np.float64)
    return k, np.array([p[4], p[5], p[13], p[12], p[6], p[7], p[8], p[9]], np.float64)


def azure_plate(folder: str | Path, width: int = 640) -> RealPlate:
    """The Azure Kinect capture as a plate: a 4:3 crop of its 1280x720 colour image (around the principal
    point) at `width`, and its 640x576 NFOV depth registered to it (unprojected with the depth camera's
    calibration, moved by the factory extrinsics, projected into the colour camera, nearest point kept;
    pinholes between projected points filled from 4+ valid neighbours). Areas the depth camera does not
    see stay 0, as on the device."""
    folder = Path(folder)
    cameras = json.loads((folder / "calibration.json").read_text())["CalibrationInformation"]["Cameras"]
    by_purpose = {c["Purpose"]: c for c in cameras}
    depth_cam, color_cam = by_purpose["CALIBRATION_CameraPurposeDepth"], by_purpose["CALIBRATION_CameraPurposePhotoVideo"]
    color = read_color(folder / "frame0_color_1280x720.jpg")
    depth = read_depth(folder / "frame0_depth_mm_640x576.png").astype(np.float64) * 0.001
    k_d, dist_d = _k4a_intrinsics(depth_cam, (1024, 1024), (192, 180))  # NFOV unbinned
    k_c, dist_c = _k4a_intrinsics(color_cam, (1280, 960), (0, 120))  # 720p
    rt = color_cam["Rt"]
    rot, t = np.array(rt["Rotation"], np.float64).reshape(3, 3), np.array(rt["Translation"], np.float64)
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    pixels = np.stack([u, v], 1).astype(np.float64)[:, None, :]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-6)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
        ray = cv2.undistortPointsIter(pixels, k_d, dist_d, None, None, criteria)
    else:  # OpenCV 5
        ray = cv2.undistortPoints(pixels, k_d, dist_d, criteria=criteria)
    ray = ray.reshape(-1, 2)
    points = np.column_stack([ray * z[:, None], z]) @ rot.T + t  # depth camera -> colour camera, metres
    points = points[points[:, 2] > 0.1]
    uv = cv2.projectPoints(points, np.zeros(3), np.zeros(3), k_c, dist_c)[0].reshape(-1, 2)
    crop_w = color.shape[0] * 4 // 3
    x0 = int(np.clip(round(k_c[0, 2] + 0.5 - crop_w / 2), 0, color.shape[1] - crop_w))
    scale = width / crop_w
    height = round(color.shape[0] * scale)
    uo = np.floor((uv[:, 0] + 0.5 - x0) * scale).astype(np.int64)
    vo = np.floor((uv[:, 1] + 0.5) * scale).astype(np.int64)
    keep = (uo >= 0) & (uo < width) & (vo >= 0) & (vo < height)
    order = np.argsort(-points[keep, 2])  # far to near: the nearest point is written last
    registered = np.zeros((height, width), np.float32)
    registered[vo[keep][order], uo[keep][order]] = points[keep, 2][order]
    valid = registered > 0
    count = cv2.boxFilter(valid.astype(np.float32), -1, (3, 3), normalize=False)
    nearest = cv2.erode(np.where(valid, registered, np.float32(1e4)), np.ones((3, 3), np.uint8))
    registered = np.where(~valid & (count >= 4), nearest, registered).astype(np.float32)
    image = cv2.resize(color[:, x0:x0 + crop_w], (width, height), interpolation=cv2.INTER_AREA)
    return RealPlate(image, registered, float(k_c[0, 0] * scale), BACKGROUND_NAMES["azure"])


def load_background(kind: str, rng: np.random.Generator, data_root: Path, width: int, height: int,
                    bank: TextureBank) -> BackgroundScene:
    """One background scene of `kind` ("tum", "azure" or "room") at width x height."""
    if kind == "room":
        return render_room(rng, height, width, Intrinsics.default_for(width, height), bank)
    if kind == "tum":
        folder = data_root / "tum_frame"
        color = read_color(folder / "TUM_color.png")
        depth = read_depth(folder / "TUM_depth.png").astype(np.float32) / np.float32(TUM_DEPTH_PER_M)
        plate = RealPlate(color, depth, TUM_FOCAL_PX * color.shape[1] / 640.0, BACKGROUND_NAMES["tum"])
    else:
        plate = azure_plate(data_root / "azure_kinect_recording")
    return plate_scene(rng, plate, height, width)


# -- scenes ---------------------------------------------------------------------------------------
@dataclass
class SemiRealScene:
    """One background's frames: `background_frames` of the empty scene, then the test frames (with
    ground-truth alpha), the foreground name and `Placement` of each test frame."""

    name: str
    frames: list[Frame]
    background_frames: int
    foregrounds: list[str] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)

    @property
    def tests(self) -> list[Frame]:
        return self.frames[self.background_frames:]


def frames_per_scene(total: int, scenes: int) -> list[int]:
    """`total` test frames split over at most `scenes` scenes, the first ones taking the remainder."""
    n = min(total, scenes)
    return [total // n + (i < total % n) for i in range(n)]


def _frame(cap: Capture, index: int, intr: Intrinsics) -> Frame:
    return Frame(cap.color, to_depth_raw(cap.depth_m, DEPTH_SCALE), DEPTH_SCALE, index / FPS, index, intr,
                 alpha=cap.alpha.astype(np.float32))


def semireal_scenes(config: SemiRealConfig, data_root: str | Path | None = None,
                    foregrounds: list[RealForeground] | None = None) -> Iterator[SemiRealScene]:
    """The suite's scenes one at a time, deterministic for `config.seed` (scene i draws from the i-th
    child of the seed, so a shorter list of backgrounds gives the same first scenes).

    foregrounds: already loaded ones (default: `load_foregrounds(data_root, config.foregrounds)`).
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    fgs = foregrounds if foregrounds is not None else load_foregrounds(root, config.foregrounds)
    bank = TextureBank(root.parent)
    counts = frames_per_scene(config.test_frames, len(config.backgrounds))
    first = 0
    for kind, n, seq in zip(config.backgrounds, counts, np.random.SeedSequence(config.seed).spawn(len(counts))):
        scene_rng, subject_rng, noise_rng = (np.random.default_rng(s) for s in seq.spawn(3))
        background = load_background(kind, scene_rng, root, config.width, config.height, bank)
        camera = SceneCamera(background, sample_conditions(scene_rng, SceneConfig(width=config.width,
                                                                                   height=config.height)))
        level = max(float(np.percentile(luminance(background.radiance[::2, ::2]), 97)), 0.2)
        intr = background.intrinsics
        scene = SemiRealScene(background.name, [], config.background_frames)
        for index in range(config.background_frames):
            scene.frames.append(_frame(camera.background_frame(noise_rng), index, intr))
        for j in range(n):
            fg = fgs[(first + j) % len(fgs)]
            placement = place_foreground(subject_rng, fg, background, config.subject_distance_m)
            # Expose the foreground like the background: its bright parts near the scene's bright parts.
            own = luminance(srgb_to_linear(fg.color))[fg.alpha >= 0.5]
            own_level = float(np.percentile(own, 97)) if own.size else level
            gain = float(np.clip(level / max(own_level, 0.05), 0.5, 2.0)) * subject_rng.uniform(0.8, 1.1)
            layer = subject_layer(fg, placement, background, gain)
            scene.frames.append(_frame(camera.test_frame(noise_rng, layer), config.background_frames + j, intr))
            scene.foregrounds.append(fg.name)
            scene.placements.append(placement)
        first += n
        yield scene


# -- the benchmark --------------------------------------------------------------------------------
def semireal_benchmark(variants: dict[str, EngineConfig], config: SemiRealConfig = SemiRealConfig(),
                       data_root: str | Path | None = None) -> list[AccuracyRow]:
    """Mean metrics per named engine configuration over the suite's test frames, after the all-background
    answer and the perfect hard mask (the ground truth cut at 0.5) as the first two rows. Each scene's
    prior is built from its background frames with the default DepthConfig."""
    root = Path(data_root) if data_root is not None else default_data_root()
    require_data(root)
    names = (ALL_BACKGROUND, HARD_MASK, *variants)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    ms: dict[str, list[float]] = {name: [] for name in names}
    pipelines: dict[str, MattingPipeline] = {}
    for scene in semireal_scenes(config, root):
        prior, _ = build_prior(scene.frames[:scene.background_frames], scene.background_frames, DepthConfig())
        for frame in scene.tests:
            results[ALL_BACKGROUND].append(evaluate(np.zeros_like(frame.alpha), frame.alpha))
            results[HARD_MASK].append(evaluate((frame.alpha >= 0.5).astype(np.float32), frame.alpha))
            ms[ALL_BACKGROUND].append(0.0)
            ms[HARD_MASK].append(0.0)
        for name, engine in variants.items():
            if name not in pipelines:
                pipelines[name] = MattingPipeline(engine)
            pipeline = pipelines[name]
            pipeline.set_prior(prior)
            for frame in scene.tests:
                depth_m = frame.depth_m()
                start = time.perf_counter()
                result = pipeline.process(frame.color, depth_m)
                ms[name].append((time.perf_counter() - start) * 1e3)
                results[name].append(evaluate(result.alpha, frame.alpha))
    return [AccuracyRow(mode=name, metrics=mean_metrics(results[name]), ms_per_frame=statistics.median(ms[name]),
                        frames=len(results[name])) for name in names]


def describe_suite(config: SemiRealConfig, data_root: str | Path, data_shown: str = "../shared/data") -> str:
    """One line naming the suite, its data and its size (the title of the table)."""
    kinds = config.backgrounds[:len(frames_per_scene(config.test_frames, len(config.backgrounds)))]
    parts = [name + (f" x{kinds.count(kind)}" if kinds.count(kind) > 1 else "")
             for kind, name in BACKGROUND_NAMES.items() if kind in kinds]
    available = len(list((Path(data_root) / FOREGROUND_DIR / "alpha").glob("*.png")))
    fgs = f"{len(config.foregrounds)} of the {available}" if config.foregrounds else f"the {available}"
    return (f"Semi-real suite: {fgs} real foregrounds of {data_shown}/{FOREGROUND_DIR} (hand-made alpha, evaluation "
            f"only) over {', '.join(parts)}; {config.test_frames} test frames, {config.background_frames} "
            f"background frames per scene, {config.width}x{config.height}, seed {config.seed}")
