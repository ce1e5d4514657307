"""Training of DART's networks on CPU or GPU.

Modules: `data` (pre-generated synthetic sample pool, BGMv2 augmentation, per-sample depth prior),
`checkpoint` (safetensors weights + optimizer state, JSON stage logs, resume), `stages` (the five
training stages, `train_all`, ONNX export), `scene` (`finetune_on_scene`: the student adapted to one
recording's backgrounds with synthetic subjects), `adapt` (scene adaptation the capture-stage way: the
depth-trimap + closed-form teacher labels the user's own take, the student is fine-tuned on it mixed
with generic samples and swapped in only if better), `adapt_data` (the take, its teacher labels and
confidence, the batch mix), `adapt_bench` (`main.py bench-adapt`). Nothing is imported here, so
importing `engines` stays light.
"""
