"""Synthetic people for the RGB-D scenes: silhouette, hair, translucent veil, colour and depth.

Owns `render_person`, which turns a `PersonLook` and `PersonPose` (`engines.synth.look`) into a
`SubjectLayer`: the subject's colour, ground-truth alpha and the depth a sensor would see.

The body (`engines.synth.body`) is a union of smooth 2D shapes (ellipses, tapered capsules, a smooth-min torso) drawn in
"body coordinates" (metres; x to the subject's left as seen by the camera, y up from the floor),
mapped to the image with the perspective scale at the subject's distance. Depth is the body's
mid-plane depth minus a per-part ellipsoidal bulge. Hair is a fuzzy volume behind the face plus
hundreds of thin anti-aliased strands with partial alpha (which return no depth); an optional
scarf or sleeve is semi-transparent (alpha 0.3-0.7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from engines.synth.body import body_parts, sd_capsule, sd_ellipse, smin
from engines.synth.look import HAIR, SHIRT, SHOES, SKIN, TROUSERS, VEIL, PersonLook, PersonPose, SubjectLayer
from engines.synth.room import BackgroundScene
from engines.synth.textures import (
    luminance,
)

log = logging.getLogger(__name__)



# -- image mapping ----------------------------------------------------------------------------------
@dataclass
class _Mapping:
    """Body coordinates <-> pixel coordinates for one frame (affine in by, perspective scale in bx)."""

    u_feet: float
    v_feet: float
    u_top: float
    v_top: float
    z_feet: float
    z_top: float
    height_m: float
    sx: float  # pixels per metre horizontally

    @property
    def sy(self) -> float:  # pixels per metre vertically
        return (self.v_feet - self.v_top) / self.height_m

    def to_px(self, bx, by):
        f = by / self.height_m
        return self.u_feet + (self.u_top - self.u_feet) * f + bx * self.sx, self.v_feet - by * self.sy

    def z_at(self, by):
        return self.z_feet + (self.z_top - self.z_feet) * by / self.height_m


def _mapping(look: PersonLook, pose: PersonPose, scene: BackgroundScene) -> tuple[_Mapping, np.ndarray]:
    intr = scene.intrinsics
    rot = scene.pose.rotation()
    cam_h = scene.pose.height_m
    torso_h = 1.1 * look.height_m / 1.75 - pose.sit_m
    # Camera-frame torso point at (u, ?, z) whose world height is the torso's; then stand it on the floor.
    x_c = (pose.u_px - intr.cx) * pose.distance_m / intr.fx
    y_c = (cam_h - torso_h - rot[1, 0] * x_c - rot[1, 2] * pose.distance_m) / rot[1, 1]
    torso_w = rot @ np.array([x_c, y_c, pose.distance_m])
    feet_w = np.array([torso_w[0], cam_h, torso_w[2]])
    top_w = np.array([torso_w[0], cam_h - look.height_m, torso_w[2]])
    feet_c, top_c = rot.T @ feet_w, rot.T @ top_w
    z_f, z_t = max(feet_c[2], 0.2), max(top_c[2], 0.2)
    m = _Mapping(intr.fx * feet_c[0] / z_f + intr.cx, intr.fy * feet_c[1] / z_f + intr.cy,
                 intr.fx * top_c[0] / z_t + intr.cx, intr.fy * top_c[1] / z_t + intr.cy,
                 feet_c[2], top_c[2], look.height_m, intr.fx / pose.distance_m)
    return m, rot.T @ torso_w


def head_top_row(look: PersonLook, u_px: float, distance_m: float, scene: BackgroundScene,
                 sit_m: float = 0.0) -> float:
    """Image row of the top of the person's head at (u_px, distance_m), standing or seated."""
    pose = PersonPose(u_px, distance_m, ((0, 0, 1, 0), (0, 0, 1, 0)), sit_m=sit_m)
    m = _mapping(look, pose, scene)[0]
    return float(m.to_px(0.0, look.height_m - sit_m)[1])


# -- rendering --------------------------------------------------------------------------------------
def _region(m: _Mapping, bounds, x0: int, y0: int, h: int, w: int, pad_px: float):
    """Rows/cols slices (bbox-local) covering body-coordinate bounds, or None when outside."""
    bx0, bx1, by0, by1 = bounds
    us, vs = m.to_px(np.array([bx0, bx1, bx0, bx1]), np.array([by0, by0, by1, by1]))
    c0 = int(np.floor(us.min() - pad_px)) - x0
    c1 = int(np.ceil(us.max() + pad_px)) - x0 + 1
    r0 = int(np.floor(vs.min() - pad_px)) - y0
    r1 = int(np.ceil(vs.max() + pad_px)) - y0 + 1
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, w), min(r1, h)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _mirror(coord, size):
    period = 2.0 * size
    c = np.mod(coord, period)
    return np.where(c >= size, period - 1.0 - c, c).astype(np.float32)


def _texture_at(tex, bx, by, px_per_m):
    th, tw = tex.shape[:2]
    return cv2.remap(tex, _mirror(bx * np.float32(px_per_m), tw), _mirror(-by * np.float32(px_per_m), th),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _shade(z: np.ndarray, sx: float, sy: float, light: np.ndarray, ambient: float) -> np.ndarray:
    """Lambert shading of a depth map z (metres per pixel grid) for a light direction (camera frame)."""
    zc = np.where(np.isfinite(z), z, np.float32(np.nanmax(np.where(np.isfinite(z), z, 0)) + 0.5)).astype(np.float32)
    gx = np.clip(cv2.Sobel(zc, cv2.CV_32F, 1, 0, ksize=3) / 8.0 * np.float32(sx), -4, 4)
    gy = np.clip(cv2.Sobel(zc, cv2.CV_32F, 0, 1, ksize=3) / 8.0 * np.float32(sy), -4, 4)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    ndotl = (gx * light[0] + gy * light[1] - light[2]) / norm
    return (ambient + (1 - ambient) * np.clip(ndotl, 0, 1)).astype(np.float32)


def _draw_strands(look: PersonLook, pose: PersonPose, m: _Mapping, x0: int, y0: int, h: int, w: int,
                  anchors: dict, rng: np.random.Generator) -> np.ndarray:
    """Hair strands as anti-aliased polylines on a 2x canvas, returned as coverage float32 h x w."""
    s = look.strands
    n = len(s["phi"])
    if n == 0:
        return np.zeros((h, w), np.float32)
    steps = 14
    hc, (hrx, hry) = anchors["head"], anchors["head_r"]
    hx, hy = hrx * 1.2, hry * 1.12
    cy = hc[1] + 0.015
    radius = 0.5 * (hx + hy)
    phi0 = s["phi"]
    side = np.where(np.cos(phi0) >= 0, -1.0, 1.0).astype(np.float32)[:, None]  # direction of travel in phi
    t = np.arange(steps + 1, dtype=np.float32)[None, :] / steps  # (1, K + 1)
    arc = s["length"][:, None] * t
    phi = phi0[:, None] + side * arc / np.float32(radius)
    # Past the sides (phi beyond -0.1 pi / 1.1 pi) the strand hangs down.
    lim = np.where(side > 0, np.float32(1.1 * np.pi), np.float32(-0.1 * np.pi))
    excess = np.maximum((phi - lim) * side, 0) * np.float32(radius)
    phi = np.where(excess > 0, lim, phi)
    r = s["root"][:, None] + s["drift"][:, None] * t \
        + s["wobble"][:, None] * np.sin(s["freq"][:, None] * t * 6.283 + s["phase"][:, None])
    sway = np.float32(pose.hair_sway) + rng.normal(0, 0.02, (len(phi0), 1)).astype(np.float32)
    px = hc[0] + hx * r * np.cos(phi) + (sway * 0.5 - side * 0.15 * s["drift"][:, None]) * excess
    py = cy + hy * r * np.sin(phi) - excess
    u, v = m.to_px(px, py)
    shift = 3
    canvas = np.zeros((2 * h, 2 * w), np.uint8)
    pts = np.stack([(u - x0) * 2 * (1 << shift), (v - y0) * 2 * (1 << shift)], axis=2)
    pts = np.round(pts).astype(np.int32)
    thickness_px = 2.0 * m.sx / 640.0 * 0.6  # clumps get thicker when the subject is close
    for group, (value, thick) in enumerate(((220, 1), (150, 1), (90, 1), (255, 2 if thickness_px > 1.2 else 1))):
        sel = s["group"] == group
        if sel.any():
            cv2.polylines(canvas, list(pts[sel][:, :, None, :]), False, value, thick, cv2.LINE_AA, shift)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def render_person(look: PersonLook, pose: PersonPose, scene: BackgroundScene, rng: np.random.Generator,
                  brightness: float = 1.0) -> SubjectLayer:
    """Render one frame of the person over `scene`'s camera; `brightness` scales its linear colour.

    Parts of the subject behind background surfaces (true depth) are cut from alpha. Thin parts
    (fingers, strands) and dark hair get high depth dropout; strands never return depth.
    """
    img_h, img_w = scene.height, scene.width
    m, center_cam = _mapping(look, pose, scene)
    layer = SubjectLayer.empty(img_h, img_w)
    layer.center_cam = center_cam
    parts, anchors = body_parts(look, pose)
    k = anchors["k"]
    lift = anchors["lift"]
    # Bounding box of everything (arms, veil, strands), in pixels.
    reach = look.shoulder_m + 0.7 * k
    us, vs = m.to_px(np.array([-reach, reach, -reach, reach]), np.array([-0.03, -0.03, look.height_m + 0.3,
                                                                          look.height_m + 0.3]))
    pad = 4 + abs(pose.motion_px[0]) + abs(pose.motion_px[1])
    x0, x1 = int(max(np.floor(us.min() - pad), 0)), int(min(np.ceil(us.max() + pad), img_w))
    y0, y1 = int(max(np.floor(vs.min() - pad), 0)), int(min(np.ceil(vs.max() + pad), img_h))
    if x0 >= x1 or y0 >= y1:
        return layer
    h, w = y1 - y0, x1 - x0
    # Body coordinates of every bbox pixel.
    vv = np.arange(y0, y1, dtype=np.float32)[:, None]
    uu = np.arange(x0, x1, dtype=np.float32)[None, :]
    by = ((np.float32(m.v_feet) - vv) / np.float32(m.sy)) * np.ones((1, w), np.float32)
    bx = (uu - np.float32(m.u_feet) - np.float32(m.u_top - m.u_feet) * by / np.float32(m.height_m)) / np.float32(m.sx)
    zbase = m.z_at(by).astype(np.float32)
    px_per_m = m.sx
    soft = look.edge_softness_px * max(img_w / 640.0, 0.5)
    pad_px = 3 + 2 * soft

    # -- opaque body: z-buffered parts ---------------------------------------------------------------
    key = np.full((h, w), np.inf, np.float32)
    z_body = np.full((h, w), np.inf, np.float32)
    sdf_body = np.full((h, w), np.float32(1.0))
    mat = np.full((h, w), -1, np.int8)
    for part in parts:
        reg = _region(m, part.bounds, x0, y0, h, w, pad_px)
        if reg is None:
            continue
        x, y = bx[reg], by[reg]
        d, t = part.sdf(x, y)
        r = np.float32(part.bulge_m)
        din = np.clip(-d, 0, r)
        z = zbase[reg] + np.float32(part.dz[0]) + np.float32(part.dz[1] - part.dz[0]) * t \
            - np.sqrt(np.maximum(din * (2 * r - din), 0))
        kk = np.where(d < 0, z, 100.0 + d)
        better = kk < key[reg]
        key[reg] = np.where(better, kk, key[reg])
        z_body[reg] = np.where(better, z, z_body[reg])
        part_mat = np.int8(part.material)
        if part.below is not None:
            part_mat = np.where(y < np.float32(part.below[0]), np.int8(part.below[1]), part_mat)
        mat[reg] = np.where(better, part_mat, mat[reg])
        sdf_body[reg] = np.minimum(sdf_body[reg], d)
    a_body = np.clip(0.5 - sdf_body * np.float32(px_per_m) / np.float32(soft), 0, 1)

    # -- hair volume (behind the face) ---------------------------------------------------------------
    hc, (hrx, hry) = anchors["head"], anchors["head_r"]
    a_hair = np.zeros((h, w), np.float32)
    z_hair = np.full((h, w), np.inf, np.float32)
    hair_reg = veil_reg = None
    if look.hair_style != "bald":
        hx, hy = hrx * 1.2, hry * 1.12
        bounds = (hc[0] - hx - 0.2, hc[0] + hx + 0.2, 1.15 * k + lift, hc[1] + hy + 0.05)
        reg = hair_reg = _region(m, bounds, x0, y0, h, w, pad_px)
        if reg is not None:
            x, y = bx[reg], by[reg]
            d, _ = sd_ellipse(x, y, hc[0], hc[1] + 0.015, hx, hy)
            if look.hair_style == "long":
                d2, _ = sd_capsule(x, y, (hc[0], hc[1] - 0.02), (hc[0], 1.36 * k + lift), 0.11, 0.15)
                d = smin(d, d2, 0.04)
            noise = _texture_at(look.hair_noise, x, y, 300.0 * look.tex_scale)
            d = d + np.float32(0.005) * noise
            a_hair[reg] = np.clip(0.5 - d * np.float32(px_per_m) / np.float32(2.0 * soft), 0, 1)
            r = np.float32(0.09)
            din = np.clip(-d, 0, r)
            behind = np.where(y < hc[1] - hry * 0.6, 0.07, 0.025).astype(np.float32)
            z_hair[reg] = zbase[reg] + behind - np.sqrt(np.maximum(din * (2 * r - din), 0))
        a_strand = _draw_strands(look, pose, m, x0, y0, h, w, anchors, rng)
    else:
        a_strand = np.zeros((h, w), np.float32)
    z_head = np.float32(m.z_at(hc[1]) + 0.03)

    # -- translucent veil ------------------------------------------------------------------------------
    a_veil = np.zeros((h, w), np.float32)
    z_veil = np.full((h, w), np.inf, np.float32)
    if look.veil is not None:
        si = 0 if look.veil_side < 0 else 1
        side = look.veil_side
        if look.veil == "scarf":
            p0 = np.array([side * 0.06, 1.47 * k + lift])
            p1 = np.array([side * 0.24, 1.36 * k + lift])
            p2 = np.array([side * (0.30 + 0.12 * abs(pose.hair_sway)), (0.95 + 0.1 * pose.hair_sway) * k + lift])
            tt = np.linspace(0, 1, 11)[:, None]
            curve = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * p1 + tt ** 2 * p2
            widths = np.linspace(0.05, 0.11, 11)
            dz = -0.12
        else:  # sleeve around the forearm and hand
            curve = np.stack([anchors[f"elbow{si}"], anchors[f"wrist{si}"], anchors[f"hand{si}"]])
            widths = np.array([0.075, 0.07, 0.06])
            dz = -anchors[f"fwd{si}"] - 0.04
        bounds = (curve[:, 0].min() - 0.12, curve[:, 0].max() + 0.12, curve[:, 1].min() - 0.12,
                  curve[:, 1].max() + 0.12)
        reg = veil_reg = _region(m, bounds, x0, y0, h, w, pad_px)
        if reg is not None:
            x, y = bx[reg], by[reg]
            d = np.full(x.shape, np.float32(1.0))
            for i in range(len(curve) - 1):
                di, _ = sd_capsule(x, y, curve[i], curve[i + 1], widths[i], widths[i + 1])
                d = np.minimum(d, di)
            weave = luminance(_texture_at(look.textures[VEIL], x, y, 500.0 * look.tex_scale))
            weave = weave / max(float(weave.mean()), 1e-4)
            cover = np.clip(0.5 - d * np.float32(px_per_m) / np.float32(soft), 0, 1)
            a_veil[reg] = np.clip(look.veil_opacity * (0.8 + 0.2 * weave) * cover, 0, 0.85)
            z_veil[reg] = zbase[reg] + np.float32(dz)

    # -- colours -------------------------------------------------------------------------------------
    light = np.array([rng.uniform(-0.5, 0.5), -rng.uniform(0.3, 0.8), -1.0])
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.35, 0.55)
    col_body = np.zeros((h, w, 3), np.float32)
    ts = look.tex_scale
    tex_scale = {SKIN: 300.0 * ts, SHIRT: rng.uniform(250, 600) * ts, TROUSERS: rng.uniform(250, 600) * ts,
                 SHOES: 300.0 * ts}
    for material in (SKIN, SHIRT, TROUSERS, SHOES):
        sel = mat == material
        if not sel.any():
            continue
        rows, cols = np.nonzero(sel.any(axis=1))[0], np.nonzero(sel.any(axis=0))[0]
        reg = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        tex = _texture_at(look.textures[material], bx[reg], by[reg], tex_scale[material])
        np.copyto(col_body[reg], tex, where=sel[reg][:, :, None])
    # Face: eyes, brows and mouth on the skin of the head.
    head_reg = _region(m, (hc[0] - hrx, hc[0] + hrx, hc[1] - hry, hc[1] + hry), x0, y0, h, w, 1)
    if head_reg is not None:
        fx_, fy_ = bx[head_reg], by[head_reg] - np.float32(hc[1])
        dark = np.zeros(fx_.shape, np.float32)
        for ex in (-0.03, 0.03):
            d, _ = sd_ellipse(fx_, fy_, ex, 0.012, 0.012, 0.006)
            dark = np.maximum(dark, np.clip(0.5 - d * px_per_m, 0, 1) * 0.85)
            d, _ = sd_capsule(fx_, fy_, (ex - 0.015, 0.03), (ex + 0.015, 0.032), 0.004, 0.004)
            dark = np.maximum(dark, np.clip(0.5 - d * px_per_m, 0, 1) * 0.6)
        d, _ = sd_ellipse(fx_, fy_, 0.0, -0.055, 0.022, 0.006)
        dark = np.maximum(dark, np.clip(0.5 - d * px_per_m, 0, 1) * 0.5)
        col_body[head_reg] *= (1 - np.where(mat[head_reg] == SKIN, dark, 0))[:, :, None]
    col_body *= _shade(np.where(a_body > 0, z_body, np.inf), m.sx, m.sy, light, ambient)[:, :, None]
    col_hair = np.zeros((h, w, 3), np.float32)  # only hair_reg is filled and read
    if hair_reg is not None:
        col_hair[hair_reg] = _texture_at(look.textures[HAIR], bx[hair_reg], by[hair_reg], 900.0 * ts) * _shade(
            np.where(a_hair[hair_reg] > 0, z_hair[hair_reg], np.inf), m.sx, m.sy, light, ambient)[:, :, None]
    col_strand = np.clip(look.hair * np.float32(1.3 * ambient), 0, 1).astype(np.float32)
    col_veil = np.zeros((h, w, 3), np.float32)
    if veil_reg is not None:
        col_veil[veil_reg] = _texture_at(look.textures[VEIL], bx[veil_reg], by[veil_reg], 400.0 * ts) \
            * np.float32(0.5 + 0.5 * ambient)

    # -- occlusion by the background (true depth), then composition back to front -------------------
    z_bg = np.where(scene.depth_m[y0:y1, x0:x1] > 0, scene.depth_m[y0:y1, x0:x1], np.float32(np.inf))
    a_body[z_body >= z_bg] = 0
    a_hair[z_hair >= z_bg] = 0
    a_strand[z_head >= z_bg] = 0
    a_veil[z_veil >= z_bg] = 0
    # Body over the hair volume, then strands and veil over both (premultiplied "over"),
    # each layer touching only its own rectangle.
    prem = col_body * a_body[:, :, None]
    alpha = a_body.copy()
    if hair_reg is not None:
        a_r = a_hair[hair_reg]
        behind = (1 - a_body[hair_reg])
        prem[hair_reg] += behind[:, :, None] * col_hair[hair_reg] * a_r[:, :, None]
        alpha[hair_reg] += behind * a_r
    for a, col, reg in ((a_strand, col_strand, nonzero_box(a_strand)), (a_veil, col_veil, veil_reg)):
        if reg is None:
            continue
        a3 = a[reg][:, :, None]
        c = col if col.ndim == 1 else col[reg]
        prem[reg] = c * a3 + (1 - a3) * prem[reg]
        alpha[reg] = a[reg] + (1 - a[reg]) * alpha[reg]
    prem *= np.float32(brightness)
    if abs(pose.motion_px[0]) + abs(pose.motion_px[1]) > 0.5:
        prem, alpha = _motion_blur(prem, alpha, pose.motion_px)
    # Exact 0 and 1 where float error leaves 1e-7 off (blurs, "over" arithmetic).
    alpha = np.where(alpha > 1 - 1e-4, np.float32(1), np.where(alpha < 1e-4, np.float32(0), alpha))
    color = np.zeros_like(prem)
    np.divide(prem, np.maximum(alpha, 1e-4)[:, :, None], out=color, where=alpha[:, :, None] > 0)

    # -- what the depth sensor meets -----------------------------------------------------------------
    depth = np.full((h, w), np.inf, np.float32)
    dropout = np.zeros((h, w), np.float32)
    hair_lum = float(luminance(look.hair[None, None, :])[0, 0])
    hair_drop = 0.3 + 0.6 * float(np.clip((0.05 - hair_lum) / 0.05, 0, 1))
    on_hair = (a_hair >= 0.5) & (a_body < 0.5)
    depth = np.where(on_hair, z_hair, depth)
    dropout = np.where(on_hair, hair_drop, dropout)
    depth = np.where(a_body >= 0.5, z_body, depth)
    dropout = np.where(a_body >= 0.5, 0.0, dropout)
    strand_only = (a_strand > 0.08) & (a_body < 0.5) & (a_hair < 0.5)
    dropout = np.where(strand_only, 1.0, dropout)
    if look.veil is not None:
        seen = rng.random((h, w), dtype=np.float32) < np.clip(a_veil / max(look.veil_opacity, 1e-3), 0, 1) \
            * look.veil_opacity * 1.2
        veil_front = seen & (a_veil > 0.05)
        depth = np.where(veil_front, z_veil, depth)
        dropout = np.where(a_veil > 0.05, np.maximum(dropout, 0.25), dropout)
    # Dark clothes reflect little infrared.
    body_lum = luminance(col_body)
    dropout = np.where(a_body >= 0.5, np.maximum(dropout, 0.7 * np.clip((0.006 - body_lum) / 0.006, 0, 1)), dropout)
    # Parts thinner than the sensor's matching window (fingers, thin locks) are mostly lost.
    solid = np.isfinite(depth).astype(np.uint8)
    ksize = max(3, int(round(5 * img_w / 640)) | 1)
    thin = (solid > 0) & (cv2.morphologyEx(solid, cv2.MORPH_OPEN, np.ones((ksize, ksize), np.uint8)) == 0)
    dropout = np.where(thin, np.maximum(dropout, 0.85), dropout)

    region = (slice(y0, y1), slice(x0, x1))
    layer.color[region] = color
    layer.alpha[region] = np.clip(alpha, 0, 1)
    layer.depth_m[region] = depth
    layer.dropout[region] = dropout
    layer.body_alpha[region] = np.maximum(a_body, a_hair)
    return layer


def nonzero_box(a: np.ndarray) -> tuple[slice, slice] | None:
    """Smallest rows/cols slices holding every non-zero of `a`, or None when all are zero."""
    rows, cols = np.nonzero(a.any(axis=1))[0], np.nonzero(a.any(axis=0))[0]
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _motion_blur(prem: np.ndarray, alpha: np.ndarray, motion_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Box blur along the motion vector (premultiplied colour and alpha together)."""
    dx, dy = motion_px
    length = max(abs(dx), abs(dy))
    n = int(np.ceil(length)) * 2 + 1
    kernel = np.zeros((n, n), np.float32)
    c = n // 2
    ts = np.linspace(-0.5, 0.5, 4 * n)
    xs = np.clip(np.round(c + ts * dx).astype(int), 0, n - 1)
    ys = np.clip(np.round(c + ts * dy).astype(int), 0, n - 1)
    np.add.at(kernel, (ys, xs), 1.0)
    kernel /= kernel.sum()
    return (cv2.filter2D(prem, -1, kernel, borderType=cv2.BORDER_CONSTANT),
            cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT))
