"""What a synthetic person looks like and how they stand: `PersonLook`, `PersonPose`, `SubjectLayer`
(the rendered result type) and their samplers `sample_look` / `sample_pose`.

Material ids (SKIN ... VEIL) index the per-person textures; sizes are in metres, colours linear RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engines.synth.textures import TextureBank, gaussian_field, hair_texture, random_color, srgb_to_linear

SKIN, SHIRT, TROUSERS, SHOES, HAIR, VEIL = range(6)
TEX = 160  # side of the per-person texture images, px
SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.90, 0.70, 0.56], [0.78, 0.57, 0.42], [0.62, 0.43, 0.30],
                       [0.45, 0.30, 0.20], [0.30, 0.20, 0.14]], np.float32)  # sRGB
HAIR_COLORS = np.array([[0.05, 0.04, 0.03], [0.15, 0.10, 0.06], [0.30, 0.20, 0.12], [0.55, 0.42, 0.25],
                        [0.80, 0.68, 0.45], [0.50, 0.22, 0.10], [0.65, 0.65, 0.65]], np.float32)  # sRGB
HAIR_COLOR_P = np.array([0.3, 0.25, 0.15, 0.1, 0.08, 0.06, 0.06])

# -- what a person looks like -----------------------------------------------------------------------
@dataclass(frozen=True)
class PersonLook:
    """Appearance fixed for one scene. Colours and textures are linear RGB float32."""

    height_m: float
    shoulder_m: float  # half distance between the shoulder joints
    build: float  # torso/hip width multiplier
    skin: np.ndarray  # (3,)
    hair: np.ndarray  # (3,)
    hair_style: str  # "short" | "long" | "bald"
    long_sleeves: bool
    textures: dict  # material -> TEX x TEX x 3 linear texture
    strands: dict  # strand layout (arrays), see _sample_strands
    veil: str | None  # None | "scarf" | "sleeve"
    veil_opacity: float
    veil_side: float  # -1 or +1
    hair_noise: np.ndarray  # TEX x TEX float32 zero-mean field that roughens the hair outline
    edge_softness_px: float  # width of the anti-aliased body edge at 640 px image width
    waist: float = 0.98  # height of the shirt/trousers boundary, fraction of a 1.75 m body

    @property
    def tex_scale(self) -> float:
        """Texture pixels per metre multiplier (textures smaller than TEX are sampled sparser)."""
        return self.textures[SKIN].shape[0] / TEX


@dataclass(frozen=True)
class PersonPose:
    """Where the person is and what the arms do, for one frame.

    u_px: image column of the body axis at the torso; distance_m: camera z of the torso's mid-plane.
    arms: per side (left of image = -1, right = +1): (upper-arm angle from hanging, rad, > 0 raises
    it sideways; elbow flexion, rad; forearm direction sign; how far the hand comes forward, m).
    legs_spread_m: extra ankle spread; hair_sway: rad; motion_px: image motion during the exposure;
    sit_m: seated when > 0 (how far the upper body is lowered, m).
    """

    u_px: float
    distance_m: float
    arms: tuple[tuple[float, float, float, float], tuple[float, float, float, float]]
    legs_spread_m: float = 0.0
    hair_sway: float = 0.0
    motion_px: tuple[float, float] = (0.0, 0.0)
    sit_m: float = 0.0  # > 0: seated, the upper body lowered by this much


@dataclass
class SubjectLayer:
    """A rendered subject at full image size.

    color: float32 HxWx3 linear foreground colour (not premultiplied; 0 where alpha is 0).
    alpha: float32 HxW ground-truth alpha in [0, 1] (already cut where the background occludes it).
    depth_m: float32 HxW depth the sensor meets on the subject; inf where it sees what is behind.
    dropout: float32 HxW probability that a capture returns no depth at the pixel (hair strands 1).
    body_alpha: float32 HxW coverage of the opaque body and hair volume (flying-pixel mixing, shadows).
    center_cam: (3,) torso centre in camera coordinates, metres.
    """

    color: np.ndarray
    alpha: np.ndarray
    depth_m: np.ndarray
    dropout: np.ndarray
    body_alpha: np.ndarray
    center_cam: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @staticmethod
    def empty(height: int, width: int) -> "SubjectLayer":
        return SubjectLayer(np.zeros((height, width, 3), np.float32), np.zeros((height, width), np.float32),
                            np.full((height, width), np.inf, np.float32), np.zeros((height, width), np.float32),
                            np.zeros((height, width), np.float32), np.array([0.0, 0.0, 2.0]))


def _sample_strands(rng: np.random.Generator, style: str, n: int) -> dict:
    """Hair strand layout relative to the hair ellipse; fixed per person, swayed per frame.

    Strands are combed: they start inside the hair volume and run along its outline toward the
    nearer side, drifting slowly outward, then hang down once past the sides. About 12 % are
    fly-aways that drift out fast and stick out of the outline.
    """
    if style == "bald" or n <= 0:
        n = 0
    phi = rng.uniform(0.02 * np.pi, 0.98 * np.pi, n)
    length = rng.uniform(0.08, 0.4, n) if style == "long" else rng.uniform(0.03, 0.12, n)
    flyaway = rng.random(n) < 0.12
    drift = np.where(flyaway, rng.uniform(0.25, 0.7, n), np.abs(rng.normal(0, 0.07, n)))
    return {
        "phi": phi.astype(np.float32),
        "root": rng.uniform(0.85, 0.99, n).astype(np.float32),
        "length": (length * np.where(flyaway, 0.5, 1.0)).astype(np.float32),
        "drift": drift.astype(np.float32),
        "wobble": rng.uniform(0.0, 0.03, n).astype(np.float32),
        "phase": rng.uniform(0, 2 * np.pi, n).astype(np.float32),
        "freq": rng.uniform(2, 9, n).astype(np.float32),
        "group": rng.choice(4, n, p=[0.3, 0.3, 0.3, 0.1]).astype(np.int8),  # opacity/thickness class
    }


def sample_look(rng: np.random.Generator, bank: TextureBank, hair_strands: int = 300,
                veil_prob: float = 0.6, edge_softness_px: tuple[float, float] = (0.8, 1.8),
                tex_size: int = TEX) -> PersonLook:
    """A random person: proportions, skin, hair style and colour, clothes textures, optional veil.

    tex_size: side of the texture images (smaller for small frames: they are sampled at a
    density proportional to it, so patterns keep their physical size).
    """
    size = int(tex_size)
    style = str(rng.choice(["short", "long", "bald"], p=[0.5, 0.45, 0.05]))
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] * rng.uniform(0.92, 1.05, 3).astype(np.float32)
    hair = HAIR_COLORS[int(rng.choice(len(HAIR_COLORS), p=HAIR_COLOR_P))] * rng.uniform(0.85, 1.15)
    textures = {
        SKIN: srgb_to_linear(np.clip(skin[None, None, :] * (1 + 0.05 * gaussian_field(rng, size, size, 12))[:, :, None],
                                     0, 1)),
        SHIRT: srgb_to_linear(bank.cloth(rng, size, size)),
        TROUSERS: srgb_to_linear(bank.cloth(rng, size, size, tint=random_color(rng, sat=(0.0, 0.5), val=(0.05, 0.6)))),
        SHOES: srgb_to_linear(np.clip(random_color(rng, sat=(0, 0.4), val=(0.03, 0.4))[None, None, :]
                                      * (1 + 0.1 * gaussian_field(rng, size, size, 20))[:, :, None], 0, 1)),
        HAIR: srgb_to_linear(hair_texture(rng, size, size, np.clip(hair, 0, 1).astype(np.float32))),
        VEIL: srgb_to_linear(bank.cloth(rng, size, size, tint=random_color(rng, sat=(0.0, 0.45), val=(0.1, 1.0)))),
    }
    veil = None
    if rng.random() < veil_prob:
        veil = "scarf" if rng.random() < 0.6 else "sleeve"
    n_strands = int(hair_strands * rng.uniform(0.6, 1.4))
    return PersonLook(
        height_m=rng.uniform(1.55, 1.95),
        shoulder_m=rng.uniform(0.16, 0.21),
        build=rng.uniform(0.85, 1.2),
        skin=srgb_to_linear(np.clip(skin, 0, 1)),
        hair=srgb_to_linear(np.clip(hair, 0, 1).astype(np.float32)),
        hair_style=style,
        long_sleeves=bool(rng.random() < 0.6),
        textures=textures,
        strands=_sample_strands(rng, style, n_strands),
        veil=veil,
        veil_opacity=rng.uniform(0.3, 0.7),
        veil_side=-1.0 if rng.random() < 0.5 else 1.0,
        hair_noise=gaussian_field(rng, size, size, 5.0 * size / TEX),
        edge_softness_px=rng.uniform(*edge_softness_px),
        waist=rng.uniform(0.85, 1.02),
    )


def sample_pose(rng: np.random.Generator, u_px: float, distance_m: float,
                previous: PersonPose | None = None, motion_px: tuple[float, float] = (0.0, 0.0),
                sit_m: float = 0.0) -> PersonPose:
    """A random arm/leg pose at the given place; close to `previous` when given (continuous motion)."""
    arms = []
    for side in range(2):
        if previous is None:
            raise_ = rng.uniform(-0.15, 1.3) if rng.random() < 0.7 else rng.uniform(1.3, 2.4)
            flex = rng.uniform(0.0, 2.2)
            sign = -1.0 if rng.random() < 0.6 else 1.0
            fwd = rng.uniform(0.0, 0.35) * (flex / 2.2)
        else:
            r0, f0, sign, fw0 = previous.arms[side]
            raise_ = float(np.clip(r0 + rng.normal(0, 0.25), -0.2, 2.4))
            flex = float(np.clip(f0 + rng.normal(0, 0.3), 0.0, 2.4))
            fwd = float(np.clip(fw0 + rng.normal(0, 0.05), 0.0, 0.4))
        arms.append((float(raise_), float(flex), float(sign), float(fwd)))
    spread = rng.uniform(-0.02, 0.12) if previous is None else float(np.clip(previous.legs_spread_m
                                                                               + rng.normal(0, 0.04), -0.02, 0.2))
    return PersonPose(float(u_px), float(distance_m), (arms[0], arms[1]), spread, float(rng.normal(0, 0.15)),
                      motion_px, float(sit_m))
