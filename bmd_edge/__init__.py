"""bmd-edge: femoral-neck BMD from a hip radiograph plus clinical facts, fast on a CPU."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Prediction", "Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    """PEP 562: `from bmd_edge import Predictor` without importing runtimes at `import bmd_edge`."""
    if name in ("Predictor", "Prediction"):
        from bmd_edge.runtime import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'bmd_edge' has no attribute {name!r}")
