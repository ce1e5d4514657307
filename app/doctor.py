"""`main.py doctor`: is this machine ready? One line per check, each problem with its fix.

Checks: the RealSense / Orbbec SDKs load and which cameras are connected (with the USB link speed
the SDK reports; USB 2 is a problem), Linux udev rules that let a user open the cameras, the
v4l2loopback module and a device with `exclusive_caps` (Chrome, Zoom and Teams list only such
devices), pyvirtualcam, onnxruntime and its GPU providers (CUDA / TensorRT), the system libraries
Qt's X11 plugin needs (`app.display_check`), and free space in the output folder.

Each line reads `OK    what: detail`, `WARN  what: problem; fix: ...` (an optional piece: cameras,
the virtual webcam, the GPU), `FAIL  what: problem; fix: ...` (an essential piece: onnxruntime, a
writable output folder with room, the window's libraries when a display is set) or `--    what:
not applicable here`. `doctor_report` returns the lines and the exit code: 1 when any check FAILs,
else 0 (WARN lines alone exit 0: recordings and `process` work without a camera or webcam).

The probes (`_sdk_status`, `_list_devices`, `SYS_ROOT`, `UDEV_DIRS`, ...) are module-level names so
tests can replace them; nothing here imports Qt or torch.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.virtual_camera import MODPROBE

OK, WARN, FAIL, NA = "OK", "WARN", "FAIL", "--"
SYS_ROOT = Path("/sys")
UDEV_DIRS = (Path("/etc/udev/rules.d"), Path("/lib/udev/rules.d"), Path("/usr/lib/udev/rules.d"))
UDEV_RULES = {  # sdk: (file pattern, what to run)
    "realsense": ("99-realsense*.rules",
                  ("sudo curl -fsSL -o /etc/udev/rules.d/99-realsense-libusb.rules https://raw.githubusercontent.com/"
                   "IntelRealSense/librealsense/master/config/99-realsense-libusb.rules")),
    "orbbec": ("99-obsensor*.rules",
               "sudo sh {site}/pyorbbecsdk/shared/install_udev_rules.sh"),
}
RELOAD_UDEV = "sudo udevadm control --reload-rules && sudo udevadm trigger, then replug the camera (docs/CAMERAS.md)"
SDK_NAMES = {"realsense": "RealSense SDK (pyrealsense2)", "orbbec": "Orbbec SDK (pyorbbecsdk2)"}
MIN_FREE_GB, LOW_FREE_GB = 1.0, 5.0  # raw 640x480 RGB-D at 30 fps takes about 1.5 GB a minute
VCAM_LOAD = MODPROBE + " (Help > Virtual webcam set-up makes it permanent)"
VCAM_RELOAD = "sudo modprobe -r v4l2loopback && " + VCAM_LOAD


@dataclass(frozen=True)
class Check:
    status: str  # OK, WARN, FAIL or NA
    what: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix and self.status in (WARN, FAIL) else ""
        return f"{self.status:<5} {self.what}: {self.detail}{fix}"


# -- probes (replaced in tests) ---------------------------------------------------------------------
def _sdk_status() -> dict[str, str]:
    from sensors.devices import sdk_status

    return sdk_status()


def _list_devices() -> list:
    from sensors.devices import list_devices

    return list_devices(timeout_s=5.0)


def _onnxruntime() -> tuple[str, list[str]]:
    """(version, available providers); ImportError when onnxruntime does not load."""
    import onnxruntime

    return onnxruntime.__version__, list(onnxruntime.get_available_providers())


def _nvidia_gpu() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _missing_display_libraries() -> list[str]:
    from app.display_check import missing_libraries

    return missing_libraries()


def _x_server_reachable(display: str) -> bool:
    from app.display_check import x_server_reachable

    try:
        return x_server_reachable(display)
    except OSError:  # no libxcb: the library line says so
        return True


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _site_packages() -> str:
    spec = importlib.util.find_spec("pyorbbecsdk") if _module_available("pyorbbecsdk") else None
    origin = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None
    return str(Path(origin).parent) if origin else "$(python -c 'import site; print(site.getsitepackages()[0])')"


_disk_usage = shutil.disk_usage
_platform = sys.platform


# -- checks ----------------------------------------------------------------------------------------
def check_cameras() -> list[Check]:
    status = _sdk_status()
    checks = [Check(OK, SDK_NAMES.get(sdk, sdk), "loads") if reason == "ok" else
              Check(WARN, SDK_NAMES.get(sdk, sdk), reason.rstrip("."),
                    "run 'make setup' (or pip install -r requirements.txt) if you use this camera")
              for sdk, reason in status.items()]
    if not any(reason == "ok" for reason in status.values()):
        return checks + [Check(NA, "Cameras", "not looked for: no camera SDK loads (recordings still work)")]
    devices = _list_devices()
    if not devices:
        checks.append(Check(WARN, "Cameras", "none found",
                             "connect a RealSense or Orbbec camera to a USB 3 port (and check the udev rules below)"))
    for device in devices:
        checks.append(_camera_check(device))
    return checks


def usb_major(usb: str) -> int | None:
    """3 for "3.2" / "USB3.1" / "USB 3.0", 2 for "2.1" / "USB2.0"; None when the SDK did not say."""
    match = re.search(r"(\d+)(?:\.\d+)?", usb or "")
    return int(match.group(1)) if match else None


def _camera_check(device) -> Check:
    what = f"Camera {device.sdk}://{device.serial} ({device.model})"
    major = usb_major(device.usb)
    link = re.sub(r"^usb\s*", "", device.usb.strip(), flags=re.IGNORECASE)  # "USB3.1" -> "3.1"
    if major is None:
        return Check(OK, what, "connected; the SDK does not report the USB link speed")
    if major < 3:
        return Check(WARN, what, f"on a USB {link} link: only low resolutions and frame rates work",
                     "plug it into a USB 3 port (blue or marked SS) with a USB 3 cable, without a hub")
    return Check(OK, what, f"connected at USB {link}")


def _udev_files(pattern: str) -> list[Path]:
    found: list[Path] = []
    for folder in UDEV_DIRS:
        try:
            found.extend(sorted(folder.glob(pattern)))
        except OSError:
            continue
    return found


def check_udev() -> list[Check]:
    if not _platform.startswith("linux"):
        return [Check(NA, "udev rules", "only needed on Linux")]
    checks = []
    for sdk, (pattern, install) in UDEV_RULES.items():
        what = f"udev rules for {SDK_NAMES[sdk].split(' SDK')[0]}"
        files = _udev_files(pattern)
        if files:
            checks.append(Check(OK, what, ", ".join(str(f) for f in files)))
        else:
            fix = f"{install.format(site=_site_packages())} && {RELOAD_UDEV}"
            checks.append(Check(WARN, what, f"no {pattern} in {', '.join(str(d) for d in UDEV_DIRS)}, so only root "
                                            "can open the camera", fix))
    return checks


def _v4l2loopback_devices() -> list[tuple[str, str]]:
    """(/dev/videoN, name) of the virtual video devices v4l2loopback made, by number."""
    folder = SYS_ROOT / "devices" / "virtual" / "video4linux"
    devices = []
    for entry in sorted(folder.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            name = ""
        devices.append((f"/dev/{entry.name}", name))
    return devices


def check_virtual_camera() -> list[Check]:
    checks = [Check(OK, "pyvirtualcam", "installed") if _module_available("pyvirtualcam") else
              Check(WARN, "pyvirtualcam", "not installed", "pip install -r requirements.txt")]
    if not _platform.startswith("linux"):
        return checks + [Check(NA, "v4l2loopback", "Linux only; here the virtual webcam is OBS's Virtual Camera "
                                                   "(Help > Virtual webcam set-up)")]
    module = SYS_ROOT / "module" / "v4l2loopback"
    if not module.is_dir():
        return checks + [Check(WARN, "v4l2loopback", "the kernel module is not loaded, so there is no virtual webcam",
                               "sudo apt install v4l2loopback-dkms && " + VCAM_LOAD)]
    devices = _v4l2loopback_devices()
    if not devices:
        return checks + [Check(WARN, "v4l2loopback", "loaded but has no device", VCAM_RELOAD)]
    try:
        flags = (module / "parameters" / "exclusive_caps").read_text().strip().replace(" ", "").split(",")
    except OSError:
        flags = []
    on = [dev for (dev, name), flag in zip(devices, flags) if flag.upper() in ("Y", "1")]
    listed = ", ".join(f"{dev} ({name})" if name else dev for dev, name in devices)
    if on:
        return checks + [Check(OK, "v4l2loopback", f"{listed}; exclusive_caps on for {', '.join(on)} "
                                                   "(Chrome, Zoom and Teams can use it)")]
    return checks + [Check(WARN, "v4l2loopback", f"{listed} without exclusive_caps: Chrome, Zoom and Teams do not "
                                                 "list such a device", VCAM_RELOAD)]


def check_onnxruntime() -> list[Check]:
    try:
        version, providers = _onnxruntime()
    except Exception as exc:  # ImportError, or a broken wheel
        return [Check(FAIL, "onnxruntime", f"does not load ({type(exc).__name__}: {exc}); the dart/rgb modes "
                                           "cannot run", "run 'make setup' (or pip install -r requirements.txt)")]
    gpu = [p.replace("ExecutionProvider", "") for p in providers if p.startswith(("CUDA", "Tensorrt", "TensorRT"))]
    what = f"onnxruntime {version}"
    if gpu:
        return [Check(OK, what, f"GPU providers {', '.join(gpu)}")]
    if _nvidia_gpu():
        return [Check(WARN, what, "CPU only although an NVIDIA GPU is present",
                      "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (needs CUDA 12 and cuDNN 9)")]
    return [Check(OK, what, "CPU (no NVIDIA GPU found)")]


def check_display() -> list[Check]:
    if not _platform.startswith("linux"):
        return [Check(NA, "Display libraries", "checked on Linux only")]
    missing = _missing_display_libraries()
    display = os.environ.get("DISPLAY")
    if missing:
        status = FAIL if display else WARN  # no display: only the window needs them
        return [Check(status, "Display libraries", f"missing {', '.join(missing)}, so the window cannot open",
                      f"sudo apt-get install -y {' '.join(missing)}")]
    checks = [Check(OK, "Display libraries", "everything Qt's X11 plugin loads is installed")]
    if display and not _x_server_reachable(display):
        checks.append(Check(FAIL, "Display", f"no X server answers on DISPLAY={display}, so the window cannot open",
                            "start the app from your desktop session (or unset DISPLAY and use 'main.py process')"))
    return checks


def check_disk(out_dir: Path) -> list[Check]:
    folder = Path(out_dir).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    what = f"Disk space in {folder}"
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return [Check(FAIL, what, f"'{existing}' is not a folder you can write to",
                      "give another output folder (--out DIR), or fix its permissions")]
    try:  # permissions alone do not tell: /proc, a read-only mount
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return [Check(FAIL, what, f"cannot create or write '{folder}' ({exc.strerror or exc})",
                      "give another output folder (--out DIR)")]
    free_gb = _disk_usage(existing).free / 1e9
    detail = f"{free_gb:.1f} GB free"
    if free_gb < MIN_FREE_GB:
        return [Check(FAIL, what, f"only {detail}", "free some space or choose a folder on another disk")]
    if free_gb < LOW_FREE_GB:
        return [Check(WARN, what, f"{detail} (a raw RGB-D recording takes about 1.5 GB a minute)",
                      "free some space before recording raw RGB-D")]
    return [Check(OK, what, detail)]


def run_checks(out_dir: Path) -> list[Check]:
    checks: list[Check] = []
    for group in (check_cameras, check_udev, check_virtual_camera, check_onnxruntime, check_display):
        try:
            checks.extend(group())
        except Exception as exc:  # a probe that breaks must not hide the other lines
            checks.append(Check(WARN, group.__name__.removeprefix("check_").replace("_", " "),
                                f"could not be checked ({type(exc).__name__}: {exc})"))
    checks.extend(check_disk(out_dir))
    return checks


def doctor_report(out_dir: Path) -> tuple[list[str], int]:
    """The report's lines and the exit code (1 when an essential check fails, else 0)."""
    checks = run_checks(out_dir)
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    summary = (f"{failed} essential problem(s): fix the FAIL lines first." if failed else
               f"Ready; {warned} optional piece(s) missing (WARN)." if warned else "Everything is ready.")
    return [c.line() for c in checks] + [summary], 1 if failed else 0
