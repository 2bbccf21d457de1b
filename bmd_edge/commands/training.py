"""CLI commands for this area (placeholder until its owner fills it in)."""

from __future__ import annotations

from bmd_edge.errors import BmdEdgeError


def train() -> None:
    """Train a model."""
    raise BmdEdgeError("train is not implemented yet")


def cv() -> None:
    """Cross-validate."""
    raise BmdEdgeError("cv is not implemented yet")


def evaluate() -> None:
    """Evaluate a checkpoint."""
    raise BmdEdgeError("evaluate is not implemented yet")
