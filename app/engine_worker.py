"""The engine thread: pulls frames, runs the matting pipeline, composites, feeds the outputs.

`EngineWorker` is a plain `threading.Thread` owned by the window. It owns, and touches only from its
own thread, the frame source (through `sensors.frame_queue.FrameQueue`, whose reader is the capture
thread), the `MattingPipeline`, the replacement background, the background capture, the scene
change monitor, and the virtual camera and recorder (`app.outputs.Outputs`).

A frame is matted on the engine thread, finished (in the network modes, on a finish stage thread) and
composited and sent out on an output stage thread (`app.live_pipeline`), so they overlap. Post-matting never runs in the live path: `app.post_output.PostOutput` refines the newest matted frame
on its own thread into `EngineSnapshot.post_output`, a few frames behind the live `output`.

Talking to it (any thread, never blocking):
- commands (`open_source`, `set_engine_config`, `set_background`, `start_capture`, ...) are queued
  and run by the engine thread between frames;
- `latest()` returns the newest `EngineSnapshot` (the GUI repaints from it on a timer);
- `poll_events()` drains `EngineEvent`s (errors, capture results, virtual camera problems, ...).

Recordings are played at their frame rate without dropping frames and loop at their end; when the
recording says its first N frames show the empty scene, a background is captured from them
automatically (unless one is stored for it) and they are skipped afterwards. Live cameras use
latest-frame semantics (older frames are dropped when the engine is slower than the camera).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Callable


from app.allocator import release_freed_memory
from app.backgrounds import Compositor
from app.capture import BackgroundCapture, set_camera_auto
from app.engine_state import (
    FPS_WINDOW,
    EngineSnapshot,
    WorkerOptions,
    replace_config,
)
from app import events as ev
from app.events import EngineEvent, describe
from app.live_pipeline import LiveFrames, OutputStage
from app.outputs import Outputs
from app.post_output import PostOutput, post_key
from app.recorder import RecordOptions
from app.scene_monitor import SceneChangeMonitor
from engines.matting.background_prior import BackgroundPrior, CaptureReport
from engines.config import EngineConfig
from engines.matting.pipeline import MattingPipeline
from sensors.errors import UserError
from sensors.frame import Frame
from sensors.frame_queue import FrameQueue, open_frame_queue
from sensors.source import SourceInfo

log = logging.getLogger(__name__)

# OpenCV's own worker pool on top of the live path's threads (reader, engine, finish, output stage, GUI) only
# competes with them for the same cores: one OpenCV thread cuts the CPU per frame (python -m app.fps_probe).
LIVE_OPENCV_THREADS = 1


class EngineWorker(LiveFrames):
    """Engine thread; see the module docstring. Call `start()` once and `stop()` when done."""

    def __init__(self, config: EngineConfig, background: str = "blur", blur_sigma_px: float = 12.0,
                 options: WorkerOptions | None = None) -> None:
        self.options = options or WorkerOptions()
        self._events: deque[EngineEvent] = deque(maxlen=200)
        self._config = config
        self._pipeline: MattingPipeline | None = None  # built in the engine thread (models can take a while)
        self._initial_background = (background, blur_sigma_px)
        self._compositor = Compositor()
        self._background_args: tuple[str, float] | None = None  # the last background that worked
        self._post: PostOutput | None = None  # post-matting thread and composite (config.post != "none")
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stage = OutputStage(lambda exc: self._emit(ev.ERROR, f"Compositing failed: {describe(exc)}"),
                                  name="EngineWorker")  # the engine's second thread (outputs come from it)
        self._finish_stage = OutputStage(lambda exc: self._emit(ev.ERROR, f"Refining the matte failed: {describe(exc)}"),
                                         name="EngineFinish")  # a third in the network modes (app.live_pipeline)
        self._latest: EngineSnapshot | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="EngineWorker", daemon=True)
        # engine-thread state
        self._frames: FrameQueue | None = None
        self._uri: str | None = None
        self._info: SourceInfo | None = None
        self._prior: BackgroundPrior | None = None
        self._capture: BackgroundCapture | None = None
        self._pending_prior: BackgroundPrior | None = None
        self._skip_below = 0  # recording frames with a smaller index show the empty scene: skipped
        self._monitor = SceneChangeMonitor(self.options.scene_patience_frames)
        self._outputs = Outputs(self._push, self.options.vcam_backend)
        self._finished = False
        self._seq = self._matted = self._shown = 0
        self._failing = False  # the last frame failed (an engine error is reported once)
        self._done_times: deque[float] = deque(maxlen=FPS_WINDOW)
        self._opencv_threads: int | None = None  # OpenCV's thread count before start()

    # -- lifecycle (GUI thread) ------------------------------------------------------------------
    def start(self) -> None:
        import cv2

        self._opencv_threads = cv2.getNumThreads()  # process-wide: given back by stop()
        cv2.setNumThreads(LIVE_OPENCV_THREADS)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the engine and capture threads; True when both ended within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._commands.put(lambda: None)  # wake an idle engine
        frames = self._frames
        if frames is not None:
            frames.close(timeout=max(0.05, 0.5 * timeout))
        post = self._post
        if post is not None:
            post.worker.stop(timeout=0.0)  # a running job cannot be interrupted: its daemon thread ends after it
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        alive = self._thread.is_alive() or (frames is not None and frames.stats().running)
        if alive:
            log.warning("the engine did not stop within %.1f s", timeout)
        if self._opencv_threads is not None:
            import cv2

            cv2.setNumThreads(self._opencv_threads)
            self._opencv_threads = None
        return not alive

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # -- reading (any thread) ----------------------------------------------------------------------
    def latest(self) -> EngineSnapshot | None:
        return self._latest

    def poll_events(self) -> list[EngineEvent]:
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    # -- commands (any thread) -----------------------------------------------------------------------
    def open_source(self, uri: str) -> None:
        self._commands.put(lambda: self._open_source(uri))

    def set_engine_config(self, config: EngineConfig) -> None:
        self._commands.put(lambda: self._set_config(config))

    def set_background(self, spec: str, blur_sigma_px: float = 12.0) -> None:
        """spec: image or video path, "#RRGGBB", "blur" (depth-aware, sigma in pixels) or "checker"."""
        self._commands.put(lambda: self._set_background(spec, blur_sigma_px))

    def start_capture(self, frames: int | None = None, countdown_s: float | None = None) -> None:
        self._commands.put(lambda: self._start_capture(frames, countdown_s))

    def cancel_capture(self) -> None:
        self._commands.put(self._cancel_capture)

    def use_pending_prior(self) -> None:
        """Accept the last capture although it did not validate."""
        self._commands.put(self._accept_pending)

    def set_virtual_camera(self, enabled: bool) -> None:
        self._commands.put(lambda: self._outputs.set_virtual_camera(enabled))

    def start_recording(self, options: RecordOptions) -> None:
        self._commands.put(lambda: self._outputs.set_recording(options))

    def stop_recording(self) -> None:
        self._commands.put(self._outputs.stop_recording)

    def call_soon(self, function: Callable[[], None]) -> None:
        """Run `function` in the engine thread (tests, and future commands)."""
        self._commands.put(function)

    # -- engine thread -----------------------------------------------------------------------------
    def _emit(self, kind: str, message: str, detail: str = "", report: CaptureReport | None = None) -> None:
        self._push(EngineEvent(kind, message, detail, report))

    def _push(self, event: EngineEvent) -> None:
        log.log(logging.WARNING if event.kind in ev.PROBLEMS else logging.INFO, "%s", event.message)
        self._events.append(event)

    def _run(self) -> None:
        try:
            self._set_config(self._config)
            self._set_background(*self._initial_background)
            while not self._stop.is_set():
                self._run_commands()
                if self._frames is None or self._finished:
                    self._wait_for_command(0.1)
                    continue
                try:
                    frame = self._frames.get(timeout=0.1)
                except TimeoutError:
                    continue
                except Exception as exc:  # the source failed: UserError from a camera, or anything else
                    self._source_failed(exc)
                    continue
                if frame is None:
                    self._end_of_stream()
                    continue
                try:
                    self._process(frame)
                except Exception as exc:  # a bug or an engine failure must not kill the thread
                    self._engine_failed(frame, exc)
        finally:
            self._shutdown()

    def _engine_failed(self, frame: Frame, exc: Exception) -> None:
        """Said once: a network mode falls back to 'depth' (ev.MODE_CHANGED); 'depth' keeps trying, quietly."""
        log.exception("processing frame %d failed", frame.index)
        self._drain_stages()
        mode = self._config.mode
        if mode != "depth":
            self._set_config(replace_config(self._config, mode="depth"))
            self._emit(ev.ERROR, f"Mode '{mode}' failed ({describe(exc)}); switched to 'depth' to keep going.")
            self._emit(ev.MODE_CHANGED, "Switched to mode 'depth'.", detail="depth")
        elif not self._failing:
            self._emit(ev.ERROR, f"Processing failed: {describe(exc)}")
        self._failing = True
        time.sleep(0.05)

    def _run_commands(self) -> None:
        while not self._stop.is_set():
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._guarded(command)

    def _wait_for_command(self, timeout: float) -> None:
        try:
            command = self._commands.get(timeout=timeout)
        except queue.Empty:
            return
        if not self._stop.is_set():
            self._guarded(command)

    def _guarded(self, command: Callable[[], None]) -> None:
        self._drain_stages()  # commands change what the finish and output stages use (app.live_pipeline)
        try:
            command()
        except Exception as exc:
            log.exception("engine command failed")
            self._emit(ev.ERROR, describe(exc))

    def _shutdown(self) -> None:
        self._finish_stage.close()  # its last jobs hand their frames to the output stage, closed next
        self._stage.close()
        self._close_source()
        self._stop_post()
        self._outputs.close()
        self._compositor.close()

    # source ------------------------------------------------------------------------------------------
    def _open_stream(self, uri: str) -> SourceInfo:
        self._frames, info = open_frame_queue(uri, self.options.pace_recordings, self._skip_below)
        return info

    def _close_source(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.close(timeout=0.5)

    def _open_source(self, uri: str) -> None:
        self._close_source()
        self._outputs.stop_recording()
        self._uri, self._info = uri, None
        self._capture = self._pending_prior = None
        self._prior = None
        self._finished = False
        self._matted = self._shown = 0
        self._skip_below = 0
        self._done_times.clear()
        self._latest = None
        if self._post is not None:
            self._post.reset()
        try:
            info = self._open_stream(uri)
        except Exception as exc:
            self._emit(ev.SOURCE_ERROR, f"Cannot open '{uri}': {describe(exc)}")
            return
        self._info = info
        release_freed_memory()  # the previous source's frames and queue are gone
        self._emit(ev.SOURCE_OPENED, f"Opened {info.name} ({info.width}x{info.height}, {info.fps:g} fps)")
        store = self.options.scene_store
        prior = store.load(uri, (info.height, info.width)) if store is not None else None
        if prior is not None:
            self._skip(0 if info.live else (info.background_frames or 0))
            self._use_prior(prior)
            self._camera_auto(False)
            self._emit(ev.PRIOR_RESTORED, "Using the background captured earlier for this source.")
        elif not info.live and info.background_frames:
            self._capture = BackgroundCapture(info.background_frames, 0.0, time.monotonic())
            self._emit(ev.NEEDS_CAPTURE, f"Capturing the background from the recording's first "
                                      f"{info.background_frames} frames.", detail="automatic")
        else:
            self._emit(ev.NEEDS_CAPTURE, "No background yet: step out of view and capture the background (B).")

    def _skip(self, below: int) -> None:
        """Recordings: frames before `below` (the empty scene) are read but neither paced nor shown."""
        self._skip_below = below
        if self._frames is not None:
            self._frames.skip_below = below

    def _source_failed(self, exc: BaseException) -> None:
        self._drain_stages()  # the frames in flight reach the recording before it stops
        self._close_source()
        self._outputs.stop_recording()
        self._emit(ev.SOURCE_ERROR, describe(exc))

    def _end_of_stream(self) -> None:
        info = self._info
        if info is not None and not info.live and self.options.loop_recordings and self._uri and self._shown:
            self._close_source()
            try:
                self._open_stream(self._uri)
                return
            except Exception as exc:
                self._source_failed(exc)
                return
        self._close_source()
        self._emit(ev.SOURCE_ERROR, "The source stopped sending frames." if info and info.live
                   else "The recording ended.")

    # engine and background ---------------------------------------------------------------------------
    def _set_config(self, config: EngineConfig) -> None:
        """A new pipeline for `config`, keeping the background; on failure keep the old one (or 'depth').

        The live pipeline never post-mats; `config.post` runs on the post-matting thread instead.
        """
        try:
            pipeline = MattingPipeline(replace_config(config, post="none"))
            if self._prior is not None:
                pipeline.set_prior(self._prior)
        except Exception as exc:  # e.g. a mode whose model files are missing
            if self._pipeline is None:
                self._emit(ev.ERROR, f"Cannot start mode '{config.mode}': {describe(exc)}; using 'depth'.")
                self._emit(ev.MODE_CHANGED, "Switched to mode 'depth'.", detail="depth")
                config = replace_config(config, mode="depth")
                pipeline = MattingPipeline(replace_config(config, post="none"))
            else:
                self._emit(ev.ERROR, f"Cannot switch to mode '{config.mode}': {describe(exc)}")
                return
        old, self._config, self._pipeline = self._config, config, pipeline
        release_freed_memory()
        if self._post is None or post_key(config) != post_key(old):
            self._start_post(config)

    # post-matting ------------------------------------------------------------------------------------
    def _start_post(self, config: EngineConfig) -> None:
        """Replace the post-matting thread by one for `config` (none when `config.post` is "none")."""
        self._stop_post()
        if getattr(config, "post", "none") == "none":
            return
        try:
            self._post = PostOutput.start(config, self._prior, self._background_args,
                                          on_error=lambda message: self._emit(ev.ERROR, message))
        except Exception as exc:  # e.g. ViTMatte weights missing: live matting goes on without it
            self._emit(ev.ERROR, f"Cannot start post-matting '{config.post}': {describe(exc)}")

    def _stop_post(self) -> None:
        post, self._post = self._post, None
        if post is not None:
            post.stop()

    def _set_background(self, spec: str, blur_sigma_px: float) -> None:
        try:
            self._compositor.set_background(spec, blur_sigma_px)
            if self._post is not None:
                self._post.set_background(spec, blur_sigma_px)
        except Exception as exc:  # the previous background stays
            self._emit(ev.ERROR, f"Cannot use that background: {describe(exc)}")
            return
        self._background_args = (spec, blur_sigma_px)

    def _use_prior(self, prior: BackgroundPrior) -> None:
        self._pipeline.set_prior(prior)
        self._prior = prior
        self._compositor.set_plate(prior.color_mean)
        self._monitor.reset()
        if self._post is not None:
            self._post.set_prior(prior)

    # capture ---------------------------------------------------------------------------------------------
    def _start_capture(self, frames: int | None, countdown_s: float | None) -> None:
        if self._uri is None:
            self._emit(ev.ERROR, "Open a camera or a recording before capturing the background.")
            return
        info = self._info
        self._pending_prior = None
        self._finished = False
        if info is not None and not info.live and info.background_frames:
            # A recording that starts with the empty scene: capture those frames again from the start.
            self._close_source()
            self._skip_below = 0  # the new stream must deliver the empty-scene frames again
            try:
                self._open_stream(self._uri)
            except Exception as exc:
                self._source_failed(exc)
                return
            self._capture = BackgroundCapture(info.background_frames, 0.0, time.monotonic())
            return
        if self._frames is None:
            self._open_source(self._uri)  # reopen after an error
            if self._frames is None:
                return
        total = frames or self.options.capture_frames
        countdown = self.options.countdown_s if countdown_s is None else countdown_s
        self._camera_auto(True)  # let the camera adapt to the empty scene during the countdown
        self._capture = BackgroundCapture(total, countdown, time.monotonic())

    def _cancel_capture(self) -> None:
        self._capture = None

    def _finish_capture(self) -> None:
        capture, self._capture = self._capture, None
        prior, report = capture.finish(self._config.depth)
        if report.ok:
            self._accept(prior)
            self._emit(ev.CAPTURE_DONE, report.message, report=report)
        else:
            self._pending_prior = prior
            self._emit(ev.CAPTURE_FAILED, report.message, report=report)

    def _accept_pending(self) -> None:
        prior, self._pending_prior = self._pending_prior, None
        if prior is not None:
            self._accept(prior)
            self._emit(ev.CAPTURE_DONE, "Using the background although the capture was not clean.")

    def _accept(self, prior: BackgroundPrior) -> None:
        self._use_prior(prior)
        info = self._info
        if info is not None and not info.live and info.background_frames:
            self._skip(info.background_frames)
        store = self.options.scene_store
        if store is not None and self._uri is not None:
            try:
                store.save(self._uri, prior)
            except UserError as exc:
                self._emit(ev.ERROR, str(exc))
        self._camera_auto(False)

    def _camera_auto(self, enabled: bool) -> None:
        """Camera auto exposure / white balance: off while a background is in use (colours stay the plate's)."""
        try:
            set_camera_auto(self._frames.source if self._frames is not None else None, enabled)
        except Exception as exc:
            action = "unlock" if enabled else "lock"
            self._emit(ev.ERROR, f"Could not {action} the camera's exposure and white balance: {describe(exc)}")
