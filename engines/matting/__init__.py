"""The run-time matting path: what runs when a frame arrives (`main.py process` and the app).

In frame order: `background_prior` (DART eq. 4, built from the empty scene; `plate_check`: is the
empty-scene capture really empty?) -> `depth_bayes`
(eqs. 5-13: depth posterior, error-map fusion, trimap) and `depth_evidence` (the calibrated
depth-only alpha) -> a backend: `depth_matting` (depth only, `guided_filter` upsampling),
`dart_matting` (student + Bayesian error-map correction + RGB-D refiner on `onnx_inference`) or
`rgb_subtraction` -> `edge_refine` (the matte's edges against the plate's colours) -> optional `post_matting` (`post_closed_form`, `post_vitmatte`) -> `foreground`
(colour estimation) -> `compositing`. `pipeline.MattingPipeline` chains them for one frame.

May import: `engines.config`, `sensors`, numpy/scipy/OpenCV/onnxruntime (pymatting and transformers
lazily, for post-matting). Never torch, Qt, `engines.synth` or `engines.training`.
"""
