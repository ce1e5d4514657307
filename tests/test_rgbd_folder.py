"""rgbd-folder v1: writer/reader round trip, slicing, random access, and the errors users can hit."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sensors.errors import UserError
from sensors.frame import Frame, Intrinsics
from sensors.rgbd_folder import RgbdFolderSource, RgbdFolderWriter, write_alpha_png
from sensors.source import open_source

W, H = 32, 24
K = Intrinsics(fx=28.0, fy=27.5, cx=15.5, cy=11.25)


def make_frame(index: int, *, alpha: bool = False, depth_scale: float = 0.001, size=(W, H)) -> Frame:
    w, h = size
    rng = np.random.default_rng(index)
    depth = rng.integers(0, 65536, size=(h, w), dtype=np.uint16)
    depth[0, :4] = (0, 1, 65534, 65535)
    return Frame(
        color=rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8),
        depth_raw=depth,
        depth_scale=depth_scale,
        timestamp=index / 30.0,
        index=index,
        intrinsics=K,
        alpha=rng.random((h, w), dtype=np.float32) if alpha else None,
    )


def write_recording(path, n=4, alpha_every=2, **kwargs) -> list[Frame]:
    frames = [make_frame(i, alpha=(i % alpha_every == 0)) for i in range(n)]
    with RgbdFolderWriter(path, W, H, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return frames


def test_round_trip_is_bit_exact(tmp_path):
    rec = tmp_path / "rec"
    written = write_recording(rec, n=4, fps=25.0, background_frames=2, depth_max_m=5.46, intrinsics=K)
    with open_source(str(rec)) as source:
        assert isinstance(source, RgbdFolderSource)
        info = source.info
        read = list(source)
    assert (info.width, info.height, info.fps, info.live) == (W, H, 25.0, False)
    assert (info.frame_count, info.background_frames, info.depth_max_m) == (4, 2, 5.46)
    assert len(read) == 4
    for a, b in zip(written, read):
        np.testing.assert_array_equal(b.color, a.color)
        np.testing.assert_array_equal(b.depth_raw, a.depth_raw)
        assert b.color.dtype == np.uint8 and b.depth_raw.dtype == np.uint16
        assert b.index == a.index and b.timestamp == pytest.approx(a.index / 25.0)
        assert b.depth_scale == 0.001 and b.intrinsics == K
        if a.alpha is None:
            assert b.alpha is None
        else:
            assert b.alpha.dtype == np.float32 and b.alpha.shape == (H, W)
            np.testing.assert_allclose(b.alpha, a.alpha, atol=0.5 / 255 + 1e-6)
    meta = json.loads((rec / "meta.json").read_text())
    assert meta["format"] == "rgbd-folder" and meta["version"] == 1 and meta["frame_count"] == 4


def test_color_files_are_standard_bgr_pngs_and_frames_are_rgb(tmp_path):
    """A pure red RGB frame must be red for every other PNG reader too (cv2 stores BGR)."""
    frame = make_frame(0)
    frame.color[:] = (255, 0, 0)
    with RgbdFolderWriter(tmp_path / "rec", W, H) as writer:
        writer.write(frame)
    on_disk = cv2.imread(str(tmp_path / "rec" / "color" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert tuple(on_disk[0, 0]) == (0, 0, 255)  # BGR
    assert tuple(RgbdFolderSource(str(tmp_path / "rec")).read().color[0, 0]) == (255, 0, 0)


def test_intrinsics_default_to_the_first_frames(tmp_path):
    write_recording(tmp_path / "rec", n=1)
    meta = json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert meta["intrinsics"] == K.as_dict()
    assert "background_frames" not in meta and "depth_max_m" not in meta


def test_meta_without_intrinsics_uses_default(tmp_path):
    write_recording(tmp_path / "rec", n=1)
    meta_path = tmp_path / "rec" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["intrinsics"]
    meta_path.write_text(json.dumps(meta))
    assert RgbdFolderSource(str(tmp_path / "rec")).read().intrinsics == Intrinsics.default_for(W, H)


def test_jpeg_color(tmp_path):
    written = write_recording(tmp_path / "rec", n=2, color_format="jpg")
    assert sorted(p.name for p in (tmp_path / "rec" / "color").iterdir()) == ["000000.jpg", "000001.jpg"]
    smooth = np.zeros((H, W, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)  # red ramp: JPEG keeps it well
    with RgbdFolderWriter(tmp_path / "ramp", W, H, color_format="jpg") as writer:
        frame = make_frame(0)
        frame.color = smooth
        writer.write(frame)
    back = RgbdFolderSource(str(tmp_path / "ramp")).read().color
    assert np.abs(back.astype(int) - smooth.astype(int)).mean() < 4
    assert back[..., 0].mean() > back[..., 2].mean() + 50  # still red, not swapped to blue
    np.testing.assert_array_equal(RgbdFolderSource(str(tmp_path / "rec")).read().depth_raw, written[0].depth_raw)


def test_slice_and_random_access(tmp_path):
    written = write_recording(tmp_path / "rec", n=5)
    background = RgbdFolderSource(str(tmp_path / "rec"), stop=2)
    rest = RgbdFolderSource(str(tmp_path / "rec"), start=2)
    assert [f.index for f in background] == [0, 1]
    assert [f.index for f in rest] == [2, 3, 4]
    assert rest.open().frame_count == 3 and len(rest) == 3
    source = RgbdFolderSource(str(tmp_path / "rec"))
    np.testing.assert_array_equal(source.read_frame(3).color, written[3].color)
    assert source.read().index == 0  # random access does not move the iterator
    assert source.indices == [0, 1, 2, 3, 4]
    with pytest.raises(IndexError):
        source.read_frame(7)


def test_16_bit_alpha_is_read(tmp_path):
    write_recording(tmp_path / "rec", n=1)  # frame 0 has an 8-bit alpha: replace it by a 16-bit one
    alpha16 = np.full((H, W), 65535, np.uint16)
    alpha16[:, : W // 2] = 32768
    cv2.imwrite(str(tmp_path / "rec" / "alpha" / "000000.png"), alpha16)
    alpha = RgbdFolderSource(str(tmp_path / "rec")).read().alpha
    assert alpha.dtype == np.float32
    assert alpha[0, -1] == 1.0 and alpha[0, 0] == pytest.approx(0.5, abs=1e-4)


def test_write_alpha_png_rounds_and_clips(tmp_path):
    write_alpha_png(tmp_path / "a.png", np.array([[0.0, 0.5, 1.0, 1.5, -0.2]], np.float32))
    assert cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED).tolist() == [[0, 128, 255, 255, 0]]


def test_interrupted_recording_is_still_readable(tmp_path):
    writer = RgbdFolderWriter(tmp_path / "rec", W, H, intrinsics=K)
    for i in range(3):
        writer.write(make_frame(i))
    # no close(): meta.json from the start has no frame count, the files decide
    assert "frame_count" not in json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert [f.index for f in RgbdFolderSource(str(tmp_path / "rec"))] == [0, 1, 2]


def test_writer_refuses_a_non_empty_folder_and_wrong_frames(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an empty folder"):
        RgbdFolderWriter(tmp_path / "old", W, H)
    with RgbdFolderWriter(tmp_path / "rec", W, H) as writer:
        with pytest.raises(ValueError):
            writer.write(make_frame(0, size=(W + 2, H)))
        with pytest.raises(ValueError):
            writer.write(make_frame(0, depth_scale=0.0002))


# -- errors ---------------------------------------------------------------------------------------
def assert_one_sentence(err: UserError, *needles: str) -> None:
    text = str(err)
    assert "\n" not in text and text.endswith(".")
    for needle in needles:
        assert needle in text


def test_missing_folder(tmp_path):
    with pytest.raises(UserError) as err:
        RgbdFolderSource(str(tmp_path / "nope")).open()
    assert_one_sentence(err.value, "nope", "does not exist")


def test_folder_that_is_no_recording(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError) as err:
        RgbdFolderSource(str(tmp_path / "photos")).open()
    assert_one_sentence(err.value, "meta.json")


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "Cannot read"),
        (json.dumps({"format": "something-else", "version": 1}), "not an rgbd-folder"),
        (json.dumps({"format": "rgbd-folder", "version": 2, "width": W, "height": H}), "version 2"),
        (json.dumps({"format": "rgbd-folder", "version": 1, "height": H, "fps": 30, "depth_scale": 0.001}), "width"),
        (json.dumps({"format": "rgbd-folder", "version": 1, "width": W, "height": H, "fps": 30,
                     "depth_scale": -1}), "depth_scale"),
    ],
)
def test_bad_meta(tmp_path, content, needle):
    write_recording(tmp_path / "rec", n=1)
    (tmp_path / "rec" / "meta.json").write_text(content)
    with pytest.raises(UserError) as err:
        RgbdFolderSource(str(tmp_path / "rec")).open()
    assert_one_sentence(err.value, needle)


def test_colour_depth_count_mismatch(tmp_path):
    write_recording(tmp_path / "rec", n=3)
    (tmp_path / "rec" / "depth" / "000002.png").unlink()
    with pytest.raises(UserError) as err:
        RgbdFolderSource(str(tmp_path / "rec")).open()
    assert_one_sentence(err.value, "3 colour", "2 depth", "frame 2")


def read_until_error(path) -> tuple[list[int], UserError]:
    delivered = []
    with pytest.raises(UserError) as err:
        for frame in RgbdFolderSource(str(path)):
            delivered.append(frame.index)
    return delivered, err.value


def test_frame_of_the_wrong_size(tmp_path):
    write_recording(tmp_path / "rec", n=4)
    bad = tmp_path / "rec" / "color" / "000002.png"
    cv2.imwrite(str(bad), np.zeros((H, W + 1, 3), np.uint8))
    delivered, err = read_until_error(tmp_path / "rec")
    assert delivered == [0, 1]
    assert_one_sentence(err, "000002.png", f"{W + 1}x{H}", f"{W}x{H}")


def test_truncated_png(tmp_path):
    write_recording(tmp_path / "rec", n=4)
    bad = tmp_path / "rec" / "depth" / "000003.png"
    bad.write_bytes(bad.read_bytes()[:60])
    delivered, err = read_until_error(tmp_path / "rec")
    assert delivered == [0, 1, 2]
    assert_one_sentence(err, "000003.png", "corrupt")


def test_depth_that_is_not_16_bit(tmp_path):
    write_recording(tmp_path / "rec", n=2)
    cv2.imwrite(str(tmp_path / "rec" / "depth" / "000001.png"), np.zeros((H, W), np.uint8))
    delivered, err = read_until_error(tmp_path / "rec")
    assert delivered == [0]
    assert_one_sentence(err, "000001.png", "8-bit", "16-bit")
