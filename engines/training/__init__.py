"""Training of DART's networks on CPU or GPU.

Modules: `data` (pre-generated synthetic sample pool, BGMv2 augmentation, per-sample depth prior),
`checkpoint` (safetensors weights + optimizer state, JSON stage logs, resume), `stages` (the five
training stages, `train_all`, ONNX export), `scene` (`finetune_on_scene`: the student adapted to one
recording's backgrounds). Nothing is imported here, so importing `engines` stays light.
"""
