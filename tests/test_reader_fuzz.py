"""Seeded fuzzing of the folder readers (rgbd-folder, TUM RGB-D, Redwood), issue 17.

Small fixtures are mutated (files truncated, bytes flipped, files deleted, sizes and bit depths
changed, image headers claiming 20000x20000 pixels, bad meta.json / list / camera values) and read
through `open_source`. Every case must end in all its frames or a `UserError` of one sentence: never
another exception, a hang (a timer per case) or a silently short recording (fewer frames than the
intact recording without an index gap or a warning). A few cases also run `main.py process`.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.rgbd_folder import RgbdFolderWriter
from sensors.source import open_source

W, H = 32, 24
N = 5
CASES = 60  # per reader
CASE_TIMEOUT_S = 10.0


# -- fixtures -------------------------------------------------------------------------------------
def _images(i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    color = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = (1000 + rng.integers(0, 2000, (H, W))).astype(np.uint16)
    return color, depth


def make_rgbd(root: Path) -> Path:
    with RgbdFolderWriter(root, W, H, background_frames=2) as writer:
        for i in range(N):
            color, depth = _images(i)
            writer.write(Frame(color=color, depth_raw=depth, depth_scale=0.001, timestamp=i / 30, index=i,
                               intrinsics=Intrinsics.default_for(W, H),
                               alpha=np.full((H, W), 0.5, np.float32) if i % 2 else None))
    return root


def make_tum(root: Path) -> Path:
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb, dep = ["# color images", "# timestamp filename"], ["# depth maps"]
    for i in range(N):
        color, depth = _images(i)
        t = 1305031102.0 + i / 30
        cv2.imwrite(str(root / "rgb" / f"{t:.6f}.png"), color)
        cv2.imwrite(str(root / "depth" / f"{t + 0.004:.6f}.png"), depth * 5)
        rgb.append(f"{t:.6f} rgb/{t:.6f}.png")
        dep.append(f"{t + 0.004:.6f} depth/{t + 0.004:.6f}.png")
    (root / "rgb.txt").write_text("\n".join(rgb) + "\n")
    (root / "depth.txt").write_text("\n".join(dep) + "\n")
    return root


def make_redwood(root: Path) -> Path:
    (root / "color").mkdir(parents=True)
    (root / "depth").mkdir()
    for i in range(N):
        color, depth = _images(i)
        cv2.imwrite(str(root / "color" / f"{i:05d}.jpg"), color)
        cv2.imwrite(str(root / "depth" / f"{i:05d}.png"), depth)
    camera = {"width": W, "height": H, "intrinsic_matrix": [30.0, 0, 0, 0, 30.0, 0, 15.5, 11.5, 1]}
    (root / "camera_primesense.json").write_text(json.dumps(camera))
    return root


MAKERS = {"rgbd-folder": make_rgbd, "tum": make_tum, "redwood": make_redwood}


# -- mutations ------------------------------------------------------------------------------------
BAD_VALUES = [-1, 0, 0.5, 1e9, 30000, 10**30, "x", None, [], {}, True, float("nan"), float("inf"), 1e-300]


def _set_png_size(data: bytes, width: int, height: int) -> bytes:
    if not data.startswith(b"\x89PNG") or len(data) < 33:
        return data
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:]


def _set_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    pos = data.find(b"\xff\xc0")
    if pos < 0:
        return data
    return data[:pos + 5] + struct.pack(">HH", height, width) + data[pos + 9:]


def mutate(root: Path, rng: random.Random) -> str:
    """Apply one random damage to the recording in `root`; a description of it."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    path = rng.choice(files)
    data = path.read_bytes()
    name = path.relative_to(root)
    kind = rng.choice(["truncate", "flip", "delete", "value", "resize", "bits", "huge", "text"])
    if kind == "truncate":
        cut = rng.randrange(0, max(len(data), 1))
        path.write_bytes(data[:cut])
        return f"truncate {name} to {cut}"
    if kind == "flip":
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if buf:
                buf[rng.randrange(len(buf))] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(buf))
        return f"flip bytes of {name}"
    if kind == "delete":
        path.unlink()
        return f"delete {name}"
    if kind == "value":
        for meta in (root / "meta.json", root / "camera_primesense.json"):
            if meta.is_file():
                content = json.loads(meta.read_text())
                key = rng.choice(sorted(content) + ["intrinsics", "fps"])
                value = rng.choice(BAD_VALUES)
                if key == "intrinsics" and rng.random() < 0.5:
                    content[key] = {"fx": value, "fy": 30, "cx": 1, "cy": 1}
                else:
                    content[key] = value
                meta.write_text(json.dumps(content))
                return f"{meta.name}: {key} = {value!r}"
        lst = root / rng.choice(["rgb.txt", "depth.txt"])
        lines = lst.read_text().splitlines()
        k = rng.randrange(len(lines))
        lines[k] = rng.choice(["nan rgb/x.png", "inf depth/y.png", "12", "1.0 ../../etc/hostname", "1e400 a.png",
                               "1305031102.1 rgb/\x00.png", "-5 depth/z.png", ""])
        lst.write_text("\n".join(lines))
        return f"{lst.name} line {k} changed"
    images = [p for p in files if p.suffix in (".png", ".jpg")]
    target = rng.choice(images)
    image = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    name = target.relative_to(root)
    if kind == "resize" and image is not None:
        cv2.imwrite(str(target), cv2.resize(image, (W + rng.choice([-3, 1, 8]), H)))
        return f"resize {name}"
    if kind == "bits" and image is not None:
        other = (image // 256).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint16) * 257
        cv2.imwrite(str(target), other)
        return f"change bit depth of {name}"
    if kind == "huge":
        data = target.read_bytes()
        side = rng.choice([20000, 65535, 8193])
        target.write_bytes(_set_png_size(data, side, side) if target.suffix == ".png" else _set_jpeg_size(data, side, side))
        return f"header of {name} says {side}x{side}"
    # "text": an image replaced by text, or a text file by an image
    target.write_text("not an image at all\n")
    return f"{name} replaced by text"


# -- running a case ---------------------------------------------------------------------------------
class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record) -> None:
        self.count += 1


def read_case(path: Path, intact: int, opener=open_source) -> str:
    """'frames N' or 'error: ...' from reading `opener(str(path))`; raises AssertionError for anything else."""
    warnings = _Warnings()
    logging.getLogger("sensors").addHandler(warnings)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        with opener(str(path)) as source:
            info = source.info
            frames = list(source)
    except UserError as error:
        message = str(error)
        assert message and "\n" not in message and len(message) < 600, message
        return f"error: {message}"
    except _Timeout:
        raise AssertionError(f"no result within {CASE_TIMEOUT_S} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        logging.getLogger("sensors").removeHandler(warnings)
    assert info.frame_count is None or len(frames) == info.frame_count  # None: not known before reading
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    for frame in frames:
        assert frame.color.shape == (info.height, info.width, 3) and frame.color.dtype == np.uint8
        assert frame.depth_raw.shape == (info.height, info.width) and frame.depth_raw.dtype == np.uint16
    gap = bool(indices) and indices[-1] - indices[0] + 1 != len(indices)
    assert len(frames) >= intact or gap or warnings.count, f"silently short: {len(frames)} of {intact} frames"
    return f"frames {len(frames)}"


def fuzz_file(pristine: Path, damage, cases: int, seed: str, intact: int, work: Path, opener=open_source) -> dict:
    """Copy the single-file recording `pristine` `cases` times, apply `damage(path, rng) -> description`
    to each copy and `read_case` it; {outcome kind: count}. AssertionError names the failing case."""
    assert read_case(pristine, intact, opener) == f"frames {intact}"
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for case in range(cases):
        path = work / f"case{case}{pristine.suffix}"
        shutil.copy(pristine, path)
        done = damage(path, rng)
        try:
            outcome = read_case(path, intact, opener)
        except AssertionError as failure:
            raise AssertionError(f"{pristine.suffix} case {case} ({done}): {failure}") from None
        kind = outcome.split(":")[0].split(" ")[0]
        outcomes[kind] = outcomes.get(kind, 0) + 1
        path.unlink()
    return outcomes


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pristine")
    return {kind: make(root / kind) for kind, make in MAKERS.items()}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_every_mutation_ends_in_frames_or_one_sentence(kind, pristine, tmp_path):
    rng = random.Random(f"fuzz-{kind}")
    assert read_case(pristine[kind], N) == f"frames {N}"
    outcomes: dict[str, int] = {}
    for case in range(CASES):
        path = tmp_path / f"case{case}"
        shutil.copytree(pristine[kind], path)
        done = [mutate(path, rng) for _ in range(rng.choice([1, 1, 2]))]
        try:
            outcome = read_case(path, N)
        except AssertionError as failure:
            raise AssertionError(f"{kind} case {case} ({'; '.join(done)}): {failure}") from None
        outcomes[outcome.split(":")[0]] = outcomes.get(outcome.split(":")[0], 0) + 1
        shutil.rmtree(path)
    assert outcomes.get("error", 0) >= CASES // 4  # the mutations do damage


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_process_on_damaged_recordings_is_frames_or_one_sentence(kind, pristine, tmp_path, capsys):
    rng = random.Random(f"process-{kind}")
    for case in range(4):
        path = tmp_path / f"case{case}"
        shutil.copytree(pristine[kind], path)
        done = mutate(path, rng)
        try:
            code = main.main(["process", str(path), "--out", str(tmp_path / f"out{case}"), "--background-frames", "2"])
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("WARNING")]
        assert code in (0, 1, 2), (done, captured.err)
        assert "Traceback" not in captured.err and "unexpected" not in captured.err, (done, captured.err)
        if code:
            assert len(lines) == 1, (done, captured.err)
        else:
            assert "Processed" in captured.out, done
