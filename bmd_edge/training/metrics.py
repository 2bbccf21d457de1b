"""Regression and screening metrics for BMD estimates, with bootstrap CIs and subgroups.

Numbers come from scikit-learn / scipy so nobody has to trust our arithmetic; this module only
decides *which* numbers the project reports and how a low-BMD screen is scored: low BMD is the
positive class (measured FN BMD < 0.899 g/cm², T-score −1 on GE Lunar), and the ROC uses
−prediction as the score because a lower estimate means "more likely low".
No torch here: evaluation of exported models reuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.references import (
    SCREENING_THRESHOLD_GCM2 as SCREEN_THRESHOLD_GCM2,  # T = -1, GE Lunar FN
)

REGRESSION_KEYS = ("mse", "mae", "rmse", "r2", "pearson_r")
SCREEN_KEYS = ("auc", "precision", "recall", "f1", "specificity")
ALL_KEYS = REGRESSION_KEYS + SCREEN_KEYS


def _arrays(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise InputError(f"metrics need equal-length arrays, got {t.size} labels and {p.size} predictions")
    if t.size == 0:
        raise InputError("metrics need at least one case, got 0")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise InputError("metrics got a NaN or infinite value; expected finite BMD values in g/cm²")
    return t, p


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MSE, MAE, RMSE, R² and Pearson r (NaN where undefined, e.g. constant predictions)."""
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    t, p = _arrays(y_true, y_pred)
    mse = float(mean_squared_error(t, p))
    out = {"mse": mse, "mae": float(mean_absolute_error(t, p)), "rmse": float(np.sqrt(mse))}
    out["r2"] = float(r2_score(t, p)) if t.size > 1 and np.ptp(t) > 0 else float("nan")
    if t.size > 2 and np.ptp(t) > 0 and np.ptp(p) > 0:
        out["pearson_r"] = float(pearsonr(t, p).statistic)
    else:
        out["pearson_r"] = float("nan")
    return out


def screening_metrics(
    y_true: Sequence[float], y_pred: Sequence[float], threshold: float = SCREEN_THRESHOLD_GCM2
) -> dict[str, float]:
    """Low-BMD screen at `threshold`: positive = BMD below it, for truth and prediction alike."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    t, p = _arrays(y_true, y_pred)
    pos, called = t < threshold, p < threshold
    both_classes = 0 < pos.sum() < pos.size
    out = {"auc": float(roc_auc_score(pos, -p)) if both_classes else float("nan")}
    out["precision"] = float(precision_score(pos, called, zero_division=np.nan))
    out["recall"] = float(recall_score(pos, called, zero_division=np.nan))
    out["f1"] = float(f1_score(pos, called, zero_division=np.nan))
    negatives = int((~pos).sum())
    out["specificity"] = float((~called & ~pos).sum() / negatives) if negatives else float("nan")
    return out


def all_metrics(
    y_true: Sequence[float], y_pred: Sequence[float], threshold: float = SCREEN_THRESHOLD_GCM2
) -> dict[str, float]:
    """Regression plus screening metrics in one flat dict (keys = ALL_KEYS)."""
    return {**regression_metrics(y_true, y_pred), **screening_metrics(y_true, y_pred, threshold)}


def fast_metrics(
    t: np.ndarray, p: np.ndarray, threshold: float = SCREEN_THRESHOLD_GCM2
) -> dict[str, float]:
    """The same numbers as `all_metrics` in plain numpy, for the thousands of bootstrap draws
    (scikit-learn's input validation costs ~1 ms per call). A test keeps the two equal."""
    from scipy.stats import rankdata

    err = p - t
    mse = float(np.mean(err**2))
    out = {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(mse))}
    sst = float(np.sum((t - t.mean()) ** 2))
    out["r2"] = 1.0 - float(np.sum(err**2)) / sst if sst > 0 else float("nan")
    sp = float(np.sum((p - p.mean()) ** 2))
    cov = float(np.sum((t - t.mean()) * (p - p.mean())))
    out["pearson_r"] = cov / np.sqrt(sst * sp) if sst > 0 and sp > 0 and t.size > 2 else float("nan")
    pos, called = t < threshold, p < threshold
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos and n_neg:  # Mann–Whitney U with mid-ranks = ROC-AUC with ties counted ½
        ranks = rankdata(-p)
        out["auc"] = float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    else:
        out["auc"] = float("nan")
    tp = int((pos & called).sum())
    n_called = int(called.sum())
    prec = tp / n_called if n_called else float("nan")
    rec = tp / n_pos if n_pos else float("nan")
    out["precision"], out["recall"] = prec, rec
    out["f1"] = 2 * tp / (n_called + n_pos) if (n_called + n_pos) else float("nan")
    out["specificity"] = float((~called & ~pos).sum() / n_neg) if n_neg else float("nan")
    return out


def bootstrap_ci(
    y_true: Sequence[float],
    y_pred: Sequence[float],
    metric: Callable[[np.ndarray, np.ndarray], dict[str, float]] = fast_metrics,
    *,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CI per metric: resample cases with replacement, `n_boot` times.

    Why percentile and not BCa: subgroups are small and the metrics are bounded; percentile
    intervals are honest enough and never fail to compute.
    """
    t, p = _arrays(y_true, y_pred)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, t.size, t.size)
        for key, value in metric(t[idx], p[idx]).items():
            draws.setdefault(key, []).append(value)
    lo_q, hi_q = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for key, values in draws.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        out[key] = (
            (float(np.percentile(arr, lo_q)), float(np.percentile(arr, hi_q)))
            if arr.size
            else (float("nan"), float("nan"))
        )
    return out


@dataclass(frozen=True)
class SubgroupRow:
    """Metrics for one subgroup (e.g. sex = F) with bootstrap 95 % CIs."""

    variable: str  # the grouping variable, e.g. "sex", "age band"
    group: str  # the group label, e.g. "F", "70-79"
    n: int  # cases in the group: small n means wide CIs, read them first
    metrics: dict[str, float]  # all_metrics on the group
    ci: dict[str, tuple[float, float]]  # percentile bootstrap interval per metric


def subgroup_metrics(
    y_true: Sequence[float],
    y_pred: Sequence[float],
    groups: Mapping[str, Sequence[str | None]],
    *,
    n_boot: int = 200,
    seed: int = 0,
    min_n: int = 5,
) -> list[SubgroupRow]:
    """One row per (variable, group) with at least `min_n` cases; None labels are skipped."""
    t, p = _arrays(y_true, y_pred)
    rows: list[SubgroupRow] = []
    for variable, labels in groups.items():
        lab = np.asarray([("" if x is None else str(x)) for x in labels], dtype=object)
        if lab.size != t.size:
            raise InputError(f"subgroup '{variable}' has {lab.size} labels for {t.size} cases")
        for group in sorted({x for x in lab if x}):
            mask = lab == group
            if mask.sum() < min_n:
                continue
            rows.append(
                SubgroupRow(
                    variable=variable,
                    group=group,
                    n=int(mask.sum()),
                    metrics=all_metrics(t[mask], p[mask]),
                    ci=bootstrap_ci(t[mask], p[mask], n_boot=n_boot, seed=seed),
                )
            )
    return rows


def band(value: float | None, edges: Sequence[float], fmt: str = "{:g}") -> str | None:
    """Label a value by the half-open band it falls into: edges (60, 70) → "<60", "60-70", "≥70"."""
    if value is None or not np.isfinite(value):
        return None
    if value < edges[0]:
        return "<" + fmt.format(edges[0])
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= value < hi:
            return fmt.format(lo) + "-" + fmt.format(hi)
    return "≥" + fmt.format(edges[-1])


def summarise_folds(per_fold: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean ± SD (ddof=1) of each metric over folds, ignoring NaN folds."""
    keys = [k for k in per_fold[0]] if per_fold else []
    out = {}
    for key in keys:
        arr = np.asarray([f[key] for f in per_fold], dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        mean = float(arr.mean()) if arr.size else float("nan")
        sd = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
        out[key] = (mean, sd)
    return out


def relative_change(new: float, old: float) -> float:
    """Percent change new vs old, as the paper reports it (e.g. −16.7 % MSE)."""
    return (new - old) / abs(old) * 100.0 if old else float("nan")
