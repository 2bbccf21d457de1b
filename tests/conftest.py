"""Shared pytest fixtures. Keep this file small: fixtures used by more than one test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# NNCF compiles its torch extension on first import on a fresh machine; its 60 s default timeout
# is too short for a loaded 2-core CI box (seen: ExtensionLoaderTimeoutException).
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"
# .ci/run sets this, so a CI box without ../shared/realworld fails instead of skipping; a
# newcomer's fresh clone (no ../shared/) skips those tests with the reason below.
REQUIRE_REALWORLD_ENV = "BMD_EDGE_REQUIRE_REALWORLD"


def require_realworld() -> Path:
    """The real-world folder, or a skip (a failure when $BMD_EDGE_REQUIRE_REALWORLD=1)."""
    if not REALWORLD.is_dir():
        why = (f"real-world test files not found at {REALWORLD} (real radiographs live outside "
               "the repo, in ../shared/realworld; see SOURCES.md)")
        if os.environ.get(REQUIRE_REALWORLD_ENV) == "1":
            pytest.fail(f"{why}; {REQUIRE_REALWORLD_ENV}=1 requires them")
        pytest.skip(why)
    return REALWORLD


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realworld: needs ../shared/realworld (skipped without it, unless "
        f"{REQUIRE_REALWORLD_ENV}=1)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("realworld") is not None:
        require_realworld()


@pytest.fixture(scope="session")
def realworld_dir() -> Path:
    """The real-world test files (never copied into the repo); CI must have them."""
    return require_realworld()


@pytest.fixture(scope="session", autouse=True)
def _trust_the_tiny_test_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tiny test bundles are signed with a fixed test key; this suite (only) trusts it."""
    from bmd_edge.bundle_trust import TRUSTED_KEYS_ENV
    from bmd_edge.runtime.tiny import tiny_signing_key

    _, pub = tiny_signing_key(tmp_path_factory.mktemp("tiny_key"))
    os.environ[TRUSTED_KEYS_ENV] = str(pub)


def write_toy_png(path: Path, view: str = "hip", *, seed: int = 0, side: str = "left",
                  h: int = 64, w: int = 56) -> Path:
    """A toy film (bmd_edge/runtime/toy.py) as a 16-bit PNG: the tiny bundle's locator finds
    its hip(s). view: "hip", "pelvis" or a toy other kind ("knee", "hand", ...)."""
    import cv2
    import numpy as np

    from bmd_edge.runtime.toy import toy_hip_film, toy_other_film, toy_pelvis_film

    if view == "hip":
        img = toy_hip_film(h, w, side=side, seed=seed)[0]
    elif view == "pelvis":
        img = toy_pelvis_film(h, max(w, int(h * 1.7)), seed=seed)[0]
    else:
        img = toy_other_film(view, h, w, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.round(img * 65535).astype(np.uint16))
    return path


@pytest.fixture(scope="session")
def toy_hip_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One toy hip film (PNG) for tests that run the tiny bundle end to end."""
    return write_toy_png(tmp_path_factory.mktemp("toy") / "toy_hip.png")
