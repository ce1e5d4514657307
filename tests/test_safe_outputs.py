"""`process` never leaves broken or misnamed outputs (issue 17): atomic writes, symlinks, full disks,
permissions, SIGTERM/Ctrl-C, frames.csv and index gaps, bounded memory, damaged frames and alpha/."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
import sensors.safe_write as safe_write
from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.image_io import read_color
from sensors.rgbd_folder import RgbdFolderWriter

REPO_ROOT = Path(__file__).resolve().parents[1]
W, H = 32, 24
BG = 6


def _frame(index: int, subject: bool) -> Frame:
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:H, 0:W]
    color = np.stack([xx * 7 % 200, yy * 9 % 200, (xx + yy) % 120], axis=2).astype(np.float32) + 30
    depth_m = 2.5 + rng.normal(0, 0.004, (H, W))
    alpha = np.zeros((H, W), np.float32)
    if subject:
        alpha[6:, 10:22] = 1.0
        color = np.where(alpha[..., None] > 0, np.array([200, 40, 40], np.float32), color)
        depth_m = np.where(alpha > 0, 1.0, depth_m)
    return Frame(color=np.clip(color + rng.normal(0, 2, color.shape), 0, 255).astype(np.uint8),
                 depth_raw=np.round(depth_m * 1000).astype(np.uint16), depth_scale=0.001, timestamp=index / 30,
                 index=index, intrinsics=Intrinsics.default_for(W, H), alpha=alpha)


def make_recording(path: Path, indices, background_frames: int = BG) -> Path:
    with RgbdFolderWriter(path, W, H, background_frames=background_frames) as writer:
        for i in indices:
            writer.write(_frame(i, subject=i >= background_frames))
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return make_recording(tmp_path / "rec", range(BG + 4))


def run_main(*args) -> int:
    try:
        return main.main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code


def one_sentence(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "unexpected" not in err
    return lines[0]


def assert_outputs_complete(out: Path) -> None:
    """Every PNG under `out` decodes; no temporary file is left."""
    for path in out.rglob("*"):
        assert not path.name.endswith(".tmp"), path
        if path.suffix == ".png":
            assert path.stat().st_size > 0 and cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None, path


# -- atomic writes, symlinks, file-system errors ------------------------------------------------------
def test_full_disk_is_one_sentence_and_leaves_no_broken_file(recording, tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real_write = safe_write._os_write

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == 9:  # run.json, frame 1 (alpha, trimap, frames.csv header, row), frame 2 (alpha, trimap, row), 3rd alpha
            n = real_write(fd, bytes(data)[:100])  # a part lands on disk, then the disk is full
            assert n
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(safe_write, "_os_write", write)
    out = tmp_path / "out"
    assert run_main("process", recording, "--out", out, "--save", "alpha,trimap") == 1
    line = one_sentence(capsys.readouterr().err)
    assert "disk is full" in line and str(out / "alpha" / f"{BG + 2:06d}.png") in line
    assert_outputs_complete(out)
    assert sorted(p.name for p in (out / "alpha").iterdir()) == [f"{BG:06d}.png", f"{BG + 1:06d}.png"]
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert [int(r["index"]) for r in rows] == [BG, BG + 1]  # rows only for frames whose files are complete


def test_symlink_at_an_output_name_is_replaced_not_followed(recording, tmp_path):
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"keep me")
    out = tmp_path / "out"
    (out / "alpha").mkdir(parents=True)
    link = out / "alpha" / f"{BG:06d}.png"
    link.symlink_to(outside)
    (out / "frames.csv").symlink_to(outside)
    stale = out / "alpha" / f".{BG + 1:06d}.png.0123abcd.tmp"  # what a killed run leaves
    stale.write_bytes(b"half")
    assert run_main("process", recording, "--out", out) == 0
    assert outside.read_bytes() == b"keep me"
    assert not link.is_symlink() and cv2.imread(str(link), cv2.IMREAD_UNCHANGED).shape == (H, W)
    assert not (out / "frames.csv").is_symlink()
    assert not stale.exists()
    assert_outputs_complete(out)


def test_output_folder_linked_outside_out_is_refused(recording, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "alpha").symlink_to(elsewhere)
    assert run_main("process", recording, "--out", out) == 1
    assert "outside" in one_sentence(capsys.readouterr().err)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("problem", ["file", "parent-file", "read-only", "permission"])
def test_unwritable_out_is_one_sentence_naming_the_path(recording, tmp_path, capsys, monkeypatch, problem):
    out = tmp_path / "out"
    if problem == "file":
        out.write_text("a file")
    elif problem == "parent-file":
        (tmp_path / "f").write_text("a file")
        out = tmp_path / "f" / "out"
    else:  # root ignores permissions and there is no read-only mount here: simulate the system call
        code = errno.EROFS if problem == "read-only" else errno.EACCES

        def refuse(path, *args, **kwargs):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(safe_write, "_os_open", refuse)
    started = time.perf_counter()
    assert run_main("process", recording, "--out", out) == 1
    line = one_sentence(capsys.readouterr().err)
    assert f"'{out}" in line
    expected = {"file": "not a folder", "parent-file": "not a folder", "read-only": "read-only",
                "permission": "permission denied"}[problem]
    assert expected in line
    assert time.perf_counter() - started < 20  # refused before the background is built


def test_saved_prior_on_a_full_disk_is_one_sentence(recording, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", full)
    prior = tmp_path / "scene.npz"
    assert run_main("process", recording, "--out", tmp_path / "out", "--save-prior", prior) == 1
    assert str(prior) in one_sentence(capsys.readouterr().err)
    assert not prior.exists() and not list(tmp_path.glob("*.tmp"))


# -- signals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "Terminated"), (signal.SIGINT, 130, "Interrupted")])
def test_signal_mid_run_is_one_sentence_and_keeps_complete_files(tmp_path, signum, code, word):
    rec = make_recording(tmp_path / "long", range(BG + 400))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), "process", str(rec), "--out", str(out),
                             "--save", "alpha,composite,foreground,trimap"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "alpha").is_dir() or len(list((out / "alpha").iterdir())) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert word in one_sentence(err) and "kept" in err
    assert_outputs_complete(out)
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert rows and all((out / "alpha" / f"{int(r['index']):06d}.png").is_file() for r in rows)


def test_ctrl_c_while_starting_up_is_no_traceback(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(main, "build_parser", interrupted)
    before = signal.getsignal(signal.SIGINT)
    assert main.main(["process", "x", "--out", "y"]) == 130
    assert "Interrupted" in one_sentence(capsys.readouterr().err)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored afterwards


# -- source identity ---------------------------------------------------------------------------------
def test_outputs_are_named_by_source_index_with_frames_csv_and_gaps(tmp_path, capsys):
    rec = make_recording(tmp_path / "rec", [*range(BG), 7, 8, 11, 12])  # 6, 9 and 10 were dropped
    out = tmp_path / "out"
    assert run_main("process", rec, "--out", out) == 0
    stdout = capsys.readouterr().out
    assert "frames 6, 9-10 missing in the source" in stdout.splitlines()[0]
    assert sorted(p.name for p in (out / "alpha").iterdir()) == ["000007.png", "000008.png", "000011.png", "000012.png"]
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert [(int(r["index"]), int(r["missing_before"])) for r in rows] == [(7, 1), (8, 0), (11, 2), (12, 0)]
    assert [float(r["color_time_s"]) for r in rows] == pytest.approx([7 / 30, 8 / 30, 11 / 30, 12 / 30], abs=1e-6)
    assert all(float(r["pair_gap_ms"]) == 0 for r in rows)


# -- bounded memory -------------------------------------------------------------------------------
def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 1000)
    return (b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", len(idat)) + b"IDAT" + idat
            + struct.pack(">I", zlib.crc32(b"IDAT" + idat)))


def test_huge_png_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(20000, 20000))
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a 20000x20000 image"))
    with pytest.raises(UserError) as err:
        read_color(path)
    assert "20000x20000" in str(err.value) and "8192x8192" in str(err.value) and "\n" not in str(err.value)


def test_huge_frame_in_a_recording_is_one_sentence(recording, tmp_path, capsys):
    (recording / "color" / f"{BG + 1:06d}.png").write_bytes(_png_header_only(20000, 20000))
    assert run_main("process", recording, "--out", tmp_path / "out") == 1
    assert "20000x20000" in one_sentence(capsys.readouterr().err)


def test_huge_meta_size_is_refused_before_allocating(recording, tmp_path, capsys):
    meta = json.loads((recording / "meta.json").read_text())
    meta.update(width=30000, height=30000)
    (recording / "meta.json").write_text(json.dumps(meta))
    assert run_main("process", recording, "--out", tmp_path / "o", "--save", "composite", "--replace", "checker") == 2
    assert "30000x30000" in one_sentence(capsys.readouterr().err)


@pytest.mark.parametrize("band", ["100000", "-1"])
def test_post_band_is_bounded(recording, tmp_path, capsys, band):
    assert run_main("process", recording, "--out", tmp_path / "o", "--post", "closed-form", "--post-band", band) == 2
    assert "--post-band" in one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


# -- damaged recordings ---------------------------------------------------------------------------
def test_damaged_frame_says_how_much_was_read(recording, tmp_path, capsys):
    bad = recording / "depth" / f"{BG + 2:06d}.png"
    bad.write_bytes(bad.read_bytes()[:70])
    out = tmp_path / "out"
    assert run_main("process", recording, "--out", out) == 1
    line = one_sentence(capsys.readouterr().err)
    assert bad.name in line and "ends early" in line
    assert f"{BG + 2} of its {BG + 4} frames were read" in line and "2 frames matted so far are kept" in line
    assert len(list((out / "alpha").iterdir())) == 2


def test_damaged_ground_truth_alpha_does_not_stop_process(recording, tmp_path, capsys):
    (recording / "alpha" / f"{BG + 1:06d}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    assert run_main("process", recording, "--out", out) == 0
    assert len(list((out / "alpha").iterdir())) == 4
