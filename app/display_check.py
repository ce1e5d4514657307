"""Can Qt open a window here? Checked before Qt is loaded, because Qt aborts the process otherwise.

Owns `check_x11_display(display)`: on Linux with an X11 display, the system libraries Qt's xcb platform
plugin loads must exist (Qt >= 6.5 also needs libxcb-cursor) and the X server must accept a
connection. A failure raises `UserError` with one sentence and the install line, instead of Qt's
"could not load the Qt platform plugin" abort. No Qt import here.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from sensors.errors import UserError

# soname -> Debian package, for the libraries Qt's xcb plugin (and libQt6XcbQpa) link or dlopen.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}


def missing_libraries(libraries: dict[str, str] = XCB_LIBRARIES) -> list[str]:
    """Debian packages whose library (a key of `libraries`) cannot be loaded, in the given order."""
    missing = []
    for soname, package in libraries.items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(package)
    return missing


def x_server_reachable(display: str) -> bool:
    """True when libxcb connects to `display` (e.g. ":0"); False when the server refuses or is absent."""
    libxcb = ctypes.CDLL("libxcb.so.1")
    libxcb.xcb_connect.restype = ctypes.c_void_p
    libxcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    libxcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    libxcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = libxcb.xcb_connect(display.encode(), None)
    try:
        return libxcb.xcb_connection_has_error(connection) == 0
    finally:
        libxcb.xcb_disconnect(connection)


def check_x11_display(display: str, libraries: dict[str, str] = XCB_LIBRARIES) -> None:
    """Raise `UserError` (exit code 1) when Qt could not open a window on X11 display `display`."""
    missing = missing_libraries(libraries)
    if missing:
        packages = " ".join(missing)
        raise UserError(
            f"The window cannot open: Qt's X11 plugin needs system libraries that are missing; install them "
            f"with 'sudo apt-get install -y {packages}' (or run 'make setup' as root).", 1)
    if not x_server_reachable(display):
        raise UserError(
            f"The window cannot open: no X server answers on DISPLAY={display}; start the app from your "
            f"desktop session, or use 'main.py process' (headless).", 1)
