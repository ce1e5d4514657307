"""Static backgrounds of the synthetic RGB-D scenes: ray-cast rooms and real background plates.

Owns `BackgroundScene` (what the empty scene looks like to a perfect camera: linear radiance, true
depth, per-pixel depth dropout probability), `CameraPose`, `render_room` (a room of planes with
box/cylinder furniture, posters and windows, textured and shaded) and `plate_scene` (a real RGB-D
frame, e.g. the TUM desk, used as the whole background, holes included).

Coordinates: camera frame x right, y down, z forward (metres); the "world" frame is the camera
frame before the camera's pitch/yaw, with the floor at y = +height_m. Depth is camera z.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from engines.synth.textures import (
    RealPlate,
    TextureBank,
    luminance,
    procedural_texture,
    random_color,
    srgb_to_linear,
)
from sensors.frame import Intrinsics

log = logging.getLogger(__name__)

TEX_SIZE = 192  # side of the texture image each surface samples at 640 px image width, px
INF = np.float32(np.inf)


@dataclass(frozen=True)
class CameraPose:
    """Camera height above the floor (m), pitch (rad, > 0 looks down) and yaw (rad, > 0 turns right)."""

    height_m: float
    pitch_rad: float
    yaw_rad: float = 0.0

    def rotation(self) -> np.ndarray:
        """3x3 float64 rotation taking camera-frame vectors to world-frame vectors."""
        cp, sp = np.cos(self.pitch_rad), np.sin(self.pitch_rad)
        cy, sy = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        return yaw @ pitch


@dataclass
class BackgroundScene:
    """The empty scene as a perfect camera would see it.

    radiance: float32 HxWx3, linear RGB, >= 0 (1.0 saturates the reference exposure).
    depth_m: float32 HxW, true depth along the optical axis; 0 where the surface never returns depth.
    dropout: float32 HxW in [0, 1], probability that a capture loses the pixel's depth (dark, glossy
        or far surfaces), drawn afresh every frame.
    intrinsics, pose: the camera (the pose is estimated for real plates).
    """

    radiance: np.ndarray
    depth_m: np.ndarray
    dropout: np.ndarray
    intrinsics: Intrinsics
    pose: CameraPose
    name: str = "room"

    @property
    def height(self) -> int:
        return int(self.depth_m.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth_m.shape[1])


def pixel_rays(height: int, width: int, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ray directions (rx, ry, 1) of every pixel centre, two float32 HxW arrays."""
    u = (np.arange(width, dtype=np.float32) - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx)
    v = (np.arange(height, dtype=np.float32) - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy)
    return np.broadcast_to(u[None, :], (height, width)), np.broadcast_to(v[:, None], (height, width))


def project(points_cam: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pixel coordinates (N x 2, float64) of camera-frame points N x 3 (z > 0)."""
    z = points_cam[:, 2]
    return np.stack([intrinsics.fx * points_cam[:, 0] / z + intrinsics.cx,
                     intrinsics.fy * points_cam[:, 1] / z + intrinsics.cy], axis=1)


# -- surfaces -------------------------------------------------------------------------------------
@dataclass
class _Surface:
    kind: str  # "plane" | "box" | "cylinder"
    params: dict
    texture: np.ndarray  # float32 linear RGB, square
    px_per_m: float
    dropout: float = 0.0
    albedo_gain: float = 1.0


def _mirror_coords(coord: np.ndarray, size: int) -> np.ndarray:
    """Mirrored tiling: any float coordinate -> [0, size - 1]."""
    period = 2.0 * size
    c = np.mod(coord, period)
    return np.where(c >= size, period - 1.0 - c, c).astype(np.float32)


def _sample_texture(texture: np.ndarray, u_m: np.ndarray, v_m: np.ndarray, px_per_m: float) -> np.ndarray:
    th, tw = texture.shape[:2]
    mx = _mirror_coords(u_m * np.float32(px_per_m), tw)
    my = _mirror_coords(v_m * np.float32(px_per_m), th)
    return cv2.remap(texture, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _plane_t(axis: int, value: float, dirs: tuple[np.ndarray, ...]) -> np.ndarray:
    d = dirs[axis]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.float32(value) / d
    return np.where(np.isfinite(t) & (t > 0), t, INF).astype(np.float32)


def _box_t(lo: np.ndarray, hi: np.ndarray, dirs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Slab test from the origin: entry distance (inf = miss) and the hit face axis, per ray."""
    tmins, tmaxs = [], []
    for a in range(3):
        d = np.where(np.abs(dirs[a]) < 1e-9, np.float32(1e-9), dirs[a])
        t1, t2 = np.float32(lo[a]) / d, np.float32(hi[a]) / d
        tmins.append(np.minimum(t1, t2))
        tmaxs.append(np.maximum(t1, t2))
    tmin = np.stack(tmins)
    tnear, tfar = tmin.max(axis=0), np.minimum.reduce(tmaxs)
    hit = (tnear <= tfar) & (tnear > 0)
    return np.where(hit, tnear, INF).astype(np.float32), tmin.argmax(axis=0)


def _cylinder_t(xc: float, zc: float, r: float, y_top: float, y_bottom: float,
                dirs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Vertical cylinder (axis along y) with a top cap: entry distance and 1 where the cap was hit."""
    dx, dy, dz = dirs
    a = dx * dx + dz * dz
    b = -2.0 * (dx * xc + dz * zc)
    c = xc * xc + zc * zc - r * r
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    y = t_side * dy
    side_ok = (disc > 0) & (t_side > 0) & (y >= y_top) & (y <= y_bottom)
    t_side = np.where(side_ok, t_side, INF)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cap = np.float32(y_top) / dy
    cap_ok = np.isfinite(t_cap) & (t_cap > 0) & ((t_cap * dx - xc) ** 2 + (t_cap * dz - zc) ** 2 <= r * r)
    t_cap = np.where(cap_ok, t_cap, INF)
    return np.minimum(t_side, t_cap).astype(np.float32), (t_cap < t_side)


def _pixel_box(corners_world: np.ndarray, rot: np.ndarray, intr: Intrinsics, h: int, w: int) -> tuple | None:
    """Image rows/cols slice pair covering the projection of world-frame corners, or None if off-screen."""
    cam = corners_world @ rot  # world -> camera is rot.T; row vectors: p_cam = p_world @ rot
    if np.any(cam[:, 2] <= 0.05):
        return (slice(0, h), slice(0, w))
    uv = project(cam, intr)
    u0, v0 = np.floor(uv.min(axis=0)).astype(int) - 2
    u1, v1 = np.ceil(uv.max(axis=0)).astype(int) + 2
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, w), min(v1, h)
    if u0 >= u1 or v0 >= v1:
        return None
    return (slice(v0, v1), slice(u0, u1))


def _surface_texture(rng: np.random.Generator, bank: TextureBank, real_prob: float, size: int) -> np.ndarray:
    """Furniture/floor texture, linear float32 size x size x 3."""
    return srgb_to_linear(bank.texture(rng, size, size, real_prob=real_prob))


def _wall_texture(rng: np.random.Generator, bank: TextureBank, real_prob: float, size: int) -> np.ndarray:
    """Painted wall or wallpaper: a light paint colour modulated by a low-contrast pattern (linear)."""
    pattern = bank.texture(rng, size, size, real_prob=real_prob)
    paint = random_color(rng, sat=(0.0, 0.35), val=(0.5, 0.95))
    lum = luminance(pattern)
    contrast = np.float32(rng.uniform(0.05, 0.5))
    tex = paint[None, None, :] * (1.0 + contrast * (lum / max(float(lum.mean()), 1e-3) - 1.0))[:, :, None]
    if rng.random() < 0.25:  # wallpaper: keep some of the pattern's colours
        tex = 0.5 * tex + 0.5 * pattern
    return srgb_to_linear(tex)


def render_room(rng: np.random.Generator, height: int, width: int, intrinsics: Intrinsics,
                bank: TextureBank) -> BackgroundScene:
    """A random room: back wall, floor, ceiling, side walls, 1-5 boxes/cylinders, a poster or window.

    Deterministic for the state of `rng`. Radiance is normalised so the brightest diffuse surfaces sit
    near 0.6-0.85 of the reference exposure; windows are brighter (they saturate, as real ones do).
    """
    pose = CameraPose(height_m=rng.uniform(1.25, 1.8), pitch_rad=rng.uniform(-0.05, 0.15),
                      yaw_rad=rng.uniform(-0.25, 0.25))
    rot = pose.rotation().astype(np.float32)
    rx, ry = pixel_rays(height, width, intrinsics)
    dirs = tuple(rot[i, 0] * rx + rot[i, 1] * ry + rot[i, 2] for i in range(3))  # world-frame directions
    cam_h = pose.height_m
    room_h = rng.uniform(2.4, 3.0)
    back = rng.uniform(2.9, 5.2)
    left, right = rng.uniform(1.0, 3.0), rng.uniform(1.0, 3.0)
    real_prob = 0.55 if bank.has_real else 0.0
    ts = int(np.clip(TEX_SIZE * width / 640, 64, TEX_SIZE))  # texture side; px_per_m below scale with it
    tscale = ts / TEX_SIZE

    wall_tex = _wall_texture(rng, bank, real_prob, ts)
    floor_tex = (srgb_to_linear(procedural_texture(rng, ts, ts, "wood")) if rng.random() < 0.3
                 else _surface_texture(rng, bank, real_prob, ts))
    ceiling_tex = srgb_to_linear(np.clip(0.85 + 0.05 * procedural_texture(rng, ts, ts, "noise"), 0, 1))
    surfaces: list[_Surface] = [
        _Surface("plane", {"axis": 1, "value": cam_h, "uv": (0, 2)}, floor_tex, rng.uniform(60, 250) * tscale),
        _Surface("plane", {"axis": 1, "value": cam_h - room_h, "uv": (0, 2)}, ceiling_tex, 60.0 * tscale),
        _Surface("plane", {"axis": 2, "value": back, "uv": (0, 1)}, wall_tex, rng.uniform(50, 100) * tscale),
        _Surface("plane", {"axis": 0, "value": -left, "uv": (2, 1)},
                 wall_tex if rng.random() < 0.7 else _wall_texture(rng, bank, real_prob, ts),
                 rng.uniform(50, 100) * tscale),
        _Surface("plane", {"axis": 0, "value": right, "uv": (2, 1)},
                 wall_tex if rng.random() < 0.7 else _wall_texture(rng, bank, real_prob, ts),
                 rng.uniform(50, 100) * tscale),
    ]
    # Furniture: boxes (cabinets, shelves, tables, sofas) and cylinders (bins, plants, lamps).
    for _ in range(int(rng.integers(1, 6))):
        dark = rng.random() < 0.15
        tex = _surface_texture(rng, bank, real_prob, ts)
        drop = rng.uniform(0.5, 0.9) if dark else rng.uniform(0.0, 0.03)
        gain = 0.12 if dark else 1.0
        if rng.random() < 0.75:
            w, hgt, d = rng.uniform(0.3, 1.6), rng.uniform(0.3, 2.0), rng.uniform(0.3, 0.8)
            if rng.random() < 0.5:  # against the back wall
                z1 = back
                z0 = back - d
                x0 = rng.uniform(-left, right - w)
            else:  # free-standing; nearer ones pushed to the sides, out of the subject's way
                z0 = rng.uniform(1.3, max(1.4, back - d - 0.1))
                z1 = z0 + d
                side = -1.0 if rng.random() < 0.5 else 1.0
                x_min_abs = 0.0 if z0 > 2.7 else 0.9
                xc = side * rng.uniform(x_min_abs, max(x_min_abs + 0.1, (left if side < 0 else right) - w / 2))
                x0 = xc - w / 2
            lo = np.array([x0, cam_h - hgt, z0])
            hi = np.array([x0 + w, cam_h, z1])
            surfaces.append(_Surface("box", {"lo": lo, "hi": hi}, tex, rng.uniform(80, 300) * tscale, drop, gain))
        else:
            r, hgt = rng.uniform(0.1, 0.35), rng.uniform(0.3, 1.6)
            zc = rng.uniform(1.5, back - r)
            side = -1.0 if rng.random() < 0.5 else 1.0
            xc = side * rng.uniform(0.0 if zc > 2.7 else 0.9, max(1.0, (left if side < 0 else right) - r))
            surfaces.append(_Surface("cylinder", {"xc": xc, "zc": zc, "r": r, "top": cam_h - hgt, "bottom": cam_h},
                                     tex, rng.uniform(80, 300) * tscale, drop, gain))

    # -- ray casting: nearest surface per pixel ----------------------------------------------------
    t_best = np.full((height, width), INF, np.float32)
    sid = np.full((height, width), -1, np.int16)
    face = np.zeros((height, width), np.int8)  # box face axis / cylinder cap flag
    for i, s in enumerate(surfaces):
        if s.kind == "plane":
            t = _plane_t(s.params["axis"], s.params["value"], dirs)
            better = t < t_best
            t_best[better], sid[better] = t[better], i
            continue
        if s.kind == "box":
            lo, hi = s.params["lo"], s.params["hi"]
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        else:
            p = s.params
            corners = np.array([[p["xc"] + dx, y, p["zc"] + dz] for dx in (-p["r"], p["r"])
                                for dz in (-p["r"], p["r"]) for y in (p["top"], p["bottom"])])
        region = _pixel_box(corners, rot.astype(np.float64), intrinsics, height, width)
        if region is None:
            continue
        sub = tuple(d[region] for d in dirs)
        if s.kind == "box":
            t, f = _box_t(s.params["lo"], s.params["hi"], sub)
        else:
            p = s.params
            t, f = _cylinder_t(p["xc"], p["zc"], p["r"], p["top"], p["bottom"], sub)
        better = t < t_best[region]
        t_best[region][better] = t[better]
        sid[region][better] = i
        face[region][better] = f[better].astype(np.int8)
    t_best = np.where(np.isfinite(t_best), t_best, np.float32(back)).astype(np.float32)
    px, py, pz = (t_best * d for d in dirs)

    # -- materials --------------------------------------------------------------------------------
    albedo = np.zeros((height, width, 3), np.float32)
    normal = np.zeros((height, width, 3), np.float32)
    dropout = np.zeros((height, width), np.float32)
    coords = (px, py, pz)
    for i, s in enumerate(surfaces):
        mask = sid == i
        if not mask.any():
            continue
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        m = mask[region]
        cx_, cy_, cz_ = (c[region] for c in coords)
        n = np.zeros(m.shape + (3,), np.float32)
        if s.kind == "plane":
            a = s.params["axis"]
            ua, va = s.params["uv"]
            u_m, v_m = coords[ua][region], coords[va][region]
            n[..., a] = -np.sign(s.params["value"])
        elif s.kind == "box":
            f = face[region]
            lo = s.params["lo"]
            u_m = np.where(f == 0, cz_, cx_) - np.float32(lo[0])
            v_m = np.where(f == 1, cz_, cy_)
            for a in range(3):
                n[..., a] = np.where(f == a, -np.sign(dirs[a][region]), 0)
        else:
            p = s.params
            ox, oz = cx_ - np.float32(p["xc"]), cz_ - np.float32(p["zc"])
            cap = face[region].astype(bool)
            u_m = np.where(cap, cx_, np.arctan2(oz, ox) * np.float32(p["r"]))
            v_m = np.where(cap, cz_, cy_)
            inv_r = np.float32(1.0 / p["r"])
            n[..., 0] = np.where(cap, 0, ox * inv_r)
            n[..., 1] = np.where(cap, -1, 0)
            n[..., 2] = np.where(cap, 0, oz * inv_r)
        tex = _sample_texture(s.texture, u_m, v_m, s.px_per_m) * np.float32(s.albedo_gain)
        np.copyto(albedo[region], tex, where=m[:, :, None])
        np.copyto(normal[region], n, where=m[:, :, None])
        np.copyto(dropout[region], np.float32(s.dropout), where=m)

    # Baseboards where walls meet the floor.
    board_h = rng.uniform(0.05, 0.12)
    board = (sid >= 2) & (sid <= 4) & (py > cam_h - board_h)
    albedo[board] = srgb_to_linear(np.full(3, rng.uniform(0.3, 0.95), np.float32))

    # Decals on the back wall: a poster (real photo when available) and/or a window (bright, no depth).
    for kind in ("poster", "window"):
        if rng.random() > (0.6 if kind == "poster" else 0.35):
            continue
        w, hgt = rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.3)
        x0 = rng.uniform(-left, right - w)
        y0 = cam_h - rng.uniform(0.9, 2.2)
        corners = np.array([[x, y, back] for x in (x0, x0 + w) for y in (y0 - hgt, y0)])
        region = _pixel_box(corners, rot.astype(np.float64), intrinsics, height, width)
        if region is None:
            continue
        rpx, rpy = px[region], py[region]
        sel = (sid[region] == 2) & (rpx >= x0) & (rpx <= x0 + w) & (rpy >= y0 - hgt) & (rpy <= y0)
        if not sel.any():
            continue
        tex = srgb_to_linear(bank.texture(rng, ts, ts, real_prob=0.9 if bank.has_real else 0.0))
        u_img = ((rpx - x0) / w * (ts - 1)).astype(np.float32)
        v_img = ((rpy - (y0 - hgt)) / hgt * (ts - 1)).astype(np.float32)
        sampled = cv2.remap(tex, u_img, v_img, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inner = (rpx >= x0 + 0.03) & (rpx <= x0 + w - 0.03) & (rpy >= y0 - hgt + 0.03) & (rpy <= y0 - 0.03)
        frame = sel & ~inner
        alb, drop, nrm = albedo[region], dropout[region], normal[region]
        if kind == "poster":
            np.copyto(alb, sampled, where=sel[:, :, None])
            alb[frame] = np.float32(0.02)
        else:
            np.copyto(alb, sampled * np.float32(0.4) + np.float32(0.6), where=sel[:, :, None])  # emissive below
            drop[sel] = 0.95
            alb[frame] = np.float32(0.6)
            drop[frame] = 0.0
            nrm[sel & ~frame] = 0.0  # no shading: light comes through

    # -- lighting ---------------------------------------------------------------------------------
    light = np.array([rng.uniform(-1.0, 1.0), cam_h - room_h + 0.3, rng.uniform(0.8, back - 0.4)], np.float32)
    lx, ly, lz = light[0] - px, light[1] - py, light[2] - pz
    dist = np.sqrt(lx * lx + ly * ly + lz * lz) + np.float32(1e-3)
    ndotl = (normal[..., 0] * lx + normal[..., 1] * ly + normal[..., 2] * lz) / dist
    falloff = 1.0 / (1.0 + (dist / np.float32(rng.uniform(1.5, 3.0))) ** 2)
    fill = np.clip(-(normal[..., 0] * dirs[0] + normal[..., 1] * dirs[1] + normal[..., 2] * dirs[2]), 0, 1)
    ambient = rng.uniform(0.25, 0.5)
    shading = ambient + 2.0 * np.maximum(ndotl, 0) * falloff + 0.25 * fill / np.sqrt(dirs[0] ** 2 + dirs[1] ** 2 + 1)
    # Ambient occlusion near the room's corners: distance to the second-nearest room plane.
    first = np.full((height, width), INF, np.float32)
    second = first.copy()
    for d in (np.abs(cam_h - py), np.abs(py - (cam_h - room_h)), np.abs(back - pz), np.abs(px + left),
              np.abs(right - px)):
        second = np.minimum(second, np.maximum(first, d))
        first = np.minimum(first, d)
    near_other = np.where((sid <= 4) & (sid >= 0), second, first)
    shading = shading * (1.0 - 0.35 * np.exp(-near_other / 0.25))
    emissive = (dropout >= 0.95) & (np.abs(normal).sum(axis=2) == 0)
    shading = np.where(emissive, 1.0, shading).astype(np.float32)
    radiance = albedo * shading[:, :, None]
    lum = luminance(radiance)
    diffuse = lum[::2, ::2][~emissive[::2, ::2]]
    ref = float(np.percentile(diffuse, 97)) if diffuse.size else 1.0
    radiance *= np.float32(rng.uniform(0.6, 0.85) / max(ref, 1e-4))
    radiance[emissive] = albedo[emissive] * np.float32(rng.uniform(1.2, 2.0))
    # Vignetting of the lens (static, part of what the camera sees).
    r2 = ((rx / (width / (2 * intrinsics.fx))) ** 2 + (ry / (height / (2 * intrinsics.fy))) ** 2) / 2
    radiance *= (1.0 - np.float32(rng.uniform(0.0, 0.3)) * r2)[:, :, None]

    # Dark surfaces reflect little of the sensor's infrared pattern either.
    dark = luminance(albedo)
    dropout = np.maximum(dropout, 0.6 * np.clip((0.01 - dark) / 0.01, 0, 1)).astype(np.float32)
    return BackgroundScene(np.maximum(radiance, 0).astype(np.float32), t_best, dropout, intrinsics, pose, "room")


# -- real plates ----------------------------------------------------------------------------------
def estimate_floor_pose(depth_m: np.ndarray, intrinsics: Intrinsics) -> CameraPose:
    """Camera height and pitch from the floor seen in the bottom fifth of a depth image.

    A least-squares plane y = a x + b z + c fitted to the valid points (twice, dropping points more
    than 5 cm off the first fit); falls back to 1.3 m / 0.3 rad when the fit is implausible.
    """
    h, w = depth_m.shape
    rows = slice(int(h * 0.8), h)
    z = depth_m[rows]
    rx, ry = pixel_rays(h, w, intrinsics)
    valid = z > 0
    fallback = CameraPose(1.3, 0.3)
    if valid.sum() < 200:
        return fallback
    pts = np.stack([rx[rows][valid] * z[valid], ry[rows][valid] * z[valid], z[valid]], axis=1).astype(np.float64)
    keep = np.ones(len(pts), bool)
    coef = np.zeros(3)
    for _ in range(2):
        design = np.stack([pts[keep, 0], pts[keep, 2], np.ones(int(keep.sum()))], axis=1)
        coef, *_ = np.linalg.lstsq(design, pts[keep, 1], rcond=None)
        resid = np.abs(pts[:, 1] - (coef[0] * pts[:, 0] + coef[1] * pts[:, 2] + coef[2]))
        keep = resid < 0.05
        if keep.sum() < 100:
            return fallback
    a, b, c = coef
    norm = np.sqrt(a * a + 1 + b * b)
    height_m, pitch = c / norm, float(np.arctan2(-b, 1.0))
    if not (0.5 < height_m < 2.5 and -0.2 < pitch < 0.9):
        return fallback
    return CameraPose(float(height_m), pitch)


def plate_scene(rng: np.random.Generator, plate: RealPlate, height: int, width: int,
                augment: bool = False) -> BackgroundScene:
    """A real RGB-D frame resized to HxW as the background (its depth holes stay holes).

    augment: random crop (70-100 % of the frame) and horizontal flip, for training variety.
    """
    ph, pw = plate.depth_m.shape
    cx0, cy0 = (pw - 1) / 2.0, (ph - 1) / 2.0
    x0, y0, cw, ch = 0, 0, pw, ph
    flip = False
    if augment:
        s = rng.uniform(0.7, 1.0)
        cw, ch = int(pw * s), int(ph * s)
        x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
        flip = bool(rng.random() < 0.5)
    color = plate.color[y0:y0 + ch, x0:x0 + cw]
    depth = plate.depth_m[y0:y0 + ch, x0:x0 + cw]
    if flip:
        color, depth = color[:, ::-1], depth[:, ::-1]
    color = cv2.resize(np.ascontiguousarray(color), (width, height), interpolation=cv2.INTER_AREA)
    depth = cv2.resize(np.ascontiguousarray(depth), (width, height), interpolation=cv2.INTER_NEAREST)
    sx, sy = width / cw, height / ch
    pcx = (cx0 - x0) if not flip else (cw - 1 - (cx0 - x0))
    intr = Intrinsics(plate.focal_px * sx, plate.focal_px * sy, pcx * sx, (cy0 - y0) * sy)
    radiance = srgb_to_linear(color.astype(np.float32) / 255.0) * np.float32(rng.uniform(0.8, 1.0))
    holes = (depth <= 0).astype(np.uint8)
    ring = cv2.dilate(holes, np.ones((3, 3), np.uint8)) > holes
    dropout = np.where(ring, 0.3, 0.01).astype(np.float32)
    pose = estimate_floor_pose(depth, intr)
    return BackgroundScene(radiance.astype(np.float32), depth.astype(np.float32), dropout, intr, pose, plate.name)
