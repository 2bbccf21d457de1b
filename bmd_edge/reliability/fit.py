"""Build-time fitting of the reliability section from arrays (scikit-learn; never at run time).

Inputs are what `Predictor` produced on two disjoint sets of clean cases: the *statistics* set
(training crops: the distribution the model learned) and the *calibration* set (fresh clean
cases: where thresholds and interval tables are chosen, so they are not judged on the data the
statistics were fitted to — a Mahalanobis distance is smaller in-sample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bmd_edge.reliability.quality import QUALITY_NAMES
from bmd_edge.reliability.section import SEXES, VIEWS, MondrianCell, MondrianIntervals

# Smallest scale per quality statistic: a statistic that is nearly constant on synthetic
# training films (e.g. clipped-pixel share 0) must not turn a trivial change into a huge distance.
_FLOORS = {"hf_noise": 0.05, "mid_band": 0.05, "raw_white": 0.3, "raw_black": 0.3,
           "template_r": 0.02, "mirror_r": 0.02}
_FLOOR_DEFAULT = 0.01                    # intensity quantiles (window units)
MIN_CELL = 30                            # fewer calibration cases: the cell uses the pooled width


def fit_statistics(stats_quality: np.ndarray, stats_embedding: np.ndarray | None,
                   template: np.ndarray) -> dict[str, np.ndarray]:
    """Location and Ledoit–Wolf precision of the statistics set (quality and embedding)."""
    from sklearn.covariance import LedoitWolf

    q = np.asarray(stats_quality, np.float64)
    center = np.median(q, axis=0)
    mad = 1.4826 * np.median(np.abs(q - center), axis=0)
    floors = np.array([_FLOORS.get(n, _FLOOR_DEFAULT) for n in QUALITY_NAMES])
    scale = np.maximum(mad, floors)
    lw = LedoitWolf().fit((q - center) / scale)
    out = {"quality_center": center, "quality_scale": scale,
           "quality_mean": lw.location_, "quality_precision": lw.precision_,
           "quality_median_d": np.float64(1.0), "quality_median_zmax": np.float64(1.0),
           "template": np.asarray(template, np.float32)}
    if stats_embedding is not None:
        e = np.asarray(stats_embedding, np.float64)
        lwe = LedoitWolf().fit(e)
        out.update(emb_mean=lwe.location_, emb_precision=lwe.precision_,
                   emb_median_d=np.float64(1.0))
    return out


def set_medians(arrays: dict[str, np.ndarray], d_quality: np.ndarray,
                d_embedding: np.ndarray | None, z_max: np.ndarray | None = None) -> None:
    """Normalise each distance by its median on clean calibration cases (raw distances in)."""
    arrays["quality_median_d"] = np.float64(np.median(d_quality))
    if z_max is not None:
        arrays["quality_median_zmax"] = np.float64(np.median(z_max))
    if d_embedding is not None:
        arrays["emb_median_d"] = np.float64(np.median(d_embedding))


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ⌈(n+1)·level⌉-th smallest score: P(new clean score > it) ≤ 1 − level."""
    s = np.sort(np.asarray(scores, np.float64))
    k = min(len(s), math.ceil((len(s) + 1) * level))
    return float(s[k - 1])


def thresholds(clean_scores: np.ndarray, flag_rate: float = 0.04,
               refuse_factor: float = 2.0) -> tuple[float, float]:
    """(flag, refuse): flag at the clean (1 − flag_rate) conformal quantile; refuse at
    refuse_factor × the largest clean score (no clean calibration case comes near it)."""
    flag = conformal_quantile(clean_scores, 1.0 - flag_rate)
    refuse = max(refuse_factor * float(np.max(clean_scores)), 1.5 * flag)
    return flag, refuse


def fit_mondrian(y: np.ndarray, pred: np.ndarray, sex: Sequence[str], view: Sequence[str],
                 coverage: float = 0.9) -> MondrianIntervals:
    """Tertile cut points of the prediction per (sex, view), then one split-conformal
    half-width per (sex, view, tertile) cell; cells with < MIN_CELL cases are left out (the
    runtime then uses the pooled half-width)."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    sex_a, view_a = np.asarray(sex), np.asarray(view)
    res = np.abs(y - pred)
    edges: dict[tuple[str, str], tuple[float, float]] = {}
    cells: dict[tuple[str, str, int], MondrianCell] = {}
    for s in SEXES:
        for v in VIEWS:
            m = (sex_a == s) & (view_a == v)
            if m.sum() < 3 * MIN_CELL:
                continue
            lo, hi = np.quantile(pred[m], (1 / 3, 2 / 3))
            edges[(s, v)] = (float(lo), float(hi))
            t = np.where(pred < lo, 0, np.where(pred < hi, 1, 2))
            for k in range(3):
                mk = m & (t == k)
                if mk.sum() >= MIN_CELL:
                    cells[(s, v, k)] = MondrianCell(s, v, k, conformal_quantile(res[mk], coverage),
                                                    int(mk.sum()))
    return MondrianIntervals(coverage, edges, cells, conformal_quantile(res, coverage))
