"""Paired model comparisons over repeated k-fold CV that respect the dependence between folds.

Why not a plain t-test over the r·k fold differences: the training sets of different folds
overlap ((k−2)/(k−1) of their cases), so fold scores are positively correlated and the naive
variance s²/J is too small — the interval is too narrow and "significant" too often.
Nadeau & Bengio (Machine Learning 52, 2003) correct the variance with the test/train size ratio:

    d̄ = mean of the J = r·k paired differences,  s² = their sample variance (ddof 1),
    var(d̄) ≈ (1/J + n_test/n_train) · s²,   t = d̄ / sqrt(var),   df = J − 1.

Bouckaert & Frank (PAKDD 2004) recommend it for repeated CV. The spread over seeds (the CV
repetitions) is reported next to it: the mean difference of each repetition, its SD and range.
No torch: numpy + scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bmd_edge.errors import InputError


@dataclass(frozen=True)
class CorrectedTTest:
    """Nadeau–Bengio corrected resampled t-test of paired differences (a − b)."""

    mean: float  # mean paired difference over all folds of all repetitions
    se: float  # corrected standard error sqrt((1/J + n_test/n_train) s²)
    t: float
    df: int
    p: float  # two-sided
    ci_low: float
    ci_high: float
    n_folds: int  # J = repetitions × folds
    naive_se: float  # sqrt(s²/J): what an uncorrected test would use (for comparison)


def corrected_resampled_ttest(diffs: Sequence[float], n_train: float, n_test: float,
                              level: float = 0.95) -> CorrectedTTest:
    """Test mean(diffs) = 0 with the Nadeau–Bengio variance correction; CI at `level`."""
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=np.float64).ravel()
    if d.size < 2 or not np.isfinite(d).all():
        raise InputError(f"the corrected t-test needs >= 2 finite differences, got {d.size}")
    if not (n_train > 0 and n_test > 0):
        raise InputError(f"n_train and n_test must be > 0, got {n_train} and {n_test}")
    j = d.size
    mean, var = float(d.mean()), float(d.var(ddof=1))
    se = math.sqrt((1.0 / j + n_test / n_train) * var)
    df = j - 1
    half = float(student_t.ppf(0.5 + level / 2.0, df)) * se
    if se > 0:
        t = mean / se
        p = float(2.0 * student_t.sf(abs(t), df))
    else:  # every difference equal: zero means no evidence, a constant non-zero is certain
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0 else 0.0
    return CorrectedTTest(mean, se, t, df, p, mean - half, mean + half, j,
                          math.sqrt(var / j))


@dataclass(frozen=True)
class SeedSpread:
    """How the mean paired difference moves between CV repetitions (seeds)."""

    per_seed: dict[int, float]
    sd: float  # SD over seeds (NaN with one seed)
    low: float
    high: float


def seed_spread(diffs_by_seed: Mapping[int, Sequence[float]]) -> SeedSpread:
    """Mean difference per seed and their SD / range."""
    if not diffs_by_seed:
        raise InputError("seed_spread needs at least one seed")
    means = {int(s): float(np.mean(v)) for s, v in diffs_by_seed.items()}
    vals = np.array(list(means.values()))
    sd = float(vals.std(ddof=1)) if vals.size > 1 else float("nan")
    return SeedSpread(means, sd, float(vals.min()), float(vals.max()))
