"""CLI commands for this area (placeholder until its owner fills it in)."""

from __future__ import annotations

from bmd_edge.errors import BmdEdgeError


def synth() -> None:
    """Generate a synthetic hip-radiograph cohort."""
    raise BmdEdgeError("synth is not implemented yet")
