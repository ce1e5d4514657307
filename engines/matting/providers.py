"""onnxruntime execution providers and sessions for the networks (run time: no torch here).

Owns which device runs the networks and how a session is made:
- `available_providers` / `resolve_providers`: TensorRT > CUDA > CPU, limited to what this onnxruntime
  build offers; `device="cuda"` without a GPU provider raises `UserError` with one sentence;
- `SessionSettings` + `open_session`: thread counts, graph optimisation, thread spinning (off by
  default, so an idle network thread does not take a core from the GUI, decoding or compositing),
  denormals as zero; FP16 on GPUs (TensorRT's FP16 flag; on CUDA the float model converted to FP16 with
  float32 inputs and outputs); a missing or corrupt file raises `UserError`;
- `BoundSession`: `run(output_names, feed)` through onnxruntime IO binding (inputs bound from numpy,
  outputs copied back once), used on GPU providers so no per-run output allocation or extra copy is
  made; it runs unchanged on the CPU provider (tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensors.errors import UserError

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
DEVICES = ("auto", "cpu", "cuda")


def available_providers(preference: tuple[str, ...] = PROVIDER_PREFERENCE) -> list[str]:
    """The providers of `preference` that this onnxruntime build offers, in preference order (CPU fallback)."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in preference if p in have] or ["CPUExecutionProvider"]


def resolve_providers(device: str = "auto", offered: list[str] | None = None) -> list[str]:
    """Providers for `device`: "auto" = TensorRT > CUDA > CPU (those offered), "cpu", or "cuda" (GPU
    providers first, CPU as onnxruntime's fallback for unsupported nodes).

    offered: the providers this onnxruntime has (None: ask onnxruntime). An unknown device, or "cuda"
    when no GPU provider is offered, raises `UserError` (exit code 2).
    """
    if device not in DEVICES:
        raise UserError(f"Unknown device '{device}': choose one of {', '.join(DEVICES)}.", 2)
    if offered is None:
        import onnxruntime as ort

        offered = list(ort.get_available_providers())
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpus = [p for p in GPU_PROVIDERS if p in offered]
    if device == "cuda" and not gpus:
        raise UserError("No GPU provider in this onnxruntime (it offers " + ", ".join(offered)
                        + "): install onnxruntime-gpu on a machine with an NVIDIA GPU, or use --device cpu.", 2)
    return gpus + ["CPUExecutionProvider"]


def is_gpu(providers: list[str]) -> bool:
    """True when the first provider is a GPU one."""
    return bool(providers) and providers[0] in GPU_PROVIDERS


@dataclass(frozen=True)
class SessionSettings:
    """How a session runs.

    intra_op_threads: CPU threads per operator (None = onnxruntime's default, all cores).
    inter_op_threads: threads across independent operators (1: the networks are chains).
    spinning: let idle worker threads spin (faster hand-over, but a spinning thread holds a core the GUI,
        decoding or compositing need on a 2-core machine).
    optimization: graph optimisation level, "all" | "extended" | "basic" | "none".
    fp16: run in half precision on GPU providers (ignored on the CPU).
    io_binding: `BoundSession` runs through IO binding; None = on GPU providers only.
    dimensions: (name, size) of the model's symbolic input dimensions to fix (onnxruntime's free dimension
        overrides): the graph's shape computations then fold into constants once; a run with another size
        fails, so only for inputs of one size (the base network after `set_prior`).
    """

    intra_op_threads: int | None = 2
    inter_op_threads: int = 1
    spinning: bool = False
    optimization: str = "all"
    fp16: bool = True
    io_binding: bool | None = None
    dimensions: tuple[tuple[str, int], ...] = ()


def session_options(settings: SessionSettings):
    """An `onnxruntime.SessionOptions` for `settings`; `ValueError` for an unknown optimisation level."""
    import onnxruntime as ort

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    if settings.optimization not in levels:
        raise ValueError(f"unknown optimisation level {settings.optimization!r}; use one of {', '.join(levels)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[settings.optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if settings.spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if settings.intra_op_threads is not None:
        options.intra_op_num_threads = int(settings.intra_op_threads)
    options.inter_op_num_threads = int(settings.inter_op_threads)
    for name, size in settings.dimensions:
        options.add_free_dimension_override_by_name(name, int(size))
    return options


def provider_entries(providers: list[str], fp16: bool, cache_dir: Path | None = None) -> list:
    """`providers` as onnxruntime takes them, with options: TensorRT with FP16 and an engine cache."""
    entries: list = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            options = {"trt_fp16_enable": bool(fp16)}
            if cache_dir is not None:
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
            entries.append((name, options))
        else:
            entries.append(name)
    return entries


def fp16_model_bytes(path: Path) -> bytes:
    """The float32 model at `path` converted to float16 weights and activations, float32 inputs and outputs
    (onnxruntime's converter; for the CUDA provider)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(path))
    sizes = {name for n in model.graph.node if n.op_type == "Resize" for name in n.input[1:]}  # roi, scales
    keep = [n.name for n in model.graph.node if n.op_type == "Constant" and set(n.output) & sizes]
    model = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True,
                                     op_block_list=["Resize"], node_block_list=keep)
    return model.SerializeToString()


def describe_session(session) -> str:
    """One line per model input and output: name, shape, element type."""
    lines = [f"  in  {i.name} {i.shape} {i.type}" for i in session.get_inputs()]
    lines += [f"  out {o.name} {o.shape} {o.type}" for o in session.get_outputs()]
    return "\n".join(lines)


def open_session(path: str | Path, providers: list[str] | None = None, intra_op_threads: int | None = None,
                   settings: SessionSettings | None = None):
    """An onnxruntime InferenceSession for `path` on the preferred available providers.

    providers: explicit preference list (filtered to the available ones) or None for TensorRT > CUDA > CPU.
    intra_op_threads: CPU threads per operator; overrides `settings.intra_op_threads` when given.
    settings: threads, optimisation, spinning (off) and FP16 (GPU only); default `SessionSettings()` with
    onnxruntime's own thread count. A missing or unreadable model raises `UserError`.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Model file {path} does not exist; check the path or export the model first.")
    settings = settings or SessionSettings(intra_op_threads=None)
    if intra_op_threads is not None:
        settings = SessionSettings(**{**settings.__dict__, "intra_op_threads": intra_op_threads})
    chosen = available_providers(tuple(providers) if providers else PROVIDER_PREFERENCE)
    model: str | bytes = str(path)
    try:
        if settings.fp16 and chosen[0] == "CUDAExecutionProvider":
            model = fp16_model_bytes(path)
        entries = provider_entries(chosen, settings.fp16, path.parent / ".trt_cache")
        session = ort.InferenceSession(model, session_options(settings), providers=entries)
    except Exception as exc:  # onnxruntime raises InvalidProtobuf / Fail / InvalidGraph for a bad file
        raise UserError(f"Model file {path} is corrupt or not a valid ONNX model.") from exc
    return session


class BoundSession:
    """A session run through IO binding: `run(output_names, feed)` -> list of numpy arrays, like
    `InferenceSession.run`. Inputs are bound from C-contiguous numpy arrays (copied to the device by
    onnxruntime), outputs are bound to the device and copied back to numpy once.

    session: an onnxruntime InferenceSession; device: "cuda" or "cpu", where outputs are allocated.
    """

    def __init__(self, session, device: str = "cpu") -> None:
        self.session = session
        self.device = device

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def get_providers(self):
        return self.session.get_providers()

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        names = output_names or [o.name for o in self.session.get_outputs()]
        for name in names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def bind(session, settings: SessionSettings):
    """`session` wrapped in a `BoundSession` when IO binding is wanted (`settings.io_binding`, default: on
    GPU providers), else `session` itself."""
    providers = session.get_providers()
    wanted = is_gpu(providers) if settings.io_binding is None else settings.io_binding
    if not wanted:
        return session
    return BoundSession(session, "cuda" if is_gpu(providers) else "cpu")
