"""Seeded fuzzing of the Azure Kinect / Orbbec Femto `.mkv` reader (issue 17).

A small k4arecorder-like file (4 captures remuxed from the real recording in ../shared; skipped without
it) is damaged: bytes flipped, ranges zeroed, cut short, blocks repeated. Every case must end in its
frames or a `UserError` of one sentence: never another exception, a hang, or a silently short
recording (the same check as the folder readers' fuzzing, `read_case`).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_azure_kinect import remux
from test_reader_fuzz import fuzz_file

from sensors.azure_kinect import AzureKinectSource

CASES = 40
CAPTURES = 4


def _small_output(path: str) -> AzureKinectSource:
    return AzureKinectSource(path, width=160)  # registration and resizing at 160x90: the reading is what is tested


def damage(path: Path, rng: random.Random) -> str:
    """One seeded mutation of the file's bytes; what it was."""
    data = bytearray(path.read_bytes())
    kind = rng.choice(["flip", "flip", "zero", "cut", "repeat"])
    at = rng.randrange(len(data))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        done = "flipped bits"
    elif kind == "zero":
        size = rng.randint(1, 4096)
        data[at:at + size] = bytes(len(data[at:at + size]))
        done = f"zeroed {size} bytes at {at}"
    elif kind == "cut":
        data, done = data[:at], f"cut at {at}"
    else:
        size = rng.randint(16, 2048)
        data, done = data[:at] + data[at:at + size] + data[at:], f"repeated {size} bytes at {at}"
    path.write_bytes(bytes(data))
    return done


@pytest.fixture
def small_mkv(shared_data, tmp_path_factory) -> Path:
    times = tuple(k * 33_333 for k in range(CAPTURES))
    out = tmp_path_factory.mktemp("mkv") / "small.mkv"
    return remux(shared_data / "azure_kinect_recording" / "recording.mkv", out, color_times_us=times,
                 depth_times_us=times)


def test_every_mutation_of_an_mkv_ends_in_frames_or_one_sentence(small_mkv, tmp_path):
    outcomes = fuzz_file(small_mkv, damage, CASES, "fuzz-mkv", CAPTURES, tmp_path, _small_output)
    assert outcomes.get("error", 0) >= CASES // 8, outcomes  # the mutations do damage
