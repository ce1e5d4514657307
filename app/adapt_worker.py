""""Adapt to me" (issue 15): the user's take is collected from the live frames, then the networks are
adapted to it in the background while the app keeps running.

Owns `AdaptOptions`, `AdaptStatus` and `SceneAdapter`. The window feeds it every new `EngineSnapshot`
(`feed`) and polls `status()` on its timer; nothing here blocks the GUI thread or imports Qt or torch.
The adaptation itself runs in a child process (`main.py train --take TAKE.npz --prior PRIOR.npz`), so
training never shares the GUI's interpreter (the run-time path never imports torch), cancelling is a
signal to that process, and a crash there leaves the app untouched. Its JSON progress lines give the
fraction done and the estimated seconds left.

The take: about `take_s` seconds of matted frames (the background must be captured first), at most
`max_frames` kept in memory, evenly spread, then written once to `<scene>.take.npz` beside the
captured background for the child process and deleted afterwards, with the frames the user marked
with scribbles (`app.scribble_dialog`) appended: their marks overrule the teacher. The adapted networks go to a
staging folder and replace the scene's model folder (`SceneStore.models_dir`) only when the child
finished and accepted them; cancel, failure or "not better" leave the previous weights in use.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.scene_store import SceneStore
from engines.matting.onnx_inference import ModelMismatch, check_models_fit

log = logging.getLogger(__name__)

MAIN_PY = Path(__file__).resolve().parents[1] / "main.py"
ADAPTED_PARTS = {"student": ("student.onnx", "student.safetensors"),
                 "refiner": ("refiner_dart.onnx", "refiner_dart.safetensors")}  # adapt.json: "<part>_accepted"
IDLE, TAKE, ADAPTING, DONE, KEPT, FAILED, CANCELLED = (
    "idle", "take", "adapting", "done", "kept", "failed", "cancelled")


@dataclass(frozen=True)
class AdaptOptions:
    """take_s: length of the take (seconds); max_frames: frames kept from it; budget_minutes: the
    adaptation's budget; threads: CPU threads it may use; model_dir: the generic networks (None: the
    shipped ones); extra_args: more `main.py train` arguments (tests: a tiny training size)."""

    take_s: float = 15.0
    max_frames: int = 48
    budget_minutes: float = 4.5
    threads: int = 2
    model_dir: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdaptStatus:
    """state: one of IDLE, TAKE, ADAPTING, DONE (adapted weights in `models_dir`), KEPT (not better,
    previous weights stay), FAILED, CANCELLED; fraction in [0, 1]; eta_s: seconds left (estimate);
    message: one sentence for the window."""

    state: str = IDLE
    fraction: float = 0.0
    eta_s: float | None = None
    message: str = ""
    models_dir: Path | None = None


@dataclass
class _Run:
    uri: str
    started: float
    frames: list = field(default_factory=list)
    depths: list = field(default_factory=list)
    last_seq: int = -1
    process: subprocess.Popen | None = None
    cancelled: bool = False


class SceneAdapter:
    """One adaptation at a time for the source the window shows; see the module docstring."""

    def __init__(self, store: SceneStore | None, options: AdaptOptions = AdaptOptions()) -> None:
        self.store = store
        self.options = options
        self._lock = threading.Lock()
        self._status = AdaptStatus()
        self._run: _Run | None = None
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self.store is not None

    def status(self) -> AdaptStatus:
        with self._lock:
            return self._status

    def busy(self) -> bool:
        return self.status().state in (TAKE, ADAPTING)

    def _set(self, **changes) -> None:
        with self._lock:
            self._status = AdaptStatus(**{**self._status.__dict__, **changes})

    def start(self, uri: str) -> bool:
        """Begin the take for source `uri` (its background must be captured and stored); False when
        busy, without a scene store, or without a stored background."""
        if self.busy() or self.store is None or not uri:
            return False
        if not self.store.has(uri):
            self._set(state=FAILED, message="Capture the background first, then adapt.", fraction=0.0, eta_s=None)
            return False
        self._run = _Run(uri, time.monotonic())
        self._set(state=TAKE, fraction=0.0, eta_s=self.options.take_s,
                  message=f"Stay in view and move as usual for {self.options.take_s:.0f} s…", models_dir=None)
        return True

    def feed(self, snapshot) -> None:
        """Keep frames of the take from the window's newest snapshot (matted frames of the same source)."""
        run = self._run
        if run is None or self.status().state != TAKE or snapshot is None:
            return
        if snapshot.seq == run.last_seq or snapshot.result is None or snapshot.source_uri != run.uri:
            return
        elapsed = time.monotonic() - run.started
        interval = self.options.take_s / max(self.options.max_frames, 1)
        if len(run.frames) < self.options.max_frames and elapsed >= len(run.frames) * interval:
            run.frames.append(snapshot.frame.color)
            run.depths.append(np.clip(snapshot.depth_m * 1000.0 + 0.5, 0, 65535).astype(np.uint16))
        run.last_seq = snapshot.seq
        left = self.options.take_s - elapsed
        self._set(fraction=min(elapsed / self.options.take_s, 1.0) * 0.1, eta_s=max(left, 0.0)
                  + self.options.budget_minutes * 60)
        if left <= 0:
            self._launch(run)

    def cancel(self) -> None:
        """Stop the take or the adaptation; the weights in use stay."""
        run = self._run
        if run is None or not self.busy():
            return
        run.cancelled = True
        if run.process is not None and run.process.poll() is None:
            run.process.terminate()
        if self.status().state == TAKE:
            self._run = None
        self._set(state=CANCELLED, message="Adaptation cancelled: the previous networks stay in use.", eta_s=None)

    def stop(self, timeout: float = 2.0) -> None:
        """Cancel and wait for the child process (window closing)."""
        self.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the child process -------------------------------------------------------------------------
    def _launch(self, run: _Run) -> None:
        if len(run.frames) < 2:
            self._set(state=FAILED, message="Too few frames in the take: stay in view of the camera and try again.")
            self._run = None
            return
        from sensors.safe_write import atomic_write_bytes

        take = self.store.take_path(run.uri)
        staging = self.store.models_dir(run.uri).with_suffix(".new")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            buffer = io.BytesIO()
            np.savez(buffer, **self._take_arrays(run))
            run.frames, run.depths = [], []  # the child process reads them from the file
            atomic_write_bytes(take, buffer.getbuffer())
            command = [sys.executable, str(MAIN_PY), "train", "--take", str(take), "--prior",
                       str(self.store.path_for(run.uri)), "--out", str(staging), "--budget-minutes",
                       str(self.options.budget_minutes), "--threads", str(self.options.threads),
                       *(["--models", self.options.model_dir] if self.options.model_dir else []),
                       *self.options.extra_args]
            run.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except Exception as exc:  # a full disk, no interpreter: one sentence, weights unchanged
            take.unlink(missing_ok=True)
            self._set(state=FAILED, message=f"Could not start the adaptation: {exc}")
            self._run = None
            return
        self._set(state=ADAPTING, fraction=0.1, eta_s=self.options.budget_minutes * 60,
                  message="Adapting the networks to you (the app keeps running)…")
        self._thread = threading.Thread(target=self._follow, args=(run, take, staging), name="SceneAdapter",
                                        daemon=True)
        self._thread.start()

    def _take_arrays(self, run: _Run) -> dict[str, np.ndarray]:
        """The take file's arrays: the take's frames, then the frames the user marked with scribbles
        (`SceneStore.add_scribbles`) when they are of the same size, with their labels."""
        color, depth_mm = np.stack(run.frames), np.stack(run.depths)
        marked = self.store.load_scribbles(run.uri)
        if marked is None or marked["color"].shape[1:] != color.shape[1:]:
            return {"color": color, "depth_mm": depth_mm}
        scribbles = np.zeros(depth_mm.shape, np.uint8)
        return {"color": np.concatenate([color, marked["color"]]),
                "depth_mm": np.concatenate([depth_mm, marked["depth_mm"]]),
                "scribbles": np.concatenate([scribbles, marked["scribbles"]])}

    def _keep_adapted_parts(self, uri: str, staging: Path, result: dict) -> None:
        """The run adapts from the generic networks: a part (student, refiner) it did not adapt is the
        generic one in `staging`; where the scene already has that part adapted, keep the scene's, unless it
        does not fit the other part (`check_models_fit`: another number of hidden features)."""
        current = self.store.adapted_models(uri)
        if current is None:
            return
        for part, names in ADAPTED_PARTS.items():
            if result.get(f"{part}_accepted", True):
                continue
            student, refiner = ((current if part == kept else staging) / ADAPTED_PARTS[kept][0]
                                for kept in ("student", "refiner"))
            try:  # e.g. a scene adapted before the student's hidden features were pruned
                check_models_fit(student, refiner)
            except ModelMismatch as exc:
                log.info("not keeping the scene's adapted %s: %s", part, exc)
                continue
            for name in names:
                if (current / name).is_file():
                    shutil.copyfile(current / name, staging / name)

    def _follow(self, run: _Run, take: Path, staging: Path) -> None:
        process = run.process
        stderr = []
        reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
        reader.start()
        for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "progress" and not run.cancelled:
                self._set(fraction=0.1 + 0.9 * float(event.get("fraction", 0.0)), eta_s=event.get("eta_s"))
        code = process.wait()
        reader.join(1.0)
        take.unlink(missing_ok=True)
        self._finish(run, code, staging, "".join(stderr).strip().splitlines())

    def _finish(self, run: _Run, code: int, staging: Path, stderr: list[str]) -> None:
        self._run = None
        if run.cancelled:
            shutil.rmtree(staging, ignore_errors=True)
            return
        if code != 0:
            shutil.rmtree(staging, ignore_errors=True)
            reason = stderr[-1].removeprefix("error: ") if stderr else f"exit code {code}"
            self._set(state=FAILED, eta_s=None, message=f"Adaptation failed ({reason}); the previous networks stay.")
            return
        try:
            result = json.loads((staging / "adapt.json").read_text())
        except (OSError, ValueError):
            result = {}
        if not result.get("accepted"):
            shutil.rmtree(staging, ignore_errors=True)
            why = result.get("reason", "no result")
            self._set(state=KEPT, fraction=1.0, eta_s=0.0, message=f"Not adapted: {why}; the previous networks stay.")
            return
        try:
            self._keep_adapted_parts(run.uri, staging, result)
            target = self.store.install_models(run.uri, staging)
        except OSError as exc:  # a full disk, a folder made read-only meanwhile
            shutil.rmtree(staging, ignore_errors=True)
            self._set(state=FAILED, eta_s=None, message=f"Could not store the adapted networks ({exc.strerror}); "
                                                        "the previous networks stay.")
            return
        self._set(state=DONE, fraction=1.0, eta_s=0.0, models_dir=target,
                  message=f"Adapted to you in {result.get('seconds', {}).get('total', 0):.0f} s: "
                          "the adapted networks are in use in the network modes.")
