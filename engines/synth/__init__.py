"""Synthetic RGB-D scene generator: training data and benchmarks only, never the run-time path.

`scene` (`SceneConfig`, `generate_scene`, `write_scene`, frames with ground-truth alpha), `room`
(background rooms and camera poses), `subject` (procedural people, hair and props), `sensor` (depth
noise, holes, shadows, misregistration of real RGB-D cameras), `textures` (texture bank).
May import `sensors` only (frames, image I/O, the rgbd-folder writer).
"""
