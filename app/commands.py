"""The product's commands behind `main.py`: `process` (headless matting of a recording, or of many
through `app/many_inputs.py`), `gui`, `soak`, `devices` and `doctor`, plus the engine configuration
every matting command builds from its options.

Each takes the parsed `argparse.Namespace` and returns an exit code; `main.py` owns the parser and the
error handling (one sentence, exit code 2 for usage and 1 for runtime problems). The developer tools
(`synth`, `bench-*`, `photo`, `train`, `eval`) stay in `main.py`, as they reach the generator,
training and evaluation code that the run-time path never imports (`.importlinter`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.cli_args import runtime_error, usage_error


def engine_config(args: argparse.Namespace):
    from engines.config import EngineConfig

    return EngineConfig(
        mode=args.mode,
        depth=depth_config(args),
        refine_patches=args.patches,
        max_subject_distance_m=args.max_distance,
        temporal_smoothing=args.smoothing,
        post=args.post,
        post_band_px=args.post_band,
        vitmatte_dir=args.vitmatte,
        refiner=not args.no_refiner,
        error_map_correction=not args.no_error_map_correction,
        depth_refiner=not args.no_depth_refiner,
        edge_refine=not args.no_edge_refine,
        **({"model_dir": args.models} if args.models else {}),
    )


def depth_config(args: argparse.Namespace):
    from engines.config import DepthConfig

    return DepthConfig() if args.beta is None else DepthConfig(beta=args.beta)


def cmd_process(args: argparse.Namespace) -> int:
    """One recording into --out (as always), or many (several inputs, a glob, --list) into --out/<name>/."""
    from engines.batch import FRAMES_CSV, ProcessOptions, process_recording
    from app.many_inputs import is_many, run_many

    if not 0 <= args.post_band <= 256:  # the band's kernel grows with its square: bound it before allocating
        raise usage_error(f"--post-band must be from 0 to 256 pixels, not {args.post_band}.")
    options = ProcessOptions(
        save=args.save,
        replace=args.replace,
        background_frames=args.background_frames,
        background_path=args.background,
        prior_path=args.prior,
        save_prior_path=args.save_prior,
        accept_background=args.accept_background,
        resume=args.resume,
    )
    if is_many(args.input, args.list) or args.ray:
        return run_many(args, engine_config(args), options)
    (input_path,) = args.input
    out_dir = Path(args.out)
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def on_progress(stage: str, done: int, total: int | None) -> None:
        bar = bars.get(stage)
        if bar is None:  # drawn on a terminal only (disable=None), so logs and pipes get just the summary
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="frame", file=sys.stderr, disable=None)
        bar.update(done - bar.n)

    try:
        summary = process_recording(input_path, out_dir, engine_config(args), options, on_progress)
    finally:
        for bar in bars.values():
            bar.close()
    if summary.already_complete:
        print(f"'{input_path}' is already complete in {out_dir}/ ({summary.resumed} frames, same settings): "
              "nothing to do (leave out --resume to process it again).")
        return 0
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    gaps = f"; {summary.describe_gaps()}" if summary.gaps else ""
    kept = f"; {summary.resumed} frames kept from an earlier run" if summary.resumed else ""
    print(f"Processed {summary.frames} frames of '{input_path}' in {summary.seconds:.1f} s "
          f"(mode {args.mode}, background from {summary.background_description}{gaps}{kept}).")
    for kind in summary.saved:
        implied = "  (--replace implies it)" if kind == "composite" and options.implied_composite else ""
        print(f"  {kind:<11} {out_dir / kind}/{implied}")
    print(f"  {'frames':<11} {out_dir / FRAMES_CSV}")
    if summary.stage_ms_median:
        print("Median milliseconds per frame by stage:")
    for stage, ms in summary.stage_ms_median.items():
        print(f"  {stage:<14} {ms:7.2f}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from sensors.devices import list_devices, sdk_status

    for sdk, status in sdk_status().items():
        print(f"{sdk}: {status}")
    devices = list_devices()
    if not devices:
        print("No camera found: connect a RealSense or Orbbec camera to a USB 3 port, or give a recording path.")
        return 0
    for device in devices:
        print(f"{device.sdk}://{device.serial}  {device.model}  firmware {device.firmware}  USB {device.usb}")
        for mode in device.modes:
            print(f"    {mode}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from app.doctor import doctor_report
    lines, code = doctor_report(Path(args.out))
    print("\n".join(lines))
    return code


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and \
        os.environ.get("QT_QPA_PLATFORM") != "offscreen"


def cmd_gui(args: argparse.Namespace) -> int:
    from app.launch import GuiOptions, run_gui

    options = GuiOptions(source=args.source, background=args.background, mode=args.mode,
                         snapshot=Path(args.snapshot) if args.snapshot else None, data_dir=getattr(args, "data_dir", None),
                         quit_after_frames=args.quit_after, virtual_camera=args.virtual_camera)
    return run_gui(options)


def cmd_soak(args: argparse.Namespace) -> int:
    """The real window on a looping recording for --minutes, exercised and measured; exit 1 on a failed verdict."""
    from app.soak import SoakOptions, SoakSetupError, format_summary, run_soak
    from app.soak_samples import Limits

    if "://" not in args.source and not Path(args.source).exists():
        raise usage_error(f"'{args.source}' does not exist: give a recording folder or a camera URI with --source.")
    limits = Limits() if args.warmup is None else Limits(min_warmup_s=args.warmup)
    options = SoakOptions(source=args.source, minutes=args.minutes, out_dir=Path(args.out),
                          action_every_s=args.every, sample_every_s=args.sample_every,
                          settle_s=min(10.0, args.sample_every), limits=limits, malloc_arenas=args.malloc_arenas)
    try:
        result = run_soak(options)
    except SoakSetupError as error:
        raise runtime_error(str(error)) from None
    print(format_summary(result), flush=True)
    return result.exit_code


def training_log(stream=None):
    """The `on_log(event)` of `main.py train`. Not a terminal (the app's adaptation worker reads the
    child's stdout): one JSON object per line. A terminal: a tqdm bar for progress events
    ({"event": "progress", "phase", "fraction" in [0, 1], "eta_s"}), other events as one short line."""
    import json
    import shutil

    from tqdm import tqdm

    stream = stream or sys.stdout
    if not stream.isatty():
        return lambda event: print(json.dumps(event), file=stream, flush=True)
    bar: dict = {}

    def on_log(event: dict) -> None:
        if event.get("event") == "progress" and "fraction" in event:
            if "bar" not in bar:
                columns = shutil.get_terminal_size().columns  # 0 on a terminal that reports no width
                bar["bar"] = tqdm(total=100, file=stream, unit="%", ncols=columns if columns > 0 else 80,
                                  bar_format="{desc} {bar} {n_fmt}%{postfix}")
            shown = bar["bar"]
            shown.set_description_str(str(event.get("phase", "")))
            shown.set_postfix_str(f"about {event.get('eta_s', 0):.0f} s left", refresh=False)
            shown.update(round(100 * float(event["fraction"])) - shown.n)
            if event["fraction"] >= 1.0:
                shown.close()
                bar.clear()
            return
        if "bar" in bar:
            bar.pop("bar").close()
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in event.items()),
              file=stream, flush=True)

    return on_log
