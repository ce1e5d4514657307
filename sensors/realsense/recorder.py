"""Recording a live RealSense camera to a file (`record_frames`; the file type: `sdk.recording_extension`)."""

from __future__ import annotations

from sensors.realsense.source import RealSenseSource


def record_frames(path: str, frames: int, uri: str = "realsense://", **options) -> int:
    """Record `frames` framesets from a live camera to `path` (.db3 with pyrealsense2 >= 2.58).

    Returns how many framesets were read while recording. `options` go to `RealSenseSource`.
    """
    with RealSenseSource(uri, record_to=path, **options) as source:
        count = 0
        while count < frames and source.read() is not None:
            count += 1
    return count
