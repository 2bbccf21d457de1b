"""CLI commands for this area (placeholder until its owner fills it in)."""

from __future__ import annotations

from bmd_edge.errors import BmdEdgeError


def benchmark() -> None:
    """Benchmark variants."""
    raise BmdEdgeError("benchmark is not implemented yet")
