"""Intel RealSense cameras and their recordings (ROS1 `.bag`, ROS2 `.db3`) through pyrealsense2.

Modules: `source` (`RealSenseSource`: live camera and recordings, URIs and what each `Frame` holds are
documented there), `player` (`RecordingPlayer`: recordings read sensor by sensor and paired by
device time), `recorder` (`record_frames`: a live session written to a file), `sdk` (loading
pyrealsense2, URIs, depth filters, colour formats, device modes shared with `sensors.devices`).
Nothing is imported here.
"""
