"""Shared test setup: no display (Qt offscreen) and paths to the repository and ../shared data."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has no ../shared (users' clones)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not available in this checkout")
    return path
