"""Static INT8 quantisation of the run-time networks (student and patch refiners) with onnxruntime.

Owns `record_feeds` (the inputs each network sees while `NetworkMatting` mattes calibration frames),
`quantize_model` (one float ONNX file -> `<name>_int8.onnx`, QDQ, per-channel weights, MinMax
calibration on those inputs) and `quantize_model_dir` (student, refiner_dart, refiner_rgb). Each INT8
file records the SHA-256 of the float file it was made from (`FLOAT_SHA256_KEY` in the model's metadata):
`engines.matting.dart_matting` uses an INT8 file only while it still matches its float model.

Calibration frames must come from the scene generator (`engines.evaluation.speed.generator_scenes`),
never from the evaluation data in ../shared. Development tool: not imported at run time.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engines.config import DepthConfig
from engines.matting.background_prior import BackgroundPriorBuilder
from engines.matting.dart_matting import INT8_SUFFIX, REFINER_FILES, STUDENT_FILE, FLOAT_SHA256_KEY, NetworkMatting

Feed = dict[str, np.ndarray]
Scene = Sequence[tuple[np.ndarray, np.ndarray]]  # (colour uint8 HxWx3 RGB, depth float32 HxW metres) per frame


@dataclass(frozen=True)
class QuantizeConfig:
    """per_channel: one weight scale per output channel; max_feeds: calibration inputs per network (the
    first ones recorded); background_frames: the first frames of each scene build its prior."""

    per_channel: bool = True
    max_feeds: int = 64
    background_frames: int = 10
    k: int = 700


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _Recorder:
    """Stands in for an onnxruntime session: keeps a copy of every feed, then runs the real session."""

    def __init__(self, session, feeds: list[Feed]) -> None:
        self.session, self.feeds = session, feeds

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, names, feed):
        self.feeds.append({key: np.array(value, copy=True) for key, value in feed.items()})
        return self.session.run(names, feed)


def record_feeds(model_dir: str | Path, scenes: Iterable[Scene], variant: str = "dart",
                 config: QuantizeConfig = QuantizeConfig(), depth: DepthConfig = DepthConfig()) -> tuple[list[Feed], list[Feed]]:
    """(student feeds, refiner feeds) recorded while the float networks of `variant` matte `scenes`.

    Each scene's first `config.background_frames` frames build its background prior; the rest are matted.
    Frames of one scene share a size (any size). Raises `ValueError` when a scene has no frame to matte.
    """
    student: list[Feed] = []
    refiner: list[Feed] = []
    for scene in scenes:
        frames = list(scene)
        if len(frames) <= config.background_frames:
            raise ValueError(f"a calibration scene needs more than {config.background_frames} frames")
        h, w = frames[0][0].shape[:2]
        builder = BackgroundPriorBuilder(h, w)
        for color, depth_m in frames[: config.background_frames]:
            builder.add(color, depth_m)
        matting = NetworkMatting(model_dir, variant=variant, config=depth, k=config.k, precision="float",
                                 providers=["CPUExecutionProvider"])
        matting.set_prior(builder.build(depth))
        onnx = matting._onnx
        onnx.prevent_oversampling = False  # the refiner sees k patches even where the error map is 0
        onnx.base = _Recorder(onnx.base, student)
        onnx.refiner = _Recorder(onnx.refiner, refiner)
        for color, depth_m in frames[config.background_frames:]:
            matting.process(color, depth_m)
    return student[: config.max_feeds], [f for f in refiner if len(next(iter(f.values())))][: config.max_feeds]


class _Reader:
    """`onnxruntime.quantization.CalibrationDataReader` over a list of feeds."""

    def __init__(self, feeds: list[Feed]) -> None:
        self._iter = iter(feeds)

    def get_next(self):
        return next(self._iter, None)


def quantize_model(float_path: str | Path, out_path: str | Path, feeds: list[Feed],
                   config: QuantizeConfig = QuantizeConfig()) -> Path:
    """Static INT8 copy of `float_path` at `out_path`: QDQ format, int8 per-channel weights, uint8
    activations with MinMax ranges over `feeds`; the float file's SHA-256 goes into its metadata.

    Raises `ValueError` without feeds.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not feeds:
        raise ValueError(f"no calibration inputs for {float_path}")
    float_path, out_path = Path(float_path), Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantized = Path(tmp) / "int8.onnx"
        logging.disable(logging.WARNING)  # onnxruntime warns on the root logger for every integer shape tensor
        try:
            quantize_static(str(prepared), str(quantized), _Reader(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=config.per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        finally:
            logging.disable(logging.NOTSET)
        model = onnx.load(str(quantized))
    onnx.helper.set_model_props(model, {FLOAT_SHA256_KEY: file_sha256(float_path), "quantized_from": float_path.name})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    onnx.save(model, str(partial))
    partial.replace(out_path)
    return out_path


def int8_name(float_name: str) -> str:
    """"student.onnx" -> "student_int8.onnx"."""
    return float_name[: -len(".onnx")] + INT8_SUFFIX


def quantize_model_dir(model_dir: str | Path, out_dir: str | Path, scenes: Sequence[Scene],
                       config: QuantizeConfig = QuantizeConfig()) -> list[Path]:
    """INT8 copies of student.onnx, refiner_dart.onnx and refiner_rgb.onnx of `model_dir` in `out_dir`,
    calibrated on `scenes` (the student on the DART run's inputs). Returns the written paths."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    written = []
    for variant in ("dart", "rgb"):
        student_feeds, refiner_feeds = record_feeds(model_dir, scenes, variant, config)
        if variant == "dart":
            written.append(quantize_model(model_dir / STUDENT_FILE, out_dir / int8_name(STUDENT_FILE),
                                          student_feeds, config))
        name = REFINER_FILES[variant]
        written.append(quantize_model(model_dir / name, out_dir / int8_name(name), refiner_feeds, config))
    return written
