"""Split-conformal prediction interval: one half-width in g/cm² for every prediction.

Why split conformal: it needs no model retraining and no distributional assumption — with n
held-out absolute residuals, the ⌈(n+1)·coverage⌉-th smallest one is a half-width h such that
a new, exchangeable case has P(|y − ŷ| ≤ h) ≥ coverage (Vovk et al. 2005; Lei et al. 2018).
numpy only, so the bundle writer and tests use it without torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from bmd_edge.errors import InputError


@dataclass(frozen=True)
class ConformalInterval:
    """What bundle.json["interval"] holds."""

    method: str  # always "split-conformal": names the guarantee a reader can look up
    coverage: float  # target marginal coverage, e.g. 0.9
    halfwidth_gcm2: float  # ± this around the estimate, g/cm²
    n_calibration: int  # held-out cases the half-width was computed on (small n → conservative)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict for bundle.json."""
        return asdict(self)


def conformal_halfwidth(
    y_true: Sequence[float], y_pred: Sequence[float], coverage: float = 0.9
) -> ConformalInterval:
    """Half-width = the ⌈(n+1)·coverage⌉-th smallest absolute residual on held-out cases."""
    if not 0.0 < coverage < 1.0:
        raise InputError(f"coverage must be in (0, 1), got {coverage}")
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise InputError(f"conformal needs equal lengths, got {t.size} labels and {p.size} predictions")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise InputError("conformal got a NaN or infinite value; expected finite BMD values")
    n = t.size
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        need = math.ceil(coverage / (1.0 - coverage))
        raise InputError(
            f"{n} calibration cases are too few for {coverage:.0%} split-conformal coverage; "
            f"need at least {need}"
        )
    residuals = np.sort(np.abs(t - p))
    return ConformalInterval("split-conformal", float(coverage), float(residuals[rank - 1]), int(n))


def empirical_coverage(y_true: Sequence[float], y_pred: Sequence[float], halfwidth: float) -> float:
    """Fraction of cases whose label lies within ± halfwidth of the prediction."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.size == 0:
        raise InputError("empirical coverage needs at least one case, got 0")
    return float(np.mean(np.abs(t - p) <= halfwidth))
