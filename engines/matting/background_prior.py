"""Background prior: per-pixel statistics of the empty scene (DART eq. 4) and capture validation.

Owns `BackgroundPriorBuilder` (streaming, constant memory: one `add` per captured frame),
`BackgroundPrior` (the built statistics, saved/loaded as .npz without pickle, resizable),
`validate_capture` (warns when the "empty" scene moved during capture or is not empty, see
`plate_check`) and `build_prior` (a prior and its capture report from a stream of frames).

Units and conventions:
- depth in metres, float32; a depth <= 0 (or NaN) is "no measurement";
- colour is RGB order; `BackgroundPrior.color_mean` is float32 HxWx3 RGB in [0, 1];
- colour spread (`color_std`) is in the same [0, 1] units.

Eq. 4, per pixel with K = the frames whose depth there is valid:
    mean = average of the valid depths            if |K| > 0, else d_max
    std  = sample std (ddof = 1)                  if |K| > 1
           psi * mean                             if |K| = 1
           psi * d_max                            if |K| = 0
Extension (documented deviation): std is finally clamped from below by
max(`DepthConfig.std_floor_ratio` * mean, `min_std_m` = 1 mm). A sensor with quantised, stable
readings (Kinect v1, structured light) reports a sample std of exactly 0 over a short capture,
which would make eq. 6 a delta function and turn every one-step flicker into foreground. With
std_floor_ratio <= psi the |K| <= 1 fallbacks are unchanged; set it to 0 for eq. 4 as printed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from engines.config import DepthConfig
from engines.matting import plate_check
from engines.matting.plate_check import PlateFinding, expected_depth_noise_m
from sensors.errors import UserError
from sensors.frame import Frame

log = logging.getLogger(__name__)

PRIOR_FORMAT_VERSION = 1
DEFAULT_MIN_STD_M = 1e-3


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class BackgroundPrior:
    """Statistics of the empty scene at one resolution (H x W).

    depth_mean_m: float32 HxW, metres; d_max where no frame had a valid depth.
    depth_std_m: float32 HxW, metres, > 0 (eq. 4 with its fallbacks).
    valid_count: int32 HxW, number of frames with a valid depth at the pixel.
    color_mean: float32 HxWx3, RGB in [0, 1]: the clean background plate.
    n_frames: number of frames the statistics were built from.
    color_std: optional float32 HxW in [0, 1]: RMS over R, G, B of the per-pixel colour std.
    """

    depth_mean_m: np.ndarray
    depth_std_m: np.ndarray
    valid_count: np.ndarray
    color_mean: np.ndarray
    n_frames: int
    color_std: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.depth_mean_m.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth_mean_m.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def valid_fraction(self) -> np.ndarray:
        """float32 HxW in [0, 1]: share of the captured frames with a valid depth at each pixel."""
        return (self.valid_count.astype(np.float32) / np.float32(max(self.n_frames, 1))).clip(0.0, 1.0)

    def color_mean_uint8(self) -> np.ndarray:
        """The background plate as uint8 HxWx3 RGB."""
        return np.clip(self.color_mean * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def resized(self, width: int, height: int) -> BackgroundPrior:
        """The prior at another resolution, sampled with nearest neighbour.

        Nearest sampling keeps every output pixel's statistics those of one real input pixel, so
        invalid (d_max) pixels never blend with valid ones and depth edges stay sharp. It uses the
        same sampler as `engines.depth_bayes.resize_depth`, so a prior and a depth map resized to
        the same size stay aligned.
        """
        if (width, height) == (self.width, self.height):
            return self
        if width <= 0 or height <= 0:
            raise ValueError(f"invalid target size {width}x{height}")

        def nearest(a: np.ndarray) -> np.ndarray:
            return cv2.resize(a, (width, height), interpolation=cv2.INTER_NEAREST)

        return BackgroundPrior(
            depth_mean_m=nearest(self.depth_mean_m),
            depth_std_m=nearest(self.depth_std_m),
            valid_count=nearest(self.valid_count),
            color_mean=cv2.resize(self.color_mean, (width, height), interpolation=cv2.INTER_AREA),
            n_frames=self.n_frames,
            color_std=None if self.color_std is None else nearest(self.color_std),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the prior as a compressed .npz (plain arrays, no pickle); atomic replace."""
        path = Path(path)
        arrays = {
            "version": np.array(PRIOR_FORMAT_VERSION, dtype=np.int32),
            "depth_mean_m": self.depth_mean_m.astype(np.float32, copy=False),
            "depth_std_m": self.depth_std_m.astype(np.float32, copy=False),
            "valid_count": self.valid_count.astype(np.int32, copy=False),
            "color_mean": self.color_mean.astype(np.float32, copy=False),
            "n_frames": np.array(self.n_frames, dtype=np.int64),
        }
        if self.color_std is not None:
            arrays["color_std"] = self.color_std.astype(np.float32, copy=False)
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:
            raise UserError(f"Could not save the background prior to {path}: {exc.strerror or exc}.") from exc
        finally:
            if tmp_name is not None and os.path.exists(tmp_name):
                os.unlink(tmp_name)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BackgroundPrior:
        """Read a prior written by `save`; any problem raises UserError with one sentence."""
        path = Path(path)

        def bad(reason: str) -> UserError:
            return UserError(f"Could not load the background prior {path}: {reason}; capture the background again.")

        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except FileNotFoundError as exc:
            raise UserError(f"Background prior file {path} does not exist: capture the background first.") from exc
        except (OSError, ValueError, EOFError) as exc:  # not a zip, truncated, object arrays, ...
            raise bad("the file is not a valid .npz prior") from exc
        except Exception as exc:  # zipfile.BadZipFile and friends
            raise bad(f"the file is unreadable ({type(exc).__name__})") from exc

        required = ("version", "depth_mean_m", "depth_std_m", "valid_count", "color_mean", "n_frames")
        missing = [key for key in required if key not in arrays]
        if missing:
            raise bad(f"it lacks {', '.join(missing)}")
        if int(arrays["version"]) != PRIOR_FORMAT_VERSION:
            raise bad(f"it has format version {int(arrays['version'])}, expected {PRIOR_FORMAT_VERSION}")
        for key, value in arrays.items():
            if not (np.issubdtype(value.dtype, np.number)):
                raise bad(f"'{key}' is not numeric")
        mean = arrays["depth_mean_m"]
        if mean.ndim != 2 or mean.size == 0:
            raise bad("its depth mean is not a 2-D image")
        h, w = mean.shape
        color_std = arrays.get("color_std")
        shapes_ok = (
            arrays["depth_std_m"].shape == (h, w)
            and arrays["valid_count"].shape == (h, w)
            and arrays["color_mean"].shape == (h, w, 3)
            and (color_std is None or color_std.shape == (h, w))
        )
        if not shapes_ok:
            raise bad("its arrays have inconsistent shapes")
        std = arrays["depth_std_m"].astype(np.float32)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise bad("its depth statistics are not finite and positive")
        return cls(
            depth_mean_m=mean.astype(np.float32),
            depth_std_m=std,
            valid_count=arrays["valid_count"].astype(np.int32),
            color_mean=arrays["color_mean"].astype(np.float32),
            n_frames=int(arrays["n_frames"]),
            color_std=None if color_std is None else color_std.astype(np.float32),
        )


def check_frame(color_rgb: np.ndarray, depth_m: np.ndarray, shape: tuple[int, int]) -> None:
    """A frame to matte against a prior of (H, W) `shape`: colour uint8 H x W x 3 (else ValueError, a
    programming error) and depth of the same size (else UserError: the camera changed resolution)."""
    if color_rgb.dtype != np.uint8 or color_rgb.ndim != 3 or color_rgb.shape[2] != 3:
        raise ValueError(f"colour must be uint8 HxWx3 RGB, got {color_rgb.dtype} {color_rgb.shape}")
    if color_rgb.shape[:2] != tuple(shape) or depth_m.shape != tuple(shape):
        raise UserError(
            f"Frame size {color_rgb.shape[1]}x{color_rgb.shape[0]} does not match the captured background "
            f"({shape[1]}x{shape[0]}): capture the background again at this resolution."
        )


def eq4_mean_std(
    mean_valid_m: np.ndarray,
    sample_std_m: np.ndarray,
    valid_count: np.ndarray,
    config: DepthConfig,
    min_std_m: float = DEFAULT_MIN_STD_M,
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4's fallbacks (plus the std floor) on per-pixel statistics of the valid samples.

    mean_valid_m: mean of the valid samples (any value where count = 0); sample_std_m: their sample
    std (ddof = 1; any value where count < 2); valid_count: |K|. Returns float32 (mean, std), metres.
    """
    count = np.asarray(valid_count)
    d_max = np.float32(config.d_max_m)
    psi = np.float32(config.psi)
    mean = np.where(count > 0, mean_valid_m, d_max).astype(np.float32)
    std = np.where(count > 1, sample_std_m, np.where(count == 1, psi * mean, psi * d_max)).astype(np.float32)
    floor = np.maximum(np.float32(config.std_floor_ratio) * mean, np.float32(min_std_m))
    return mean, np.maximum(std, floor).astype(np.float32)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class CaptureStats:
    """Raw capture statistics for validation (before eq. 4's fallbacks).

    depth_mean_m: float32 HxW, metres (0 where no valid sample).
    depth_std_m: float32 HxW, metres, sample std (ddof=1); NaN where fewer than 2 valid samples.
    valid_count: int32 HxW.
    color_std: float32 HxW in [0, 1], RMS over channels of the per-pixel colour std (NaN if < 2 frames).
    n_frames: frames added.
    """

    depth_mean_m: np.ndarray
    depth_std_m: np.ndarray
    valid_count: np.ndarray
    color_std: np.ndarray
    n_frames: int


class BackgroundPriorBuilder:
    """Streaming per-pixel statistics of an empty-scene capture, in constant memory.

    Depth: per-pixel valid-sample count, running mean and M2 (Welford's algorithm, float32).
    Colour: running sums (float32) for the mean plate; values and squares on a 2x-subsampled grid for
    the colour spread.
    One `add` costs about 1.5 ms at 640x480 (OpenCV array ops, no per-pixel Python).
    """

    def __init__(self, height: int, width: int) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"invalid prior size {width}x{height}")
        self.height = int(height)
        self.width = int(width)
        self._count = 0
        shape = (self.height, self.width)
        self._depth_count = np.zeros(shape, np.float32)  # exact integers up to 2**24 frames
        self._depth_mean = np.zeros(shape, np.float32)
        self._depth_m2 = np.zeros(shape, np.float32)
        # float32 sums: exact integers up to 65,000 frames for the plate and 258 frames for the squares;
        # after that, rounding moves the colour variance by about 1 grey level^2 at most (validation only).
        # The colour spread is only used to validate the capture, so it is tracked on every second pixel
        # of every second row (a quarter of the cost) and upsampled when read.
        self._color_sum = np.zeros(shape + (3,), np.float32)
        self._color_sq = np.zeros(((self.height + 1) // 2, (self.width + 1) // 2, 3), np.float32)
        self._color_sub_sum = np.zeros_like(self._color_sq)
        # scratch buffers reused by every add
        self._delta = np.empty(shape, np.float32)
        self._tmp = np.empty(shape, np.float32)

    @property
    def count(self) -> int:
        """Frames added so far."""
        return self._count

    def add(self, color_rgb: np.ndarray, depth_m: np.ndarray) -> None:
        """Add one frame: colour uint8 HxWx3 RGB, depth float32 HxW metres (<= 0 or NaN = unknown)."""
        shape = (self.height, self.width)
        if color_rgb.shape != shape + (3,) or color_rgb.dtype != np.uint8:
            raise ValueError(
                f"colour must be uint8 {self.height}x{self.width}x3, got {color_rgb.dtype} {color_rgb.shape}")
        if depth_m.shape != shape:
            raise ValueError(f"depth must be {self.height}x{self.width}, got {depth_m.shape}")
        depth = np.ascontiguousarray(depth_m, dtype=np.float32)
        color = np.ascontiguousarray(color_rgb)

        valid = depth > 0  # bool; NaN compares false
        count, mean, m2, delta, tmp = self._depth_count, self._depth_mean, self._depth_m2, self._delta, self._tmp
        # Welford where valid: n += 1; delta = d - mean; mean += delta / n; M2 += delta * (d - mean_new),
        # with d - mean_new = delta - delta / n. delta is 0 where invalid, so nothing changes there.
        np.add(count, valid, out=count)
        delta.fill(0.0)
        cv2.subtract(depth, mean, dst=delta, mask=valid.view(np.uint8))
        cv2.max(count, 1.0, dst=tmp)
        cv2.divide(delta, tmp, dst=tmp)
        cv2.add(mean, tmp, dst=mean)
        cv2.subtract(delta, tmp, dst=tmp)
        cv2.multiply(tmp, delta, dst=tmp)
        cv2.add(m2, tmp, dst=m2)

        cv2.accumulate(color, self._color_sum)
        if self.height % 2 == 0 and self.width % 2 == 0:  # same as color[::2, ::2], 5x faster
            sub = cv2.resize(color, (self.width // 2, self.height // 2), interpolation=cv2.INTER_NEAREST)
        else:
            sub = np.ascontiguousarray(color[::2, ::2])
        cv2.accumulate(sub, self._color_sub_sum)
        cv2.accumulateSquare(sub, self._color_sq)
        self._count += 1

    def _color_std(self) -> np.ndarray:
        n = self._count
        if n < 2:
            return np.full((self.height, self.width), np.nan, np.float32)
        mean = self._color_sub_sum.astype(np.float64) / n
        var = (self._color_sq.astype(np.float64) - n * mean * mean) / (n - 1)  # per channel, in (0..255)^2
        np.maximum(var, 0.0, out=var)
        std = (np.sqrt(var.mean(axis=2)) / 255.0).astype(np.float32)
        full = np.repeat(np.repeat(std, 2, axis=0), 2, axis=1)  # each sample covers its 2x2 block
        return np.ascontiguousarray(full[: self.height, : self.width])

    def stats(self) -> CaptureStats:
        """Raw statistics (no eq. 4 fallbacks), for `validate_capture`."""
        count = self._depth_count
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.where(count > 1, np.sqrt(np.maximum(self._depth_m2, 0.0) / (count - 1.0)), np.nan)
        return CaptureStats(
            depth_mean_m=np.where(count > 0, self._depth_mean, 0.0).astype(np.float32),
            depth_std_m=std.astype(np.float32),
            valid_count=count.astype(np.int32),
            color_std=self._color_std(),
            n_frames=self._count,
        )

    def build(self, config: DepthConfig, min_std_m: float = DEFAULT_MIN_STD_M) -> BackgroundPrior:
        """Apply eq. 4 (with its fallbacks and the std floor) and return the prior; needs >= 1 frame."""
        if self._count == 0:
            raise UserError("No background frames were captured: keep the scene empty and capture again.")
        count = self._depth_count
        with np.errstate(invalid="ignore", divide="ignore"):
            sample_std = np.sqrt(np.maximum(self._depth_m2, 0.0) / (count - 1.0))
        mean, std = eq4_mean_std(self._depth_mean, sample_std, count, config, min_std_m)
        color_mean = (self._color_sum.astype(np.float64) / (self._count * 255.0)).astype(np.float32)
        color_std = self._color_std() if self._count > 1 else None
        return BackgroundPrior(
            depth_mean_m=mean,
            depth_std_m=std,
            valid_count=count.astype(np.int32),
            color_mean=color_mean,
            n_frames=self._count,
            color_std=color_std,
        )


@dataclass(frozen=True)
class CaptureReport:
    """Verdict on a background capture. Fractions are shares of all pixels, in [0, 1]."""

    ok: bool
    message: str
    n_frames: int
    moving_fraction: float  # depth std well above the expected sensor noise
    color_moving_fraction: float  # colour std above the threshold (nan when unknown)
    near_fraction: float  # mean depth closer than `near_m`
    valid_fraction: float  # pixels with a valid depth in at least half the frames
    subject: PlateFinding | None = None  # a person standing, or someone passing through (plate_check)


def validate_capture(
    source: BackgroundPriorBuilder | CaptureStats | BackgroundPrior,
    *,
    min_frames: int = 10,
    motion_std_factor: float = 4.0,
    noise_floor_m: float = 0.005,
    noise_coef_per_m: float = 0.003,
    max_moving_fraction: float = 0.02,
    color_std_threshold: float = 0.08,
    max_color_moving_fraction: float = 0.02,
    near_m: float = 0.5,
    max_near_fraction: float = 0.2,
    min_valid_fraction: float = 0.3,
    fx_px: float | None = None,
) -> CaptureReport:
    """Check that the capture saw a static, empty scene.

    A pixel "moved" when its depth std exceeds `motion_std_factor` times `expected_depth_noise_m` at its
    depth, or its colour std exceeds `color_std_threshold` ([0, 1] units, about 20 grey levels by default).
    The capture fails when more than `max_moving_fraction` / `max_color_moving_fraction` of the image
    moved, when more than `max_near_fraction` of it is closer than `near_m` metres (someone or something
    right in front of the camera), when fewer than `min_frames` frames were added, or when fewer than
    `min_valid_fraction` of the pixels have a usable depth. It fails with a one-sentence `message` that
    leads with the finding when `plate_check` finds a person standing in the plate or a compact region of
    moving pixels (someone passing through); `fx_px` is the focal length in pixels (None: a guess).

    A `BackgroundPrior` can be checked too (its fallbacks make count-0/1 pixels look static).
    """
    if isinstance(source, BackgroundPriorBuilder):
        source = source.stats()
    if isinstance(source, BackgroundPrior):
        count = source.valid_count
        std = np.where(count > 1, source.depth_std_m, np.nan).astype(np.float32)
        source = CaptureStats(
            depth_mean_m=np.where(count > 0, source.depth_mean_m, 0.0).astype(np.float32),
            depth_std_m=std,
            valid_count=count,
            color_std=(source.color_std if source.color_std is not None
                       else np.full(count.shape, np.nan, np.float32)),
            n_frames=source.n_frames,
        )
    stats = source
    n_pixels = max(stats.depth_mean_m.size, 1)
    problems: list[str] = []

    if stats.n_frames < min_frames:
        problems.append(f"only {stats.n_frames} frames were captured (at least {min_frames} are needed)")

    limit = np.float32(motion_std_factor) * expected_depth_noise_m(stats.depth_mean_m, noise_floor_m, noise_coef_per_m)
    with np.errstate(invalid="ignore"):
        moving_mask = stats.depth_std_m > limit  # NaN (< 2 samples) compares false
    moving = np.count_nonzero(moving_mask) / n_pixels
    if moving > max_moving_fraction:
        problems.append(f"the depth changed during capture on {100 * moving:.1f}% of the image (something moved)")

    with np.errstate(invalid="ignore"):
        color_moving = (np.count_nonzero(stats.color_std > np.float32(color_std_threshold)) / n_pixels
                        if np.any(np.isfinite(stats.color_std)) else float("nan"))
    if color_moving > max_color_moving_fraction:
        problems.append(f"the colour changed during capture on {100 * color_moving:.1f}% of the image "
                        "(movement or changing light)")

    valid_mask = stats.valid_count > 0
    near = np.count_nonzero(valid_mask & (stats.depth_mean_m < np.float32(near_m))) / n_pixels
    if near > max_near_fraction:
        problems.append(
            f"{100 * near:.0f}% of the image is closer than {near_m:.2f} m (was someone in front of the camera?)")

    usable = np.count_nonzero(2 * stats.valid_count >= max(stats.n_frames, 1)) / n_pixels
    if usable < min_valid_fraction:
        problems.append(f"only {100 * usable:.0f}% of the image has a usable depth")

    subject = (plate_check.find_standing_person(stats.depth_mean_m, stats.valid_count > 0, fx_px)
               or plate_check.find_moving_region(moving_mask))
    if subject is not None:
        action = ("step out of view and capture the background again" if subject.kind == "standing"
                  else "keep the scene empty and still, then capture the background again")
        also = f" Also: {'; '.join(problems)}." if problems else ""
        message = f"The background capture shows {subject.describe()}: {action}.{also}"
    elif problems:
        message = ("Background capture is not clean: " + "; ".join(problems)
                   + ". Keep the scene empty and still, then capture again.")
    else:
        message = f"Background capture looks static and empty ({stats.n_frames} frames)."
    report = CaptureReport(
        ok=not problems and subject is None,
        message=message,
        n_frames=stats.n_frames,
        moving_fraction=float(moving),
        color_moving_fraction=float(color_moving),
        near_fraction=float(near),
        valid_fraction=float(usable),
        subject=subject,
    )
    if not report.ok:
        log.info("%s", report.message)
    return report


def build_prior(
    frames: Iterable[Frame], count: int | None, config: DepthConfig, on_progress: Callable[[str, int, int | None], None] | None = None
) -> tuple[BackgroundPrior, CaptureReport]:
    """The background prior from the first `count` frames (all when None), and `validate_capture`'s report."""
    builder: BackgroundPriorBuilder | None = None
    for frame in frames:
        fx_px = frame.intrinsics.fx
        if builder is None:
            builder = BackgroundPriorBuilder(frame.height, frame.width)
        elif (frame.height, frame.width) != (builder.height, builder.width):
            raise UserError(
                f"Background frame {frame.index} is {frame.width}x{frame.height} but earlier ones are "
                f"{builder.width}x{builder.height}: use background frames of one size."
            )
        builder.add(frame.color, frame.depth_m())
        if on_progress:
            on_progress("background", builder.count, count)
        if count is not None and builder.count >= count:
            break
    if builder is None or builder.count == 0:
        raise UserError("No background frames were read: the background recording is empty.")
    if count is not None and builder.count < count:
        raise UserError(f"Asked for {count} background frames but the recording has only {builder.count}.")
    return builder.build(config), validate_capture(builder, fx_px=fx_px)
