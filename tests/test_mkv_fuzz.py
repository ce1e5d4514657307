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
from test_reader_fuzz import read_case

from sensors.azure_kinect import AzureKinectSource

CASES = 40
CAPTURES = 4


def _small_output(path: str) -> AzureKinectSource:
    return AzureKinectSource(path, width=160)  # registration and resizing at 160x90: the reading is what is tested


def damage(data: bytearray, rng: random.Random) -> tuple[bytearray, str]:
    """One seeded mutation of the file's bytes, and what it was."""
    kind = rng.choice(["flip", "flip", "zero", "cut", "repeat"])
    at = rng.randrange(len(data))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return data, "flipped bits"
    if kind == "zero":
        size = rng.randint(1, 4096)
        data[at:at + size] = bytes(len(data[at:at + size]))
        return data, f"zeroed {size} bytes at {at}"
    if kind == "cut":
        return data[:at], f"cut at {at}"
    size = rng.randint(16, 2048)
    return data[:at] + data[at:at + size] + data[at:], f"repeated {size} bytes at {at}"


@pytest.fixture
def small_mkv(shared_data, tmp_path_factory) -> Path:
    times = tuple(k * 33_333 for k in range(CAPTURES))
    out = tmp_path_factory.mktemp("mkv") / "small.mkv"
    return remux(shared_data / "azure_kinect_recording" / "recording.mkv", out, color_times_us=times,
                 depth_times_us=times)


def test_every_mutation_of_an_mkv_ends_in_frames_or_one_sentence(small_mkv, tmp_path):
    assert read_case(small_mkv, CAPTURES, _small_output) == f"frames {CAPTURES}"
    rng = random.Random("fuzz-mkv")
    pristine = small_mkv.read_bytes()
    outcomes: dict[str, int] = {}
    for case in range(CASES):
        data, done = damage(bytearray(pristine), rng)
        path = tmp_path / f"case{case}.mkv"
        path.write_bytes(bytes(data))
        try:
            outcome = read_case(path, CAPTURES, _small_output)
        except AssertionError as failure:
            raise AssertionError(f"mkv case {case} ({done}): {failure}") from None
        kind = outcome.split(":")[0].split(" ")[0]
        outcomes[kind] = outcomes.get(kind, 0) + 1
        path.unlink()
    assert outcomes.get("error", 0) >= CASES // 8, outcomes  # the mutations do damage
