"""CLI commands for this area (placeholder until its owner fills it in)."""

from __future__ import annotations

from bmd_edge.errors import BmdEdgeError


def predict() -> None:
    """Predict BMD."""
    raise BmdEdgeError("predict is not implemented yet")


def info() -> None:
    """Describe a bundle."""
    raise BmdEdgeError("info is not implemented yet")
