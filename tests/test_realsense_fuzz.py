"""Seeded fuzzing of RealSense `.db3` playback (issue 17), like the folder readers' (test_reader_fuzz).

A small recording written by the SDK's software device is damaged inside its SQLite tables (image
bytes flipped or emptied, messages deleted or duplicated, timestamps moved, the file cut short or
overwritten in places) and played through `open_source`. Every case must end in frames or a
`UserError` of one sentence: never another exception, a hang, or a silently short recording.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("pyrealsense2")

from test_reader_fuzz import fuzz_file  # noqa: E402
from test_realsense import mf  # noqa: E402

FRAMES = 8
CASES = 40


def damage(path: Path, rng: random.Random) -> str:
    """One seeded mutation of the recording at `path`; what it was."""
    kind = rng.choice(["flip", "empty", "delete", "duplicate", "time", "cut", "overwrite"])
    if kind in ("cut", "overwrite"):
        data = bytearray(path.read_bytes())
        at = rng.randrange(len(data))
        if kind == "cut":
            path.write_bytes(bytes(data[:at]))
            return f"cut at {at}"
        data[at:at + 512] = bytes(rng.randrange(256) for _ in range(len(data[at:at + 512])))
        path.write_bytes(bytes(data))
        return f"overwrote 512 bytes at {at}"
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT m.id FROM messages m JOIN topics t ON t.id = m.topic_id "
                          "WHERE t.name LIKE '%/image/data%' ORDER BY m.timestamp").fetchall()
        message = rng.choice(rows)[0]
        if kind == "flip":
            data = bytearray(db.execute("SELECT data FROM messages WHERE id = ?", (message,)).fetchone()[0])
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            db.execute("UPDATE messages SET data = ? WHERE id = ?", (bytes(data), message))
        elif kind == "empty":
            db.execute("UPDATE messages SET data = ? WHERE id = ?", (b"", message))
        elif kind == "delete":
            db.execute("DELETE FROM messages WHERE id = ?", (message,))
        elif kind == "duplicate":
            db.execute("INSERT INTO messages (topic_id, timestamp, data) SELECT topic_id, timestamp + 1, data "
                       "FROM messages WHERE id = ?", (message,))
        else:
            db.execute("UPDATE messages SET timestamp = timestamp + ? WHERE id = ?",
                       (rng.choice([-10**9, -1, 10**7, 10**12]), message))
    db.close()
    return f"{kind} image message {message}"


def test_every_mutation_of_a_db3_ends_in_frames_or_one_sentence(tmp_path):
    pristine = mf.write_realsense_recording(tmp_path / "pristine.db3", frames=FRAMES)
    outcomes = fuzz_file(pristine, damage, CASES, "fuzz-db3", FRAMES, tmp_path)
    assert outcomes.get("error", 0) >= CASES // 8, outcomes  # the mutations do damage
