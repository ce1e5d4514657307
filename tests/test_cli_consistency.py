"""CLI consistency (issue 18, item 5): --replace implies the composite output and is checked before any
work; an unavailable post-matting backend fails before the background is built and leaves no folder;
every option of synth, bench-accuracy, bench-speed (and process) has help with its default."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import main
from engines import batch
from engines.batch import ProcessOptions
from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.rgbd_folder import RgbdFolderWriter

W, H = 48, 32


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "rec"
    rng = np.random.default_rng(1)
    with RgbdFolderWriter(path, W, H, background_frames=4) as writer:
        for i in range(6):
            depth = np.full((H, W), 2500, np.uint16)
            color = rng.integers(60, 90, (H, W, 3), dtype=np.uint8)
            if i >= 4:
                depth[8:, 10:30], color[8:, 10:30] = 1000, (200, 40, 40)
            writer.write(Frame(color, depth, 0.001, i / 30, i, Intrinsics.default_for(W, H)))
    return path


def run(*args) -> int:
    try:
        return main.main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code


def no_work(monkeypatch):
    """Fail the test if the recording is opened or the background built."""
    def forbidden(*_a, **_k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(batch, "open_source", forbidden)
    monkeypatch.setattr(batch, "build_prior", forbidden)


def test_replace_implies_the_composite_output_and_says_so(recording, tmp_path, capsys):
    out = tmp_path / "out"
    assert run("process", recording, "--out", out, "--replace", "green") == 0
    stdout = capsys.readouterr().out
    assert len(list((out / "composite").iterdir())) == 2 and len(list((out / "alpha").iterdir())) == 2
    assert "(--replace implies it)" in stdout
    assert ProcessOptions(replace="blur").save == ("alpha", "composite")
    assert ProcessOptions().save == ("alpha",) and not ProcessOptions().implied_composite


@pytest.mark.parametrize("replace, phrase", [("#12345", "#RRGGBB"), ("missing.jpg", "does not exist"),
                                             ("blur:-3", "blur"), ("purple", "is not a colour name (black, blue")])
def test_an_invalid_replace_fails_before_any_work(recording, tmp_path, capsys, monkeypatch, replace, phrase):
    no_work(monkeypatch)
    out = tmp_path / "out"
    assert run("process", recording, "--out", out, "--replace", tmp_path / replace if "." in replace else replace) == 2
    err = capsys.readouterr().err
    assert phrase in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("weights", [None, "empty"])
def test_vitmatte_without_weights_fails_before_the_background_and_leaves_nothing(recording, tmp_path, capsys,
                                                                                monkeypatch, weights):
    no_work(monkeypatch)
    out = tmp_path / "out"
    extra = [] if weights is None else ["--vitmatte", tmp_path / weights]
    if weights:
        (tmp_path / weights).mkdir()
    assert run("process", recording, "--out", out, "--post", "vitmatte", *extra) == 2
    err = capsys.readouterr().err
    assert "hf download" in err and "--vitmatte DIR" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (out / "alpha").exists()


def test_batch_api_checks_save_kinds_when_the_options_are_made():
    with pytest.raises(UserError, match="bogus"):
        ProcessOptions(save=("alpha", "bogus"))


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = main.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_with_its_default(command):
    parser = _subcommands()[command]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.dest} has no help"
        if action.option_strings and not action.required:  # a required option has no default to state
            assert "default" in action.help, f"{command} {'/'.join(action.option_strings)} does not say its default"


def test_replace_help_names_every_choice_with_its_default():
    text = _subcommands()["process"].format_help()
    for word in ("blur:SIGMA", "checker:CELL", "#RRGGBB", "implies --save composite", "(default: blur)"):
        assert word in " ".join(text.split()), word


def _three_frame_video(path, width: int = 64, height: int = 32):
    """An MP4 (PyAV, MPEG-4) of three flat frames: grey levels 0, 120, 240."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for level in (0, 120, 240):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), level, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_process_replace_takes_a_video_and_loops_it(recording, tmp_path, capsys):
    # Before: process said the (valid) video was corrupt, while the window played it.
    video = _three_frame_video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    assert main.main(["process", str(recording), "--out", str(out), "--replace", str(video)]) == 0
    composites = sorted((out / "composite").glob("*.png"))
    assert len(composites) == 2
    import cv2

    corner = [int(cv2.imread(str(p))[0, 0].mean()) for p in composites]  # background where alpha is 0
    assert corner[0] < 15 and 105 < corner[1] < 135  # the video's first frames, in order


def test_an_unreadable_video_background_is_one_sentence_before_any_work(recording, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 50)
    out = tmp_path / "out"
    code = main.main(["process", str(recording), "--out", str(out), "--replace", str(broken)])
    err = capsys.readouterr().err
    assert code in (1, 2) and err.startswith("error: The background video") and err.count("\n") == 1
    assert not (out / "alpha").exists() or not any((out / "alpha").iterdir())


def test_a_run_that_fails_before_any_frame_leaves_no_empty_folders(tmp_path, capsys):
    # Before: a recording that does not say which frames are empty (exit 2) left empty alpha/ and
    # composite/ folders and a header-only frames.csv behind.
    rec = tmp_path / "take"
    with RgbdFolderWriter(rec, W, H) as writer:  # no background_frames in its meta
        for i in range(3):
            writer.write(Frame(np.full((H, W, 3), 80, np.uint8), np.full((H, W), 2000, np.uint16), 0.001, i / 30, i,
                               Intrinsics.default_for(W, H)))
    out = tmp_path / "out"
    assert main.main(["process", str(rec), "--out", str(out), "--save", "alpha,composite"]) == 2
    assert "does not say which frames show the empty scene" in capsys.readouterr().err
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "frames.csv").write_text("an earlier run's table\n")
    assert main.main(["process", str(rec), "--out", str(kept)]) == 2
    assert (kept / "frames.csv").read_text() == "an earlier run's table\n" and not (kept / "alpha").exists()



def test_background_recording_uses_only_its_own_empty_scene_frames(recording, tmp_path, capsys):
    # Before: --background REC built the plate from every frame of REC, its subject frames too.
    out = tmp_path / "out"
    code = main.main(["process", str(recording), "--out", str(out), "--background", str(recording)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "(4 frames)" in captured.out  # the 4 empty-scene frames its meta names, not all 6


def test_train_progress_is_a_bar_on_a_terminal_and_json_lines_for_the_app():
    import io
    import json

    from app.commands import training_log

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    events = [{"stage": "adapt", "event": "progress", "phase": "teacher", "fraction": 0.5, "eta_s": 80.0},
              {"stage": "adapt", "event": "accepted", "held_out": 0.0123}]
    piped = io.StringIO()
    for event in events:
        training_log(piped)(event)
    assert [json.loads(line) for line in piped.getvalue().splitlines()] == events  # what adapt_worker parses
    terminal = Terminal()
    on_log = training_log(terminal)
    for event in events:
        on_log(event)
    text = terminal.getvalue()
    assert "{" not in text and "teacher" in text and "50%" in text and "about 80 s left" in text
    assert "event=accepted held_out=0.0123" in text
