"""Which depth cameras are connected, and whether their SDKs load (for `main.py devices` and the GUI).

`list_devices()` asks pyrealsense2 and pyorbbecsdk2 for connected cameras and the depth + colour
modes each offers; `sdk_status()` says per SDK "ok" or why it cannot be used. Neither raises nor
waits long: a missing SDK is reported by `sdk_status`, an SDK that does not answer within
`timeout_s` is skipped with a logged warning.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sensors.errors import UserError

logger = logging.getLogger(__name__)

SDKS = ("realsense", "orbbec")


@dataclass(frozen=True)
class DeviceInfo:
    """One connected camera. `serial` is what goes after `sdk://` to open it.

    usb: the link as the SDK reports it ("3.2", "2.1", "USB3.1"; "" when unknown).
    modes: what the camera offers, largest first: RealSense "depth+color WxH@FPS" (both streams at
    that mode, colour as rgb8); Orbbec "color WxH@FPS FORMAT" and "depth WxH@FPS FORMAT" (depth is
    aligned to colour in software, so the two need not match).
    """

    sdk: str
    serial: str
    model: str
    firmware: str
    usb: str
    modes: list[str] = field(default_factory=list)


def sdk_status() -> dict[str, str]:
    """{"realsense": "ok" | reason, "orbbec": "ok" | reason}; a reason says what to install."""
    status = {}
    for sdk, load in (("realsense", _load_realsense), ("orbbec", _load_orbbec)):
        try:
            load()
            status[sdk] = "ok"
        except UserError as exc:
            status[sdk] = str(exc)
        except Exception as exc:  # a broken wheel must not stop the listing
            status[sdk] = f"cannot be loaded ({type(exc).__name__}: {exc})"
    return status


def list_devices(timeout_s: float = 10.0) -> list[DeviceInfo]:
    """Connected RealSense and Orbbec cameras; [] when there are none or no SDK is installed."""
    devices: list[DeviceInfo] = []
    for sdk, lister in (("realsense", _list_realsense), ("orbbec", _list_orbbec)):
        devices.extend(_run_with_timeout(sdk, lister, timeout_s))
    return devices


def _run_with_timeout(sdk: str, lister, timeout_s: float) -> list[DeviceInfo]:
    """Run `lister()` in a daemon thread so that an SDK stuck in USB enumeration cannot hang us."""
    result: list[DeviceInfo] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            result.extend(lister())
        except UserError as exc:  # SDK missing: sdk_status() explains it
            logger.debug("%s: %s", sdk, exc)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name=f"list-{sdk}-devices", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        logger.warning("The %s SDK did not list its cameras within %.0f s; skipping it.", sdk, timeout_s)
        return []
    if errors:
        logger.warning("Listing %s cameras failed: %s", sdk, errors[0])
    return result


def _load_realsense():
    from sensors.realsense.sdk import import_pyrealsense2

    return import_pyrealsense2()


def _load_orbbec():
    from sensors.orbbec import import_pyorbbecsdk

    return import_pyorbbecsdk()


def _list_realsense() -> list[DeviceInfo]:
    from sensors.realsense.sdk import camera_info_value, common_modes, device_modes

    rs = _load_realsense()
    found = []
    for dev in rs.context().query_devices():
        modes = common_modes(device_modes(rs, dev))
        found.append(DeviceInfo(
            sdk="realsense",
            serial=camera_info_value(rs, dev, "serial_number") or "",
            model=camera_info_value(rs, dev, "name") or "RealSense",
            firmware=camera_info_value(rs, dev, "firmware_version") or "",
            usb=camera_info_value(rs, dev, "usb_type_descriptor") or "",
            modes=[f"depth+color {w}x{h}@{fps}" for w, h, fps in modes],
        ))
    return found


def _orbbec_modes(ob, device) -> list[str]:
    pipeline = ob.Pipeline(device)
    modes = []
    for sensor, label in ((ob.OBSensorType.COLOR_SENSOR, "color"), (ob.OBSensorType.DEPTH_SENSOR, "depth")):
        try:
            profiles = pipeline.get_stream_profile_list(sensor)
        except (RuntimeError, getattr(ob, "OBError", RuntimeError)):
            continue
        seen = set()
        for i in range(profiles.get_count()):
            p = profiles.get_stream_profile_by_index(i).as_video_stream_profile()
            fmt = getattr(p.get_format(), "name", str(p.get_format()))
            seen.add((p.get_width(), p.get_height(), p.get_fps(), fmt))
        modes += [f"{label} {w}x{h}@{fps} {fmt}" for w, h, fps, fmt in
                  sorted(seen, key=lambda m: (m[0] * m[1], m[2]), reverse=True)]
    return modes


def _list_orbbec() -> list[DeviceInfo]:
    ob = _load_orbbec()
    ctx = ob.Context()
    device_list = ctx.query_devices()
    found = []
    for i in range(device_list.get_count()):
        serial = device_list.get_device_serial_number_by_index(i)
        name = device_list.get_device_name_by_index(i)
        usb = device_list.get_device_connection_type_by_index(i)
        firmware, modes = "", []
        try:
            device = device_list.get_device_by_index(i)
            firmware = device.get_device_info().get_firmware_version()
            modes = _orbbec_modes(ob, device)
        except (RuntimeError, getattr(ob, "OBError", RuntimeError)) as exc:  # e.g. opened by another program
            logger.warning("Orbbec %s %s: cannot read its modes (%s)", name, serial, exc)
        found.append(DeviceInfo(sdk="orbbec", serial=serial, model=name, firmware=firmware, usb=usb, modes=modes))
    return found
