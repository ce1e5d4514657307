"""The app's persistent settings (QSettings) and how they turn into engine configuration.

`AppSettings` is a plain dataclass of everything the user can set; `load_settings` / `save_settings`
read and write it through a QSettings; `AppSettings.engine_config()` builds the frozen
`EngineConfig` the worker runs. `open_qsettings(data_dir)` picks the store: an INI file in
`data_dir` when given (tests, portable use), else the platform's usual place. `data_dir()` is where
captured backgrounds live (QStandardPaths AppDataLocation unless given).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from engines.config import LIVE_NETWORK_THREADS, LIVE_OVERLAP_STAGES, LIVE_PATCH_BUDGET_MS, EngineConfig
from engines.matting.pipeline import DEFAULT_MODE, MODES

log = logging.getLogger(__name__)

ORGANIZATION = "rgbd-matting"
APPLICATION = "RGB-D Matting"
SETTINGS_FILE = "settings.ini"

# The classical post-matting backend the GUI's switch runs (needs no weights; ~60-80 ms a frame).
GUI_POST_MATTING = "closed-form"
NETWORK_MODES = ("dart", "rgb")


def switch_available(switch: str) -> bool:
    """Whether the engine offers an optional switch ("refiner" needs a network mode)."""
    if switch == "refiner":
        return any(mode in MODES for mode in NETWORK_MODES)
    return switch == "post_matting"


@dataclass
class AppSettings:
    """Everything the user sets in the window. Distances in metres, smoothing in [0, 1)."""

    mode: str = DEFAULT_MODE
    max_subject_distance_m: float = 0.0  # 0 = no depth gate
    temporal_smoothing: float = 0.0
    refiner: bool = True
    post_matting: bool = False
    edge_refine: bool = True  # real-time edge refinement against the plate (engines.matting.edge_refine)
    background: str = "blur"  # image/video path, "#RRGGBB", "blur", "checker"
    blur_sigma_px: float = 12.0
    view: str = "composite"
    countdown_s: float = 3.0
    capture_frames: int = 60
    last_source: str = ""  # the last source that opened (one that failed to open is never saved)
    record_composite: bool = True
    record_raw: bool = False
    record_dir: str = ""  # "" = the user's Videos folder
    show_details: bool = False  # per-stage timings and dropped frames in the status bar

    def engine_config(self) -> EngineConfig:
        mode = self.mode if self.mode in MODES else DEFAULT_MODE
        return EngineConfig(
            mode=mode,
            max_subject_distance_m=self.max_subject_distance_m if self.max_subject_distance_m > 0 else None,
            temporal_smoothing=min(max(self.temporal_smoothing, 0.0), 0.95),
            refiner=self.refiner,
            edge_refine=self.edge_refine,
            post=GUI_POST_MATTING if self.post_matting else "none",
            patch_budget_ms=LIVE_PATCH_BUDGET_MS,
            network_threads=LIVE_NETWORK_THREADS,
            overlap_stages=LIVE_OVERLAP_STAGES,
        )


def open_qsettings(data_dir: Path | None) -> QSettings:
    if data_dir is not None:
        return QSettings(str(Path(data_dir) / SETTINGS_FILE), QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


def data_dir(explicit: Path | None) -> Path:
    """Where the app keeps data (captured backgrounds): `explicit`, else AppDataLocation."""
    if explicit is not None:
        return Path(explicit)
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location) if location else Path.home() / f".{ORGANIZATION}"


def videos_dir() -> Path:
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
    return (Path(location) if location else Path.home()) / APPLICATION


def _coerce(value, default):
    """QSettings (INI especially) hands back strings: convert to the default's type, or keep the default."""
    if value is None:
        return default
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(float(value))
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        return default


def load_settings(store: QSettings) -> AppSettings:
    defaults = AppSettings()
    values = {}
    for f in dataclasses.fields(AppSettings):
        values[f.name] = _coerce(store.value(f.name), getattr(defaults, f.name))
    settings = AppSettings(**values)
    if settings.mode not in MODES:
        settings.mode = DEFAULT_MODE
    return settings


def save_settings(store: QSettings, settings: AppSettings) -> None:
    for f in dataclasses.fields(AppSettings):
        store.setValue(f.name, getattr(settings, f.name))
    store.sync()
