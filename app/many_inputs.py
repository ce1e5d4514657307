"""`main.py process` over many inputs: which recordings (paths, globs, a --list file), the output
folder of each (`OUT/<name>/`), the progress bar over all of them and the report at the end.

A list file has one recording a line, optionally followed by that recording's own background
options; paths in it are relative to the list file's folder, '#' starts a comment:

    cam01/take1.bag   --background cam01/empty.bag
    cam02/take1       --background-frames 20
    "cam 03/take1"    --prior cam03.npz

Names come from the last path component (without .bag/.db3/.mkv); inputs whose names clash get their
parent folders' names in front (`cam01-take1`, `cam02-take1`). The jobs run through
`engines.batch_many.run_jobs` (or `engines.batch_ray.run_on_ray` with --ray); one input's failure is
reported at the end and makes the exit code 1 without stopping the others.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from app.cli_args import positive_int, usage_error

GLOB_CHARS = frozenset("*?[")
RECORDING_SUFFIXES = (".bag", ".db3", ".mkv")
LINE_OPTIONS = ("background", "background_frames", "prior", "save_prior")


@dataclass(frozen=True)
class InputSpec:
    """One input of a batch and the background options its list-file line gave (None: the command's)."""

    path: str
    background: str | None = None
    background_frames: int | None = None
    prior: str | None = None
    save_prior: str | None = None
    where: str = ""  # "'inputs.txt' line 3" for messages; "" for the command line


def is_many(inputs: list[str], list_file: str | None) -> bool:
    """True when `process` writes one folder per input: several inputs, a glob or a --list file."""
    return list_file is not None or len(inputs) != 1 or _is_glob(inputs[0])


def _is_glob(text: str) -> bool:
    return bool(GLOB_CHARS & set(text)) and "://" not in text and not Path(text).exists()


class _LineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D102
        raise usage_error(f"{self.prog}: {message}.")


def _line_parser(where: str) -> argparse.ArgumentParser:
    p = _LineParser(prog=where, add_help=False)
    p.add_argument("path")
    p.add_argument("--background")
    p.add_argument("--background-frames", type=positive_int)
    p.add_argument("--prior")
    p.add_argument("--save-prior")
    return p


def read_list_file(list_file: str) -> list[InputSpec]:
    """The inputs a list file names (module docstring); UserError (exit 2) for an unreadable file or line."""
    path = Path(list_file)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise usage_error(f"Cannot read the list file '{list_file}' ({getattr(error, 'strerror', None) or error}): "
                          "give a text file with one recording a line.") from None
    folder, specs = path.parent, []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"'{list_file}' line {number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as error:
            raise usage_error(f"{where}: {error}.") from None
        if not words:
            continue
        parsed = _line_parser(where).parse_args(words)
        values = {k: getattr(parsed, k) for k in LINE_OPTIONS}
        for key in ("background", "prior", "save_prior"):
            values[key] = _relative_to(folder, values[key])
        specs.append(InputSpec(path=_relative_to(folder, parsed.path), where=where, **values))
    if not specs:
        raise usage_error(f"The list file '{list_file}' names no recording: write one recording path a line.")
    return specs


def _relative_to(folder: Path, path: str | None) -> str | None:
    if path is None or "://" in path or Path(path).is_absolute():
        return path
    return str(folder / path)


def collect_inputs(inputs: list[str], list_file: str | None) -> list[InputSpec]:
    """Command-line inputs (globs expanded, sorted) then the list file's; UserError (exit 2) for a glob
    that matches nothing, a missing path, a live camera or an input given twice."""
    specs: list[InputSpec] = []
    for text in inputs:
        if _is_glob(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise usage_error(f"'{text}' matches no file or folder: check the pattern.")
            specs += [InputSpec(m) for m in matches]
        else:
            specs.append(InputSpec(text))
    if list_file is not None:
        specs += read_list_file(list_file)
    if not specs:
        raise usage_error("Give at least one recording (paths, a quoted glob, or --list FILE).")
    seen: dict[str, InputSpec] = {}
    for spec in specs:
        at = f" ({spec.where})" if spec.where else ""
        local = _local_path(spec.path)
        if local is None:
            raise usage_error(f"'{spec.path}'{at} is a live camera: batch processing takes recordings; "
                              "record first, then process the recording.")
        for given in (local, spec.background, spec.prior):
            if given is not None and not Path(_local_path(given) or given).exists():
                raise usage_error(f"'{given}'{at} does not exist: check the path.")
        key = str(Path(local).resolve())
        if key in seen:
            raise usage_error(f"'{spec.path}'{at} is given twice: each recording once, please.")
        seen[key] = spec
    return specs


def _local_path(path: str) -> str | None:
    """The file behind an input (orbbec:///x.bag -> /x.bag); None for a live camera URI."""
    if "://" not in path:
        return path
    rest = path.split("://", 1)[1]
    return rest if rest.startswith("/") else None


def output_names(paths: list[str]) -> list[str]:
    """One folder name per input path, unique (module docstring); inputs must be distinct paths."""
    parts = [Path(_local_path(p) or p).resolve().parts for p in paths]

    def name(index: int, parents: int, full: bool) -> str:
        *folders, last = parts[index]
        if not full and last.lower().endswith(RECORDING_SUFFIXES):
            last = last.rsplit(".", 1)[0]
        return "-".join([*folders[len(folders) - parents:], last] if parents else [last])

    names = [name(i, 0, False) for i in range(len(paths))]
    for full in (False, True):
        for parents in range(0, max(len(p) for p in parts)):
            clashing = {n for n in names if names.count(n) > 1}
            if not clashing:
                return names
            names = [name(i, parents, full) if n in clashing else n for i, n in enumerate(names)]
    return names


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """`process`'s options for many inputs, workers, Ray and resume (main.py's parser)."""
    p.add_argument("--list", metavar="FILE", help="a text file of recordings, one a line, each optionally with its "
                   "own --background/--background-frames/--prior/--save-prior (default: none)")
    p.add_argument("--workers", type=positive_int, metavar="N", help="recordings matted at the same time "
                   f"(default: one per core here, {cpu_cores()}; with --ray: the cluster's CPUs)")
    p.add_argument("--ray", metavar="ADDRESS", help="run one Ray task per recording: auto (a running cluster, else a "
                   "local one), local, HOST:6379 or ray://HOST:10001 (default: off, this machine's processes)")
    p.add_argument("--resume", action="store_true", help="keep what an earlier run with the same settings wrote: "
                   "skip complete inputs and frames already in frames.csv (default: off, redo everything)")


def add_bench_batch_arguments(p: argparse.ArgumentParser) -> None:
    """`bench-batch`'s options (main.py's parser; the engine options are added there)."""
    p.add_argument("--inputs", type=positive_int, default=8, help="recordings in each timed batch (default: %(default)s)")
    p.add_argument("--recordings", type=positive_int, default=2,
                   help="distinct generated recordings, taken in turn (default: %(default)s)")
    p.add_argument("--frames", type=positive_int, default=30, help="test frames per recording (default: %(default)s)")
    p.add_argument("--width", type=positive_int, default=640, help="frame width (default: %(default)s)")
    p.add_argument("--height", type=positive_int, default=480, help="frame height (default: %(default)s)")
    p.add_argument("--max-workers", type=positive_int, default=cpu_cores(),
                   help="time 1, 2, ... N workers (default: this machine's cores, %(default)s)")
    p.add_argument("--queued", type=positive_int, default=20,
                   help="recordings queued in the memory run, against 2 (default: %(default)s)")
    p.add_argument("--no-ray", action="store_true", help="leave out the local Ray runs (default: with Ray)")
    p.add_argument("--work", metavar="DIR", help="keep recordings and outputs in this new folder (default: a "
                   "temporary folder, removed afterwards)")


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_jobs(specs: list[InputSpec], out: Path, base_options, save_prior: str | None) -> list:
    """One `BatchJob` per input: `base_options` with the line's background options, into OUT/<name>/."""
    from engines.batch_many import BatchJob

    if save_prior is not None and len(specs) > 1:
        raise usage_error("--save-prior names one file: with several inputs give --save-prior per line of a --list file.")
    jobs = []
    for spec, name in zip(specs, output_names([s.path for s in specs])):
        changes = {"record_run": True}
        if spec.background is not None or spec.background_frames is not None or spec.prior is not None:
            changes.update(background_path=spec.background, background_frames=spec.background_frames,
                           prior_path=spec.prior)
        if spec.save_prior is not None or save_prior is not None:
            changes["save_prior_path"] = spec.save_prior or save_prior
        jobs.append(BatchJob(spec.path, out / name, replace(base_options, **changes)))
    return jobs


def run_many(args: argparse.Namespace, engine, base_options) -> int:
    """`process` over several inputs (module docstring); the exit code (1 if any input failed)."""
    from engines.batch_many import BatchConfig, Listeners, expected_frames, run_jobs

    specs = collect_inputs(args.input, args.list)
    jobs = build_jobs(specs, Path(args.out), base_options, args.save_prior)
    cores = cpu_cores()
    workers = args.workers if args.workers is not None else (0 if args.ray else cores)
    config = BatchConfig(workers=workers, threads_per_worker=1 if args.ray else max(cores // max(workers, 1), 1),
                         ray_address=args.ray)
    if args.ray:
        from engines.batch_ray import import_ray

        import_ray()  # a missing Ray is one sentence before the recordings are scanned
    progress = _Progress([expected_frames(job) for job in jobs], names=[j.out_dir.name for j in jobs])
    started = time.perf_counter()
    try:
        runner = run_jobs
        if args.ray:
            from engines.batch_ray import run_on_ray as runner
        outcomes = runner(jobs, engine, config, Listeners(progress.on_frames, progress.on_outcome))
    finally:
        progress.close()
    return _report(jobs, outcomes, time.perf_counter() - started, config, args)


class _Progress:
    """One tqdm bar over every input's frames (done / total, rate, ETA) and a line per finished input."""

    def __init__(self, totals: list[int | None], names: list[str]) -> None:
        from tqdm import tqdm

        self.totals, self.names = list(totals), names
        self.done = [0] * len(totals)
        self.finished = self.failed = 0
        self.bar = tqdm(total=sum(t or 0 for t in totals), desc=f"{len(totals)} inputs", unit="frame",
                        file=sys.stderr, disable=None, dynamic_ncols=True)

    def on_frames(self, job: int, done: int, total: int | None) -> None:
        if total is not None and total != self.totals[job]:
            self.totals[job] = total
            self.bar.total = sum(t or 0 for t in self.totals)
        self.done[job] = done
        self.bar.update(sum(self.done) - self.bar.n)

    def on_outcome(self, outcome) -> None:
        self.finished += 1
        self.failed += not outcome.ok
        name, count = self.names[outcome.job], f"[{self.finished}/{len(self.names)}]"
        if outcome.ok and outcome.summary.already_complete:
            line = f"{count} {name}: already complete ({outcome.summary.resumed} frames), skipped"
        elif outcome.ok:
            kept = f", {outcome.summary.resumed} kept from an earlier run" if outcome.summary.resumed else ""
            line = f"{count} {name}: {outcome.summary.frames} frames in {outcome.summary.seconds:.1f} s{kept}"
        else:
            line = f"{count} {name}: FAILED: {outcome.error}"
        self.bar.set_postfix_str(f"{self.finished}/{len(self.names)} inputs, {self.failed} failed")
        self.bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()


def _report(jobs, outcomes, seconds: float, config, args) -> int:
    failed = [o for o in outcomes if not o.ok]
    frames = sum(o.summary.frames for o in outcomes if o.ok)
    where = (f"Ray ({config.ray_address})" if config.ray_address else
             "this process" if config.workers <= 1 or len(jobs) <= 1 else f"{min(config.workers, len(jobs))} processes")
    for outcome in outcomes:
        for warning in outcome.summary.warnings if outcome.ok else ():
            print(f"warning: {jobs[outcome.job].out_dir.name}: {warning}", file=sys.stderr)
    print(f"Processed {len(jobs) - len(failed)} of {len(jobs)} inputs{f' ({len(failed)} failed)' if failed else ''}: "
          f"{frames} frames matted in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s, {where}, "
          f"mode {args.mode}).")
    print(f"  outputs     {Path(args.out)}/<name>/ ({', '.join(jobs[0].options.save)}, frames.csv, run.json)")
    for outcome in failed:
        print(f"error: {jobs[outcome.job].input_path}: {outcome.error}", file=sys.stderr)
        if args.debug and outcome.detail:
            print(outcome.detail, file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(jobs)} inputs failed (listed above); run the same command with --resume to "
              "finish them without redoing the others.", file=sys.stderr)
    return 1 if failed else 0
