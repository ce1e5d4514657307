"""A fresh desktop can open the window: Qt's platform plugins find their system libraries, the app
says one sentence when it cannot open a display, and the real window opens on an X server (Xvfb)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.display_check import check_x11_display, missing_libraries
from sensors.errors import UserError
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/xcb is Linux-only")


def _plugin(name: str) -> Path:
    import PySide6

    path = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / name
    if not path.exists():
        pytest.skip(f"{name} is not in this PySide6 build")
    return path


def test_xcb_plugin_links_no_missing_library():
    if shutil.which("ldd") is None:
        pytest.skip("ldd is not installed")
    out = subprocess.run(["ldd", str(_plugin("libqxcb.so"))], capture_output=True, text=True, check=True).stdout
    missing = [line.strip() for line in out.splitlines() if "not found" in line]
    assert not missing, f"install the Debian packages for: {missing} (Makefile QT_XCB_PACKAGES)"


def test_xcb_runtime_libraries_present():
    assert missing_libraries() == []


def test_missing_library_named_with_install_line():
    with pytest.raises(UserError, match=r"apt-get install -y libnot-there0"):
        check_x11_display(":0", {"libnot-there-at-all.so.9": "libnot-there0"})


def test_unreachable_display_is_one_sentence(tmp_path):
    env = dict(os.environ, DISPLAY=":97", QT_QPA_PLATFORM="")
    env.pop("QT_QPA_PLATFORM")
    proc = subprocess.run([sys.executable, "main.py", "gui", "--source", "assets/demo_recording"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no X server answers on DISPLAY=:97" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def xvfb():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (make test installs it)")
    display = ":93"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from app.display_check import x_server_reachable

        deadline = time.monotonic() + 10
        while not x_server_reachable(display):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip("Xvfb did not start")
            time.sleep(0.1)
        yield display
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_demo_window_opens_on_x11(xvfb, tmp_path):
    """README's demo on a display: the real xcb window opens, shows frames and exits cleanly."""
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    snapshot = tmp_path / "window.png"
    proc = subprocess.run([sys.executable, "main.py", "gui", "--source", "assets/demo_recording", "--quit-after", "10",
                           "--snapshot", str(snapshot)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot.stat().st_size > 10_000


@pytest.mark.slow
def test_ctrl_c_closes_the_window_without_a_traceback(tmp_path):
    """SIGINT in the terminal closes the app (before: KeyboardInterrupt inside a Qt callback, printed, and
    the window kept running)."""
    import signal

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    proc = subprocess.Popen([sys.executable, "main.py", "gui", "--source", "assets/demo_recording"], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8.0)  # the window is up and playing (or still starting: both must end cleanly)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 130), err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
