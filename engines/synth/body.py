"""The body of a synthetic person as a union of smooth 2D shapes in body coordinates (metres).

Owns the vectorised signed distances (`sd_ellipse`, `sd_capsule`, the smooth minimum `smin`), `Part`
(one shape with its material and ellipsoidal bulge) and `body_parts` (a look and pose -> parts and
anchor points such as the head centre), used by `engines.synth.subject.render_person`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engines.synth.look import SHIRT, SHOES, SKIN, TROUSERS, PersonLook, PersonPose


# -- signed distances (metres, vectorised) ----------------------------------------------------------
def sd_ellipse(x, y, cx, cy, rx, ry):
    px, py = (x - np.float32(cx)) / np.float32(rx), (y - np.float32(cy)) / np.float32(ry)
    k0 = np.sqrt(px * px + py * py)
    k1 = np.sqrt((px / np.float32(rx)) ** 2 + (py / np.float32(ry)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6)), np.zeros_like(x)


def sd_capsule(x, y, a, b, ra, rb):
    ax, ay = np.float32(a[0]), np.float32(a[1])
    bax, bay = np.float32(b[0] - a[0]), np.float32(b[1] - a[1])
    pax, pay = x - ax, y - ay
    t = np.clip((pax * bax + pay * bay) / max(float(bax * bax + bay * bay), 1e-9), 0.0, 1.0)
    dx, dy = pax - bax * t, pay - bay * t
    return np.sqrt(dx * dx + dy * dy) - (np.float32(ra) + np.float32(rb - ra) * t), t


def smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / np.float32(k), 0.0, 1.0)
    return b * (1 - h) + a * h - np.float32(k) * h * (1 - h)


@dataclass
class Part:
    bounds: tuple[float, float, float, float]  # x0, x1, y0, y1 in body metres
    sdf: Callable  # (x, y) -> (sdf metres, t in [0, 1] along the part)
    material: int
    bulge_m: float
    dz: tuple[float, float]  # depth offset (m, < 0 = toward the camera) at t = 0 and t = 1
    below: tuple[float, int] | None = None  # (y, material): material of the part below height y


def capsule_part(a, b, ra, rb, material, bulge, dz=(0.0, 0.0)) -> Part:
    r = max(ra, rb)
    bounds = (min(a[0], b[0]) - r, max(a[0], b[0]) + r, min(a[1], b[1]) - r, max(a[1], b[1]) + r)
    return Part(bounds, lambda x, y: sd_capsule(x, y, a, b, ra, rb), material, bulge, dz)


def ellipse_part(c, rx, ry, material, bulge, dz=0.0) -> Part:
    return Part((c[0] - rx, c[0] + rx, c[1] - ry, c[1] + ry), lambda x, y: sd_ellipse(x, y, c[0], c[1], rx, ry),
                 material, bulge, (dz, dz))


def rot(v, angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def body_parts(look: PersonLook, pose: PersonPose) -> tuple[list[Part], dict]:
    """The opaque parts in body coordinates, and named anchor points for hair/veil/face.

    A seated pose (pose.sit_m > 0) lowers everything above the hips by sit_m; the thighs then
    point at the camera (short, foreshortened, coming forward in depth) and the shins hang down.
    """
    k = look.height_m / 1.75
    b = look.build
    sit = pose.sit_m

    def up_y(v: float) -> float:  # height of an upper-body landmark given for a 1.75 m standing body
        return v * k - sit

    parts: list[Part] = []
    head_c = np.array([0.0, up_y(1.635)])
    head_r = (0.078 * (0.9 + 0.1 * b), 0.105 * k)
    if look.hair_style == "bald":
        parts.append(ellipse_part(head_c, *head_r, SKIN, 0.08, -0.02))
    else:  # face: head ellipse under a curved hairline
        hair_line = (np.array([0.0, up_y(1.57)]), 0.1, 0.105 * k)

        def face_sdf(x, y, hc=head_c, hr=head_r, hl=hair_line):
            d1, t = sd_ellipse(x, y, hc[0], hc[1], *hr)
            d2, _ = sd_ellipse(x, y, hl[0][0], hl[0][1], hl[1], hl[2])
            return np.maximum(d1, d2), t

        parts.append(Part((head_c[0] - head_r[0], head_c[0] + head_r[0], head_c[1] - head_r[1], head_c[1] + head_r[1]),
                           face_sdf, SKIN, 0.08, (-0.02, -0.02)))
    parts.append(capsule_part((0, up_y(1.46)), (0, up_y(1.56)), 0.05, 0.043, SKIN, 0.04))
    sh = look.shoulder_m

    def torso_sdf(x, y):
        chest, _ = sd_ellipse(x, y, 0, up_y(1.29), 0.165 * b, 0.17 * k)
        waist, _ = sd_ellipse(x, y, 0, up_y(1.08), 0.14 * b, 0.15 * k)
        hips, _ = sd_ellipse(x, y, 0, up_y(0.92), 0.165 * b, 0.12 * k)
        shoulders, _ = sd_capsule(x, y, (-(sh - 0.04), up_y(1.415)), (sh - 0.04, up_y(1.415)), 0.055, 0.055)
        d = smin(smin(chest, waist, 0.06), hips, 0.06)
        return smin(d, shoulders, 0.05), np.zeros_like(x)

    parts.append(Part((-0.3 * b - sh, 0.3 * b + sh, up_y(0.75), up_y(1.5)), torso_sdf, SHIRT, 0.11, (0.0, 0.0),
                       (up_y(look.waist), TROUSERS)))
    anchors = {"head": head_c, "head_r": head_r, "k": k, "lift": -sit}
    for si, side in enumerate((-1.0, 1.0)):
        raise_, flex, sign, fwd = pose.arms[si]
        shoulder = np.array([side * sh, up_y(1.42)])
        up_dir = np.array([side * np.sin(raise_), -np.cos(raise_)])
        elbow = shoulder + 0.29 * k * up_dir
        fore_dir = rot(up_dir, -side * sign * flex)
        wrist = elbow + 0.26 * k * fore_dir * (1.0 - 0.35 * np.sin(min(flex, np.pi / 2)) * fwd / 0.4)
        hand_end = wrist + 0.09 * k * fore_dir
        sleeve = SHIRT if look.long_sleeves else SKIN
        parts.append(capsule_part(shoulder, elbow, 0.05, 0.042, SHIRT, 0.045, (0.0, -0.4 * fwd)))
        parts.append(capsule_part(elbow, wrist, 0.041, 0.031, sleeve, 0.035, (-0.4 * fwd, -fwd)))
        parts.append(capsule_part(wrist, hand_end, 0.033, 0.03, SKIN, 0.02, (-fwd, -fwd)))
        for j, spread in enumerate((-0.35, -0.12, 0.1, 0.32)):
            f_dir = rot(fore_dir, spread * side)
            f0 = hand_end - 0.015 * fore_dir + np.array([-fore_dir[1], fore_dir[0]]) * (j - 1.5) * 0.016
            parts.append(capsule_part(f0, f0 + (0.055 + 0.012 * (j in (1, 2))) * k * f_dir, 0.0085, 0.007, SKIN,
                                       0.006, (-fwd, -fwd - 0.01)))
        hip = np.array([side * 0.085 * b, up_y(0.9)])
        if sit > 0:  # thigh toward the camera, shin hanging from the knee to the floor
            knee = np.array([side * (0.1 * b + pose.legs_spread_m * 0.6), up_y(0.9) - 0.02])
            ankle = np.array([knee[0] + side * pose.legs_spread_m * 0.3, 0.085 * k])
            leg_dz = (0.0, -0.42 * k, -0.45 * k)
        else:
            knee = np.array([side * (0.1 * b + pose.legs_spread_m * 0.4), 0.5 * k])
            ankle = np.array([side * (0.1 * b + pose.legs_spread_m), 0.085 * k])
            leg_dz = (0.0, 0.0, 0.0)

        def leg_sdf(x, y, hip=hip, knee=knee, ankle=ankle):
            d1, t1 = sd_capsule(x, y, hip, knee, 0.08, 0.06)
            d2, t2 = sd_capsule(x, y, knee, ankle, 0.055, 0.04)
            return smin(d1, d2, 0.02), np.where(d1 < d2, 0.5 * t1, 0.5 + 0.5 * t2)

        if sit > 0:
            parts.append(capsule_part(hip, knee, 0.08, 0.065, TROUSERS, 0.07, leg_dz[:2]))
            parts.append(capsule_part(knee, ankle, 0.055, 0.04, TROUSERS, 0.05, leg_dz[1:]))
        else:
            parts.append(Part((min(hip[0], knee[0], ankle[0]) - 0.09, max(hip[0], knee[0], ankle[0]) + 0.09,
                                ankle[1] - 0.05, hip[1] + 0.09), leg_sdf, TROUSERS, 0.07, (0.0, 0.0)))
        parts.append(ellipse_part(ankle + np.array([side * 0.02, -0.045 * k]), 0.06, 0.042 * k, SHOES, 0.04,
                                   leg_dz[2] - 0.06))
        anchors[f"shoulder{si}"] = shoulder
        anchors[f"elbow{si}"] = elbow
        anchors[f"wrist{si}"] = wrist
        anchors[f"hand{si}"] = hand_end
        anchors[f"fwd{si}"] = fwd
    return parts, anchors
