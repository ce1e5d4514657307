"""What the engine thread tells the window: `EngineEvent` and its kinds, and `describe` for errors.

Events are queued by the engine thread and drained by the GUI timer; each carries one sentence for
the user (`message`), optional extra text (`detail`, e.g. the virtual-camera setup steps) and, for
captures, the validation report.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.matting.background_prior import CaptureReport
from sensors.errors import UserError

SOURCE_OPENED = "source_opened"
SOURCE_ERROR = "source_error"  # the source could not be opened or failed while streaming
ERROR = "error"  # anything else that went wrong (engine, background image, saving)
NEEDS_CAPTURE = "needs_capture"  # the source has no background yet (detail "automatic": being captured)
PRIOR_RESTORED = "prior_restored"
CAPTURE_DONE = "capture_done"  # a clean capture is in use
CAPTURE_FAILED = "capture_failed"  # a capture did not validate; use_pending_prior or capture again
SCENE_CHANGED = "scene_changed"
VCAM_STARTED = "vcam_started"
VCAM_UNAVAILABLE = "vcam_unavailable"  # detail: setup help
VCAM_STOPPED = "vcam_stopped"
RECORDING_STARTED = "recording_started"
RECORDING_STOPPED = "recording_stopped"
RECORDING_FAILED = "recording_failed"  # the recording could not start or stopped on an error
MODE_CHANGED = "mode_changed"  # the engine switched mode itself (detail: the new mode)
FINISHED = "finished"  # stop_after_matted frames were matted; the worker idles

PROBLEMS = (ERROR, SOURCE_ERROR, VCAM_UNAVAILABLE, RECORDING_FAILED)


@dataclass(frozen=True)
class EngineEvent:
    kind: str
    message: str
    detail: str = ""
    report: CaptureReport | None = None


def describe(exc: BaseException) -> str:
    """One line for the user: a UserError's own sentence, otherwise the type and message."""
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
