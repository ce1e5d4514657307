"""ViTMatte (Yao et al., 2024) as a post-matting backend, through Hugging Face `transformers`.

Owns `ViTMatteBackend` and the checks on a weights folder. Weights are only ever read from disk
(`local_files_only=True`, and HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE default to 1 before transformers
is imported): the app never downloads. A weights folder is either
- a plain folder with config.json, the weights (model.safetensors or pytorch_model.bin, or a sharded
  index with its shards) and optionally preprocessor_config.json (missing: ViTMatte's defaults), e.g.
  from `hf download hustvl/vitmatte-small-composition-1k --local-dir DIR`; or
- a Hugging Face cache entry: a `models--OWNER--NAME` folder (its refs/main snapshot is used), or the
  hub cache folder itself (e.g. ~/.cache/huggingface/hub) holding exactly one ViTMatte model.

Inference runs on CUDA when available (else CPU), on the trimap's unknown-region bounding box plus
a context margin, grown to multiples of 32 (ViTMatte's padding unit) where the frame allows.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from engines.matting.post_inputs import UNKNOWN, check_inputs, known_alpha, unknown_box
from sensors.errors import UserError

log = logging.getLogger(__name__)

HUB_REPO = "hustvl/vitmatte-small-composition-1k"
SIZE_MULTIPLE = 32
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def missing_weights_message(path: Path | str | None, problem: str = "has no ViTMatte weights") -> str:
    """One sentence telling the user where to get ViTMatte weights and how to pass them."""
    where = f"'{path}' {problem}" if path is not None else "ViTMatte post-matting needs local weights"
    return (f"{where}: download {HUB_REPO} with `hf download {HUB_REPO} --local-dir DIR` on a machine with "
            f"internet and pass --vitmatte DIR.")


def _snapshot(repo_cache: Path) -> Path | None:
    """The snapshot folder of a `models--OWNER--NAME` cache entry: refs/main's, else the newest one."""
    ref = repo_cache / "refs" / "main"
    if ref.is_file():
        candidate = repo_cache / "snapshots" / ref.read_text().strip()
        if candidate.is_dir():
            return candidate
    folder = repo_cache / "snapshots"
    snapshots = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return max(snapshots, key=lambda p: p.stat().st_mtime) if snapshots else None


def resolve_weights_dir(path: Path | str) -> Path:
    """The folder holding config.json for `path` (plain folder, cache entry or hub cache); UserError if none."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(missing_weights_message(path, "is not a folder"), 2)
    if (path / "config.json").is_file():
        return path
    if (path / "snapshots").is_dir():
        snapshot = _snapshot(path)
        if snapshot is not None:
            return snapshot
    entries = sorted(p for p in path.glob("models--*") if p.is_dir() and "vitmatte" in p.name.lower())
    preferred = [p for p in entries if p.name == "models--" + HUB_REPO.replace("/", "--")]
    if len(preferred) == 1 or len(entries) == 1:
        snapshot = _snapshot((preferred or entries)[0])
        if snapshot is not None:
            return snapshot
    if len(entries) > 1:
        names = ", ".join(p.name for p in entries)
        raise UserError(f"'{path}' holds several ViTMatte models ({names}): pass the folder of the one to use.", 2)
    raise UserError(missing_weights_message(path), 2)


def check_weights_dir(path: Path | str) -> Path:
    """Resolve `path` and check it holds a complete ViTMatte checkpoint; returns the folder. UserError if not."""
    folder = resolve_weights_dir(path)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise UserError(missing_weights_message(path, "has an unreadable config.json"), 2) from None
    if config.get("model_type") != "vitmatte":
        raise UserError(missing_weights_message(path, f"holds a '{config.get('model_type')}' model, not ViTMatte"), 2)
    if any((folder / name).is_file() for name in _WEIGHT_FILES):
        return folder
    for name in _INDEX_FILES:
        index = folder / name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError):
                raise UserError(missing_weights_message(path, f"has an unreadable {name}"), 2) from None
            missing = sorted(s for s in shards if not (folder / s).is_file())
            if missing:
                raise UserError(missing_weights_message(path, f"lacks the weight file(s) {', '.join(missing)}"), 2)
            return folder
    raise UserError(missing_weights_message(path, "has config.json but no weight file"), 2)


def _processor_class():
    """transformers' ViTMatte image processor: the torchvision one when installed, else the numpy/PIL one."""
    import transformers

    try:
        import torchvision  # noqa: F401

        return transformers.VitMatteImageProcessor
    except ImportError:
        return getattr(transformers, "VitMatteImageProcessorPil", transformers.VitMatteImageProcessor)


class ViTMatteBackend:
    """ViTMatte on the trimap's unknown region.

    weights_dir: local weights (see the module docstring). device: torch device string (None: "cuda"
    when available, else "cpu"). margin_px: context around the unknown region's bounding box.
    Raises UserError when the weights are missing, incomplete or unloadable, or the device is invalid.
    """

    name = "vitmatte"

    def __init__(self, weights_dir: Path, device: str | None = None, margin_px: int = 32) -> None:
        folder = check_weights_dir(weights_dir)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import VitMatteForImageMatting
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            auto = "cuda" if torch.cuda.is_available() else "cpu"
            self.device = torch.device(device if device is not None else auto)
        except RuntimeError:
            raise UserError(f"Unknown torch device '{device}': use e.g. cpu or cuda.", 2) from None
        processor_class = _processor_class()
        try:
            self.model = VitMatteForImageMatting.from_pretrained(str(folder), local_files_only=True)
            if (folder / "preprocessor_config.json").is_file():
                self.processor = processor_class.from_pretrained(str(folder), local_files_only=True)
            else:
                self.processor = processor_class()
        except Exception as exc:  # noqa: BLE001 - any failure to read a checkpoint (safetensors, torch, json)
            log.debug("loading ViTMatte from %s failed", folder, exc_info=True)
            raise UserError(missing_weights_message(weights_dir, f"could not be loaded ({type(exc).__name__})"),
                            1) from None
        try:
            self.model.to(self.device).eval()
        except (RuntimeError, AssertionError) as exc:  # e.g. "cuda" on a machine without a usable GPU
            raise UserError(f"ViTMatte cannot run on '{self.device}' ({exc}): choose another device, e.g. cpu.",
                            2) from None
        self.margin_px = int(margin_px)
        self._torch = torch
        log.info("ViTMatte loaded from %s on %s", folder, self.device)

    def refine(self, image_rgb: np.ndarray, alpha: np.ndarray, depth_m: np.ndarray,
               trimap: np.ndarray) -> np.ndarray:
        """Alpha (float32 HxW in [0, 1]): trimap where known, ViTMatte's where 0.5. alpha/depth_m unused."""
        check_inputs(image_rgb, alpha, trimap)
        trimap = np.asarray(trimap, np.float32)
        out = known_alpha(trimap)
        box = unknown_box(trimap, margin_px=self.margin_px, multiple=SIZE_MULTIPLE)
        if box is None:
            return out
        t = trimap[box]
        trimap_u8 = np.where(t == 1.0, 255, np.where(t == 0.0, 0, 128)).astype(np.uint8)
        inputs = self.processor(images=np.ascontiguousarray(image_rgb[box]), trimaps=trimap_u8,
                                input_data_format="channels_last", return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        h, w = t.shape
        with self._torch.inference_mode():
            predicted = self.model(pixel_values=pixels).alphas[0, 0, :h, :w]
            predicted = predicted.float().clamp(0.0, 1.0).cpu().numpy()
        unknown = t == np.float32(UNKNOWN)
        out[box][unknown] = predicted[unknown]
        return out
