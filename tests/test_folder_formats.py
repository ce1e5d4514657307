"""TUM RGB-D and Redwood folder readers: real sample frames from ../shared/data (skipped without it) and tiny
folders made in tmp_path for the Redwood layouts as downloaded and for folders of no known layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from sensors.errors import UserError
from sensors.frame import Intrinsics
from sensors.redwood_folder import RedwoodFolderSource
from sensors.source import open_source
from sensors.tum_folder import TumFolderSource, associate

# -- TUM ------------------------------------------------------------------------------------------
@pytest.fixture
def tum(shared_data) -> Path:
    return shared_data / "tum_frame"


@pytest.fixture
def redwood(shared_data) -> Path:
    return shared_data / "redwood_synthetic"


def make_tum_folder(src: Path, root: Path, rgb_times: list[float], depth_times: list[float]) -> Path:
    """A TUM folder where every listed image is a copy of the real sample frame in `src`."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines = ["# color images", "# file: 'test'", "# timestamp filename"]
    depth_lines = ["# depth maps", "# timestamp filename", ""]
    for t in rgb_times:
        shutil.copy(src / "TUM_color.png", root / "rgb" / f"{t:.6f}.png")
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
    for t in depth_times:
        shutil.copy(src / "TUM_depth.png", root / "depth" / f"{t:.6f}.png")
        depth_lines.append(f"{t:.6f} depth/{t:.6f}.png")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    return root


def test_associate_picks_the_nearest_depth_within_tolerance():
    rgb = np.array([10.000, 10.033, 10.066, 10.500])
    depth = np.array([10.070, 10.004, 10.030, 10.045])  # unsorted on purpose
    # 10.000 -> 10.004 (index 1); 10.033 -> 10.030 (2); 10.066 -> 10.070 (0); 10.500 has none
    assert associate(rgb, depth) == [(0, 1), (1, 2), (2, 0)]
    assert associate(rgb, np.array([10.5])) == [(3, 0)]
    assert associate(rgb, np.array([])) == []


def test_tum_folder_reads_metric_depth(tmp_path, tum):
    times_rgb = [1305031102.175304, 1305031102.211214, 1305031102.243211, 1305031102.307326]
    times_depth = [1305031102.160407, 1305031102.226738, 1305031102.262886]  # none near the last rgb
    folder = make_tum_folder(tum, tmp_path / "rgbd_dataset_freiburg1_xyz", times_rgb, times_depth)
    source = open_source(str(folder))
    assert isinstance(source, TumFolderSource)
    with source:
        info = source.info
        frames = list(source)
    assert (info.width, info.height, info.frame_count, info.live) == (640, 480, 3, False)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.timestamp for f in frames] == pytest.approx([t - times_rgb[0] for t in times_rgb[:3]])
    assert 25 < info.fps < 35

    raw = cv2.imread(str(tum / "TUM_depth.png"), cv2.IMREAD_UNCHANGED)
    bgr = cv2.imread(str(tum / "TUM_color.png"), cv2.IMREAD_COLOR)
    frame = frames[0]
    assert frame.depth_scale == pytest.approx(1 / 5000)
    np.testing.assert_array_equal(frame.depth_raw, raw)
    np.testing.assert_array_equal(frame.color, bgr[:, :, ::-1])
    depth_m = frame.depth_m()
    valid = raw > 0
    assert np.median(depth_m[valid]) == pytest.approx(np.median(raw[valid]) / 5000.0, rel=1e-6)
    assert 0.3 < np.median(depth_m[valid]) < 5.0  # an office desk, in metres
    assert np.all(depth_m[~valid] == 0)
    assert frame.intrinsics == Intrinsics(525.0, 525.0, 319.5, 239.5)


def test_tum_folder_errors(tmp_path, tum):
    folder = make_tum_folder(tum, tmp_path / "tum", [1.0, 2.0], [1.5])
    with pytest.raises(UserError, match="no colour image with a depth image"):
        TumFolderSource(str(folder)).open()
    (folder / "depth.txt").write_text("1.0 depth/1.500000.png\nnot-a-time depth/x.png\n")
    with pytest.raises(UserError, match="Line 2 of"):
        TumFolderSource(str(folder)).open()
    (folder / "depth.txt").write_text("1.0 depth/1.500000.png\n2.0 depth/missing.png\n")
    source = TumFolderSource(str(folder))
    assert source.read().index == 0
    with pytest.raises(UserError, match="missing.png"):
        source.read()
    (folder / "rgb.txt").unlink()
    with pytest.raises(UserError, match="rgb.txt"):
        TumFolderSource(str(folder)).open()


# -- Redwood --------------------------------------------------------------------------------------
def make_redwood_folder(src: Path, root: Path, with_camera: bool = True) -> Path:
    """A Redwood folder (color/00000.jpg, depth/00000.png, camera json) from the sample frames in `src`."""
    (root / "color").mkdir(parents=True)
    (root / "depth").mkdir()
    for path in sorted(src.glob("color_*.jpg")):
        shutil.copy(path, root / "color" / path.name.replace("color_", ""))
    for path in sorted(src.glob("depth_*.png")):
        shutil.copy(path, root / "depth" / path.name.replace("depth_", ""))
    if with_camera:
        shutil.copy(src / "camera_primesense.json", root / "camera_primesense.json")
    return root


def test_redwood_folder_reads_metric_depth_and_intrinsics(tmp_path, redwood):
    folder = make_redwood_folder(redwood, tmp_path / "living_room")
    source = open_source(str(folder))
    assert isinstance(source, RedwoodFolderSource)
    with source:
        info = source.info
        frames = list(source)
    assert (info.width, info.height, info.frame_count, info.fps) == (640, 480, 5, 30.0)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[4].timestamp == pytest.approx(4 / 30)
    assert frames[0].intrinsics == Intrinsics(525.0, 525.0, 319.5, 239.5)
    for i in (0, 3):  # frames are paired by name order
        raw = cv2.imread(str(redwood / f"depth_0000{i}.png"), cv2.IMREAD_UNCHANGED)
        bgr = cv2.imread(str(redwood / f"color_0000{i}.jpg"), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(frames[i].depth_raw, raw)
        np.testing.assert_array_equal(frames[i].color, bgr[:, :, ::-1])
        valid = raw > 0
        median_m = np.median(frames[i].depth_m()[valid])
        assert median_m == pytest.approx(np.median(raw[valid]) / 1000.0, rel=1e-6)
        assert 0.3 < median_m < 6.0
    assert RedwoodFolderSource(str(folder), start=3).read().index == 3


def test_redwood_without_camera_file_uses_default_intrinsics(tmp_path, redwood):
    folder = make_redwood_folder(redwood, tmp_path / "rw", with_camera=False)
    assert RedwoodFolderSource(str(folder)).read().intrinsics == Intrinsics.default_for(640, 480)


def test_redwood_errors(tmp_path, redwood):
    folder = make_redwood_folder(redwood, tmp_path / "rw")
    (folder / "camera_primesense.json").write_text('{"width": 640}')
    with pytest.raises(UserError, match="camera_primesense.json"):
        RedwoodFolderSource(str(folder)).open()
    (folder / "camera_primesense.json").unlink()
    sorted((folder / "depth").iterdir())[-1].unlink()
    with pytest.raises(UserError, match="5 colour and 4 depth"):
        RedwoodFolderSource(str(folder)).open()
    with pytest.raises(UserError, match="does not exist"):
        RedwoodFolderSource(str(tmp_path / "nothing")).open()


# -- Redwood layouts as downloaded, and folders of no known layout (tiny fixtures) ----------------------
def write_frames(folder: Path, sub: str, names: list[str], ext: str, value: int = 0) -> None:
    """Tiny 8x6 images: colour (8-bit, value + frame number in red) or depth (16-bit millimetres)."""
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        if ext == ".png" and sub == "depth":
            image = np.full((6, 8), 1000 + 10 * i + value, np.uint16)
        else:
            image = np.zeros((6, 8, 3), np.uint8)
            image[..., 2] = 40 * i + value
        assert cv2.imwrite(str(folder / sub / f"{name}{ext}"), image)


def test_redwood_scan_layout_rgb_with_timestamped_names(tmp_path):
    folder = tmp_path / "00033"  # a Redwood 3D scan: rgb/FRAME-MICROSECONDS.jpg, depth/FRAME-MICROSECONDS.png
    stamps = [0, 33_366, 66_733, 100_100]
    write_frames(folder, "rgb", [f"{i + 1:07d}-{t:012d}" for i, t in enumerate(stamps)], ".png")
    write_frames(folder, "depth", [f"{i + 1:07d}-{t + 5_000:012d}" for i, t in enumerate(stamps)], ".png")
    source = open_source(str(folder))
    assert isinstance(source, RedwoodFolderSource)
    with source:
        frames = list(source)
        assert source.info.fps == pytest.approx(1e6 / 33_366.5, rel=1e-3)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.timestamp for f in frames] == pytest.approx([t * 1e-6 for t in stamps])
    assert source.stream_times(2) == pytest.approx((0.066733, 0.071733))
    assert [int(f.depth_raw[0, 0]) for f in frames] == [1000, 1010, 1020, 1030]  # paired by frame number
    assert [int(f.color[0, 0, 0]) for f in frames] == [0, 40, 80, 120]  # RGB order: red first


def test_redwood_lidar_layout_image_folder(tmp_path):
    folder = tmp_path / "apartment"  # Redwood indoor LiDAR-RGBD: image/000001.jpg + depth/000001.png
    write_frames(folder, "image", [f"{i:06d}" for i in range(1, 4)], ".jpg", value=20)
    write_frames(folder, "depth", [f"{i:06d}" for i in range(1, 4)], ".png")
    with open_source(str(folder)) as source:
        frames = list(source)
        assert (source.info.width, source.info.height, source.info.fps) == (8, 6, 30.0)
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[2].timestamp == pytest.approx(2 / 30)
    assert frames[1].depth_m()[0, 0] == pytest.approx(1.010)
    assert frames[0].intrinsics == Intrinsics.default_for(8, 6)


def test_redwood_numbered_frames_need_both_images(tmp_path):
    folder = tmp_path / "scan"
    write_frames(folder, "rgb", ["0000001-000000000000", "0000002-000000033366", "0000003-000000066733"], ".png")
    write_frames(folder, "depth", ["0000001-000000000000", "0000003-000000066733", "0000004-000000100100"], ".png")
    with pytest.raises(UserError, match="3 colour and 3 depth images \\(frame 2 lacks its pair\\)"):
        RedwoodFolderSource(str(folder)).open()


def test_unknown_folder_names_the_expected_layouts(tmp_path):
    for folder, subs in ((tmp_path / "photos", ["pictures"]), (tmp_path / "colour_only", ["rgb"])):
        for sub in subs:
            (folder / sub).mkdir(parents=True)
        with pytest.raises(UserError) as caught:
            open_source(str(folder))
        message = str(caught.value)
        assert caught.value.exit_code == 2
        for layout in ("rgbd-folder (meta.json)", "rgb.txt and depth.txt", "color/, rgb/ or image/ beside depth/",
                       ".bag/.db3", "Azure Kinect .mkv"):
            assert layout in message
    with pytest.raises(UserError, match="no color/, rgb/ or image/ folder"):
        RedwoodFolderSource(str(tmp_path / "photos")).open()
