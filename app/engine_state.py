"""What the engine thread publishes and how it is configured: `EngineSnapshot` (one matted frame
with its `EngineStats` and `PostStats`), `WorkerOptions`, and small helpers (`running_fps`,
`replace_config`). Plain data, no threads and no Qt: the window reads these from any thread.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from app.capture import CaptureProgress
from app.scene_store import SceneStore
from engines.config import EngineConfig
from engines.matting.result import MattingResult
from sensors.frame import Frame
from sensors.source import SourceInfo

FPS_WINDOW = 30  # frames in the running fps estimate


@dataclass(frozen=True)
class EngineStats:
    """fps: frames the engine finished per second (running); timings_ms: the last frame's stages."""

    fps: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    dropped: int = 0
    latency_ms: float | None = None
    matted: int = 0  # frames matted since the source was opened
    shown: int = 0  # frames published since the source was opened


@dataclass(frozen=True)
class PostStats:
    """The post-matting thread's state at one snapshot.

    ms: milliseconds the last post frame took (None before the first); behind: live frames published
    since the frame of `post_output`; dropped: jobs replaced by newer ones before they ran.
    """

    ms: float | None = None
    behind: int | None = None
    dropped: int = 0


@dataclass(frozen=True)
class EngineSnapshot:
    """What the engine made of one frame; arrays are never modified after publishing.

    output: uint8 HxWx3 RGB, the composite (the raw colour while no background is captured);
    result: None while there is no background or during capture.
    post_output: uint8 HxWx3 RGB, the newest post-matted composite (of an earlier frame), or None
    (post-matting off, no result yet, or no live matte); post_stats: None while post-matting is off.
    """

    seq: int
    frame: Frame
    depth_m: np.ndarray
    result: MattingResult | None
    output: np.ndarray
    stats: EngineStats
    capture: CaptureProgress | None
    has_prior: bool
    info: SourceInfo
    source_uri: str
    post_output: np.ndarray | None = None
    post_stats: PostStats | None = None


@dataclass(frozen=True)
class WorkerOptions:
    """How the worker behaves beyond the engine configuration."""

    scene_store: SceneStore | None = None  # None: priors are not saved or restored
    capture_frames: int = 60
    countdown_s: float = 3.0
    vcam_backend: str | None = None  # pyvirtualcam backend name (None: any)
    loop_recordings: bool = True
    pace_recordings: bool = True  # play recordings at their frame rate (False: as fast as the engine runs)
    stop_after_matted: int | None = None  # idle (and report FINISHED) after this many matted frames
    scene_patience_frames: int = 90  # consecutive "different" frames before SCENE_CHANGED


def running_fps(times: deque[float]) -> float:
    """Frames per second over the monotonic times in `times` (0 with fewer than two)."""
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


def replace_config(config: EngineConfig, **changes) -> EngineConfig:
    """`config` with the given fields changed, ignoring fields this EngineConfig does not have."""
    known = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if k in known})
