"""`main.py doctor` (issue 18, item 6): one line per check; each missing piece, simulated by replacing
the probes, is named with its fix; exit code 1 only when an essential piece fails."""

from __future__ import annotations

import pytest

import main
from app import doctor
from sensors.devices import DeviceInfo


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A healthy Linux machine: both SDKs, a camera on USB 3.2, udev rules, v4l2loopback with exclusive_caps,
    onnxruntime with CUDA, Qt's libraries, plenty of disk. Tests break one piece each."""
    rules = tmp_path / "rules.d"
    rules.mkdir()
    for name in ("99-realsense-libusb.rules", "99-obsensor-libusb.rules"):
        (rules / name).write_text("# rules\n")
    sys_root = tmp_path / "sys"
    (sys_root / "module" / "v4l2loopback" / "parameters").mkdir(parents=True)
    (sys_root / "module" / "v4l2loopback" / "parameters" / "exclusive_caps").write_text("Y,N,N,N\n")
    (sys_root / "devices" / "virtual" / "video4linux" / "video10").mkdir(parents=True)
    (sys_root / "devices" / "virtual" / "video4linux" / "video10" / "name").write_text("RGB-D Matting\n")
    camera = DeviceInfo(sdk="realsense", serial="123", model="Intel RealSense D435", firmware="5.16", usb="3.2")
    monkeypatch.setattr(doctor, "_platform", "linux")
    monkeypatch.setattr(doctor, "_sdk_status", lambda: {"realsense": "ok", "orbbec": "ok"})
    monkeypatch.setattr(doctor, "_list_devices", lambda: [camera])
    monkeypatch.setattr(doctor, "UDEV_DIRS", (rules, tmp_path / "absent"))
    monkeypatch.setattr(doctor, "SYS_ROOT", sys_root)
    monkeypatch.setattr(doctor, "_module_available", lambda name: True)
    monkeypatch.setattr(doctor, "_onnxruntime", lambda: ("1.20.0", ["CUDAExecutionProvider", "CPUExecutionProvider"]))
    monkeypatch.setattr(doctor, "_nvidia_gpu", lambda: True)
    monkeypatch.setattr(doctor, "_missing_display_libraries", lambda: [])
    monkeypatch.setattr(doctor, "_x_server_reachable", lambda display: True)
    monkeypatch.setenv("DISPLAY", ":0")
    return tmp_path


def lines(tmp_path) -> tuple[list[str], int]:
    return doctor.doctor_report(tmp_path / "out")


def line_for(report: list[str], what: str) -> str:
    found = [line for line in report if line[6:].startswith(what)]  # after the 'OK    ' status column
    assert len(found) == 1, (what, report)
    return found[0]


def test_a_ready_machine_is_all_ok_and_exits_0(machine, capsys):
    assert main.main(["doctor", "--out", str(machine / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith("OK ") for line in out[:-1]) and out[-1] == "Everything is ready."
    assert "USB 3.2" in line_for(out, "Camera realsense://123") and "CUDA" in line_for(out, "onnxruntime")
    assert "exclusive_caps on for /dev/video10" in line_for(out, "v4l2loopback")
    assert "doctor" in main.build_parser().format_help()


def test_missing_sdks_say_how_to_install_and_cameras_are_not_looked_for(machine, monkeypatch):
    monkeypatch.setattr(doctor, "_sdk_status", lambda: {"realsense": "pyrealsense2 is not installed",
                                                        "orbbec": "pyorbbecsdk2 is not installed"})
    report, code = lines(machine)
    assert line_for(report, "RealSense SDK").startswith("WARN") and "make setup" in line_for(report, "RealSense SDK")
    assert line_for(report, "Cameras").startswith("--") and code == 0


def test_a_camera_on_usb2_and_no_camera_say_use_a_usb3_port(machine, monkeypatch):
    slow = DeviceInfo(sdk="orbbec", serial="AY1", model="Femto Bolt", firmware="1.0", usb="USB2.0")
    monkeypatch.setattr(doctor, "_list_devices", lambda: [slow])
    line = line_for(lines(machine)[0], "Camera orbbec://AY1")
    assert line.startswith("WARN") and "USB USB2.0" not in line and "fix: plug it into a USB 3 port" in line
    monkeypatch.setattr(doctor, "_list_devices", lambda: [])
    assert "fix: connect a RealSense or Orbbec camera" in line_for(lines(machine)[0], "Cameras")
    assert [doctor.usb_major(u) for u in ("3.2", "USB3.1", "2.1", "USB 2.0", "")] == [3, 3, 2, 2, None]


def test_missing_udev_rules_give_the_install_and_reload_commands(machine, monkeypatch):
    for rule in (machine / "rules.d").iterdir():
        rule.unlink()
    report, code = lines(machine)
    realsense, orbbec = line_for(report, "udev rules for RealSense"), line_for(report, "udev rules for Orbbec")
    assert realsense.startswith("WARN") and "99-realsense-libusb.rules" in realsense and "udevadm trigger" in realsense
    assert orbbec.startswith("WARN") and "install_udev_rules.sh" in orbbec and code == 0
    monkeypatch.setattr(doctor, "_platform", "win32")
    assert line_for(lines(machine)[0], "udev").startswith("--")


def test_v4l2loopback_missing_or_without_exclusive_caps(machine):
    module = machine / "sys" / "module" / "v4l2loopback"
    (module / "parameters" / "exclusive_caps").write_text("N,N,N,N\n")
    line = line_for(lines(machine)[0], "v4l2loopback")
    assert line.startswith("WARN") and "Chrome" in line and "fix: sudo modprobe -r v4l2loopback" in line
    assert "exclusive_caps=1" in line
    (module / "parameters" / "exclusive_caps").unlink()
    (module / "parameters").rmdir()
    module.rmdir()
    line = line_for(lines(machine)[0], "v4l2loopback")
    assert "not loaded" in line and "fix: sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback" in line


def test_onnxruntime_missing_is_essential_and_cpu_only_on_an_nvidia_machine_is_a_warning(machine, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "_onnxruntime", lambda: ("1.20.0", ["CPUExecutionProvider"]))
    line = line_for(lines(machine)[0], "onnxruntime")
    assert line.startswith("WARN") and "pip install onnxruntime-gpu" in line
    monkeypatch.setattr(doctor, "_nvidia_gpu", lambda: False)
    assert line_for(lines(machine)[0], "onnxruntime").startswith("OK")

    def broken():
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(doctor, "_onnxruntime", broken)
    assert main.main(["doctor", "--out", str(machine / "out")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert line_for(out, "onnxruntime").startswith("FAIL") and "make setup" in line_for(out, "onnxruntime")
    assert "essential" in out[-1]


def test_missing_display_libraries_give_the_apt_line(machine, monkeypatch):
    monkeypatch.setattr(doctor, "_missing_display_libraries", lambda: ["libxcb-cursor0", "libxkbcommon-x11-0"])
    report, code = lines(machine)
    line = line_for(report, "Display libraries")
    assert line.startswith("FAIL") and "fix: sudo apt-get install -y libxcb-cursor0 libxkbcommon-x11-0" in line
    assert code == 1
    monkeypatch.delenv("DISPLAY")  # headless: only the window needs them
    report, code = lines(machine)
    assert line_for(report, "Display libraries").startswith("WARN") and code == 0


def test_a_display_without_an_x_server_is_essential(machine, monkeypatch):
    # Before: DISPLAY=:99 with nothing behind it passed, while `gui` then refused to start.
    monkeypatch.setattr(doctor, "_x_server_reachable", lambda display: False)
    monkeypatch.setenv("DISPLAY", ":99")
    report, code = lines(machine)
    assert line_for(report, "Display:").startswith("FAIL") and "no X server answers on DISPLAY=:99" in "\n".join(report)
    assert code == 1


def test_a_folder_that_cannot_be_written_is_a_failure_even_with_permissions(machine, monkeypatch):
    # Before: /proc/x passed the permission check and was reported as "only 0.0 GB free".
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(doctor.tempfile, "TemporaryFile", refuse)
    report, code = lines(machine)
    line = line_for(report, "Disk space")
    assert line.startswith("FAIL") and "cannot create or write" in line and "Read-only file system" in line and code == 1


def test_disk_space_and_an_unwritable_output_folder(machine, monkeypatch):
    monkeypatch.setattr(doctor, "_disk_usage", lambda path: type("U", (), {"free": 3e9})())
    assert line_for(lines(machine)[0], "Disk space").startswith("WARN")
    monkeypatch.setattr(doctor, "_disk_usage", lambda path: type("U", (), {"free": 2e8})())
    report, code = lines(machine)
    assert line_for(report, "Disk space").startswith("FAIL") and "fix: free some space" in line_for(report, "Disk space")
    assert code == 1
    blocker = machine / "file"
    blocker.write_text("")
    report, code = doctor.doctor_report(blocker / "out")
    assert "not a folder you can write to" in line_for(report, "Disk space") and code == 1


def test_a_probe_that_crashes_does_not_hide_the_other_lines(machine, monkeypatch):
    def crash():
        raise RuntimeError("SDK crashed")

    monkeypatch.setattr(doctor, "_list_devices", crash)
    report, code = lines(machine)
    assert "SDK crashed" in line_for(report, "cameras") and any("onnxruntime" in line for line in report)
