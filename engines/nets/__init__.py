"""Learned half of DART: base network, refiner, losses, pretrained initialisation, ONNX runtime.

Modules (each a small building block; nothing is imported here, so `engines` stays light):
- `mobilenetv2`: MobileNetV2 backbone (width multiplier, output stride, any input channels).
- `aspp`, `decoder`: BGMv2's ASPP (dilations 3, 6, 9) and decoder (CBR128-CBR64-CBR48-C37; a 1x1 last layer
  runs before the last upsampling).
- `base_net`: `BaseNet` = backbone -> ASPP -> decoder -> (alpha, foreground residual, error, hidden);
  `student_config()` / `teacher_config()`; safetensors `save_weights` / `load_weights` / `load_student`.
- `refiner`: BGMv2 two-stage patch refiner with DART's RGB-D patches; vectorised crop / replace.
- `losses`: BGMv2 losses (eq. 1-5) and DART's distillation loss (eq. 3).
- `convert_deeplab`: pretrained DeepLabV3 MobileNetV2 weights -> our modules (student and teacher).
- `onnx_export`: ONNX export and its validation against torch (inference: `engines.matting.onnx_inference`).
"""
