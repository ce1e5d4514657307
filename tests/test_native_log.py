"""Native libraries' messages stay out of the terminal of headless commands (issue 17): libjpeg's
"Corrupt JPEG data" and friends go to `--log FILE` (or nowhere); the program's own sentence stays."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _redwood_with_a_noisy_jpeg(root: Path) -> Path:
    """A Redwood folder (5 frames) whose frame 3 JPEG has stray bytes before its end marker: it decodes,
    and libjpeg prints 'Corrupt JPEG data: ... extraneous bytes' on descriptor 2."""
    (root / "color").mkdir(parents=True)
    (root / "depth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        data = jpeg.tobytes()
        if i == 3:
            data = data[:-2] + b"\x00" * 64 + data[-2:]
        (root / "color" / f"{i:05d}.jpg").write_bytes(data)
        cv2.imwrite(str(root / "depth" / f"{i:05d}.png"), (1000 + rng.integers(0, 50, (24, 32))).astype(np.uint16))
    return root


def _process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_libjpeg_noise_goes_to_the_log_file_not_the_terminal(tmp_path):
    rec = _redwood_with_a_noisy_jpeg(tmp_path / "rec")
    common = ["process", str(rec), "--background-frames", "2", "--accept-background"]
    loud = _process("--debug", *common, "--out", str(tmp_path / "a"))
    assert "Corrupt JPEG data" in loud.stderr  # the message exists: --debug shows it
    quiet = _process(*common, "--out", str(tmp_path / "b"))
    assert quiet.returncode == 0, quiet.stderr
    assert "Corrupt JPEG data" not in quiet.stderr and "Processed" in quiet.stdout
    log = tmp_path / "run.log"
    logged = _process("--log", str(log), *common, "--out", str(tmp_path / "c"))
    assert logged.returncode == 0 and "Corrupt JPEG data" not in logged.stderr
    assert "Corrupt JPEG data" in log.read_text()


def test_an_unwritable_log_file_is_one_sentence(tmp_path):
    result = _process("--log", str(tmp_path / "missing" / "run.log"), "doctor")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: Cannot write the log file") and "Traceback" not in result.stderr
