"""The synthetic accuracy benchmark behind `main.py bench-accuracy --suite synthetic`, and `photo`'s check.

A fixed set of synthetic scenes (like the DART paper's dataset: N scenes x (background + test) frames)
is generated in memory from a fixed seed, every mode mattes the test frames with a prior built from
the scene's background frames, and the metrics are averaged over all test frames. Speed lives in
`engines.evaluation.speed` (`main.py bench-speed`).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from engines.matting.background_prior import build_prior
from engines.config import DepthConfig, EngineConfig
from engines.matting.dart_matting import DISTILLED_STUDENT_FILE
from engines.evaluation.metrics import METRIC_NAMES, evaluate, mean_metrics
from engines.matting.pipeline import MattingPipeline
from engines.synth.scene import SceneConfig, generate_scene

ALL_BACKGROUND = "all-background"
DEPTH_MODES = ("depth", "dart")
DART_ABLATIONS = (
    "dart, no error-map correction",
    "dart, no RGB-D refiner",
    "dart, neither",
    "dart, eq. 9 on raw A_D",
    "dart, distilled student",
    "dart, no depth fusion",
)


@dataclass
class AccuracyRow:
    mode: str
    metrics: dict[str, float]
    ms_per_frame: float
    frames: int


def benchmark_variants(
    modes: tuple[str, ...],
    post: tuple[str, ...] = (),
    ablations: bool = True,
    post_band_px: int = 3,
    vitmatte_dir: str | None = None,
    model_dir: str | None = None,
    refine_patches: int | None = None,
    depth: DepthConfig | None = None,
    edge: bool = True,
) -> dict[str, EngineConfig]:
    """The named engine configurations of the accuracy table.

    One row per mode; with `ablations` and "dart" among the modes, DART's ablations (the paper's Table
    II: without error-map correction, without the RGB-D refiner, without both), eq. 9 on the raw A_D as
    printed, DART with the student distilled from the teacher (eq. 3) instead of the shipped one, and
    DART without depth fusion (`engines.matting.depth_fusion`: the paper's DART);
    each post-matting kind in `post` adds "<mode> + <kind>" for the modes that use depth (the
    post-matting trimap is depth-derived, eqs. 12-13); with `edge`, "<mode> + edge" rows add the
    real-time edge refinement against the plate (`engines.matting.edge_refine`) to depth and dart.
    """
    base = EngineConfig()
    if model_dir is not None:
        base = replace(base, model_dir=model_dir)
    if refine_patches is not None:
        base = replace(base, refine_patches=refine_patches)
    if depth is not None:
        base = replace(base, depth=depth)
    variants = {mode: replace(base, mode=mode) for mode in modes}
    if ablations and "dart" in modes:
        dart = variants["dart"]
        variants[DART_ABLATIONS[0]] = replace(dart, error_map_correction=False)
        variants[DART_ABLATIONS[1]] = replace(dart, depth_refiner=False)
        variants[DART_ABLATIONS[2]] = replace(dart, error_map_correction=False, depth_refiner=False)
        variants[DART_ABLATIONS[3]] = replace(dart, depth=replace(dart.depth, calibrated_residual=False))
        variants[DART_ABLATIONS[4]] = replace(dart, student_file=DISTILLED_STUDENT_FILE)
        variants[DART_ABLATIONS[5]] = replace(dart, depth_fusion=False)
    if edge:
        for mode in (m for m in modes if m in ("depth", "dart")):
            variants[f"{mode} + edge"] = replace(variants[mode], edge_refine=True)
    for kind in post:
        for mode in (m for m in modes if m in DEPTH_MODES):
            variants[f"{mode} + {kind}"] = replace(variants[mode], post=kind, post_band_px=post_band_px,
                                                   vitmatte_dir=vitmatte_dir)
    return variants


def accuracy_benchmark(
    variants: dict[str, EngineConfig],
    scenes: int = 12,
    width: int = 640,
    height: int = 480,
    background_frames: int = 30,
    test_frames: int = 5,
    seed: int = 2024,
) -> list[AccuracyRow]:
    """Mean metrics per named engine configuration over `scenes` synthetic scenes (scene i uses seed + i),
    plus the all-background answer as the first row. The prior is built with the default DepthConfig."""
    depth_config = DepthConfig()
    per_variant: dict[str, list[dict[str, float]]] = {name: [] for name in (ALL_BACKGROUND, *variants)}
    ms: dict[str, list[float]] = {name: [] for name in per_variant}
    for scene in range(scenes):
        config = SceneConfig(width=width, height=height, n_background=background_frames, n_test=test_frames,
                             seed=seed + scene)
        frames = list(generate_scene(config))
        prior, _ = build_prior(frames[:background_frames], background_frames, depth_config)
        tests = frames[background_frames:]
        for frame in tests:
            per_variant[ALL_BACKGROUND].append(evaluate(np.zeros_like(frame.alpha), frame.alpha))
            ms[ALL_BACKGROUND].append(0.0)
        for name, engine in variants.items():
            pipeline = MattingPipeline(engine)
            pipeline.set_prior(prior)
            for frame in tests:
                depth_m = frame.depth_m()
                start = time.perf_counter()
                result = pipeline.process(frame.color, depth_m)
                ms[name].append((time.perf_counter() - start) * 1e3)
                per_variant[name].append(evaluate(result.alpha, frame.alpha))
    return [
        AccuracyRow(mode=name, metrics=mean_metrics(results), ms_per_frame=statistics.median(ms[name]),
                    frames=len(results))
        for name, results in per_variant.items()
    ]


def format_table(rows: list[AccuracyRow], title: str) -> str:
    header = f"| mode | {' | '.join(METRIC_NAMES)} | ms/frame |"
    lines = [title, "", header, "|" + "---|" * (len(METRIC_NAMES) + 2)]
    for row in rows:
        values = " | ".join(f"{row.metrics[name]:.2f}" for name in METRIC_NAMES)
        lines.append(f"| {row.mode} | {values} | {row.ms_per_frame:.1f} |")
    lines.append("")
    lines.append("SAD/1000, MSE*1000, Grad/1000, Conn/1000 over the whole image, mean over test frames; "
                 "ms/frame is the median time of MattingPipeline.process.")
    return "\n".join(lines)


def align_plate(image_rgb: np.ndarray, plate_rgb: np.ndarray) -> np.ndarray:
    """The hand-held background plate warped onto the image (ORB features + RANSAC homography).

    Both uint8 HxWx3 RGB of the same size; pixels the warped plate does not cover take the image's own
    colour (treated as background). Raises ValueError when too few features match.
    """
    import cv2

    gray = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (image_rgb, plate_rgb)]
    orb = cv2.ORB_create(nfeatures=5000)
    (kp_i, des_i), (kp_p, des_p) = (orb.detectAndCompute(g, None) for g in gray)
    if des_i is None or des_p is None:
        raise ValueError("no features found to align the background plate")
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(des_p, des_i)
    if len(matches) < 12:
        raise ValueError(f"only {len(matches)} feature matches between plate and image")
    src = np.float32([kp_p[m.queryIdx].pt for m in matches])
    dst = np.float32([kp_i[m.trainIdx].pt for m in matches])
    homography, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    h, w = image_rgb.shape[:2]
    warped = cv2.warpPerspective(plate_rgb, homography, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    covered = cv2.warpPerspective(np.full((h, w), 255, np.uint8), homography, (w, h)) > 0
    return np.where(covered[..., None], warped, image_rgb)


def real_photo_check(image_path: str, plate_path: str, engine: EngineConfig, width: int = 960) -> dict[str, np.ndarray]:
    """Matte a real photo against its (aligned) hand-held plate; no depth, so an RGB-only mode.

    Returns {"image", "plate", "alpha", "composite"} as uint8 RGB/grey images at `width` (height kept
    in proportion, rounded to a multiple of 8).
    """
    import cv2

    from engines.matting.background_prior import BackgroundPriorBuilder
    from engines.matting.compositing import composite, solid_background
    from sensors.image_io import read_color

    image, plate = read_color(image_path), read_color(plate_path)
    height = int(round(image.shape[0] * width / image.shape[1] / 8)) * 8
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    plate = align_plate(image, cv2.resize(plate, (width, height), interpolation=cv2.INTER_AREA))
    no_depth = np.zeros((height, width), np.float32)
    builder = BackgroundPriorBuilder(height, width)
    builder.add(plate, no_depth)
    pipeline = MattingPipeline(engine)
    pipeline.set_prior(builder.build(engine.depth))
    alpha = pipeline.process(image, no_depth).alpha
    green = solid_background((0, 177, 64), width, height)
    return {
        "image": image,
        "plate": plate,
        "alpha": np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8),
        "composite": composite(image, alpha, green),
    }
