"""Azure Kinect / Orbbec Femto calibration (the JSON a k4arecorder `.mkv` carries) and depth-to-colour
registration in numpy/OpenCV, without the vendor SDK.

The calibration attachment (`calibration.json`) lists, per camera, 14 lens parameters
`cx, cy, fx, fy, k1..k6, codx, cody, p2, p1` (principal point and focal length divided by the sensor
size, (0, 0) the corner of the top-left pixel), a `ModelType` (Brown-Conrady or Rational 6KT), a
`MetricRadius` and `Rt`: rotation (row-major) and translation (metres) from the depth camera D0 to
this camera. `parse_calibration` turns them into each stream's own mode (crop and binning as in the
SDK's `mode_specific_calibration.c`; pixel centres at integer coordinates, OpenCV's convention).

`DepthRegistration.register` maps a depth image (depth-camera geometry) onto the colour image:
every depth pixel is unprojected through the depth lens model (its ray is computed once), moved by
the extrinsics, projected through the colour lens model (with distortion), and splatted onto a
footprint of ceil(colour px per depth px) squared pixels with a z-buffer (`np.minimum.at`: the
nearest surface wins). Single-pixel gaps left between splats (>= 4 of 8 neighbours measured) are
filled with the nearest neighbouring depth (3x3 minimum of the non-zero values). Pixels the depth
camera does not see (outside its field of view, occlusion shadows) stay 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import cv2
import numpy as np

from sensors.errors import UserError

BROWN_CONRADY = "CALIBRATION_LensDistortionModelBrownConrady"
RATIONAL_6KT = "CALIBRATION_LensDistortionModelRational6KT"
DEPTH_PURPOSE = "CALIBRATION_CameraPurposeDepth"
COLOR_PURPOSE = "CALIBRATION_CameraPurposePhotoVideo"

# Depth output size -> (calibration image size after binning, crop offset), from the k4a SDK.
DEPTH_MODES = {
    (320, 288): ((512, 512), (96, 90)),  # NFOV 2x2 binned
    (640, 576): ((1024, 1024), (192, 180)),  # NFOV unbinned
    (512, 512): ((512, 512), (0, 0)),  # WFOV 2x2 binned
    (1024, 1024): ((1024, 1024), (0, 0)),  # WFOV unbinned, passive IR
}


@dataclass(frozen=True)
class LensModel:
    """One camera in one stream mode: pixel intrinsics, k4a lens distortion, extrinsics from depth."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    k: tuple[float, float, float, float, float, float]  # k1..k6 (rational radial model)
    p1: float
    p2: float
    codx: float
    cody: float
    rational_6kt: bool
    metric_radius: float  # 0: no limit
    rotation: np.ndarray  # 3x3, depth camera -> this camera
    translation: np.ndarray  # 3, metres

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised undistorted (x, y) -> normalised distorted coordinates (the SDK's forward model)."""
        k1, k2, k3, k4, k5, k6 = self.k
        xp, yp = x - self.codx, y - self.cody
        rs = xp * xp + yp * yp
        a = 1 + rs * (k1 + rs * (k2 + rs * k3))
        b = 1 + rs * (k4 + rs * (k5 + rs * k6))
        d = a / np.where(b != 0, b, 1)
        xy = xp * yp
        two = 1.0 if self.rational_6kt else 2.0
        xd = xp * d + (rs + 2 * xp * xp) * self.p2 + two * xy * self.p1 + self.codx
        yd = yp * d + (rs + 2 * yp * yp) * self.p1 + two * xy * self.p2 + self.cody
        return xd, yd

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, ok): pixel coordinates of 3-D points (N x 3, this camera's frame) and which are valid."""
        z = points[:, 2]
        ok = z > 1e-6
        safe = np.where(ok, z, 1)
        x, y = points[:, 0] / safe, points[:, 1] / safe
        if self.metric_radius > 0:
            ok &= (x - self.codx) ** 2 + (y - self.cody) ** 2 <= self.metric_radius ** 2
        xd, yd = self.distort(x, y)
        return xd * self.fx + self.cx, yd * self.fy + self.cy, ok

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """(rays, ok): for every pixel the undistorted normalised (x, y) (H x W x 2) and where it converged."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        xd, yd = (u - self.cx) / self.fx, (v - self.cy) / self.fy
        x, y = xd.copy(), yd.copy()
        for _ in range(20):  # fixed point, as OpenCV's undistortPoints
            fx_, fy_ = self.distort(x, y)
            x, y = x - (fx_ - xd), y - (fy_ - yd)
        eps = 1e-6
        for _ in range(4):  # Newton steps with a numerical Jacobian sharpen the edges of wide lenses
            ex, ey = self.distort(x, y)
            ax, ay = self.distort(x + eps, y)
            bx, by = self.distort(x, y + eps)
            j11, j21, j12, j22 = (ax - ex) / eps, (ay - ey) / eps, (bx - ex) / eps, (by - ey) / eps
            det = j11 * j22 - j12 * j21
            det = np.where(np.abs(det) > 1e-12, det, 1e-12)
            rx, ry = ex - xd, ey - yd
            x, y = x - (j22 * rx - j12 * ry) / det, y - (j11 * ry - j21 * rx) / det
        ex, ey = self.distort(x, y)
        err = np.hypot((ex - xd) * self.fx, (ey - yd) * self.fy)
        ok = np.isfinite(err) & (err < 0.05)
        if self.metric_radius > 0:
            ok &= (x - self.codx) ** 2 + (y - self.cody) ** 2 <= self.metric_radius ** 2
        return np.stack([x, y], axis=-1), ok

    def scaled(self, width: int, height: int) -> LensModel:
        """The same lens for an image resized to width x height (pixel centres kept)."""
        sx, sy = width / self.width, height / self.height
        return LensModel(width, height, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                         (self.cy + 0.5) * sy - 0.5, self.k, self.p1, self.p2, self.codx, self.cody,
                         self.rational_6kt, self.metric_radius, self.rotation, self.translation)


def _camera(cameras: list, purpose: str, where: str) -> dict:
    for camera in cameras:
        if isinstance(camera, dict) and camera.get("Purpose") == purpose:
            return camera
    kind = "depth" if purpose == DEPTH_PURPOSE else "colour"
    raise UserError(f"The calibration in '{where}' has no {kind} camera: re-record it with k4arecorder.")


def _lens(camera: dict, size: tuple[int, int], binned: tuple[float, float], crop: tuple[float, float]) -> LensModel:
    """A camera's raw calibration turned into an output mode (the SDK's mode-specific calibration)."""
    intr = camera["Intrinsics"]
    p = [float(v) for v in intr["ModelParameters"]]
    if len(p) < 14 or not all(math.isfinite(v) for v in p):
        raise ValueError("ModelParameters needs 14 finite numbers")
    model = intr.get("ModelType", BROWN_CONRADY)
    if model not in (BROWN_CONRADY, RATIONAL_6KT):
        raise ValueError(f"lens model {model} is not supported")
    rt = camera["Rt"]
    rotation = np.asarray([float(v) for v in rt["Rotation"]], dtype=np.float64).reshape(3, 3)
    translation = np.asarray([float(v) for v in rt["Translation"]], dtype=np.float64).reshape(3)
    cx, cy = p[0] * binned[0] - crop[0] - 0.5, p[1] * binned[1] - crop[1] - 0.5
    fx, fy = p[2] * binned[0], p[3] * binned[1]
    return LensModel(size[0], size[1], fx, fy, cx, cy, tuple(p[4:10]), p1=p[13], p2=p[12], codx=p[10],
                     cody=p[11], rational_6kt=model == RATIONAL_6KT,
                     metric_radius=float(camera.get("MetricRadius", 0) or 0), rotation=rotation,
                     translation=translation)


def parse_calibration(data: bytes, depth_size: tuple[int, int], color_size: tuple[int, int],
                      where: str) -> tuple[LensModel, LensModel]:
    """(depth lens, colour lens) for the given stream sizes from a k4a calibration JSON attachment."""
    try:
        cameras = json.loads(data)["CalibrationInformation"]["Cameras"]
        depth_cam = _camera(cameras, DEPTH_PURPOSE, where)
        color_cam = _camera(cameras, COLOR_PURPOSE, where)
        if depth_size not in DEPTH_MODES:
            sizes = ", ".join(f"{w}x{h}" for w, h in DEPTH_MODES)
            raise UserError(f"The depth images in '{where}' are {depth_size[0]}x{depth_size[1]}, not an Azure "
                            f"Kinect depth mode ({sizes}).")
        depth = _lens(depth_cam, depth_size, *DEPTH_MODES[depth_size])
        raw_w, raw_h = int(color_cam["SensorWidth"]), int(color_cam["SensorHeight"])
        params = list(color_cam["Intrinsics"]["ModelParameters"])
        if raw_w * 9 // 16 == raw_h:  # legacy 16:9 calibration: to the 4:3 sensor, as the SDK does
            params[1] = (float(params[1]) * raw_h + raw_w * 3 / 32) / (raw_w * 3 / 4)
            params[3] = float(params[3]) * raw_h / (raw_w * 3 / 4)
            color_cam = dict(color_cam, Intrinsics=dict(color_cam["Intrinsics"], ModelParameters=params))
        width, height = color_size
        # Every colour mode is the 4:3 sensor scaled to the mode's width and cropped top and bottom.
        binned = (width, width * 3 / 4)
        color = _lens(color_cam, color_size, binned, (0.0, (binned[1] - height) / 2))
    except UserError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise UserError(f"The calibration attachment of '{where}' cannot be read ({exc}): the file may be "
                        "damaged; re-record it with k4arecorder.") from exc
    return depth, color


class DepthRegistration:
    """Maps depth images (depth-camera geometry) onto the colour image, at `out_size` (width, height)."""

    def __init__(self, depth: LensModel, color: LensModel, out_size: tuple[int, int] | None = None) -> None:
        self.depth = depth
        self.color = color if out_size is None else color.scaled(*out_size)
        rays, ok = depth.pixel_rays()
        self._rays = rays.reshape(-1, 2)
        self._ray_ok = ok.reshape(-1)
        # Depth camera -> colour camera (colour Rt relative to depth D0; depth's own Rt is the identity).
        r_d, t_d = depth.rotation, depth.translation
        self._rotation = color.rotation @ r_d.T
        self._translation = color.translation - self._rotation @ t_d
        zoom = max(self.color.fx / depth.fx, self.color.fy / depth.fy)
        self.footprint = max(1, math.ceil(zoom - 0.05))

    def register(self, depth_raw: np.ndarray) -> np.ndarray:
        """uint16 depth (same units as the input, 0 = none) at the colour image's size and geometry."""
        c = self.color
        flat = depth_raw.reshape(-1)
        keep = np.flatnonzero((flat > 0) & self._ray_ok)
        z = flat[keep].astype(np.float64) * 1e-3  # the units cancel; millimetres -> metres for the translation
        rays = self._rays[keep]
        points = np.empty((keep.size, 3))
        points[:, 0], points[:, 1], points[:, 2] = rays[:, 0] * z, rays[:, 1] * z, z
        moved = points @ self._rotation.T + self._translation
        u, v, ok = c.project(moved)
        s = self.footprint
        x0 = np.rint(u - (s - 1) / 2).astype(np.int64)
        y0 = np.rint(v - (s - 1) / 2).astype(np.int64)
        ok &= (x0 > -s) & (x0 < c.width) & (y0 > -s) & (y0 < c.height)
        zc = np.clip(np.rint(moved[ok, 2] * 1e3), 1, 65534).astype(np.uint16)
        x0, y0 = x0[ok], y0[ok]
        out = np.full(c.width * c.height, 65535, dtype=np.uint16)
        for dy in range(s):
            for dx in range(s):
                x, y = x0 + dx, y0 + dy
                inside = (x >= 0) & (x < c.width) & (y >= 0) & (y < c.height)
                np.minimum.at(out, (y[inside] * c.width + x[inside]), zc[inside])
        out = out.reshape(c.height, c.width)
        return fill_small_holes(out)


def fill_small_holes(splat: np.ndarray) -> np.ndarray:
    """`splat` (65535 = empty) with empty pixels that have >= 4 measured neighbours set to their nearest
    (smallest) neighbouring depth; the remaining empty pixels become 0."""
    measured = splat != 65535
    nearest = cv2.erode(splat, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=65535)
    neighbours = cv2.boxFilter(measured.astype(np.uint8), cv2.CV_16U, (3, 3), normalize=False,
                               borderType=cv2.BORDER_CONSTANT)
    fill = ~measured & (neighbours >= 4)
    out = np.where(measured, splat, 0).astype(np.uint16)
    out[fill] = nearest[fill]
    return out
