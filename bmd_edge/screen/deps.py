"""The optional `scale` dependencies (Ray Data, pyarrow), imported only when screening."""

from __future__ import annotations

from bmd_edge.errors import DependencyError

HINT = "pip install 'bmd-edge[scale]'"


def require_pyarrow() -> None:
    """DependencyError with the install line when pyarrow is missing."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DependencyError(f"bmd-edge screen needs pyarrow; install it with {HINT}") from None


def require_ray() -> None:
    """DependencyError with the install line when Ray Data is missing."""
    require_pyarrow()
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise DependencyError(f"bmd-edge screen needs Ray Data; install it with {HINT}") from None
