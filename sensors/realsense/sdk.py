"""pyrealsense2 plumbing shared by the RealSense modules and `sensors.devices`.

Owns loading the SDK (`import_pyrealsense2`, one sentence when it cannot load), `parse_realsense_uri`,
`DepthFilters`, `rs_color_to_rgb` and the device-mode queries (`device_modes`, `common_modes`,
`camera_info_value`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

import cv2
import numpy as np

from sensors.errors import UserError


@dataclass(frozen=True)
class DepthFilters:
    """Optional librealsense post-processing of depth, applied before alignment; all off by default.

    spatial: edge-preserving smoothing (`rs.spatial_filter`) with `spatial_alpha` in (0, 1] and
    `spatial_delta` in depth units; temporal: smoothing over frames (`rs.temporal_filter`) with
    `temporal_alpha` and `temporal_delta`; hole_filling: fills zero pixels (`rs.hole_filling_filter`,
    `hole_filling_mode` 0 = fill from left, 1 = farthest of the neighbours, 2 = nearest).
    """

    spatial: bool = False
    temporal: bool = False
    hole_filling: bool = False
    spatial_alpha: float = 0.5
    spatial_delta: float = 20.0
    temporal_alpha: float = 0.4
    temporal_delta: float = 20.0
    hole_filling_mode: int = 1

    @staticmethod
    def from_names(names: str) -> "DepthFilters":
        """Parse "spatial,temporal,hole_filling" (any subset, comma separated; "" = none)."""
        wanted = {n.strip().lower().replace("-", "_") for n in names.split(",") if n.strip()}
        known = {"spatial", "temporal", "hole_filling"}
        unknown = wanted - known
        if unknown:
            raise UserError(
                f"Unknown RealSense depth filter(s) {', '.join(sorted(unknown))}: "
                "use spatial, temporal or hole_filling.",
                2,
            )
        return DepthFilters(**{name: True for name in wanted})

    @property
    def any(self) -> bool:
        return self.spatial or self.temporal or self.hole_filling


def import_pyrealsense2():
    """The pyrealsense2 module, or `UserError` naming the pip package (or libusb) when it cannot load."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        if "libusb" in str(exc):
            raise UserError(
                "pyrealsense2 cannot load libusb: install it with 'apt-get install libusb-1.0-0' (Debian/Ubuntu)."
            ) from exc
        raise UserError(
            "RealSense support needs the pyrealsense2 package: install it with 'pip install pyrealsense2'."
        ) from exc
    return rs


def parse_realsense_uri(uri: str) -> tuple[str | None, str | None, dict[str, str]]:
    """Split a source string into (serial, recording path, query options).

    "realsense://" -> (None, None, {}); "realsense://123?fps=15" -> ("123", None, {"fps": "15"});
    "rec.db3" -> (None, "rec.db3", {}). The serial is None when any camera will do.
    """
    if "://" not in uri:
        return None, uri, {}
    scheme, rest = uri.split("://", 1)
    if scheme.lower() != "realsense":
        raise UserError(f"'{uri}' is not a RealSense source: use realsense://[SERIAL] or a .bag/.db3 path.", 2)
    rest, _, query = rest.partition("?")
    options = {k.lower(): v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    serial = rest.strip("/") or None
    return serial, None, options


def rs_color_to_rgb(data: np.ndarray, format_name: str) -> np.ndarray:
    """Colour pixels of a RealSense frame as RGB uint8 HxWx3.

    data: the frame's pixels as numpy (HxWx3 for rgb8/bgr8, HxWx4 for rgba8/bgra8, HxWx2 or HxW
    uint16 for yuyv/uyvy); format_name: `str(rs.format.X)` or just "rgb8", "bgr8", ... .
    """
    fmt = format_name.rsplit(".", 1)[-1].lower()
    if fmt == "rgb8":
        return np.array(data, dtype=np.uint8, copy=True)  # the SDK reuses its buffers
    if fmt == "bgr8":
        return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    if fmt == "rgba8":
        return cv2.cvtColor(data, cv2.COLOR_RGBA2RGB)
    if fmt == "bgra8":
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    if fmt in ("yuyv", "uyvy"):
        packed = np.ascontiguousarray(data).view(np.uint8).reshape(data.shape[0], -1, 2)
        code = cv2.COLOR_YUV2RGB_YUY2 if fmt == "yuyv" else cv2.COLOR_YUV2RGB_UYVY
        return cv2.cvtColor(packed, code)
    raise UserError(f"RealSense colour format '{fmt}' is not supported: record colour as rgb8, bgr8 or yuyv.")


def camera_info_value(rs, device, name: str) -> str | None:
    key = getattr(rs.camera_info, name)
    try:
        return device.get_info(key) if device.supports(key) else None
    except RuntimeError:
        return None


def color_sensor(rs, device):
    """The sensor that streams colour (the RGB camera; the stereo module on a D405), or None."""
    try:
        return device.first_color_sensor()
    except RuntimeError:
        pass
    for sensor in device.query_sensors():
        try:
            if any(p.stream_type() == rs.stream.color for p in sensor.get_stream_profiles()):
                return sensor
        except RuntimeError:
            continue
    return None


def device_modes(rs, device) -> set[tuple[str, int, int, int]]:
    """{("depth" | "color", width, height, fps)} offered as depth z16 / colour rgb8 by a device."""
    modes: set[tuple[str, int, int, int]] = set()
    for sensor in device.query_sensors():
        try:
            profiles = sensor.get_stream_profiles()
        except RuntimeError:
            continue
        for p in profiles:
            if not p.is_video_stream_profile():
                continue
            v = p.as_video_stream_profile()
            if p.stream_type() == rs.stream.depth and p.format() == rs.format.z16:
                modes.add(("depth", v.width(), v.height(), p.fps()))
            elif p.stream_type() == rs.stream.color and p.format() == rs.format.rgb8:
                modes.add(("color", v.width(), v.height(), p.fps()))
    return modes


def common_modes(modes: set[tuple[str, int, int, int]]) -> list[tuple[int, int, int]]:
    """(width, height, fps) offered for both depth and colour, largest and fastest first."""
    depth = {m[1:] for m in modes if m[0] == "depth"}
    color = {m[1:] for m in modes if m[0] == "color"}
    return sorted(depth & color, key=lambda m: (m[0] * m[1], m[2]), reverse=True)


def recording_extension() -> str:
    """The file type the installed pyrealsense2 records: ".db3" (ROS2) from 2.58 on, else ".bag"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(part) for part in version("pyrealsense2").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return ".db3"
    return ".db3" if (major, minor) >= (2, 58) else ".bag"
