"""`main.py eval`: predicted alpha PNGs scored against a recording's ground-truth alpha.

Owns `evaluate_predictions` and `EvaluationReport` (mean and per-frame SAD/MSE/Grad/Conn, DART's
scaling, see `engines.evaluation.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engines.batch import frame_name, read_run_record
from engines.evaluation.metrics import METRIC_NAMES, evaluate, mean_metrics
from sensors.errors import UserError
from sensors.image_io import read_alpha
from sensors.source import open_source


@dataclass
class EvaluationReport:
    """frames: frames scored; missing: ground-truth frames without a prediction; unmatched: prediction
    files whose index has no ground truth in the recording."""

    frames: int
    metrics: dict[str, float]
    per_frame: dict[int, dict[str, float]]
    missing: int = 0
    unmatched: int = 0


def _check_made_from(input_path: str, pred_dir: Path) -> None:
    """UserError when `pred_dir`'s run.json (written by `process`) names another recording."""
    record = read_run_record(pred_dir)
    made_from = None if record is None else record["settings"].get("input")  # None: predictions from elsewhere
    if isinstance(made_from, str) and Path(made_from).resolve() != Path(input_path).resolve():
        raise UserError(f"The predictions in '{pred_dir}' were made from '{made_from}', not from '{input_path}': "
                        "score them against that recording, or process this one first.", 2)


def _prediction_path(pred_dir: Path, index: int) -> Path | None:
    for folder in (pred_dir / "alpha", pred_dir):
        path = folder / frame_name(index)
        if path.is_file():
            return path
    return None


def evaluate_predictions(input_path: str, pred_dir: Path) -> EvaluationReport:
    """Mean SAD/MSE/Grad/Conn (DART scaling) of predicted alpha PNGs against the recording's alpha/."""
    if not pred_dir.is_dir():
        raise UserError(f"Prediction folder '{pred_dir}' does not exist: run 'main.py process' first.", 2)
    _check_made_from(input_path, pred_dir)
    per_frame: dict[int, dict[str, float]] = {}
    truth: set[int] = set()
    with open_source(input_path) as source:
        background_frames = source.info.background_frames or 0
        for frame in source:
            if frame.index < background_frames or frame.alpha is None:
                continue
            truth.add(frame.index)
            path = _prediction_path(pred_dir, frame.index)
            if path is None:
                continue
            pred = read_alpha(path)
            if pred.shape != frame.alpha.shape:
                raise UserError(f"'{path}' is {pred.shape[1]}x{pred.shape[0]} but the recording is "
                                f"{frame.width}x{frame.height}: predictions must match the recording's size.")
            per_frame[frame.index] = evaluate(pred, frame.alpha)
    if not per_frame:
        raise UserError(
            f"No frame of '{input_path}' has both a ground-truth alpha and a prediction in '{pred_dir}': "
            "check the recording has an alpha/ folder and the predictions are named like 000030.png."
        )
    metrics = mean_metrics(per_frame.values())
    folder = pred_dir / "alpha" if (pred_dir / "alpha").is_dir() else pred_dir
    predicted = {int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit()}
    return EvaluationReport(frames=len(per_frame), metrics={k: metrics[k] for k in METRIC_NAMES}, per_frame=per_frame,
                            missing=len(truth - set(per_frame)), unmatched=len(predicted - truth))
