"""The live app's post-matting output: a `PostMattingWorker` refining the newest matted frame on its own
thread, and the composite of its newest result.

`PostOutput` is owned and called by the engine thread only (`app.engine_worker`). It never delays the
live output: jobs are replaced by newer ones, and a result is composited (with its own `Compositor`,
so a video background does not skip frames in the live output) when the engine next asks for it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from app.backgrounds import Compositor
from app.engine_state import PostStats
from app.post_worker import PostJob, PostMattingWorker, make_post_worker
from engines.config import EngineConfig
from engines.matting.background_prior import BackgroundPrior
from engines.matting.gate_smooth import depth_gate


def post_key(config: EngineConfig) -> tuple:
    """The configuration the post-matting thread depends on (the depth gate is applied when compositing)."""
    return tuple(getattr(config, name, None) for name in ("post", "vitmatte_dir", "post_band_px", "depth"))


class PostOutput:
    """A running post-matting thread for one `EngineConfig` and its newest composite.

    output: uint8 HxWx3 RGB composite of the newest post result, or None; seq: the snapshot sequence
    number of the frame `output` shows (-1 before the first).
    """

    def __init__(self, worker: PostMattingWorker, compositor: Compositor) -> None:
        self.worker = worker
        self.compositor = compositor
        self.output: np.ndarray | None = None
        self.seq = -1
        self.ms: float | None = None

    @classmethod
    def start(cls, config: EngineConfig, prior: BackgroundPrior | None, background_args: tuple | None,
              on_error: Callable[[str], None]) -> "PostOutput":
        """Start the thread for `config` (whose `post` is not "none"). Raises what the backend raises
        (e.g. `UserError` when ViTMatte weights are missing)."""
        worker = make_post_worker(config, on_error=on_error)
        compositor = Compositor()
        if background_args is not None:
            compositor.set_background(*background_args)
        post = cls(worker, compositor)
        if prior is not None:
            post.set_prior(prior)
        worker.start()
        return post

    @property
    def dropped(self) -> int:
        return self.worker.dropped

    def set_prior(self, prior: BackgroundPrior) -> None:
        self.reset()
        self.worker.set_prior(prior)
        self.compositor.set_plate(prior.color_mean)

    def set_background(self, spec: str, blur_sigma_px: float) -> None:
        self.compositor.set_background(spec, blur_sigma_px)

    def submit(self, job: PostJob) -> None:
        self.worker.submit(job)

    def reset(self) -> None:
        """Drop the composite and any queued job (new source, new background prior)."""
        self.output, self.seq, self.ms = None, -1, None
        self.worker.reset()

    def follow(self, live_seq: int, max_subject_distance_m: float | None) -> PostStats:
        """Composite the thread's newest result when it is new; its state for the snapshot."""
        done = self.worker.latest()
        if done is not None and done.seq != self.seq:
            alpha = done.alpha
            if max_subject_distance_m is not None:
                alpha = depth_gate(alpha, done.depth_m, max_subject_distance_m)
            self.output = self.compositor.compose(done.color, done.depth_m, alpha)
            self.seq, self.ms = done.seq, done.ms
        behind = live_seq - self.seq if self.output is not None else None
        return PostStats(ms=self.ms, behind=behind, dropped=self.worker.dropped)

    def stop(self, timeout: float = 0.05) -> None:
        """Stop the thread (a running job cannot be interrupted: its daemon thread ends after it)."""
        self.worker.stop(timeout=timeout)
        self.compositor.close()
