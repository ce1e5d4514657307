"""Background plates with someone in them are caught before matting (issue 12, item 6).

A person standing still in the "empty" frames, or someone walking through them, is found by
`validate_capture` (`engines.matting.plate_check`); `main.py process` refuses such frames with one
sentence (exit code 1) unless told to accept them, and the app's capture ends in CAPTURE_FAILED with
the same finding. Clean plates (synthetic rooms over 20 seeds, the demo recording, real captures in
../shared/data when present) raise nothing. Scenes are 160x120 with procedural textures only, so
they are the same with or without ../shared.
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from engines.batch import ProcessOptions, process_recording
from engines.config import EngineConfig
from engines.matting.background_prior import (
    BackgroundPriorBuilder,
    CaptureReport,
    validate_capture,
)
from engines.synth.look import sample_look, sample_pose
from engines.synth.scene import (
    SceneCamera,
    SceneConfig,
    draw_background,
    place_subject,
    sample_conditions,
)
from engines.synth.sensor import to_depth_raw
from engines.synth.subject import render_person
from engines.synth.textures import TextureBank
from sensors.frame import Frame
from sensors.rgbd_folder import RgbdFolderWriter
from sensors.source import open_source

W, H = 160, 120
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo_recording"
STANDING_SEEDS = (0, 1, 6)  # found in 32 of seeds 0-39 (misses: the person mostly hidden, see plate_check)
CLEAN_SEEDS = range(20)


def scene_frames(seed: int, kinds: str) -> list[Frame]:
    """Frames of one synthetic room, one per letter of `kinds`: "e" empty, "s" the same person standing
    still (fresh sensor noise each frame), "w" the person walking across the picture (left to right
    over the run of consecutive "w" frames)."""
    root = np.random.default_rng(seed)
    scene_rng, subject_rng, noise_rng = root.spawn(3)
    config = SceneConfig(width=W, height=H, seed=seed, real_textures=False)
    bank = TextureBank(use_real=False)
    room = draw_background(scene_rng, config, bank, H, W, augment_plate=False)
    look = sample_look(subject_rng, bank, hair_strands=100, veil_prob=0.0, tex_size=64)
    camera = SceneCamera(room, sample_conditions(scene_rng, config))
    distance, sit = place_subject(subject_rng, room, look, W / 2, config.subject_distance_m)
    still = render_person(look, sample_pose(subject_rng, W / 2, distance, sit_m=sit), room, subject_rng)
    walking = kinds.count("w")
    frames, pose, step = [], None, 0
    for index, kind in enumerate(kinds):
        subject = None
        if kind == "s":
            subject = still
        elif kind == "w":
            u = (-0.15 + 1.3 * step / max(walking - 1, 1)) * W
            pose = sample_pose(subject_rng, u, distance, pose, sit_m=sit)
            subject, step = render_person(look, pose, room, subject_rng), step + 1
        capture = camera.test_frame(noise_rng, subject)  # one exposure throughout: only the subject changes
        frames.append(Frame(capture.color, to_depth_raw(capture.depth_m), 0.001, index / 30.0, index,
                            room.intrinsics, alpha=capture.alpha))
    return frames


def report_for(frames: list[Frame] | list[tuple[np.ndarray, np.ndarray]], fx_px: float | None = None) -> CaptureReport:
    pairs = [(f.color, f.depth_m()) if isinstance(f, Frame) else f for f in frames]
    builder = BackgroundPriorBuilder(*pairs[0][1].shape)
    for color, depth_m in pairs:
        builder.add(color, depth_m)
    return validate_capture(builder, fx_px=fx_px)


def write_recording(path: Path, frames: list[Frame], background_frames: int | None) -> Path:
    with RgbdFolderWriter(path, W, H, background_frames=background_frames) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def run_main(*args) -> int:
    try:
        return main.main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code


# -- the checks on their own ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", STANDING_SEEDS)
def test_a_person_standing_still_is_found(seed):
    report = report_for(scene_frames(seed, "s" * 10))
    assert not report.ok and report.subject is not None and report.subject.kind == "standing"
    assert report.message.startswith("The background capture shows a person standing in the ")
    assert "step out of view and capture the background again." in report.message
    assert report.moving_fraction < 0.02  # the old motion check alone let this plate through


@pytest.mark.parametrize("seed", (1, 2))
def test_someone_walking_through_is_found(seed):
    report = report_for(scene_frames(seed, "eeee" + "w" * 6 + "eeeeee"))
    assert not report.ok and report.subject is not None and report.subject.kind == "moving"
    assert "moving through the" in report.message and "keep the scene empty and still" in report.message


def test_a_small_passer_by_is_found_below_the_old_motion_threshold():
    """Something 12x12 px crossing 12 px of a noisy wall at 3 m moves 1.4 % of the picture: under the
    2 % the motion check alone needs, but one compact region."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(12):
        depth = (3.0 + rng.normal(0, 0.01, (H, W))).astype(np.float32)
        depth[rng.random((H, W)) < 0.05] = 0.0  # holes
        color = np.clip(120 + rng.normal(0, 2, (H, W, 3)), 0, 255).astype(np.uint8)
        x = 70 + i
        depth[50:62, x:x + 12] = 2.0
        frames.append((color, depth))
    report = report_for(frames)
    assert report.moving_fraction < 0.02 and report.subject is not None and report.subject.kind == "moving"
    assert report.subject.where == "centre"


def test_clean_synthetic_plates_raise_nothing():
    flagged = []
    for seed in CLEAN_SEEDS:
        report = report_for(scene_frames(seed, "e" * 10))
        if not report.ok:
            flagged.append((seed, report.message))
    assert flagged == []


def test_the_demo_recordings_empty_frames_raise_nothing():
    with open_source(str(DEMO)) as source:
        count = source.info.background_frames
        frames = [frame for _, frame in zip(range(count), source, strict=False)]
    report = report_for(frames, frames[0].intrinsics.fx)
    assert report.ok and report.subject is None, report.message


def _shared(path: str) -> Path:
    full = SHARED_DATA / path
    if not full.exists():
        pytest.skip(f"../shared/data/{path} is not available in this checkout")
    return full


def _still_plate(color: np.ndarray | None, depth_m: np.ndarray, n: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """A single real frame as a static capture (the sensor's own holes and noise, repeated)."""
    color = np.zeros(depth_m.shape + (3,), np.uint8) if color is None else color
    return [(color, depth_m.astype(np.float32))] * n


def test_real_empty_scenes_raise_nothing():
    tum = _shared("tum_frame")
    color = cv2.cvtColor(cv2.imread(str(tum / "TUM_color.png")), cv2.COLOR_BGR2RGB)
    depth = cv2.imread(str(tum / "TUM_depth.png"), cv2.IMREAD_UNCHANGED) / 5000.0  # a desk and two chairs
    plates = [("tum", _still_plate(color, depth), 525.0)]
    for path in sorted(glob.glob(str(_shared("redwood_synthetic") / "depth_*.png"))):
        depth = cv2.imread(path, cv2.IMREAD_UNCHANGED) / 1000.0  # a living room with an armchair
        plates.append((Path(path).name, _still_plate(None, depth), 525.0))
    for name, plate, fx in plates:
        report = report_for(plate, fx)
        assert report.subject is None, (name, report.message)
        assert report_for(plate).subject is None, name  # nor with the focal length guessed


@pytest.fixture(scope="module")
def urfd() -> list[np.ndarray]:
    """UR Fall Detection fall-01: a real Kinect v1 sequence, someone walking in from the back (depth only)."""
    files = sorted(glob.glob(str(SHARED_DATA / "urfd_depth_sequence" / "*.png")))
    if len(files) < 98:
        pytest.skip("../shared/data/urfd_depth_sequence is not available in this checkout")
    return [cv2.imread(p, cv2.IMREAD_UNCHANGED).astype(np.float32) * np.float32(6.0 / 65535.0) for p in files]


def test_real_kinect_sequence_noise_is_not_motion_but_a_walker_is(urfd):
    empty_part = [(np.zeros((480, 290, 3), np.uint8), np.ascontiguousarray(d[:, :290])) for d in urfd[:30]]
    assert report_for(empty_part, 575.0).subject is None  # chairs, wall and floor with real sensor noise
    walking = report_for([(np.zeros((480, 640, 3), np.uint8), d) for d in urfd[30:60]], 575.0)
    assert walking.subject is not None and walking.subject.kind == "moving"
    standing = report_for(_still_plate(None, urfd[64]), 575.0)  # one frame: the person mid-room
    assert standing.subject is not None and standing.subject.kind == "standing"


# -- main.py process --------------------------------------------------------------------------------
@pytest.fixture
def standing_recording(tmp_path) -> Path:
    """10 'empty-scene' frames (meta background_frames) that show a person standing still, then 3 more."""
    return write_recording(tmp_path / "standing", scene_frames(1, "s" * 13), background_frames=10)


def test_process_refuses_background_frames_with_a_person(standing_recording, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_main("process", standing_recording, "--out", out) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "The background frames (the first 10 of" in err and "show a person standing in the" in err
    assert "--accept-background" in err
    assert not list((out / "alpha").glob("*.png"))  # refused before matting anything


def test_process_refuses_someone_walking_through_the_background(tmp_path, capsys):
    path = write_recording(tmp_path / "walk", scene_frames(2, "eeee" + "w" * 6 + "eeeeee" + "ss"), 16)
    assert run_main("process", path, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "show someone or something moving through the" in err and "Traceback" not in err


def test_process_can_be_told_to_accept_the_background(standing_recording, tmp_path):
    summary = process_recording(str(standing_recording), tmp_path / "out", EngineConfig(),
                                ProcessOptions(accept_background=True))
    assert summary.frames == 3 and len(list((tmp_path / "out" / "alpha").glob("*.png"))) == 3
    assert any("used anyway (--accept-background)" in warning for warning in summary.warnings)


def test_process_with_a_clean_background_says_nothing_about_it(tmp_path, capsys):
    path = write_recording(tmp_path / "clean", scene_frames(1, "e" * 10 + "sss"), background_frames=10)
    assert run_main("process", path, "--out", tmp_path / "out") == 0
    assert "warning" not in capsys.readouterr().err


def test_the_accept_background_flag(standing_recording, tmp_path, capsys):
    try:
        main.build_parser().parse_args(["process", "rec", "--out", "o", "--accept-background"])
    except SystemExit:
        pytest.skip("main.py has no --accept-background flag yet")
    capsys.readouterr()
    assert run_main("process", standing_recording, "--out", tmp_path / "out", "--accept-background") == 0
    assert "warning: The background frames" in capsys.readouterr().err


# -- the app ------------------------------------------------------------------------------------------
def _record_events(window) -> list:
    """Every event the window polls from its worker, kept for the test."""
    seen, poll = [], window.worker.poll_events

    def polled():
        events = poll()
        seen.extend(events)
        return events

    window.worker.poll_events = polled
    return seen


@pytest.mark.gui
def test_capture_on_a_recording_with_someone_in_it_fails_with_the_finding(qtbot, tmp_path):
    from app import events as ev
    from tests.test_app import make_window, qtbot_button, wait_for_snapshot

    path = write_recording(tmp_path / "present", scene_frames(1, "s" * 30), background_frames=None)
    window = make_window(qtbot, tmp_path)  # no countdown, 8 frames a capture
    seen = _record_events(window)
    window.open_source(str(path))
    wait_for_snapshot(qtbot, window, lambda s: True)
    qtbot.mouseClick(window.capture_panel.button, qtbot_button())
    qtbot.waitUntil(lambda: (window.tick(), any(e.kind == ev.CAPTURE_FAILED for e in seen))[1], timeout=8000)
    failed = next(e for e in seen if e.kind == ev.CAPTURE_FAILED)
    assert failed.report.subject.kind == "standing" and failed.report.n_frames == 8
    assert failed.message.startswith("The background capture shows a person standing in the ")
    assert window.capture_panel.status.text() == failed.message
    assert window._dialog is not None and window._dialog.text() == failed.message
    assert not window.worker.latest().has_prior

    use_anyway = next(b for b in window._dialog.buttons() if b.text() == "Use anyway")
    use_anyway.click()  # the way out stays: the user decides
    wait_for_snapshot(qtbot, window, lambda s: s.has_prior)


@pytest.mark.gui
def test_capture_on_a_recording_uses_its_own_background_frames(qtbot, tmp_path):
    from app import events as ev
    from tests.test_app import make_window, qtbot_button, wait_for_snapshot

    standing = write_recording(tmp_path / "standing", scene_frames(1, "s" * 13), background_frames=10)
    window = make_window(qtbot, tmp_path)  # settings say 8 frames; the recording says 10
    seen = _record_events(window)
    window.open_source(str(standing))  # captured automatically from the 10 frames: refused
    qtbot.waitUntil(lambda: (window.tick(), any(e.kind == ev.CAPTURE_FAILED for e in seen))[1], timeout=8000)
    window._dialog.reject()
    seen.clear()
    qtbot.mouseClick(window.capture_panel.button, qtbot_button())  # again, by hand: the same frames
    qtbot.waitUntil(lambda: (window.tick(), any(e.kind == ev.CAPTURE_FAILED for e in seen))[1], timeout=8000)
    failed = next(e for e in seen if e.kind == ev.CAPTURE_FAILED)
    assert failed.report.n_frames == 10 and failed.report.subject.kind == "standing"

    clean = write_recording(tmp_path / "clean", scene_frames(1, "e" * 10 + "sss"), background_frames=10)
    window.open_source(str(clean))
    wait_for_snapshot(qtbot, window, lambda s: s.has_prior)
    seen.clear()
    qtbot.mouseClick(window.capture_panel.button, qtbot_button())
    qtbot.waitUntil(lambda: (window.tick(), any(e.kind == ev.CAPTURE_DONE for e in seen))[1], timeout=8000)
    done = next(e for e in seen if e.kind == ev.CAPTURE_DONE)
    assert done.report.n_frames == 10 and done.report.ok
