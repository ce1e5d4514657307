"""Synthetic RGB-D scenes with ground-truth alpha: the project's training data and benchmark scenes.

What a scene models (the reasons background matting is hard, and why depth helps):
- a static background (a ray-cast room with furniture, or the real TUM desk frame with its holes)
  captured `n_background` times with fresh sensor noise, then `n_test` frames with a person who
  enters and moves: soft edges, hair strands with partial alpha, an optional translucent veil;
- between the background capture and the test frames: an exposure, white-balance and gamma change,
  a lamp switched on (lighting gradient), the subject's soft cast shadow and colour noise, so plain
  RGB differencing flags background pixels, while background depth changes only by sensor noise;
- depth sensor effects: noise std k*z^2, disparity and millimetre quantisation, holes on dark
  or thin parts (strands never return depth), invalid pixels along discontinuities, flying pixels,
  the occlusion shadow of a stereo/structured-light camera, a 1-2 px depth-to-colour shift.

Entry points:
- `generate_scene(SceneConfig) -> Iterator[Frame]` and `write_scene(config, out_dir)` (an
  rgbd-folder recording with alpha/): benchmark and demo recordings, deterministic per seed.
- `random_sample(rng, height, width, bank=None, config=None) -> dict`: one training sample drawn on
  the fly (a fresh scene each call; create one `TextureBank` per process and pass it in), and
  `sample_stream(...)`, an endless iterator of them that reuses each background a few times.
- `render_frame(rng, foreground, alpha, foreground_depth_m, background, background_depth_m, ...)`:
  the same capture model applied to arrays from elsewhere (real plates, rendered people).
- `preview_image(...)` / `write_preview(path)`: a contact sheet for eyeballing the generator.

Sample dicts (both `random_sample` and `render_frame`) hold float32 arrays, images RGB in [0, 1]
quantised to 8-bit levels like a real camera's:
    image               HxWx3  test frame (subject, changed lighting, noise)
    background          HxWx3  the captured background plate (one empty-scene frame, own noise)
    depth_m             HxW    test-frame depth, metres, 0 = no measurement
    background_depth_m  HxW    one depth capture of the empty scene, metres, 0 = no measurement
    alpha               HxW    ground-truth alpha in [0, 1], registered to the colour image
    foreground          HxWx3  noise-free subject colour as the test camera encodes it, 0 where alpha = 0
so that image ~= alpha * foreground + (1 - alpha) * (changed background) + noise.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engines.synth.room import BackgroundScene, plate_scene, render_room
from engines.synth.sensor import (
    DepthSensor,
    Exposure,
    NormalSampler,
    add_color_noise,
    cast_shadow,
    encode,
    gamma_table,
    lighting_field,
    quantize8,
    sense_depth,
    to_depth_raw,
)
from engines.synth.look import SHIRT, PersonLook, PersonPose, SubjectLayer, sample_look, sample_pose
from engines.synth.subject import head_top_row, nonzero_box, render_person
from engines.synth.textures import (
    TextureBank,
    linear_to_srgb,
    luminance,
    recolor,
    srgb_to_linear,
)
from sensors.frame import Frame, Intrinsics

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SceneConfig:
    """A synthetic scene: size, frame counts, seed and the strength of every effect (0 disables).

    Distances in metres; depth written in units of `depth_scale` metres (millimetres).
    `shared_dir`: folder laid out like ../shared whose photos give real textures and the real
    background plate; None = ../shared next to the repository; an empty folder (or
    real_textures=False) gives procedural textures only.
    """

    width: int = 640
    height: int = 480
    fps: float = 30.0
    n_background: int = 30
    n_test: int = 5
    seed: int = 0
    depth_scale: float = 0.001
    shared_dir: str | None = None
    real_textures: bool = True
    real_background_prob: float = 0.25  # use the real TUM frame (colour + depth) as the background
    # subject
    subject_distance_m: tuple[float, float] = (0.8, 2.5)
    subject_enters: bool = True  # first test frame: the subject is entering from a side
    hair_strands: int = 300
    veil_prob: float = 0.6  # a translucent scarf or sleeve (alpha 0.3-0.7)
    motion_blur: bool = True
    camouflage_prob: float = 0.15  # clothes coloured like the background behind the subject
    # depth sensor
    depth_noise_k: float = 0.0015  # noise std = k * z^2
    depth_max_m: float = 5.46
    stereo_baseline_m: float = 0.05  # occlusion shadow and disparity quantisation
    disparity_step_px: float = 1.0 / 16.0
    edge_dropout: float = 0.5
    flying_pixels: float = 0.3
    misregistration_px: float = 2.0  # depth shifted against colour by 1..this px (0 = none)
    # changes between the background capture and the test frames
    exposure_change: float = 0.3  # |ln gain| in [0.5, 1] * this
    white_balance_change: float = 0.08  # red/blue gains in 1 +- this
    gamma_change: float = 0.08  # gamma in 2.2 * (1 +- this)
    lighting_change: float = 0.4  # lamp brightening and gradient amplitude
    cast_shadow: float = 0.6  # darkening at the core of the subject's shadow, [0.7, 1] * this
    color_noise: float = 2.0  # read-noise std, 8-bit levels (shot noise twice that at full scale)

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"scene size must be at least 16x16, got {self.width}x{self.height}")
        if self.n_background < 0 or self.n_test < 0 or self.fps <= 0 or self.depth_scale <= 0:
            raise ValueError("frame counts must be >= 0 and fps, depth_scale > 0")
        lo, hi = self.subject_distance_m
        if not 0.3 <= lo <= hi:
            raise ValueError(f"subject_distance_m must satisfy 0.3 <= near <= far, got {self.subject_distance_m}")


@dataclass(frozen=True)
class Conditions:
    """Camera state for one scene: the depth sensor, the exposure of the background capture and of
    the test frames, and the lighting change (lamp in camera coordinates, gradient, shadow)."""

    sensor: DepthSensor
    background_exposure: Exposure
    test_exposure: Exposure
    lamp_cam: tuple[float, float, float]
    spot: float
    ramp: float
    ramp_angle: float
    shadow_strength: float


def sample_conditions(rng: np.random.Generator, config: SceneConfig) -> Conditions:
    """Random sensor and lighting-change parameters within the strengths of `config`."""
    shift = (0, 0)
    if config.misregistration_px > 0:
        mag = rng.uniform(1.0, max(config.misregistration_px, 1.0))
        ang = rng.uniform(0, 2 * np.pi)
        shift = (int(np.round(mag * np.cos(ang))), int(np.round(mag * np.sin(ang))))
        if shift == (0, 0):
            shift = (1, 0)
    sensor = DepthSensor(
        noise_k=config.depth_noise_k,
        baseline_m=config.stereo_baseline_m * rng.uniform(0.8, 1.2),
        shadow_side=-1 if rng.random() < 0.5 else 1,
        disparity_step_px=config.disparity_step_px,
        edge_dropout=config.edge_dropout,
        flying_pixels=config.flying_pixels,
        depth_max_m=config.depth_max_m,
        shift_px=shift,
        depth_scale=config.depth_scale,
    )
    read = config.color_noise / 255.0 * rng.uniform(0.7, 1.3)
    background = Exposure(read_noise=read, shot_noise=2 * read)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    log_gain = sign * rng.uniform(0.5, 1.0) * config.exposure_change
    spot = rng.uniform(0.5, 1.0) * config.lighting_change
    # Auto-exposure may undo the lamp; keep a net global change so every scene tests robustness.
    if abs(log_gain + np.log1p(0.5 * spot)) < 0.5 * config.exposure_change:
        log_gain = -log_gain
    gain = float(np.exp(log_gain))
    wb = 1.0 + rng.uniform(-1, 1, 3) * config.white_balance_change
    wb[1] = 1.0
    test = Exposure(gain=gain, white_balance=tuple(float(x) for x in wb),
                    gamma=2.2 * (1.0 + rng.uniform(-1, 1) * config.gamma_change),
                    read_noise=read * rng.uniform(1.0, 1.5), shot_noise=2 * read * rng.uniform(1.0, 1.5))
    # A lamp beside and above the camera: the subject's shadow falls beside and below it.
    lamp = ((1 if rng.random() < 0.5 else -1) * rng.uniform(0.5, 1.6), -rng.uniform(0.3, 1.3), rng.uniform(-0.2, 0.5))
    return Conditions(
        sensor=sensor,
        background_exposure=background,
        test_exposure=test,
        lamp_cam=lamp,
        spot=spot,
        ramp=(1 if rng.random() < 0.5 else -1) * rng.uniform(0.3, 1.0) * config.lighting_change,
        ramp_angle=rng.uniform(0, 2 * np.pi),
        shadow_strength=rng.uniform(0.7, 1.0) * config.cast_shadow,
    )


# -- one capture ----------------------------------------------------------------------------------
@dataclass
class Capture:
    """One simulated RGB-D frame: colour uint8 HxWx3 RGB, depth float32 metres (0 = none), alpha and
    the encoded noise-free foreground (float32 HxWx3, 0 where alpha = 0)."""

    color: np.ndarray
    depth_m: np.ndarray
    alpha: np.ndarray
    foreground: np.ndarray


class SceneCamera:
    """Captures frames of one scene under one set of `Conditions`.

    Keeps what is static across frames (the clean background image, the lighting-change field,
    gamma tables, the normal sampler), so a background frame costs only noise and a test frame
    only the subject, its shadow and noise.
    """

    def __init__(self, scene: BackgroundScene, conditions: Conditions) -> None:
        self.scene = scene
        self.conditions = conditions
        self._normal = NormalSampler()
        self._tables: dict[float, np.ndarray] = {}
        self._background_clean: np.ndarray | None = None
        self._light: np.ndarray | None = None
        self._lit_radiance: np.ndarray | None = None
        self._lit_clean: np.ndarray | None = None

    def _table(self, gamma: float) -> np.ndarray:
        if gamma not in self._tables:
            self._tables[gamma] = gamma_table(gamma)
        return self._tables[gamma]

    def _finish(self, rng: np.random.Generator, image: np.ndarray, exposure: Exposure, alpha: np.ndarray,
                foreground: np.ndarray, subject: SubjectLayer | None) -> Capture:
        # Exposure flicker of a real camera, applied in encoded space.
        image = image * np.float32((1.0 + rng.normal(0, 0.003)) ** (1.0 / exposure.gamma))
        color = quantize8(add_color_noise(rng, image, exposure, self._normal))
        depth_m = _sense(rng, self.scene, self.conditions.sensor, subject, self._normal)
        return Capture(color, depth_m, alpha, foreground)

    def background_frame(self, rng: np.random.Generator) -> Capture:
        """One frame of the empty scene at the reference exposure (fresh noise)."""
        exposure = self.conditions.background_exposure
        if self._background_clean is None:
            self._background_clean = encode(self.scene.radiance, exposure, self._table(exposure.gamma))
        h, w = self.scene.height, self.scene.width
        return self._finish(rng, self._background_clean, exposure, np.zeros((h, w), np.float32),
                            np.zeros((h, w, 3), np.float32), None)

    def test_frame(self, rng: np.random.Generator, subject: SubjectLayer | None) -> Capture:
        """One frame with the changed exposure and lighting, the subject and its cast shadow."""
        c = self.conditions
        scene = self.scene
        exposure = c.test_exposure
        table = self._table(exposure.gamma)
        if self._light is None:
            self._light = lighting_field(scene.depth_m, scene.intrinsics, np.array(c.lamp_cam), c.spot, c.ramp,
                                         c.ramp_angle)
            self._lit_radiance = scene.radiance * self._light[:, :, None]
            self._lit_clean = encode(self._lit_radiance, exposure, table)
        h, w = scene.height, scene.width
        alpha = np.zeros((h, w), np.float32)
        foreground = np.zeros((h, w, 3), np.float32)
        image = self._lit_clean.copy()
        if subject is None:
            return self._finish(rng, image, exposure, alpha, foreground, None)
        if c.shadow_strength > 0:
            shadow = cast_shadow(subject.body_alpha, scene.depth_m, scene.intrinsics, subject.center_cam,
                                 np.array(c.lamp_cam))
            box = nonzero_box(shadow > 1e-3)
            if box is not None:  # re-encode only where the shadow falls
                darkened = self._lit_radiance[box] * (1.0 - np.float32(c.shadow_strength) * shadow[box])[:, :, None]
                image[box] = encode(darkened, exposure, table)
        alpha = subject.alpha
        box = nonzero_box(alpha > 0)
        if box is not None:
            # The subject is lit by the same changed light as the background behind it.
            fg = encode(subject.color[box] * self._light[box][:, :, None], exposure, table)
            a = alpha[box][:, :, None]
            foreground[box] = np.where(a > 0, fg, 0)
            image[box] = a * foreground[box] + (1 - a) * image[box]
        return self._finish(rng, image, exposure, alpha, foreground, subject)


def capture(rng: np.random.Generator, scene: BackgroundScene, conditions: Conditions,
            subject: SubjectLayer | None = None, test: bool = False) -> Capture:
    """One capture without a kept `SceneCamera`: a background-plate frame (`test=False`) or a test
    frame (`test=True`: changed exposure, lamp, the subject and its shadow)."""
    camera = SceneCamera(scene, conditions)
    return camera.test_frame(rng, subject) if test else camera.background_frame(rng)


def _sense(rng: np.random.Generator, scene: BackgroundScene, sensor: DepthSensor,
           subject: SubjectLayer | None, normal: NormalSampler | None = None) -> np.ndarray:
    z = scene.depth_m
    dropout = scene.dropout
    if subject is not None:
        fg = np.isfinite(subject.depth_m)
        z = np.where(fg, subject.depth_m, z)
        dropout = np.where(fg, subject.dropout, np.maximum(dropout, subject.dropout))
        box = nonzero_box(subject.body_alpha > 0)
        if sensor.flying_pixels > 0 and box is not None:
            # Partly covered edge pixels sometimes read a depth between subject and background.
            a, zb = subject.body_alpha[box], scene.depth_m[box]
            edge = (a > 0.1) & (a < 0.9) & (zb > 0)
            big = np.float32(1e4)
            near_fg = cv2.erode(np.where(fg[box], subject.depth_m[box], big).astype(np.float32),
                                np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
            fly = edge & (near_fg < big) & (rng.random(a.shape, dtype=np.float32) < sensor.flying_pixels)
            z[box] = np.where(fly, a * near_fg + (1 - a) * zb, z[box])
    return sense_depth(rng, z, dropout, sensor, scene.intrinsics.fx, normal)


# -- scenes ---------------------------------------------------------------------------------------
@dataclass
class _Scene:
    background: BackgroundScene
    look: PersonLook
    conditions: Conditions
    brightness: float


def draw_background(rng: np.random.Generator, config: SceneConfig, bank: TextureBank, height: int,
                     width: int, augment_plate: bool) -> BackgroundScene:
    if bank.plate is not None and rng.random() < config.real_background_prob:
        return plate_scene(rng, bank.plate, height, width, augment=augment_plate)
    return render_room(rng, height, width, Intrinsics.default_for(width, height), bank)


def _draw_scene(rng: np.random.Generator, config: SceneConfig, bank: TextureBank, height: int, width: int,
                augment_plate: bool) -> _Scene:
    background = draw_background(rng, config, bank, height, width, augment_plate)
    look = sample_look(rng, bank, hair_strands=config.hair_strands, veil_prob=config.veil_prob,
                       tex_size=int(np.clip(160 * width / 640, 64, 160)))
    conditions = sample_conditions(rng, config)
    ref = float(np.percentile(luminance(background.radiance[::2, ::2]), 97))
    brightness = max(ref, 0.2) / 0.75 * rng.uniform(0.7, 1.2)
    return _Scene(background, look, conditions, brightness)


def place_subject(rng: np.random.Generator, scene: BackgroundScene, look: PersonLook, u_px: float,
                   distance_m: tuple[float, float]) -> tuple[float, float]:
    """(distance, seat drop) for a subject around column u_px.

    The distance lies in `distance_m` and 0.35 m in front of the background around u_px. In 85 %
    of scenes the head must be inside the frame: standing if some distance allows it (a quarter
    of those sit anyway), else seated (upper body 0.4-0.5 m lower, as at a desk).
    """
    h, w = scene.height, scene.width
    c0, c1 = int(np.clip(u_px - 0.15 * w, 0, w - 1)), int(np.clip(u_px + 0.15 * w, 1, w))
    band = scene.depth_m[int(0.15 * h):, c0:c1]
    valid = band[band > 0]
    near = float(np.percentile(valid, 5)) if valid.size > 50 else 5.0
    far = max(min(distance_m[1], near - 0.35), 0.5)
    close = min(distance_m[0], far)
    sit = rng.uniform(0.4, 0.5) * look.height_m / 1.75
    seated_first = rng.random() < 0.25
    if rng.random() < 0.85:
        candidates = np.linspace(close, far, 16)
        for sit_m in ((sit, 0.0) if seated_first else (0.0, sit)):
            fits = [z for z in candidates if head_top_row(look, u_px, float(z), scene, sit_m) >= 0.03 * h]
            if fits:
                return float(rng.uniform(fits[0], max(fits[0], far))), sit_m
    return float(rng.uniform(close, max(close, far))), (sit if seated_first else 0.0)


def camouflage(rng: np.random.Generator, look: PersonLook, scene: BackgroundScene, u_px: float) -> PersonLook:
    """The same person in a shirt coloured like the background around column u_px."""
    h, w = scene.height, scene.width
    c0, c1 = int(np.clip(u_px - 0.1 * w, 0, w - 1)), int(np.clip(u_px + 0.1 * w, 1, w))
    mean = scene.radiance[int(0.3 * h):int(0.8 * h), c0:c1].reshape(-1, 3).mean(axis=0)
    tint = linear_to_srgb(np.clip(mean / max(float(mean.max()), 1e-3) * min(float(mean.max()), 1.0), 0, 1))
    shirt = srgb_to_linear(recolor(linear_to_srgb(look.textures[SHIRT]), tint.astype(np.float32), 0.9))
    textures = dict(look.textures)
    textures[SHIRT] = shirt
    return dataclasses.replace(look, textures=textures)


def _test_poses(rng: np.random.Generator, scene: BackgroundScene, look: PersonLook, n: int,
                config: SceneConfig) -> list[PersonPose]:
    """Poses of the test frames: the subject enters from a side, then moves around a final spot."""
    w = scene.width
    u_final = rng.uniform(0.3, 0.7) * w
    z_final, sit_m = place_subject(rng, scene, look, u_final, config.subject_distance_m)
    side = -1.0 if rng.random() < 0.5 else 1.0
    # Entering: the torso centre just beyond the border, 25-50 % of the torso inside the frame.
    half_torso_px = 0.18 * scene.intrinsics.fx / z_final
    u_enter = (0.0 if side < 0 else w - 1.0) + side * rng.uniform(0.0, 0.5) * half_torso_px
    places = []
    for k in range(n):
        if config.subject_enters and n >= 3 and k == 0:
            places.append((u_enter, z_final + rng.uniform(0.0, 0.3)))
        elif config.subject_enters and n >= 3 and k == 1:
            places.append((0.5 * (u_enter + u_final), z_final + rng.uniform(0.0, 0.15)))
        else:
            places.append((u_final + rng.normal(0, 0.05) * w, z_final + rng.normal(0, 0.08)))
    poses: list[PersonPose] = []
    prev_u = places[0][0] + side * 0.05 * w
    for u, z in places:
        z = float(np.clip(z, 0.5, max(config.subject_distance_m[1] + 0.3, 0.6)))
        motion = (0.0, 0.0)
        if config.motion_blur:  # exposure ~ 1/8 of the frame interval, at most 4 px at 640 wide
            dx = float(np.clip((u - prev_u) * 0.06 + rng.normal(0, 0.5), -4 * w / 640, 4 * w / 640))
            motion = (dx, float(rng.normal(0, 0.3)))
        poses.append(sample_pose(rng, u, z, poses[-1] if poses else None, motion, sit_m))
        prev_u = u
    return poses


def generate_scene(config: SceneConfig) -> Iterator[Frame]:
    """The frames of one synthetic recording, deterministic for `config.seed`.

    First `n_background` frames of the empty scene (fresh noise each, alpha all zero), then
    `n_test` frames with the subject. Frames carry colour uint8 RGB, depth_raw uint16 in
    `depth_scale` units, intrinsics, index, timestamp = index / fps and float32 alpha.
    """
    root = np.random.default_rng(config.seed)
    scene_rng, subject_rng, noise_rng = root.spawn(3)
    bank = TextureBank(config.shared_dir, use_real=config.real_textures)
    sc = _draw_scene(scene_rng, config, bank, config.height, config.width, augment_plate=False)
    intr = sc.background.intrinsics
    log.debug("scene %d: %s background, %s hair, veil %s", config.seed, sc.background.name, sc.look.hair_style,
              sc.look.veil)
    camera = SceneCamera(sc.background, sc.conditions)
    index = 0
    for _ in range(config.n_background):
        cap = camera.background_frame(noise_rng)
        yield Frame(cap.color, to_depth_raw(cap.depth_m, config.depth_scale), config.depth_scale,
                    index / config.fps, index, intr, alpha=cap.alpha)
        index += 1
    if config.n_test == 0:
        return
    poses = _test_poses(subject_rng, sc.background, sc.look, config.n_test, config)
    look = sc.look
    if subject_rng.random() < config.camouflage_prob:
        look = camouflage(subject_rng, look, sc.background, poses[-1].u_px)
    for pose in poses:
        subject = render_person(look, pose, sc.background, subject_rng, sc.brightness)
        cap = camera.test_frame(noise_rng, subject)
        yield Frame(cap.color, to_depth_raw(cap.depth_m, config.depth_scale), config.depth_scale,
                    index / config.fps, index, intr, alpha=cap.alpha.astype(np.float32))
        index += 1


def write_scene(config: SceneConfig, out_dir: str | Path, color_format: str = "png") -> Path:
    """Write `generate_scene(config)` as an rgbd-folder recording (with alpha/) to a new `out_dir`."""
    from sensors.rgbd_folder import RgbdFolderWriter

    out = Path(out_dir)
    with RgbdFolderWriter(out, config.width, config.height, fps=config.fps, depth_scale=config.depth_scale,
                          intrinsics=None, background_frames=config.n_background, depth_max_m=config.depth_max_m,
                          color_format=color_format) as writer:
        for frame in generate_scene(config):
            writer.write(frame)
    return out
