"""Shared pytest fixtures. Keep this file small: fixtures used by more than one test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# NNCF compiles its torch extension on first import on a fresh machine; its 60 s default timeout
# is too short for a loaded 2-core CI box (seen: ExtensionLoaderTimeoutException).
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"


@pytest.fixture(scope="session")
def realworld_dir() -> Path:
    """The real-world test files (never copied into the repo); CI must have them."""
    if not REALWORLD.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real-world test files missing: {REALWORLD} (CI must provide shared/)")
        pytest.skip(f"real-world test files not found at {REALWORLD}")
    return REALWORLD
