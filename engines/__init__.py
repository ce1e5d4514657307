"""Matting engine: everything between a `sensors.frame.Frame` and an alpha matte or composite.

Sub-packages, from the run-time core outwards (each may import only those listed before it, plus
`engines.config` and `sensors`; checked by import-linter, see `.importlinter`):
- `config`: the dataclasses that configure the engine (built by `main.py` / the app).
- `matting`: the run-time stages a frame passes through (prior, Bayesian depth stages, depth-only
  and network backends on onnxruntime, post-matting, foreground, compositing, `MattingPipeline`).
  No torch, no Qt, no generator.
- `batch`: headless processing of recordings (`main.py process`, `main.py eval`).
- `synth`: the synthetic RGB-D scene generator (training data and benchmarks only).
- `nets`: the torch modules of DART's networks and their ONNX export.
- `evaluation`: metrics (SAD/MSE/Grad/Conn), accuracy and speed benchmarks.
- `training`: training and per-scene fine-tuning of the networks.
Nothing is imported here, so importing `engines` stays light.
"""
