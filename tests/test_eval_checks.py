"""`main.py eval` refuses predictions made from another recording and says when frames do not match."""

from __future__ import annotations

import json

import numpy as np

import main
from sensors.frame import Frame, Intrinsics
from sensors.rgbd_folder import RgbdFolderWriter

W, H = 48, 32


def _recording(path, frames: int = 6, background: int = 3):
    rng = np.random.default_rng(len(str(path)))
    with RgbdFolderWriter(path, W, H, background_frames=background) as writer:
        for i in range(frames):
            depth = np.full((H, W), 2500, np.uint16)
            color = rng.integers(60, 90, (H, W, 3), dtype=np.uint8)
            alpha = None
            if i >= background:
                depth[8:, 10:30], color[8:, 10:30] = 1000, (200, 40, 40)
                alpha = np.zeros((H, W), np.float32)
                alpha[8:, 10:30] = 1.0
            writer.write(Frame(color, depth, 0.001, i / 30, i, Intrinsics.default_for(W, H), alpha=alpha))
    return path


def test_predictions_of_another_recording_are_refused(tmp_path, capsys):
    # Before: eval printed scores (SAD 42 where the right pair gives 4.9) for predictions of another recording.
    first, second = _recording(tmp_path / "first"), _recording(tmp_path / "second")
    out = tmp_path / "out"
    assert main.main(["process", str(first), "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["settings"]["input"] == str(first.resolve())
    capsys.readouterr()
    assert main.main(["eval", str(first), "--pred", str(out)]) == 0
    assert "3 frames with ground truth" in capsys.readouterr().out
    assert main.main(["eval", str(second), "--pred", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The predictions in") and "were made from" in err and err.count("\n") == 1


def test_frames_without_prediction_or_truth_are_counted(tmp_path, capsys):
    rec = _recording(tmp_path / "rec")
    out = tmp_path / "out"
    assert main.main(["process", str(rec), "--out", str(out)]) == 0
    (out / "run.json").unlink()  # predictions from elsewhere: no record of their input
    (out / "alpha" / "000004.png").unlink()
    (out / "alpha" / "000099.png").write_bytes((out / "alpha" / "000003.png").read_bytes())
    capsys.readouterr()
    assert main.main(["eval", str(rec), "--pred", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 frames with ground truth" in captured.out
    assert "1 frame(s) with ground truth have no prediction and 1 prediction(s) match no ground-truth frame" in captured.err
