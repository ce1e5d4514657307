"""Tests of app.fps_probe: the frame-rate probe's report on the shipped demo recording."""

from dataclasses import replace
from pathlib import Path

from app import fps_probe

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo_recording"


def test_probe_reports_rate_latency_and_cpu_per_frame():
    """Without the window, a few depth-mode frames: a frame rate, stage medians, and the process's CPU time per
    frame (all threads), which cannot be zero for frames that were matted and composited."""
    report = fps_probe.measure_without_gui(str(DEMO), frames=8, warmup=2, mode="depth")
    assert report.frames >= 8 and report.fps > 0
    assert report.cpu_ms > 0.5 and "posterior" in report.stage_ms


def test_probe_reports_the_patches_refined_in_a_network_mode():
    report = fps_probe.measure_without_gui(str(DEMO), frames=4, warmup=2, mode="dart")
    assert 0 < report.patches <= 700 and "refiner" in report.stage_ms  # the window's k at most


def test_probe_refuses_a_missing_recording(capsys):
    assert fps_probe.main(["/nonexistent/recording", "10", "depth"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fixed_k_turns_off_only_the_windows_patch_budget():
    window = fps_probe._settings("dart", "blur", fixed_k=False).engine_config()
    fixed = fps_probe._settings("dart", "blur", fixed_k=True).engine_config()
    assert window.patch_budget_ms is not None and fixed.patch_budget_ms is None
    assert replace(fixed, patch_budget_ms=window.patch_budget_ms) == window  # nothing else differs
