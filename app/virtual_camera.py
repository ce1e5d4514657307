"""The virtual webcam output (pyvirtualcam), and the setup help shown when there is no device.

`VirtualCamera(width, height, fps)` opens a pyvirtualcam camera taking RGB frames
(uint8 HxWx3, RGB order) and `send`s them; any failure to open (no backend, no v4l2loopback
device, OBS not installed) raises `VirtualCameraUnavailable`, whose `help` holds the exact steps
for this operating system. Used from the engine thread, never the GUI thread. `CountingCamera`
is an in-memory backend for soak runs where no device exists.
"""

from __future__ import annotations

import logging
import re
import sys

import numpy as np

log = logging.getLogger(__name__)

CARD_LABEL = "RGB-D Matting"
MODPROBE = f'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="{CARD_LABEL}"'

LINUX_HELP = f"""No virtual camera device was found. On Linux the virtual webcam needs the v4l2loopback kernel module:

    sudo apt install v4l2loopback-dkms        # Debian/Ubuntu; Fedora: sudo dnf install v4l2loopback
    {MODPROBE}

To load it automatically at every boot:

    echo v4l2loopback | sudo tee /etc/modules-load.d/v4l2loopback.conf
    echo 'options v4l2loopback devices=1 exclusive_caps=1 card_label="{CARD_LABEL}"' | sudo tee /etc/modprobe.d/v4l2loopback.conf

Then turn the virtual webcam on again and pick "{CARD_LABEL}" as the camera in your video-call app."""

WINDOWS_HELP = """No virtual camera device was found. On Windows the virtual webcam uses OBS Studio's virtual camera:

    1. Install OBS Studio 28 or newer (https://obsproject.com).
    2. Start OBS once and click "Start Virtual Camera", then stop it and close OBS.

Then turn the virtual webcam on again and pick "OBS Virtual Camera" in your video-call app."""

MACOS_HELP = """No virtual camera device was found. On macOS the virtual webcam uses OBS Studio's virtual camera:

    1. Install OBS Studio 30 or newer (https://obsproject.com).
    2. Start OBS, click "Start Virtual Camera" and allow its system extension in System Settings, then close OBS.

Then turn the virtual webcam on again and pick "OBS Virtual Camera" in your video-call app."""


def setup_help(platform: str | None = None) -> str:
    """What the user must do to get a virtual camera device on `platform` (default: this one)."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        return WINDOWS_HELP
    if platform == "darwin":
        return MACOS_HELP
    return LINUX_HELP


class VirtualCameraUnavailable(Exception):
    """No virtual camera could be opened. `reason`: the backend's words; `help`: what to do."""

    def __init__(self, reason: str, help_text: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.help = help_text


class VirtualCamera:
    """One open virtual camera taking uint8 HxWx3 RGB frames of a fixed size."""

    def __init__(self, width: int, height: int, fps: float, backend: str | None = None,
                 device: str | None = None) -> None:
        try:
            import pyvirtualcam
        except Exception as exc:  # ImportError, or a native module that fails to load
            raise VirtualCameraUnavailable(f"pyvirtualcam cannot be loaded ({exc})", setup_help()) from exc
        self.width, self.height = int(width), int(height)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        try:
            self._camera = pyvirtualcam.Camera(
                self.width, self.height, self.fps, fmt=pyvirtualcam.PixelFormat.RGB, backend=backend, device=device
            )
        except Exception as exc:  # RuntimeError listing every backend's complaint, KeyError for a bad name
            reason = str(exc).strip() or type(exc).__name__
            log.debug("pyvirtualcam: %s", reason)
            if sys.platform.startswith("linux") and re.search(r"v4l2 ?loopback", reason, re.IGNORECASE):
                reason = f"no v4l2loopback device; load the module with: {MODPROBE}"
            raise VirtualCameraUnavailable(reason, setup_help()) from exc
        log.info("virtual camera %s (%s) open at %dx%d, %.1f fps", self.device, self._camera.backend,
                 self.width, self.height, self.fps)

    @property
    def device(self) -> str:
        return str(self._camera.device)

    def send(self, rgb: np.ndarray) -> None:
        """Send one frame: uint8 HxWx3 RGB of the size given at opening."""
        self._camera.send(np.ascontiguousarray(rgb, dtype=np.uint8))

    def close(self) -> None:
        camera, self._camera = getattr(self, "_camera", None), None
        if camera is not None:
            try:
                camera.close()
            except Exception:
                log.warning("closing the virtual camera failed", exc_info=True)


MEMORY_BACKEND = "counting-memory"


class CountingCamera:
    """A pyvirtualcam backend that only counts the frames it is sent (see pyvirtualcam.camera.Backend);
    for soak runs on machines without v4l2loopback."""

    frames = 0

    def __init__(self, *, width, height, fps, fourcc, device, **_kw) -> None:
        self.width, self.height = width, height

    def send(self, frame) -> None:
        CountingCamera.frames += 1

    def close(self) -> None:
        pass

    def device(self) -> str:
        return MEMORY_BACKEND

    def native_fourcc(self):
        return None


def counting_backend_unless_device(name: str = MEMORY_BACKEND) -> tuple[str | None, bool]:
    """(backend name for the worker, whether `CountingCamera` was registered under `name`): None and
    False when a real virtual-camera device opens, else `CountingCamera` registered as `name`."""
    try:
        import pyvirtualcam
    except Exception:  # noqa: BLE001 (ImportError or a native module that fails: the worker reports it)
        return None, False
    try:
        with pyvirtualcam.Camera(64, 48, 30.0):
            return None, False  # a real device exists: use it
    except Exception as exc:  # noqa: BLE001 (every backend's complaint: no device)
        log.debug("no virtual camera device (%s): using the in-memory backend", exc)
    pyvirtualcam.register_backend(name, CountingCamera)
    return name, True
