"""CLI commands for this area (placeholder until its owner fills it in)."""

from __future__ import annotations

from bmd_edge.errors import BmdEdgeError


def quantize() -> None:
    """Quantize a checkpoint."""
    raise BmdEdgeError("quantize is not implemented yet")


def export() -> None:
    """Export a bundle."""
    raise BmdEdgeError("export is not implemented yet")
