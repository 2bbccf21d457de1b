"""The hip locator: find each hip in a film, its side in the image, and whether the film is a
hip/pelvis radiograph at all. The runtime (`Locator`, `LocateResult`, `FoundHip`) is torch-free;
`model`, `train` and `export` need the train extra."""

from __future__ import annotations

from bmd_edge.locate.decode import FoundHip, LocateResult
from bmd_edge.locate.locator import Locator
from bmd_edge.locate.spec import LocatorSpec

__all__ = ["FoundHip", "LocateResult", "Locator", "LocatorSpec"]
