"""Engine configuration as frozen dataclasses; defaults are the DART paper's values.

`main.py` (and the GUI) build these and pass them down; nothing in `engines/` reads flags or files
for configuration on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The networks the project trains and ships (`main.py train` writes them here).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"
# The live window keeps the networks within this many ms a frame by refining fewer patches on a slow
# machine (edge refinement and compositing run beside them on the output stage, app/live_pipeline.py).
LIVE_PATCH_BUDGET_MS = 24.0
# The live window runs each network operator on one thread: its reader, output stage and GUI threads
# keep the second core busy, and a second onnxruntime thread there costs more CPU than it saves time
# (python -m app.fps_probe, README "The app's frame rate").
LIVE_NETWORK_THREADS = 1
# ... and runs a frame's engine stages one after another: a second engine thread there took the cores from
# the output stage (python -m app.fps_probe: dart with the window 33.6 fps with it, 36.7 without)
LIVE_OVERLAP_STAGES = False


@dataclass(frozen=True)
class DepthConfig:
    """Parameters of DART's depth stages (sections II-B and II-D of the paper)."""

    psi: float = 0.01  # eq. 4: std fallback ratio
    d_max_m: float = 5.46  # eq. 4: maximum sensor range, metres (paper: 5460 mm)
    zeta: float = 0.001  # eq. 7, a density in 1/mm as in the paper: an unknown-depth pixel gets exactly prior_fg
    prior_fg: float = 0.5  # eq. 7: P_F; P_B = 1 - P_F
    # eq. 10: weight of the depth residual in the fused error map. The paper's 0.05 goes with its raw A_D;
    # with the calibrated residual 0.3 did best on held-out scenes (seeds 5000-5005, README "Choosing k and beta").
    beta: float = 0.3
    trimap_low: float = 0.25  # eq. 13: below -> background
    trimap_high: float = 0.8  # eq. 13: above -> foreground
    blur_sigma_px: float = 1.0  # post-processing blur of A_D at the working resolution
    min_region_fraction: float = 0.002  # foreground blobs smaller than this share of the image are removed
    work_scale: float = 0.25  # depth posterior runs at 1/4 of colour resolution, like the base network
    calibrated_residual: bool = True  # eq. 9 against the calibrated evidence (engines.matting.depth_evidence), not raw A_D
    std_floor_ratio: float = 0.005  # eq. 4 extension: std >= ratio * mean (stable, quantised sensors report std 0)


@dataclass(frozen=True)
class EngineConfig:
    """Which matting path runs and how (the GUI and `main.py process` build one)."""

    mode: str = "depth"  # one of engines.pipeline.MODES
    depth: DepthConfig = DepthConfig()
    max_subject_distance_m: float | None = None  # depth gate: farther pixels are background
    temporal_smoothing: float = 0.0  # 0 = none; s of engines.matting.gate_smooth (still pixels only)
    refiner: bool = True  # network modes: run the patch refiner (off = upsampled coarse alpha)
    error_map_correction: bool = True  # dart: select refined patches by E_RGBD (eq. 10), else by E_RGB
    depth_refiner: bool = True  # dart: RGB-D patches in the refiner (eq. 11), else the RGB refiner
    depth_fusion: bool = True  # dart: depth overrules the coarse alpha where it is sure (engines.matting.depth_fusion)
    model_dir: str = str(DEFAULT_MODEL_DIR)  # student / refiner ONNX files for the network modes
    student_file: str = "student.onnx"  # base network file in model_dir (engines.matting.dart_matting)
    refine_patches: int = 700  # k: 4x4 patches refined per frame (~30 fps on 2 CPU cores at 640x480, README)
    # dart/rgb: refine fewer than k patches when the network stage would take longer than this many ms a
    # frame (engines.matting.dart_matting.PatchBudget); None = always k (offline: reproducible output)
    patch_budget_ms: float | None = None
    network_threads: int = 2  # dart/rgb: onnxruntime threads per operator (the window: LIVE_NETWORK_THREADS)
    # dart/rgb: the student beside the depth stages and the refiner's patch gathers on two threads (the
    # window: LIVE_OVERLAP_STAGES); results are the same either way
    overlap_stages: bool = True
    edge_refine: bool = False  # refine alpha against the plate's colours (engines.matting.edge_refine)
    post: str = "none"  # post-matting on a depth-derived trimap: "none" | "closed-form" | "vitmatte"
    post_band_px: int = 3  # widen the trimap's unknown band by this many pixels
    vitmatte_dir: str | None = None  # local ViTMatte weights (post == "vitmatte")
