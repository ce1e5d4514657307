"""Checkpoints of a training stage: model weights and Adam state as safetensors, progress as JSON.

Files of a stage called NAME in a folder:
    NAME.safetensors        the model's state_dict (`engines.nets.base_net.save_weights`, strict load)
    NAME.optim.safetensors  the optimizer's per-parameter tensors (exp_avg, exp_avg_sq, step)
    NAME.json               `StageLog`: step, elapsed seconds, done flag, config, loss history, metrics
Writes are atomic (temporary file + rename), so an interrupted run leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class StageLog:
    """Progress of one stage. history: one dict per logged step (step, time_s, loss terms)."""

    stage: str
    step: int = 0
    elapsed_s: float = 0.0
    done: bool = False
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "stage": self.stage,
            "step": self.step,
            "elapsed_s": round(self.elapsed_s, 2),
            "done": self.done,
            "config": self.config,
            "metrics": self.metrics,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, data: dict) -> StageLog:
        return cls(
            stage=data["stage"],
            step=int(data["step"]),
            elapsed_s=float(data["elapsed_s"]),
            done=bool(data["done"]),
            config=dict(data.get("config", {})),
            history=list(data.get("history", [])),
            metrics=dict(data.get("metrics", {})),
        )


def paths(folder: str | Path, name: str) -> tuple[Path, Path, Path]:
    """(weights, optimizer, log) paths of stage `name` in `folder`."""
    folder = Path(folder)
    return folder / f"{name}.safetensors", folder / f"{name}.optim.safetensors", folder / f"{name}.json"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat tensors named "<param index>.<key>"."""
    out = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(float(value))
            out[f"{index}.{key}"] = t.detach().cpu().contiguous()
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore the per-parameter state written by `optimizer_tensors` (hyper-parameters stay as built)."""
    state_dict = optimizer.state_dict()
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)


def save_checkpoint(folder: str | Path, name: str, module: nn.Module, optimizer: torch.optim.Optimizer | None,
                    stage_log: StageLog, metadata: dict[str, str] | None = None) -> Path:
    """Write the stage's weights, optimizer state (if given) and JSON log; returns the weights path."""
    from safetensors.torch import save_file

    from engines.nets.base_net import save_weights

    weights, optim, log_path = paths(folder, name)
    weights.parent.mkdir(parents=True, exist_ok=True)
    meta = {"stage": name, "step": str(stage_log.step), **(metadata or {})}
    _atomic(weights, lambda p: save_weights(module, p, meta))
    if optimizer is not None:
        tensors = optimizer_tensors(optimizer)
        _atomic(optim, lambda p: save_file(tensors, str(p)))
    _atomic(log_path, lambda p: p.write_text(json.dumps(stage_log.to_json(), indent=1)))
    return weights


def load_stage_log(folder: str | Path, name: str) -> StageLog | None:
    """The stage's JSON log, or None if there is none (a fresh stage)."""
    log_path = paths(folder, name)[2]
    if not log_path.is_file():
        return None
    return StageLog.from_json(json.loads(log_path.read_text()))


def resume(folder: str | Path, name: str, module: nn.Module, optimizer: torch.optim.Optimizer | None) -> StageLog | None:
    """Load a stage's weights (strict) and optimizer state into `module` / `optimizer`; None if no checkpoint."""
    from safetensors.torch import load_file

    from engines.nets.base_net import load_weights

    stage_log = load_stage_log(folder, name)
    weights, optim, _ = paths(folder, name)
    if stage_log is None or not weights.is_file():
        return None
    load_weights(module, weights)
    if optimizer is not None and optim.is_file():
        load_optimizer_tensors(optimizer, load_file(str(optim)))
    log.info("resumed stage %s at step %d (%.0f s done)", name, stage_log.step, stage_log.elapsed_s)
    return stage_log
