"""`main.py process` over many inputs (issue 19) on this machine: a pool of worker processes writes
the same bytes as a serial run and as each input processed alone; a failing input is reported at
the end without stopping the others; --resume finishes an interrupted batch exactly; list files,
globs, output names and the one-sentence errors."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from app.many_inputs import output_names
from engines import batch
from engines.matting.pipeline import MattingPipeline
from tests.batch_recordings import (BACKGROUND_FRAMES, TEST_FRAMES, assert_same_files, run_main, tree,
                                    write_recording)

NAMES = ("a-take", "b-take", "solo")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three recordings, two of them called 'take' (in folders a/ and b/)."""
    root = tmp_path_factory.mktemp("recs")
    paths = [write_recording(root / "a" / "take", 1), write_recording(root / "b" / "take", 2),
             write_recording(root / "solo", 3)]
    return root, paths


@pytest.fixture(scope="module")
def serial(recordings, tmp_path_factory):
    """The batch run in this process, one input after another (--workers 1)."""
    _, paths = recordings
    out = tmp_path_factory.mktemp("serial")
    assert run_main("process", *paths, "--out", out, "--save", "alpha,composite,trimap", "--workers", 1) == 0
    return out


def one_sentence(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_each_input_gets_its_own_folder_with_what_a_run_on_it_alone_writes(recordings, serial, tmp_path):
    _, paths = recordings
    assert sorted(p.name for p in serial.iterdir()) == sorted(NAMES)
    for path, name in zip(paths, NAMES):
        alone = tmp_path / name
        assert run_main("process", path, "--out", alone, "--save", "alpha,composite,trimap") == 0
        assert (alone / batch.RUN_RECORD).exists()  # what made the folder (eval checks it), as in a batch
        assert_same_files(serial / name, alone, skip=(batch.RUN_RECORD,))
        assert len(list((alone / "alpha").iterdir())) == TEST_FRAMES


@pytest.mark.slow
def test_a_process_pool_writes_the_same_bytes_as_the_serial_run(recordings, serial, tmp_path, capsys):
    _, paths = recordings
    out = tmp_path / "pool"
    assert run_main("process", *paths, "--out", out, "--save", "alpha,composite,trimap", "--workers", 2) == 0
    stdout = capsys.readouterr().out
    assert "Processed 3 of 3 inputs" in stdout and "2 processes" in stdout
    assert_same_files(serial, out)  # run.json included: the same settings were recorded


def test_a_failing_input_is_reported_at_the_end_and_the_others_finish(recordings, serial, tmp_path, capsys):
    root, paths = recordings
    broken = tmp_path / "broken"
    shutil.copytree(paths[2], broken)
    (broken / "depth" / f"{BACKGROUND_FRAMES + 2:06d}.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert run_main("process", paths[0], broken, paths[1], "--out", out, "--save", "alpha,composite,trimap",
                    "--workers", 2) == 1  # in the process pool
    captured = capsys.readouterr()
    assert "Processed 2 of 3 inputs (1 failed)" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0] and "ends early" in errors[0]
    assert "Traceback" not in captured.err
    for name in ("a-take", "b-take"):  # processed after the failure too
        assert_same_files(serial / name, out / name)
    assert len(list((out / "broken" / "alpha").iterdir())) == 2  # frames before the damaged one are kept


def _interrupt_after(monkeypatch, frames: int) -> None:
    """Ctrl-C while writing the (frames + 1)-th matted frame of the batch."""
    real_write, calls = batch._OutputWriter.write, {"n": 0}

    def write(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > frames:
            raise KeyboardInterrupt
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(batch._OutputWriter, "write", write)


def _count_matted(monkeypatch) -> dict:
    real_process, count = MattingPipeline.process, {"n": 0}

    def process(self, *args, **kwargs):
        count["n"] += 1
        return real_process(self, *args, **kwargs)

    monkeypatch.setattr(MattingPipeline, "process", process)
    return count


@pytest.mark.parametrize("smoothing", ["0", "0.5"])  # with temporal smoothing the kept frames still feed its state
def test_resume_finishes_an_interrupted_batch_exactly_and_redoes_nothing(recordings, tmp_path, capsys, monkeypatch,
                                                                          smoothing):
    _, paths = recordings
    command = ["process", *paths, "--save", "alpha,composite,trimap", "--workers", 1, "--smoothing", smoothing]
    full = tmp_path / "full"
    assert run_main(*command, "--out", full) == 0
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, TEST_FRAMES + 2)  # the first input done, two frames of the second
        assert run_main(*command, "--out", out) == 130
    assert len(list((out / "b-take" / "alpha").iterdir())) == 2 and not (out / "solo").exists()
    assert json.loads((out / "b-take" / batch.RUN_RECORD).read_text())["complete"] is False
    capsys.readouterr()
    matted = _count_matted(monkeypatch)
    assert run_main(*command, "--out", out, "--resume") == 0
    stdout = capsys.readouterr().out
    assert "a-take: already complete" in stdout and "2 kept from an earlier run" in stdout
    expected = (TEST_FRAMES - 2) + TEST_FRAMES + (2 if smoothing != "0" else 0)
    assert matted["n"] == expected
    assert_same_files(full, out)


def test_resume_redoes_an_input_whose_settings_changed(recordings, serial, tmp_path, capsys):
    _, paths = recordings
    out = tmp_path / "out"
    shutil.copytree(serial, out)
    (out / "solo" / "alpha" / f"{BACKGROUND_FRAMES:06d}.png").write_bytes(b"stale")
    assert run_main("process", *paths, "--out", out, "--save", "alpha,composite,trimap", "--workers", 1,
                    "--resume", "--smoothing", "0.3") == 0
    stdout = capsys.readouterr().out
    assert "already complete" not in stdout and f"{TEST_FRAMES} frames in" in stdout
    assert tree(out / "solo")["alpha/" + f"{BACKGROUND_FRAMES:06d}.png"] != b"stale"
    assert json.loads((out / "solo" / batch.RUN_RECORD).read_text())["settings"]["engine"]["temporal_smoothing"] == 0.3


def test_a_list_file_gives_each_input_its_own_background(recordings, tmp_path, capsys):
    root, paths = recordings
    empty = tmp_path / "lists" / "empty_room"
    write_recording(empty, 2, test_frames=0)  # the empty scene of b/take, recorded on its own
    listing = tmp_path / "lists" / "inputs.txt"
    listing.write_text(f"# camera takes\n{paths[0]}\n{paths[1]}  --background empty_room --background-frames 4\n")
    out = tmp_path / "out"
    assert run_main("process", "--list", listing, "--out", out, "--workers", 1) == 0
    settings = json.loads((out / "b-take" / batch.RUN_RECORD).read_text())["settings"]
    assert settings["background_path"] == str(empty.resolve()) and settings["background_frames"] == 4
    frames_b = len(list((out / "b-take" / "alpha").iterdir()))
    assert frames_b == BACKGROUND_FRAMES + TEST_FRAMES  # with a separate background every frame is matted
    assert len(list((out / "a-take" / "alpha").iterdir())) == TEST_FRAMES


def test_a_quoted_glob_expands_to_its_matches(recordings, tmp_path, capsys):
    root, _ = recordings
    out = tmp_path / "out"
    assert run_main("process", str(root / "*" / "take"), "--out", out, "--workers", 1) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a-take", "b-take"]


@pytest.mark.parametrize("make_args, phrase", [
    (lambda root, tmp: [root / "nothing*"], "matches no file"),
    (lambda root, tmp: [root / "solo", root / "missing"], "does not exist"),
    (lambda root, tmp: [root / "solo", root / "solo"], "given twice"),
    (lambda root, tmp: [root / "solo", "realsense://"], "live camera"),
    (lambda root, tmp: ["--list", tmp / "absent.txt"], "Cannot read the list file"),
    (lambda root, tmp: ["--list", _write(tmp / "bad.txt", "solo --frobnicate 3\n")], "line 1"),
    (lambda root, tmp: ["--list", _write(tmp / "bad.txt", "solo --background-frames 0\n")], "line 1"),
    (lambda root, tmp: ["--list", _write(tmp / "none.txt", "# nothing\n")], "names no recording"),
    (lambda root, tmp: [root / "solo", root / "a" / "take", "--save-prior", tmp / "p.npz"], "--save-prior"),
    (lambda root, tmp: [], "at least one recording"),
])
def test_bad_inputs_are_one_sentence_and_exit_2_before_any_work(recordings, tmp_path, capsys, make_args, phrase):
    root, _ = recordings
    out = tmp_path / "out"
    assert run_main("process", *make_args(root, tmp_path), "--out", out) == 2
    assert phrase in one_sentence(capsys.readouterr().err)
    assert not out.exists()


def _write(path, text):
    path.write_text(text)
    return path


def test_output_names_are_unique_and_stable():
    assert output_names(["/d/cam1/take.bag", "/d/cam2/take.bag", "/d/solo"]) == ["cam1-take", "cam2-take", "solo"]
    assert output_names(["/d/x.bag", "/d/x.db3"]) == ["x.bag", "x.db3"]
    assert output_names(["/r/a/s/t", "/r/b/s/t"]) == ["a-s-t", "b-s-t"]
    assert output_names(["orbbec:///d/c.bag"]) == ["c"]


def test_ray_without_ray_installed_is_one_sentence(recordings, tmp_path, capsys, monkeypatch):
    _, paths = recordings
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert run_main("process", *paths, "--out", tmp_path / "out", "--ray", "auto") == 2
    assert "Ray, which is not installed" in one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_is_one_sentence(recordings, tmp_path, capsys):
    _, paths = recordings
    assert run_main("process", *paths, "--out", tmp_path / "out", "--ray", "127.0.0.1:9") == 1
    assert "Cannot reach the Ray cluster at '127.0.0.1:9'" in one_sentence(capsys.readouterr().err)


@pytest.mark.slow
def test_the_throughput_benchmark_times_each_worker_count_and_checks_the_bytes(tmp_path):
    from engines.config import EngineConfig
    from engines.evaluation.throughput import ThroughputConfig, format_report, throughput_benchmark

    config = ThroughputConfig(recordings=1, inputs=2, test_frames=3, background_frames=10, width=64, height=48,
                              workers=(1, 2), ray=False, memory_inputs=(2, 4))
    report = throughput_benchmark(config, EngineConfig(), tmp_path / "bench", cores=2)
    assert [(r.runner, r.workers, r.frames, r.identical) for r in report.rows] == [
        ("this process", 1, 6, True), ("process pool", 2, 6, True)]
    assert all(r.seconds > r.first_frame_s > 0 and r.steady_fps > 0 for r in report.rows)
    assert [(m.inputs, m.frames) for m in report.memory] == [(2, 6), (4, 12)]
    assert all(m.worker_peak_mb > 10 and m.driver_peak_mb > 10 for m in report.memory)
    table = format_report(report, config, EngineConfig())
    assert "| process pool | 2 | 6 |" in table and "| 4 | 2 | 12 |" in table


def test_a_ray_cluster_that_wants_a_token_is_one_sentence_naming_the_fix():
    from engines.batch_ray import _join_error

    try:
        try:
            raise RuntimeError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect.")
        except RuntimeError as cause:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from cause
    except ConnectionError as error:
        message = _join_error("10.0.0.1:6379", error)
    assert "RAY_AUTH_MODE=token" in message and "\n" not in message
    assert _join_error("h:1", ConnectionError("Failed to connect\nmore")) == "Cannot join the Ray cluster at 'h:1': Failed to connect."


def test_one_input_with_resume_keeps_its_layout_and_skips_when_complete(recordings, tmp_path, capsys):
    _, paths = recordings
    out = tmp_path / "out"
    assert run_main("process", paths[2], "--out", out, "--resume") == 0
    assert (out / "alpha").is_dir() and json.loads((out / batch.RUN_RECORD).read_text())["complete"] is True
    before = tree(out)
    capsys.readouterr()
    assert run_main("process", paths[2], "--out", out, "--resume") == 0
    assert "is already complete" in capsys.readouterr().out
    assert tree(out) == before


def test_resume_keeps_a_video_background_in_step(recordings, tmp_path, monkeypatch):
    from tests.test_cli_consistency import _three_frame_video

    _, paths = recordings
    video = _three_frame_video(tmp_path / "clip.mp4", 64, 48)  # 3 frames, looped over the 5 test frames
    command = ["process", paths[2], "--replace", video, "--resume"]
    assert run_main(*command, "--out", tmp_path / "full") == 0
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        assert run_main(*command, "--out", tmp_path / "out") == 130
    assert run_main(*command, "--out", tmp_path / "out") == 0
    assert_same_files(tmp_path / "full", tmp_path / "out")
