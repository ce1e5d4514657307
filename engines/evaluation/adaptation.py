"""The scene-adaptation benchmark (issue 15, `main.py bench-adapt`): recordings with an empty-scene
capture, a take of the subject without ground truth, and later test frames of the same subject with
ground truth; each scene is adapted on its take only and scored on its test frames.

Owns `AdaptBenchConfig`, `AdaptScene`, the two scene sources (`synthetic_adapt_scenes`: the project's
generator, one person who enters and moves about a spot, the take being the first test frames;
`semireal_adapt_scenes`: one real alphamatting_dev foreground per scene over a real or generated RGB-D
background (`engines.evaluation.semireal`), placed anew in every take and test frame: research-only
data, evaluation only, nothing written), `compare_rows` (the engine configurations compared) and
`adaptation_benchmark`, which takes the adaptation itself as a callable (it lives in
`engines.training`, a layer above) and checkpoints each scene's scores as JSON in a work folder.

Metrics: `engines.evaluation.metrics` (SAD/1000, MSE*1000, Grad/1000, Conn/1000 over the whole image).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.config import DepthConfig, EngineConfig
from engines.evaluation.metrics import METRIC_NAMES, evaluate, mean_metrics
from engines.matting.background_prior import BackgroundPrior, build_prior
from engines.matting.pipeline import MattingPipeline
from sensors.frame import Frame

SUITES = ("synthetic", "semi-real")
DEPTH_ROW = "depth only + edge"
GENERIC, ADAPTED, TEACHER = ("generic dart + edge (the default)", "adapted dart + edge",
                             "teacher (offline)")


@dataclass(frozen=True)
class AdaptBenchConfig:
    """Scenes of one suite: `scenes` scenes of width x height, each with `background_frames` empty-scene
    frames, `take_frames` frames for the adaptation (no ground truth used) and `test_frames` later frames
    scored against ground truth; scene i draws from seed + i."""

    suite: str = "synthetic"
    scenes: int = 3
    width: int = 640
    height: int = 480
    background_frames: int = 20
    take_frames: int = 40
    test_frames: int = 10
    seed: int = 2024
    rescore: bool = False  # score again (current code) with the adapted models already in the work folder

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"suite must be one of {SUITES}, got {self.suite!r}")
        if min(self.scenes, self.background_frames, self.take_frames, self.test_frames) < 1:
            raise ValueError("need at least one scene, background, take and test frame")


@dataclass
class AdaptScene:
    """One recording: `background` frames of the empty scene, the `take` (alpha removed) and the `tests`
    (with ground-truth alpha)."""

    name: str
    background: list[Frame]
    take: list[Frame]
    tests: list[Frame]
    info: dict = field(default_factory=dict)

    def prior(self, depth: DepthConfig = DepthConfig()) -> BackgroundPrior:
        return build_prior(self.background, len(self.background), depth)[0]


def _without_alpha(frame: Frame) -> Frame:
    return dataclasses.replace(frame, alpha=None)


def synthetic_adapt_scenes(config: AdaptBenchConfig) -> Iterator[AdaptScene]:
    """Generator scenes (`engines.synth.scene.generate_scene`, scene i with seed + i): the subject's first
    `take_frames` frames are the take, the next `test_frames` the tests."""
    from engines.synth.scene import SceneConfig, generate_scene

    for i in range(config.scenes):
        seed = config.seed + i
        frames = list(generate_scene(SceneConfig(width=config.width, height=config.height, seed=seed,
                                                 n_background=config.background_frames,
                                                 n_test=config.take_frames + config.test_frames)))
        b, t = config.background_frames, config.take_frames
        yield AdaptScene(f"synthetic seed {seed}", frames[:b], [_without_alpha(f) for f in frames[b:b + t]],
                         frames[b + t:], {"seed": seed})


def semireal_adapt_scenes(config: AdaptBenchConfig, data_root: str | Path | None = None) -> Iterator[AdaptScene]:
    """Semi-real scenes: scene i shows foreground (5 i) mod 13 of alphamatting_dev over background kind
    i of `semireal.BACKGROUNDS` (TUM desk, Azure Kinect desk, generator rooms), each take and test frame
    with a fresh random placement (size, position, distance) under the same changed lighting."""
    from engines.evaluation import semireal
    from engines.synth.scene import SceneCamera, SceneConfig, sample_conditions
    from engines.synth.sensor import to_depth_raw
    from engines.synth.textures import TextureBank, luminance, srgb_to_linear

    root = Path(data_root) if data_root is not None else semireal.default_data_root()
    fgs = semireal.load_foregrounds(root)
    bank = TextureBank(root.parent)
    seqs = np.random.SeedSequence(config.seed).spawn(config.scenes)
    for i, seq in enumerate(seqs):
        kind = semireal.BACKGROUNDS[i % len(semireal.BACKGROUNDS)]
        fg = fgs[(5 * i) % len(fgs)]
        scene_rng, subject_rng, noise_rng = (np.random.default_rng(s) for s in seq.spawn(3))
        background = semireal.load_background(kind, scene_rng, root, config.width, config.height, bank)
        camera = SceneCamera(background, sample_conditions(scene_rng, SceneConfig(width=config.width,
                                                                                   height=config.height)))
        level = max(float(np.percentile(luminance(background.radiance[::2, ::2]), 97)), 0.2)
        own = luminance(srgb_to_linear(fg.color))[fg.alpha >= 0.5]
        gain = float(np.clip(level / max(float(np.percentile(own, 97)) if own.size else level, 0.05), 0.5, 2.0))
        intr = background.intrinsics

        def frame(cap, index: int) -> Frame:
            return Frame(cap.color, to_depth_raw(cap.depth_m, semireal.DEPTH_SCALE), semireal.DEPTH_SCALE,
                         index / semireal.FPS, index, intr, alpha=cap.alpha.astype(np.float32))

        b = config.background_frames
        frames = [frame(camera.background_frame(noise_rng), k) for k in range(b)]
        for k in range(config.take_frames + config.test_frames):
            placement = semireal.place_foreground(subject_rng, fg, background)
            layer = semireal.subject_layer(fg, placement, background, gain * subject_rng.uniform(0.9, 1.05))
            frames.append(frame(camera.test_frame(noise_rng, layer), b + k))
        t = config.take_frames
        yield AdaptScene(f"{fg.name} over {semireal.BACKGROUND_NAMES[kind]}", frames[:b],
                         [_without_alpha(f) for f in frames[b:b + t]], frames[b + t:],
                         {"foreground": fg.name, "background": kind})


def compare_rows(model_dir: str, adapted_dir: str | None, teacher: EngineConfig) -> dict[str, EngineConfig]:
    """The compared engine configurations: DART with the generic networks (with edge refinement: the default
    real-time mode; and without), with the adapted networks (the same two), depth only with edge
    refinement, and the teacher."""
    base = EngineConfig(model_dir=model_dir)
    rows = {DEPTH_ROW: dataclasses.replace(base, mode="depth", edge_refine=True),
            GENERIC: dataclasses.replace(base, mode="dart", edge_refine=True),
            "generic dart": dataclasses.replace(base, mode="dart")}
    if adapted_dir is not None:
        rows[ADAPTED] = dataclasses.replace(base, mode="dart", edge_refine=True, model_dir=adapted_dir)
        rows["adapted dart"] = dataclasses.replace(base, mode="dart", model_dir=adapted_dir)
    rows[TEACHER] = teacher
    return rows


def score_scene(scene: AdaptScene, rows: dict[str, EngineConfig]) -> dict[str, list[dict[str, float]]]:
    """Per-frame metrics of every row on the scene's test frames (prior from its background frames)."""
    prior = scene.prior()
    out: dict[str, list[dict[str, float]]] = {}
    for name, engine in rows.items():
        pipeline = MattingPipeline(engine)
        pipeline.set_prior(prior)
        out[name] = [evaluate(pipeline.process(f.color, f.depth_m()).alpha, f.alpha) for f in scene.tests]
    return out


AdaptFn = Callable[[AdaptScene, Path], dict]


def adaptation_benchmark(scenes: Iterator[AdaptScene], adapt: AdaptFn, model_dir: str, teacher: EngineConfig,
                         work_dir: str | Path, on_scene: Callable[[dict], None] | None = None,
                         key: dict | None = None, rescore: bool = False) -> dict:
    """Adapt each scene on its take (`adapt(scene, out_dir) -> info dict` with at least "accepted" and
    "wall_s"), then score all rows on its test frames. Each scene's result is checkpointed as
    `work_dir/scene_<i>.json` and reused on a rerun with the same scene and `key` (the adaptation's
    settings, JSON-able). Returns {"scenes": [...], "mean": {row: metrics},
    "frames": test frames in all}."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i, scene in enumerate(scenes):
        path = work_dir / f"scene_{i}.json"
        if path.is_file():
            done = json.loads(path.read_text())
            if (done.get("name"), done.get("test_frames"), done.get("key")) == (scene.name, len(scene.tests), key):
                if not rescore:
                    results.append(done)
                    continue
            else:
                done = None
        else:
            done = None
        start = time.perf_counter()
        out_dir = work_dir / f"scene_{i}_models"
        info = done["adapt"] if done is not None else adapt(scene, out_dir)  # rescore: the models are there
        scores = score_scene(scene, compare_rows(model_dir, str(out_dir), teacher))
        entry = {"name": scene.name, "key": key, "info": scene.info, "adapt": info, "test_frames": len(scene.tests),
                 "take_frames": len(scene.take), "per_frame": scores,
                 "mean": {k: mean_metrics(v) for k, v in scores.items()},
                 "scene_s": round(time.perf_counter() - start, 1)}
        tmp = path.with_suffix(".json.part")
        tmp.write_text(json.dumps(entry, indent=1))
        tmp.replace(path)
        results.append(entry)
        if on_scene is not None:
            on_scene(entry)
    rows = list(results[0]["per_frame"]) if results else []
    mean = {row: mean_metrics([m for r in results for m in r["per_frame"][row]]) for row in rows}
    return {"scenes": results, "mean": mean, "frames": sum(r["test_frames"] for r in results)}


def format_adaptation(report: dict, title: str) -> str:
    """The benchmark as a Markdown table (mean over all test frames) plus one line per scene."""
    lines = [title, "", f"| row | {' | '.join(METRIC_NAMES)} |", "|" + "---|" * (len(METRIC_NAMES) + 1)]
    for row, metrics in report["mean"].items():
        lines.append(f"| {row} | {' | '.join(f'{metrics[m]:.2f}' for m in METRIC_NAMES)} |")
    lines.append("")
    for r in report["scenes"]:
        sad = {k: v["SAD"] for k, v in r["mean"].items()}
        a = r["adapt"]
        lines.append(f"- {r['name']}: SAD generic {sad.get(GENERIC, float('nan')):.2f}, adapted "
                     f"{sad.get(ADAPTED, float('nan')):.2f}, depth only {sad.get(DEPTH_ROW, float('nan')):.2f}, "
                     f"teacher {sad.get(TEACHER, float('nan')):.2f}; adaptation "
                     f"{'accepted' if a.get('accepted') else 'rejected'}, {a.get('steps', 0)} steps, "
                     f"{a.get('wall_s', 0):.0f} s")
    return "\n".join(lines)
