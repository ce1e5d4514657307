"""Command-line entry point: the demo, headless processing, evaluation, benchmarks and tools.

    python main.py                      demo: the app on the bundled recording, or headless without a display
    python main.py process REC --out DIR [--mode depth] [--save alpha,composite] [--replace blur]
    python main.py eval REC --pred DIR  SAD/MSE/Grad/Conn against the recording's ground-truth alpha
    python main.py synth OUT [--seed N] synthetic RGB-D recording with ground truth
    python main.py bench-accuracy       accuracy table of every mode: semi-real suite (or --suite synthetic)
    python main.py bench-speed          per-stage milliseconds at 640x480 (medians)
    python main.py devices              connected RealSense / Orbbec cameras
    python main.py doctor               is this machine ready? one line per check with its fix (app/doctor.py)
    python main.py soak --minutes 60    the live window for an hour, driven and measured (app/soak.py)

This is the only module that parses arguments; it builds the engine's dataclasses and passes them
down. Errors the user can act on are `UserError`s, printed as one sentence with exit code 2 (usage)
or 1 (runtime).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

# Ctrl-C while the modules below load: exit 130 without a traceback (main() installs the full handling).
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

from app.cli_args import (
    Parser,
    fraction,
    non_negative,
    positive_float,
    positive_int,
    runtime_error,
    save_kinds,
    unit,
    usage_error,
)
from app.many_inputs import add_batch_arguments, add_bench_batch_arguments, cpu_cores
from app.commands import (
    cmd_devices,
    cmd_doctor,
    cmd_gui,
    cmd_process,
    cmd_soak,
    depth_config,
    engine_config,
    has_display,
)

REPO_ROOT = Path(__file__).resolve().parent
DEMO_RECORDING = REPO_ROOT / "assets" / "demo_recording"
DEFAULT_OUT = Path("out")

log = logging.getLogger("main")


# -- commands ----------------------------------------------------------------------------------------
def _network_options(p: argparse.ArgumentParser) -> None:
    from engines.config import DepthConfig, EngineConfig

    p.add_argument("--models", metavar="DIR", help="network weights folder (default: assets/models)")
    p.add_argument("--patches", type=positive_int, default=EngineConfig.refine_patches, metavar="K",
                   help=f"dart/rgb: 4x4 patches the refiner recomputes per frame (default: "
                        f"{EngineConfig.refine_patches}; more = finer, slower)")
    p.add_argument("--beta", type=unit, default=None,
                   help=f"dart: weight of the depth residual in the error map, eq. 10 (default: {DepthConfig.beta})")


def cmd_eval(args: argparse.Namespace) -> int:
    from engines.evaluation.predictions import evaluate_predictions

    report = evaluate_predictions(args.input, Path(args.pred))
    if report.missing or report.unmatched:
        print(f"warning: {report.missing} frame(s) with ground truth have no prediction and {report.unmatched} "
              "prediction(s) match no ground-truth frame: are these predictions of this recording?", file=sys.stderr)
    print(f"{report.frames} frames with ground truth (SAD/1000, MSE*1000, Grad/1000, Conn/1000, whole image):")
    print("  " + "  ".join(f"{name:>8}" for name in report.metrics))
    print("  " + "  ".join(f"{value:8.3f}" for value in report.metrics.values()))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from engines.synth.scene import SceneConfig, write_scene

    config = SceneConfig(width=args.width, height=args.height, n_background=args.background_frames,
                         n_test=args.test_frames, seed=args.seed)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise usage_error(f"'{out}' already exists and is not empty: choose a new folder for the recording.")
    write_scene(config, out)
    print(f"Wrote a synthetic recording ({args.background_frames} background + {args.test_frames} test frames, "
          f"{args.width}x{args.height}, seed {args.seed}) to {out}/")
    return 0


def cmd_bench_speed(args: argparse.Namespace) -> int:
    from app.fps_probe import live_stages
    from engines.evaluation.speed import LivePathConfig, bench_speed_lines, quantize_models

    if args.quantize_to:  # development: INT8 copies of the networks, calibrated on generated frames
        print("Wrote " + ", ".join(map(str, quantize_models(args.models or REPO_ROOT / "assets" / "models", args.quantize_to))))
        return 0
    print("\n".join(bench_speed_lines(LivePathConfig(
        Path(args.recording), args.frames, args.patches, args.device, args.precision, args.threads, Path(args.peer),
        size=(args.width, args.height), model_dir=args.models and Path(args.models), depth=depth_config(args),
        budget_ms=args.budget_ms or None),
        *live_stages())))
    return 0


def cmd_bench_batch(args: argparse.Namespace) -> int:
    import tempfile

    from engines.evaluation.throughput import ThroughputConfig, format_report, throughput_benchmark

    config = ThroughputConfig(recordings=args.recordings, inputs=args.inputs, test_frames=args.frames, width=args.width,
                              height=args.height, workers=tuple(range(1, args.max_workers + 1)), ray=not args.no_ray,
                              memory_inputs=(2, args.queued))
    if args.work and Path(args.work).exists():
        raise usage_error(f"'{args.work}' already exists: give a new folder to --work.")
    engine = engine_config(args)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temp:
        report = throughput_benchmark(config, engine, Path(args.work or temp), cores=cpu_cores())
    print(format_report(report, config, engine))
    return 0


def cmd_bench_accuracy(args: argparse.Namespace) -> int:
    from engines.evaluation.benchmark import accuracy_benchmark, benchmark_variants, format_table

    variants = benchmark_variants(args.modes, post=args.post_kinds, ablations=not args.no_ablations,
                                  post_band_px=args.post_band, vitmatte_dir=args.vitmatte, model_dir=args.models,
                                  refine_patches=args.patches, depth=depth_config(args))
    if args.suite == "semi-real":
        return _bench_semi_real(args, variants, format_table)
    table = accuracy_benchmark(
        variants, scenes=args.scenes, width=args.width, height=args.height,
        background_frames=args.background_frames, test_frames=args.test_frames, seed=args.seed,
    )
    print(format_table(table, title=f"{args.scenes} synthetic scenes x {args.test_frames} test frames, "
                                    f"{args.width}x{args.height}, seed {args.seed}"))
    return 0


def _bench_semi_real(args: argparse.Namespace, variants: dict, format_table) -> int:
    from engines.evaluation import semireal

    if (args.scenes, args.test_frames) != (12, 5):
        raise usage_error("--scenes and --test-frames belong to '--suite synthetic'; the semi-real suite takes --frames.")
    data, shown = Path(args.data or semireal.default_data_root()), args.data or "../shared/data"
    semireal.require_data(data, shown=f"{shown}/{semireal.FOREGROUND_DIR}")
    config = semireal.SemiRealConfig(width=args.width, height=args.height, background_frames=args.background_frames,
                                     test_frames=args.frames, seed=args.seed)
    table = semireal.semireal_benchmark(variants, config, data)
    print(format_table(table, title=semireal.describe_suite(config, data, shown)))
    return 0


def cmd_photo(args: argparse.Namespace) -> int:
    import numpy as np

    from engines.evaluation.benchmark import real_photo_check
    from sensors.image_io import write_color

    for path in (args.image, args.plate):
        if not Path(path).is_file():
            raise usage_error(f"'{path}' does not exist: give a photo and a photo of the same scene without the subject.")
    try:
        views = real_photo_check(args.image, args.plate, engine_config(args), width=args.width)
    except ValueError as error:
        raise runtime_error(f"Could not align the plate to the photo ({error}): take the plate from the same spot.") from None
    alpha_rgb = np.repeat(views["alpha"][..., None], 3, axis=2)
    sheet = np.vstack([np.hstack([views["image"], views["plate"]]), np.hstack([alpha_rgb, views["composite"]])])
    write_color(args.out, sheet)
    print(f"Wrote {args.out}: photo | aligned plate (top), alpha | composite over green (bottom), mode {args.mode}.")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import json

    from app.commands import training_log
    from engines.training.stages import default_device  # "auto": cuda when torch sees a GPU (the app's Adapt to me too)

    on_log = training_log()  # JSON lines for the app's adaptation worker, a progress bar on a terminal
    args.device = default_device() if args.device == "auto" else args.device

    minutes = args.budget_minutes or (4.5 if args.scene or args.take else 68.0)
    if (args.scene or args.take) and args.scene_method == "teacher":
        from engines.training.adapt import AdaptConfig, adapt_recording, adapt_to_take
        from engines.training.adapt_data import read_saved_take

        if args.take and not args.prior:
            raise usage_error("--take needs --prior FILE.npz, the background captured with it.")
        if args.size and len(args.size) != 2:
            raise usage_error("--size takes WIDTHxHEIGHT, for example 320x240.")
        config = AdaptConfig(budget_s=minutes * 60, device=args.device, threads=args.threads,
                             **({"height": args.size[1], "width": args.size[0]} if args.size else {}),
                             **({"generic_samples": args.generic_samples} if args.generic_samples else {}))
        if args.take:
            result = adapt_to_take(read_saved_take(args.take, args.prior), args.models, args.out, config, on_log=on_log)
        else:
            result = adapt_recording(args.scene, args.models, args.out, config, take_frames=args.take_frames,
                                     on_log=on_log)
        print(f"{'Adapted' if result.accepted else 'Not adapted'} in {result.seconds['total']:.0f} s "
              f"({result.steps} steps): {result.reason}; models in {args.out}/ (--models {args.out}).")
        return 0
    if args.scene:
        from engines.training.scene import finetune_on_scene

        student = Path(args.models) / "student.safetensors"
        result = finetune_on_scene(args.scene, student, budget_s=minutes * 60, out_dir=args.out,
                                   device=args.device, on_log=on_log)
    else:
        from engines.training.stages import TrainConfig, train_all

        config = TrainConfig.with_budget_minutes(minutes, device=args.device)
        result = train_all(config, args.out, on_log)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_bench_adapt(args: argparse.Namespace) -> int:
    from engines.evaluation.adaptation import AdaptBenchConfig, format_adaptation
    from engines.training.adapt import AdaptConfig
    from engines.training.adapt_bench import describe, run_adapt_benchmark

    bench = AdaptBenchConfig(suite=args.suite, scenes=args.scenes, take_frames=args.take_frames,
                             test_frames=args.test_frames, seed=args.seed, rescore=args.rescore)
    adapt = AdaptConfig(budget_s=args.budget_minutes * 60, threads=args.threads, generic_cache=args.generic_cache,
                        scene_fraction=args.scene_fraction, generic_tolerance=args.generic_tolerance,
                        refiner_share=args.refiner_share)
    report = run_adapt_benchmark(bench, adapt, args.models, args.out, on_log=lambda e: print(e.get("name", e), flush=True))
    print(format_adaptation(report, describe(bench, adapt, len(report["scenes"]))))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """No arguments: the app on the bundled recording, or headless processing into out/ without a display."""
    if not DEMO_RECORDING.is_dir():
        raise runtime_error(f"The bundled demo recording '{DEMO_RECORDING}' is missing: restore it with git checkout assets/.")
    if has_display():
        gui = argparse.Namespace(source=str(DEMO_RECORDING), background=None, mode=None, snapshot=None,
                                 quit_after=None, virtual_camera=False)
        return cmd_gui(gui)
    out = DEFAULT_OUT / "demo"
    print(f"No display found: processing the bundled recording headless into {out}/")
    demo = build_parser().parse_args(["process", str(DEMO_RECORDING), "--out", str(out),
                                      "--save", "alpha,composite,foreground,trimap"])
    return cmd_process(demo)


# -- parser -------------------------------------------------------------------------------------------
def _frame_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=positive_int, default=640, help="frame width (default: 640)")
    p.add_argument("--height", type=positive_int, default=480, help="frame height (default: 480)")


def build_parser() -> argparse.ArgumentParser:
    from app.launch import background_choices
    from engines.batch import DEFAULT_REPLACE
    from engines.config import LIVE_PATCH_BUDGET_MS
    from engines.matting.pipeline import DEFAULT_MODE, MODES
    from engines.matting.post_matting import KINDS as POST_KINDS

    parser = Parser(prog="main.py", description="Live background replacement with an RGB-D camera (DART).")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks, debug logging and native "
                        "libraries' messages on the terminal (default: off)")
    parser.add_argument("--log", metavar="FILE", type=Path, help="append the debug log and native libraries' messages "
                        "(libjpeg, OpenCV, RealSense) to FILE (default: none; headless commands drop those messages)")
    parser.set_defaults(run=cmd_demo)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)

    def engine_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="matting engine (default: %(default)s)")
        p.add_argument("--max-distance", type=positive_float, default=None, metavar="METRES",
                       help="depth gate: pixels farther than this are background (default: off)")
        p.add_argument("--smoothing", type=fraction, default=0.0, help="temporal smoothing in [0, 1) (default: 0, off)")
        _network_options(p)
        p.add_argument("--no-refiner", action="store_true", help="dart/rgb: upsample the coarse alpha (default: refiner on)")
        p.add_argument("--no-edge-refine", action="store_true", help="skip edge refinement against the plate (default: on)")
        p.add_argument("--no-error-map-correction", action="store_true",
                       help="dart ablation: select refined patches by the network's E_RGB (default: E_RGBD)")
        p.add_argument("--no-depth-refiner", action="store_true",
                       help="dart ablation: refine RGB patches (default: RGB-D patches)")
        post_options(p)

    def post_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--post", choices=POST_KINDS, default="none",
                       help="post-matting on a depth-derived trimap (default: %(default)s)")
        p.add_argument("--post-band", type=int, default=3, metavar="PX", help="widen the unknown band (default: 3 px)")
        p.add_argument("--vitmatte", metavar="DIR", help="local ViTMatte weights for --post vitmatte (default: none)")

    p = sub.add_parser("process", help="matte a recording headless and write the results")
    p.add_argument("input", nargs="*", help="recording: rgbd-folder, TUM or Redwood folder, RealSense .bag/.db3, Azure "
                   "Kinect .mkv, orbbec:///path.bag; several (or a quoted glob, or --list) write OUT/<name>/ each")
    p.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    engine_options(p)
    p.add_argument("--background", metavar="PATH", help="a recording of the empty scene (default: the input's first frames)")
    p.add_argument("--background-frames", type=positive_int, metavar="N",
                   help="the first N frames show the empty scene (default: the recording's meta)")
    p.add_argument("--prior", metavar="FILE.npz", help="a saved background model instead of frames (default: none)")
    p.add_argument("--save-prior", metavar="FILE.npz", help="also save the background model built here (default: no)")
    p.add_argument("--accept-background", action="store_true",
                   help="use background frames that seem to show a person (default: refuse them, exit code 1)")
    p.add_argument("--save", type=save_kinds, default=("alpha",),
                   help="comma-separated outputs: alpha,composite,foreground,trimap (default: alpha)")
    replace_metavar, replace_help = background_choices()
    p.add_argument("--replace", default=DEFAULT_REPLACE, metavar=replace_metavar, help=f"new background of the "
                   f"composite output (giving it implies --save composite): {replace_help} (default: %(default)s)")
    add_batch_arguments(p)
    p.set_defaults(run=cmd_process)

    p = sub.add_parser("eval", help="score predicted alpha against a recording's ground truth")
    p.add_argument("input", help="recording with an alpha/ folder")
    p.add_argument("--pred", required=True, help="folder with predicted alpha PNGs (or its alpha/ subfolder)")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("synth", help="write a synthetic RGB-D recording with ground-truth alpha")
    p.add_argument("out", help="new (or empty) folder for the recording")
    p.add_argument("--seed", type=int, default=0, help="random seed of the scene (default: %(default)s)")
    _frame_size(p)
    p.add_argument("--background-frames", type=positive_int, default=30, help="empty-scene frames first (default: 30)")
    p.add_argument("--test-frames", type=positive_int, default=5, help="frames with a subject and ground truth (default: 5)")
    p.set_defaults(run=cmd_synth)

    p = sub.add_parser("bench-accuracy", help="accuracy of every mode on the semi-real or the synthetic suite")
    p.add_argument("--suite", choices=("semi-real", "synthetic"), default="semi-real",
                   help="semi-real (default; needs ../shared/data): real foregrounds over real and generated RGB-D")
    p.add_argument("--data", metavar="DIR", help="semi-real: the shared data folder (default: ../shared/data)")
    p.add_argument("--frames", type=positive_int, default=60, help="semi-real: test frames in all (default: 60)")
    p.add_argument("--modes", type=lambda s: tuple(s.split(",")), default=MODES,
                   help=f"comma-separated modes to score (default: {','.join(MODES)})")
    p.add_argument("--scenes", type=positive_int, default=12, help="synthetic: scenes (default: 12)")
    _frame_size(p)
    p.add_argument("--background-frames", type=positive_int, default=30, help="empty-scene frames per scene (default: 30)")
    p.add_argument("--test-frames", type=positive_int, default=5, help="synthetic: test frames per scene (default: 5)")
    p.add_argument("--seed", type=int, default=2024, help="random seed of the scenes (default: %(default)s)")
    p.add_argument("--post", dest="post_kinds", type=lambda s: tuple(k for k in s.split(",") if k != "none"),
                   default=("closed-form",), metavar="KINDS",
                   help="post-matting backends to add as '<mode> + <post>' rows (default: closed-form; 'none': no rows)")
    p.add_argument("--post-band", type=int, default=3, metavar="PX", help="widen the unknown band (default: 3 px)")
    p.add_argument("--vitmatte", metavar="DIR", help="local ViTMatte weights, to add ViTMatte rows (default: none)")
    p.add_argument("--no-ablations", action="store_true", help="leave out DART's ablation and distillation rows (default: in)")
    _network_options(p)
    p.set_defaults(run=cmd_bench_accuracy)

    p = sub.add_parser("photo", help="matte a photo against a hand-held plate of the empty scene (no depth)")
    p.add_argument("image", help="photo with the subject (PNG or JPEG)")
    p.add_argument("plate", help="photo of the same scene without the subject, taken from the same spot")
    p.add_argument("--out", required=True, metavar="PNG", help="contact sheet to write")
    p.add_argument("--width", type=positive_int, default=960, help="width the photos are scaled to (default: %(default)s)")
    engine_options(p)
    p.set_defaults(run=cmd_photo, mode="rgb", no_edge_refine=True)  # a check of the networks alone

    p = sub.add_parser("bench-speed", help="median milliseconds of every live-path stage (DART) and of the MediaPipe peer")
    _frame_size(p)
    p.add_argument("--frames", type=positive_int, default=100, help="frames timed per row (default: %(default)s)")
    p.add_argument("--recording", default=str(DEMO_RECORDING), help="recording whose subject frames are timed (default: the demo)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = TensorRT > CUDA > CPU (default: auto)")
    p.add_argument("--precision", choices=("auto", "float", "int8"), default="auto",
                   help="network files; auto = INT8 on the CPU when made from the float files (default: auto)")
    p.add_argument("--threads", type=positive_int, default=2, help="onnxruntime threads per network (default: 2)")
    p.add_argument("--peer", default=str(REPO_ROOT.parent / "shared" / "weights" / "mediapipe_selfie_segmentation"),
                   help="MediaPipe selfie segmentation folder for the peer row (default: ../shared/weights/...)")
    p.add_argument("--budget-ms", type=non_negative, default=LIVE_PATCH_BUDGET_MS, help="adapt the refined patches "
                   "(at most --patches) to this many ms of dart a frame (default: %(default)s, the window's; 0: off)")
    p.add_argument("--quantize-to", metavar="DIR", help="write INT8 networks made from --models to DIR and stop (default: none)")
    _network_options(p)
    p.set_defaults(run=cmd_bench_speed)

    p = sub.add_parser("bench-batch", help="frames/s of process over many recordings: 1..N workers, local Ray; memory")
    add_bench_batch_arguments(p)
    engine_options(p)
    p.set_defaults(run=cmd_bench_batch)

    p = sub.add_parser("gui", help="open the desktop app (default when a display is available)")
    p.add_argument("--source", help="camera URI or recording path (default: the last that opened, else the demo)")
    background_metavar, background_help = background_choices()
    p.add_argument("--background", metavar=background_metavar,
                   help=f"replacement background: {background_help} (default: the last used; first run: blur)")
    p.add_argument("--mode", choices=MODES, default=None, help=f"matting engine (default: the last used; first run: {DEFAULT_MODE})")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="keep settings and backgrounds in DIR (new DIR: default settings; default: the usual places)")
    p.add_argument("--snapshot", metavar="PNG", help="save a screenshot of the window after --quit-after frames (default: none)")
    p.add_argument("--quit-after", type=positive_int, metavar="N", help="quit after N frames (default: never; 30 with --snapshot)")
    p.add_argument("--virtual-camera", action="store_true", help="start streaming to the virtual webcam (default: off)")
    p.set_defaults(run=cmd_gui)

    p = sub.add_parser("train", help="train the networks (see assets/MODEL_CARD.md), or adapt them to a scene")
    p.add_argument("--out", required=True, help="output folder for checkpoints, logs and ONNX files")
    p.add_argument("--budget-minutes", type=positive_float, default=None,
                   help="total time for all stages (default: 68; with --scene or --take: 4.5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device; auto: cuda when torch sees a GPU (default: auto)")
    p.add_argument("--scene", metavar="RECORDING", help="adapt the shipped networks to this recording: its frames "
                   "after the empty-scene frames are the take (default: none, train from scratch)")
    p.add_argument("--scene-method", choices=("teacher", "synthetic"), default="teacher",
                   help="teacher: the offline path (DART + edge + closed-form) labels the take; synthetic: synthetic "
                        "people over the recording's background (default: %(default)s)")
    p.add_argument("--take", metavar="FILE.npz", help="adapt to a take saved by the app (default: none)")
    p.add_argument("--prior", metavar="FILE.npz", help="with --take: its captured background (default: none)")
    p.add_argument("--take-frames", type=positive_int, help="teacher: frames of the take (default: all the rest)")
    p.add_argument("--size", type=lambda s: tuple(positive_int(v) for v in s.split("x")), metavar="WxH",
                   help="teacher: training size (default: 320x240)")
    p.add_argument("--generic-samples", type=positive_int, help="teacher: generic samples mixed in (default: 160)")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads (default: %(default)s)")
    p.add_argument("--models", default=str(REPO_ROOT / "assets" / "models"), help="folder of the student to fine-tune from (default: assets/models)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("bench-adapt", help="scene adaptation: adapted vs generic DART, teacher, default mode")
    p.add_argument("--suite", choices=("synthetic", "semi-real"), default="synthetic",
                   help="synthetic (generator) or semi-real (needs ../shared/data) (default: %(default)s)")
    p.add_argument("--scenes", type=positive_int, default=3, help="scenes (default: %(default)s)")
    p.add_argument("--take-frames", type=positive_int, default=40, help="take frames per scene (default: %(default)s)")
    p.add_argument("--test-frames", type=positive_int, default=10, help="scored frames per scene (default: %(default)s)")
    p.add_argument("--seed", type=int, default=2024, help="random seed of the scenes (default: %(default)s)")
    p.add_argument("--rescore", action="store_true", help="score the adapted models in --out again (default: off)")
    p.add_argument("--budget-minutes", type=positive_float, default=4.5, help="adaptation budget (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads (default: %(default)s)")
    p.add_argument("--generic-cache", metavar="FILE.npz", help="reuse generic samples across scenes (default: none)")
    p.add_argument("--scene-fraction", type=unit, default=0.5, help="share of take samples per batch (default: 0.5)")
    p.add_argument("--generic-tolerance", type=unit, default=0.1, help="allowed growth of the generic error (default: 0.1)")
    p.add_argument("--refiner-share", type=unit, default=0.0, help="training time for the refiner (default: 0)")
    p.add_argument("--models", default=str(REPO_ROOT / "assets" / "models"), help="generic networks (default: assets/models)")
    p.add_argument("--out", default=str(DEFAULT_OUT / "bench_adapt"), help="work folder, resumable (default: out/bench_adapt)")
    p.set_defaults(run=cmd_bench_adapt)

    p = sub.add_parser("devices", help="list connected RealSense and Orbbec cameras")
    p.set_defaults(run=cmd_devices)

    p = sub.add_parser("doctor", help="check cameras, udev, virtual webcam, GPU, display, disk; exit 1 if essentials fail")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder whose free space to check (default: out)")
    p.set_defaults(run=cmd_doctor)

    p = sub.add_parser("soak", help="run the live window for a long time, exercising it; fail on errors, hangs, growth")
    p.add_argument("--minutes", type=positive_float, default=60.0, help="length of the run (default: 60)")
    p.add_argument("--source", default=str(DEMO_RECORDING), help="recording or camera URI (default: the demo)")
    p.add_argument("--out", default=str(DEFAULT_OUT / "soak"), help="folder for soak.csv and soak.png (default: out/soak)")
    p.add_argument("--every", type=positive_float, default=30.0, metavar="SECONDS",
                   help="seconds between user actions (default: 30)")
    p.add_argument("--sample-every", type=positive_float, default=10.0, metavar="SECONDS",
                   help="seconds between samples (default: 10)")
    p.add_argument("--warmup", type=positive_float, default=None, metavar="SECONDS",
                   help="minimum warm-up before growth is judged (default: 60; also >= 20%% of the run and one cycle)")
    p.add_argument("--malloc-arenas", type=int, default=2, metavar="N",
                   help="glibc malloc arenas the app may use (0: glibc's default, to compare; default: %(default)s)")
    p.set_defaults(run=cmd_soak)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; Ctrl-C exits 130, SIGTERM 143, each with one sentence and no traceback."""
    import threading
    from sensors.errors import UserError

    class Terminated(KeyboardInterrupt):
        pass

    def on_sigterm(signum, frame):
        raise Terminated()

    args, handlers = None, threading.current_thread() is threading.main_thread()  # signals: main thread only
    previous = ((signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, on_sigterm))
                if handlers else None)
    try:
        args = build_parser().parse_args(argv)
        window = args.run in (cmd_gui, cmd_soak) or (args.run is cmd_demo and has_display())
        if handlers and window:
            signal.signal(signal.SIGTERM, previous[1] or signal.SIG_DFL)  # the Qt window: default (quits at once)
        from app.native_log import configure_logging, native_messages_to

        configure_logging(args.debug, args.log)
        if args.debug or window:  # a window's native messages are Qt's own, routed to logging
            return args.run(args)
        with native_messages_to(args.log):
            return args.run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as stop:
        for signum in (signal.SIGINT, signal.SIGTERM) if handlers else ():  # a second one while saying goodbye
            signal.signal(signum, signal.SIG_IGN)
        why = "Terminated (SIGTERM)" if isinstance(stop, Terminated) else "Interrupted"
        print(f"\n{why}; results written so far are kept.", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except Exception as error:  # last resort: one sentence, never a traceback, unless --debug
        if args is None or args.debug:
            raise
        print(f"error: unexpected {type(error).__name__}: {error} (run again with --debug for details).", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            for signum, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)


if __name__ == "__main__":
    sys.exit(main())
