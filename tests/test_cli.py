"""End-to-end tests of main.py: process, eval and the error paths a user can hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from sensors.frame import Frame, Intrinsics
from sensors.image_io import read_alpha
from sensors.rgbd_folder import RgbdFolderWriter

REPO_ROOT = Path(__file__).resolve().parents[1]
W, H = 64, 48
BACKGROUND_FRAMES = 6
TEST_FRAMES = 4


def _scene_frame(index: int, rng: np.random.Generator, with_subject: bool) -> Frame:
    """A textured wall at 2.5 m; test frames add a 1 m box with a soft edge, under a lighting change."""
    yy, xx = np.mgrid[0:H, 0:W]
    wall = (np.stack([xx * 3 % 200, yy * 5 % 200, (xx + yy) % 120], axis=2) + 30).astype(np.float32)
    depth_m = 2.5 + rng.normal(0, 0.005, (H, W))
    alpha = np.zeros((H, W), np.float32)
    image = wall
    if with_subject:
        left = 20 + 2 * (index - BACKGROUND_FRAMES)
        alpha = np.clip((xx - left) / 2.0, 0, 1) * ((yy > 10) & (xx < left + 24)).astype(np.float32)
        image = wall * 1.15  # lighting change between capture and test frames
        image = alpha[..., None] * np.array([200, 40, 40], np.float32) + (1 - alpha[..., None]) * image
        depth_m = np.where(alpha > 0.5, 1.0 + rng.normal(0, 0.003, (H, W)), depth_m)
    color = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    return Frame(color=color, depth_raw=np.round(depth_m * 1000).astype(np.uint16), depth_scale=0.001,
                 timestamp=index / 30, index=index, intrinsics=Intrinsics.default_for(W, H), alpha=alpha)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "rec"
    rng = np.random.default_rng(0)
    with RgbdFolderWriter(path, W, H, background_frames=BACKGROUND_FRAMES) as writer:
        for i in range(BACKGROUND_FRAMES + TEST_FRAMES):
            writer.write(_scene_frame(i, rng, with_subject=i >= BACKGROUND_FRAMES))
    return path


def run_main(*args: str) -> int:
    """main.main's exit code, also when argparse exits on a usage error."""
    try:
        return main.main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code


def test_process_writes_every_output_and_eval_scores_it(recording, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_main("process", recording, "--out", out, "--save", "alpha,composite,foreground,trimap",
                    "--replace", "#00ff00") == 0
    stdout = capsys.readouterr().out
    assert "Median milliseconds" in stdout and "write" in stdout
    names = sorted(p.name for p in (out / "alpha").iterdir())
    assert names == [f"{i:06d}.png" for i in range(BACKGROUND_FRAMES, BACKGROUND_FRAMES + TEST_FRAMES)]
    for kind in ("composite", "foreground", "trimap"):
        assert len(list((out / kind).iterdir())) == TEST_FRAMES
    foreground = cv2.imread(str(out / "foreground" / names[0]), cv2.IMREAD_UNCHANGED)
    assert foreground.shape == (H, W, 4)
    # The box (alpha 1 core) is found and the wall is not, despite the lighting change.
    alpha = read_alpha(out / "alpha" / names[0])
    assert alpha[30, 30] > 0.9 and alpha[30, 5] < 0.1
    composite = cv2.cvtColor(cv2.imread(str(out / "composite" / names[0])), cv2.COLOR_BGR2RGB)
    assert composite[30, 5, 1] > 200 and composite[30, 5, 0] < 60  # replaced by green

    assert run_main("eval", recording, "--pred", out) == 0
    table = capsys.readouterr().out
    values = [float(v) for v in table.strip().splitlines()[-1].split()]
    all_background_sad = np.mean([_scene_frame(i, np.random.default_rng(0), True).alpha.sum() / 1000
                                  for i in range(BACKGROUND_FRAMES, BACKGROUND_FRAMES + TEST_FRAMES)])
    assert len(values) == 4 and 0 < values[0] < 0.25 * all_background_sad


def test_background_from_another_recording_and_saved_prior(recording, tmp_path):
    prior = tmp_path / "scene.npz"
    assert run_main("process", recording, "--out", tmp_path / "a", "--save-prior", prior) == 0
    assert prior.is_file()
    assert run_main("process", recording, "--out", tmp_path / "b", "--prior", prior) == 0
    # With a saved prior every frame is processed, background frames included.
    assert len(list((tmp_path / "b" / "alpha").iterdir())) == BACKGROUND_FRAMES + TEST_FRAMES


@pytest.mark.parametrize(
    "make_args, code, phrase",
    [
        (lambda rec, tmp: ["process", tmp / "missing", "--out", tmp / "o"], 2, "does not exist"),
        (lambda rec, tmp: ["process", tmp, "--out", tmp / "o"], 2, "not a recording"),
        (lambda rec, tmp: ["process", rec, "--out", tmp / "o", "--save", "alpha,bogus"], 2, "unknown output"),
        (lambda rec, tmp: ["process", rec, "--out", tmp / "o", "--frobnicate"], 2, "unrecognized arguments"),
        (lambda rec, tmp: ["process", rec, "--out", tmp / "o", "--replace", tmp / "nope.png",
                           "--save", "composite"], 2, "nope.png"),
        (lambda rec, tmp: ["process", rec, "--out", tmp / "o", "--background-frames", "99"], 1, "only"),
        (lambda rec, tmp: ["eval", rec, "--pred", tmp / "nothing"], 2, "does not exist"),
    ],
)
def test_errors_are_one_sentence_with_exit_code(recording, tmp_path, capsys, make_args, code, phrase):
    assert run_main(*make_args(recording, tmp_path)) == code
    err = capsys.readouterr().err
    assert phrase in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_recording_without_background_frames_says_what_to_do(recording, tmp_path, capsys):
    meta_path = recording / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["background_frames"]
    meta_path.write_text(json.dumps(meta))
    assert run_main("process", recording, "--out", tmp_path / "o") == 2
    assert "--background-frames" in capsys.readouterr().err


def test_corrupt_frame_keeps_frames_written_before_it(recording, tmp_path, capsys):
    bad = BACKGROUND_FRAMES + 2
    (recording / "color" / f"{bad:06d}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert run_main("process", recording, "--out", out) == 1
    err = capsys.readouterr().err
    assert f"{bad:06d}.png" in err and "Traceback" not in err
    written = sorted(p.name for p in (out / "alpha").iterdir())
    assert written == [f"{i:06d}.png" for i in range(BACKGROUND_FRAMES, bad)]


def test_mismatched_background_recording_size(recording, tmp_path, capsys):
    other = tmp_path / "small"
    rng = np.random.default_rng(1)
    with RgbdFolderWriter(other, W, H) as writer:
        for i in range(3):
            writer.write(_scene_frame(i, rng, with_subject=False))
    # A background of the right size works; then check a wrong-size one is refused clearly.
    assert run_main("process", recording, "--out", tmp_path / "ok", "--background", other) == 0
    small = tmp_path / "tiny"
    with RgbdFolderWriter(small, W // 2, H // 2) as writer:
        f = _scene_frame(0, rng, with_subject=False)
        writer.write(Frame(color=f.color[::2, ::2].copy(), depth_raw=f.depth_raw[::2, ::2].copy(), depth_scale=0.001,
                           timestamp=0, index=0, intrinsics=Intrinsics.default_for(W // 2, H // 2)))
    capsys.readouterr()
    code = run_main("process", recording, "--out", tmp_path / "bad", "--background", small)
    err = capsys.readouterr().err
    assert code == 1 and "does not match" in err and "Traceback" not in err


def test_main_runs_as_a_script_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), "process", str(tmp_path / "none"),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_post_matting_closed_form_runs_from_the_command_line(recording, tmp_path):
    out = tmp_path / "post"
    assert run_main("process", recording, "--out", out, "--post", "closed-form", "--save", "alpha,trimap") == 0
    assert len(list((out / "alpha").iterdir())) == TEST_FRAMES
    trimap = read_alpha(out / "trimap" / f"{BACKGROUND_FRAMES:06d}.png")
    assert set(np.unique(np.round(trimap * 2) / 2)) <= {0.0, 0.5, 1.0}


def test_demo_without_display_processes_the_bundled_recording(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run_main() == 0
    stdout = capsys.readouterr().out
    assert "out/demo" in stdout and "Median milliseconds" in stdout
    meta = json.loads((main.DEMO_RECORDING / "meta.json").read_text())
    expected = meta["frame_count"] - meta["background_frames"]
    for kind in ("alpha", "composite", "foreground", "trimap"):
        assert len(list((tmp_path / "out" / "demo" / kind).iterdir())) == expected
