"""RealSense playback pairing and damage reports (issue 17): clocks that reset or jump, dropped frames on
either stream, colour frames without depth counted, and a damaged message reported with how far the
file was read. Recordings are written by the SDK's software device (tests/fixtures/make_fixtures.py)."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("pyrealsense2")

from test_realsense import call_with_timeout, mf, read_all  # noqa: E402

from sensors.errors import UserError  # noqa: E402
from sensors.realsense.source import RealSenseSource  # noqa: E402


def _box_indices(path) -> list[int]:
    """The k each played frame's depth encodes (the box depth is 1000 + 10 k mm), in play order."""
    def read():
        with RealSenseSource(str(path)) as source:
            return [(int(f.depth_raw[24, 32]) - 1000) // 10 for f in iter(source.read, None)]
    return call_with_timeout(read)


@pytest.mark.parametrize("case", ["depth_resets", "both_reset", "colour_jumps_forward"])
def test_pairing_survives_a_clock_that_resets_or_jumps(tmp_path, caplog, case):
    # Before: a depth clock that went back to zero at frame 6 left "Processed 5 frames" of 12 with
    # exit 0; every later colour frame found no depth frame near it and was dropped silently.
    period = mf.FRAME_PERIOD_MS
    steady = [k * period for k in range(12)]
    reset = [k * period if k < 6 else 3.0 + (k - 6) * period for k in range(12)]
    forward = [k * period if k < 6 else 5_000_000.0 + k * period for k in range(12)]
    depth, colour = {"depth_resets": (reset, steady), "both_reset": (reset, reset),
                     "colour_jumps_forward": (steady, forward)}[case]
    path = mf.write_realsense_recording(tmp_path / f"{case}.db3", frames=12,
                                        depth_stamps_ms=depth, color_stamps_ms=colour)
    with caplog.at_level("WARNING"):
        indices = _box_indices(path)
    assert indices == list(range(12))  # every colour frame, each with its own depth frame
    if case != "both_reset":
        assert "clock jumped" in caplog.text


def test_dropped_colour_frames_pair_the_rest_correctly_and_keep_their_numbers(tmp_path):
    # Before: outputs were numbered by count, so 000003.png was source frame 5 and nothing said 3, 4, 9 were missing.
    path = mf.write_realsense_recording(tmp_path / "drops.db3", frames=12, skip_color={3, 4, 9})
    kept = [k for k in range(12) if k not in {3, 4, 9}]
    assert _box_indices(path) == kept

    def indices():
        with RealSenseSource(str(path)) as source:
            return [f.index for f in iter(source.read, None)]
    assert call_with_timeout(indices) == kept  # the colour frame's own number: gaps where frames were dropped


def test_colour_frames_without_depth_are_counted_not_dropped_silently(tmp_path, caplog):
    # Depth frames 2 and 5 dropped: colour frames 2 and 5 are a whole period from every depth frame.
    path = mf.write_realsense_recording(tmp_path / "holes.db3", frames=8, skip_depth={2, 5})
    with caplog.at_level("WARNING"):
        indices = _box_indices(path)
    assert indices == [0, 1, 3, 4, 6, 7]
    assert "2 colour frame(s) had no depth frame" in caplog.text


def _damage_image_message(path, nth: int, how: str) -> None:
    """Flip one bit of, or empty, the `nth` image message of a .db3 (SQLite) recording."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT m.id, m.data FROM messages m JOIN topics t ON t.id = m.topic_id "
                          "WHERE t.name LIKE '%/image/data%' ORDER BY m.timestamp").fetchall()
        message_id, data = rows[nth]
        data = bytearray(data)
        if how == "flip":
            data[len(data) // 2] ^= 0x10
        db.execute("UPDATE messages SET data = ? WHERE id = ?", (bytes(data) if how == "flip" else b"", message_id))
    db.close()


@pytest.mark.parametrize("how", ["flip", "empty"])
def test_damaged_message_is_reported_with_how_far_the_file_was_read(tmp_path, how, capsys):
    # Before: one flipped bit gave 1 frame of 8 and an emptied colour message 3 of 8, both exit 0 and silent.
    path = mf.write_realsense_recording(tmp_path / "damaged.db3", frames=8)
    _damage_image_message(path, 6, how)
    with pytest.raises(UserError) as err:
        call_with_timeout(lambda: read_all(RealSenseSource(str(path))))
    assert "could not be read past" in str(err.value) and "damaged" in str(err.value)
    import main

    code = main.main(["process", str(path), "--out", str(tmp_path / "out"), "--background-frames", "2",
                      "--mode", "depth"])
    message = capsys.readouterr().err
    assert code != 0 and "ends early there" in message and "frames were read" in message
    assert "Traceback" not in message
