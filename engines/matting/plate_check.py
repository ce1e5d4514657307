"""Is the "empty scene" really empty? Finds a person or object in a background capture before matting.

A background plate with the subject in it makes the subject part of the background: matting then
drops the body wherever it still stands there (issue 12: SAD 16.2 against 5.3 with a clean plate on
a recording whose empty frames showed a person standing still). Two cases, both from the capture's
per-pixel statistics (depth only: colour changes with the light, depth does not):

- `find_moving_region`: someone or something passed through during the capture. The pixels whose
  depth changed well beyond sensor noise (`validate_capture`'s motion mask) form one compact region
  of at least `MOVING_MIN_FRACTION` of the picture. Sensor noise, flying pixels along depth edges and
  flicker on dark or shiny surfaces give scattered pixels or thin lines, which a 3x3 opening removes.
- `find_standing_person`: someone stood still. A person standing in a room is a region clearly in
  front of what surrounds it with a head on shoulders; furniture is boxy or has no head. See
  `find_standing_person` for the rule and the reasons for its thresholds.

Both work at `WORK_WIDTH` pixels across (nearest samples), so thresholds in pixels mean the same at
any camera resolution; lengths in metres use the focal length (a 60-degree guess when unknown).
Measured on rooms from `engines.synth` (160x120 and 320x240, 10 or 30 frames, a quarter of them
the real TUM desk with its chairs as the room): no finding on 180 clean plates, nor on the demo
recording's empty frames, the real TUM RGB-D desk, the five Redwood living-room frames, the Azure
Kinect desk, or 30 frames of the empty half of the real UR Fall sequence (largest moving region
0.03 % of the picture). Found: a person standing still in 70 of 90 plates (missed: mostly hidden
behind furniture, only the top of the head in view, or merged with furniture at the same depth),
someone walking through in 76 of 80 (the 4 others stay hidden behind furniture), the walker of the UR Fall
sequence in both ways, and the demo's person in 27 of its 28 frames taken as a plate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_WIDTH = 160
MOVING_MIN_FRACTION = 0.005  # clean plates (synthetic and real): largest moving region <= 0.0003
DEFAULT_FX_PER_WIDTH = 0.866  # sensors.frame.Intrinsics.default_for: about 60 degrees across


@dataclass(frozen=True)
class PlateFinding:
    """Something in a background capture that is not part of the room.

    kind: "standing" (a person standing still) or "moving" (someone or something passed through);
    fraction: share of the picture it covers; box: (x0, y0, x1, y1) as fractions of the picture.
    """

    kind: str
    fraction: float
    box: tuple[float, float, float, float]

    @property
    def where(self) -> str:
        centre = 0.5 * (self.box[0] + self.box[2])
        return "left" if centre < 0.35 else "right" if centre > 0.65 else "centre"

    def describe(self) -> str:
        """A clause: "a person standing in the centre of the picture", "someone or something moving ..."."""
        if self.kind == "standing":
            return f"a person standing in the {self.where} of the picture"
        return f"someone or something moving through the {self.where} of the picture"


def expected_depth_noise_m(
    depth_m: np.ndarray, noise_floor_m: float = 0.005, noise_coef_per_m: float = 0.003
) -> np.ndarray:
    """A generous per-pixel sensor noise model: floor + coef * z^2 (metres; structured light / stereo)."""
    z = np.asarray(depth_m, np.float32)
    return np.float32(noise_floor_m) + np.float32(noise_coef_per_m) * z * z


def _to_work(image: np.ndarray, interpolation: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= WORK_WIDTH:
        return image
    return cv2.resize(image, (WORK_WIDTH, max(1, round(h * WORK_WIDTH / w))), interpolation=interpolation)


def _finding(kind: str, region: np.ndarray) -> PlateFinding:
    h, w = region.shape
    ys, xs = np.nonzero(region)
    box = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    return PlateFinding(kind, float(len(ys) / region.size), tuple(float(v) for v in box))


def find_moving_region(moving: np.ndarray, min_fraction: float = MOVING_MIN_FRACTION) -> PlateFinding | None:
    """The largest compact region of `moving` (bool HxW: depth changed during capture), if it covers at
    least `min_fraction` of the picture; None otherwise."""
    mask = _to_work(moving.astype(np.float32), cv2.INTER_AREA) >= 0.5  # a work pixel moved if most of it did
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < min_fraction * mask.size:
        return None
    return _finding("moving", labels == best)


def _in_front(z: np.ndarray, rel: float, abs_m: float) -> np.ndarray:
    """Pixels with a clearly farther pixel somewhere above them and to their left or right (same
    column / row): things standing in front of the room. Floors, walls and ceilings of a room are not."""
    def before(a: np.ndarray, axis: int) -> np.ndarray:  # running max of the pixels before each one
        m = np.maximum.accumulate(a, axis=axis)
        return np.pad(m[:-1] if axis == 0 else m[:, :-1], ((1, 0), (0, 0)) if axis == 0 else ((0, 0), (1, 0)))

    need = z * np.float32(1 + rel) + np.float32(abs_m)
    sideways = (before(z, 1) > need) | (before(z[:, ::-1], 1)[:, ::-1] > need)
    return (z > 0) & (before(z, 0) > need) & sideways


def _depth_jumps(z: np.ndarray, abs_m: float, rel: float) -> np.ndarray:
    """Pixels next to a valid 4-neighbour more than abs_m + rel * depth away in depth."""
    jumps = np.zeros(z.shape, bool)
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        za, zb = z[a], z[b]
        jump = (za > 0) & (zb > 0) & (np.abs(za - zb) > abs_m + rel * np.minimum(za, zb))
        jumps[a] |= jump
        jumps[b] |= jump
    return jumps


def _head_on_shoulders(region: np.ndarray, z: np.ndarray, m_per_px: float) -> bool:
    """True when some column of `region` starts with a head above shoulders (see find_standing_person)."""
    h, w = region.shape
    cols = np.broadcast_to(np.arange(w), (h, w))
    starts = region & ~np.pad(region[:, :-1], ((0, 0), (1, 0)))
    ends = region & ~np.pad(region[:, 1:], ((0, 0), (0, 1)))
    left = np.maximum.accumulate(np.where(starts, cols, -1), axis=1)  # first column of each pixel's run
    right = np.minimum.accumulate(np.where(ends, cols, w)[:, ::-1], axis=1)[:, ::-1]  # last column

    def rows(metres: float) -> int:
        return round(metres / m_per_px)

    tops = region.argmax(axis=0)
    for c in np.nonzero(region.any(axis=0))[0]:
        t = int(tops[c])
        h0, h1, s0, s1 = t + rows(0.03), t + rows(0.18) + 1, t + rows(0.25), min(t + rows(0.5), h - 1) + 1
        if s0 >= h or not region[t:s0, c].all():  # the head must sit on a neck and body
            continue
        head_left, head_right = float(np.median(left[h0:h1, c])), float(np.median(right[h0:h1, c]))
        if not 0.10 <= (head_right - head_left + 1) * m_per_px <= 0.35:
            continue
        on = region[s0:s1, c]
        out_l = (head_left - left[s0:s1, c]) * m_per_px
        out_r = (right[s0:s1, c] - head_right) * m_per_px
        if not np.any(on & (out_l >= 0.10) & (out_r >= 0.10)):
            continue
        head_z, body_z = z[h0:h1, c], z[s0:s1][region[s0:s1]]
        head_z, body_z = head_z[head_z > 0], body_z[body_z > 0]
        if head_z.size and body_z.size and abs(float(np.median(head_z)) - float(np.median(body_z))) > 0.3:
            continue
        return True
    return False


def find_standing_person(depth_m: np.ndarray, valid: np.ndarray, fx_px: float | None = None) -> PlateFinding | None:
    """A person standing still in a background plate: the largest region that is

    1. in front of the room: somewhere above it and to one side the depth is farther by more than
       15 % + 0.15 m (well above averaged sensor noise and quantisation at 4-5 m, Kinect v1 steps are
       about 5 cm there; a person stands at least that far from the wall behind them). The region is
       cut at depth jumps of 0.15 m + 5 % (objects at different depths; a body varies less than that);
    2. at least 1 % of the picture;
    3. not boxy: it fills at most 85 % of its bounding box (cabinets, tables and boxes fill more;
       people with their arms 26-71 % in the generator's scenes);
    4. cut by the bottom of the picture (the usual head-and-torso framing) or at least 1.3 m tall
       (a whole standing person; chairs and tables are lower);
    5. with a head on shoulders in some column: from its top, 0.10-0.35 m wide (a head with hair; a
       hand or forearm is narrower, chair backs and boxes wider) and unbroken for 0.25 m (head and
       neck), with the region sticking out at least 0.10 m on both sides of it 0.25-0.5 m lower
       (shoulders), head and shoulders within 0.3 m in depth (not a small box in front of or behind
       a larger one).

    depth_m: float HxW mean depth of the capture, metres (<= 0 where unknown); valid: bool HxW, pixels
    with a depth; fx_px: focal length in pixels at this resolution (None: a 60-degree guess).
    Misses people hidden behind furniture, merged with furniture at their depth, against the wall,
    or with the head out of the picture; may flag a coat stand or a mannequin.
    """
    w = depth_m.shape[1]
    fx = float(fx_px) if fx_px else DEFAULT_FX_PER_WIDTH * w
    z = np.where(valid & np.isfinite(depth_m), depth_m, 0).astype(np.float32)
    z = _to_work(z, cv2.INTER_NEAREST)
    fx *= z.shape[1] / w
    front = _in_front(z, 0.15, 0.15).astype(np.uint8)
    front = cv2.morphologyEx(front, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))  # hair and edge holes
    front[_depth_jumps(z, 0.15, 0.05)] = 0
    front = cv2.morphologyEx(front, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(front, connectivity=8)
    wh = z.shape[0]
    for i in np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1:
        _, y0, bw, bh, area = (int(v) for v in stats[i])
        if area < 0.01 * z.size:
            break
        region = labels == i
        depths = z[region & (z > 0)]
        if area > 0.85 * bw * bh or depths.size == 0:
            continue
        m_per_px = float(np.median(depths)) / fx
        if y0 + bh - 1 < 0.97 * wh and bh * m_per_px < 1.3:  # not cut by the bottom, not tall
            continue
        if _head_on_shoulders(region, z, m_per_px):
            return _finding("standing", region)
    return None
