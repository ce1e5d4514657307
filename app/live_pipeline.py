"""The engine worker's per-frame path, split over threads so that both cores work at once.

Owns `OutputStage` (one thread running jobs in the order they were submitted, with at most `depth`
jobs waiting, so a slow stage holds the engine back instead of piling up frames) and `LiveFrames`, the
`app.engine_worker.EngineWorker` half that handles a frame:

- engine thread (`LiveFrames._process`): background capture, matting (`MattingPipeline.matte`: the
  networks or the depth matte), the scene change monitor; then the frame is handed on and the engine
  takes the next frame;
- finish stage, in the network modes only: the rest of the matte (`MattingPipeline.finish`: edge
  refinement, depth gate, temporal smoothing), then the frame is handed to the output stage. In the
  other modes the engine thread finishes the matte itself (its light depth matte leaves it room);
- output stage (`LiveFrames._publish`): foreground estimation and compositing (`Compositor`; in the
  network modes the background is rendered beside it on a helper thread), the post-matting hand-over,
  the virtual webcam and recorder (`Outputs`), statistics and the published `EngineSnapshot`.

So frame n is composited and sent out while frame n + 1 is finished and frame n + 2 is matted (frame
reading and decoding run on the `FrameQueue` reader thread before all of them). Frames leave in order:
every frame of a mode takes the same way. While post-matting is on, all of it runs on the engine thread,
one step after the other: the post-matting thread runs at the lowest CPU priority and gets its time from
the core the overlap would otherwise fill. Commands (`EngineWorker._guarded`) wait until the finish and
output stages are idle (`LiveFrames._drain_stages`) before they change the pipeline, the compositor, the
outputs or the source, so each stage only ever sees a consistent state. Numpy, OpenCV and onnxruntime
release the GIL in their work, which is what lets the threads overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from app import events as ev
from app.engine_state import EngineSnapshot, EngineStats, PostStats, running_fps
from app.post_worker import PostJob
from app.settings import NETWORK_MODES
from engines.matting.result import MattingResult
from sensors.errors import UserError
from sensors.frame import Frame

log = logging.getLogger(__name__)


class OutputStage:
    """Runs submitted jobs (callables without arguments) on one daemon thread, in submission order.

    depth: jobs that may wait while one runs; `submit` blocks while the queue is full. on_error(exc) is
    called (on the stage thread) for the first job that raises after one that did not.
    """

    def __init__(self, on_error: Callable[[BaseException], None], depth: int = 1, name: str = "OutputStage") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth, self._on_error, self._name = depth, on_error, name
        self._jobs: deque[Callable[[], None]] = deque()
        self._busy = False
        self._closed = False
        self._failing = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`; waits while `depth` jobs are waiting. After `close`, runs it in the caller's thread."""
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
                while len(self._jobs) >= self.depth and not self._closed:
                    self._cond.wait(0.1)
                closed = self._closed  # closed while it waited: its thread may be gone, so run it here
                if not closed:
                    self._jobs.append(job)
                    self._cond.notify_all()
        if closed:
            self._call(job)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has finished; False if `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.1 if left is None else min(left, 0.1))
        return True

    def close(self, timeout: float = 0.5) -> None:
        """Finish the queued jobs (within `timeout` seconds) and end the thread; later jobs run inline."""
        self.drain(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                self._busy = True
                self._cond.notify_all()
            try:
                self._call(job)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _call(self, job: Callable[[], None]) -> None:
        try:
            job()
            self._failing = False
        except Exception as exc:  # a failing frame must not end the stage
            log.exception("%s job failed", self._name)
            if not self._failing:
                self._on_error(exc)
            self._failing = True


class LiveFrames:
    """`EngineWorker`'s frame handling (a mixin: it uses the worker's engine-thread state; see the module
    docstring for which half runs on which thread)."""

    def _process(self, frame: Frame) -> None:
        """Engine thread: capture or matte `frame`, then hand it to the output stage."""
        now = time.monotonic()
        capture = self._capture
        depth_m = frame.depth_m()
        capturing = capture is not None and capture.collecting(now)
        if capture is not None and capture.step(frame.color, depth_m, now):
            self._drain_stages()  # the new plate reaches the compositor between frames
            self._finish_capture()
            capturing = True  # this frame was a background frame
        result = None
        if self._prior is not None and not capturing:
            try:
                result = self._pipeline.matte(frame.color, depth_m)
                if not self._finish_on_its_stage():
                    self._pipeline.finish(result, frame.color, depth_m)
            except UserError as exc:  # e.g. the camera changed resolution: this prior no longer fits
                self._prior = None
                self._emit(ev.ERROR, str(exc))
            if result is not None:
                self._failing = False
                self._matted += 1
                if self._monitor.update(self._prior, depth_m, result.alpha):
                    self._emit(ev.SCENE_CHANGED, "The background looks different from the captured one: "
                                              "capture it again (B).")
        self._seq += 1
        seq, matted, has_prior = self._seq, self._matted, self._prior is not None
        progress = self._capture.progress(now) if self._capture is not None else None
        publish = lambda: self._publish(frame, depth_m, result, capturing, progress, seq, matted, has_prior)  # noqa: E731
        late = result is not None and self._finish_on_its_stage()

        def finish() -> None:  # the rest of the matte: edge refinement, depth gate, temporal smoothing
            if late:
                self._pipeline.finish(result, frame.color, depth_m)

        def finish_then_publish() -> None:  # finish stage: this frame's finish, then its turn on the output stage
            finish()
            self._stage.submit(publish)

        if self._post is not None:  # post-matting (lowest CPU priority, app.post_worker) needs the second core
            self._drain_stages()
            finish()
            publish()
        elif self._finish_on_its_stage():  # every frame of these modes goes this way, so they stay in order
            self._finish_stage.submit(finish_then_publish)
        else:
            self._stage.submit(publish)
        limit = self.options.stop_after_matted
        if limit is not None and self._matted >= limit and not self._finished:
            self._finished = True
            self._drain_stages()  # the last frame is published before the source closes
            self._close_source()
            self._emit(ev.FINISHED, f"Processed {self._matted} frames.")

    def _finish_on_its_stage(self) -> bool:
        """Where `MattingPipeline.finish` (edge refinement, gate, smoothing) runs: on the finish stage, a
        thread between the engine and the output stage, after the networks (which fill the engine thread);
        on the engine thread after the light depth matte (the output stage is then the fuller one). Fixed
        per configuration, so frames stay in order. The background is rendered beside foreground estimation
        in the same modes only (`Compositor.render_beside`): in the depth mode that helper made the window
        slower (`python -m app.fps_probe`, README "The app's frame rate"), its busy thread taking CPU time
        from the engine thread's."""
        return self._config.mode in NETWORK_MODES

    def _drain_stages(self) -> None:
        """Wait until every frame handed over has been published (the finish stage feeds the output stage)."""
        self._finish_stage.drain()
        self._stage.drain()

    def _publish(self, frame: Frame, depth_m: np.ndarray, result: MattingResult | None, capturing: bool,
                 progress, seq: int, matted: int, has_prior: bool) -> None:
        """Output stage: composite, feed the outputs and post-matting, publish the snapshot."""
        output = frame.color
        timings: dict[str, float] = {}
        if result is not None:
            timings = dict(result.timings_ms)
            # not beside post-matting: its thread gets the core the overlap would otherwise fill
            self._compositor.render_beside = self._finish_on_its_stage() and self._post is None
            output = self._compositor.compose(frame.color, depth_m, result.alpha, timings)
        if self._post is not None and result is not None:
            self._post.submit(PostJob(seq, frame.index, frame.color, depth_m, result))
        self._shown += 1
        self._done_times.append(time.perf_counter())
        frames = self._frames
        queue_stats = frames.stats() if frames is not None else None
        stats = EngineStats(
            fps=running_fps(self._done_times),
            timings_ms=timings,
            dropped=queue_stats.dropped if queue_stats else 0,
            latency_ms=queue_stats.latency_ms_median if queue_stats else None,
            matted=matted,
            shown=self._shown,
        )
        fps = self._info.fps if self._info is not None and self._info.fps > 0 else 30.0
        self._outputs.feed(frame, output, fps, background=capturing)  # the recorder counts background frames
        post_output, post_stats = None, None
        if self._post is not None and result is None:
            post_stats = PostStats(dropped=self._post.dropped)
        elif self._post is not None:  # after the live outputs: compositing a post result must not delay them
            post_stats = self._post.follow(seq, self._config.max_subject_distance_m)
            post_output = self._post.output
        self._latest = EngineSnapshot(
            seq=seq, frame=frame, depth_m=depth_m, result=result, output=output, stats=stats, capture=progress,
            has_prior=has_prior, info=self._info, source_uri=self._uri or "",
            post_output=post_output, post_stats=post_stats,
        )
