"""Metrics against values worked out by hand (see the comments for the arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bmd_edge.errors import InputError
from bmd_edge.training.metrics import (
    all_metrics,
    band,
    bootstrap_ci,
    fast_metrics,
    regression_metrics,
    relative_change,
    screening_metrics,
    subgroup_metrics,
    summarise_folds,
)


def test_regression_metrics_hand_computed() -> None:
    # errors 0.05, 0.05, -0.10, 0 → SSE 0.015; mean(t) 0.85 → SST 0.05
    m = regression_metrics([0.8, 0.9, 1.0, 0.7], [0.85, 0.95, 0.9, 0.7])
    assert m["mse"] == pytest.approx(0.015 / 4)
    assert m["mae"] == pytest.approx(0.2 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(0.015 / 4))
    assert m["r2"] == pytest.approx(1 - 0.015 / 0.05)
    # cov 0.035, var_t 0.05, var_p 0.035 → r = 0.035 / sqrt(0.05 · 0.035) = sqrt(0.7)
    assert m["pearson_r"] == pytest.approx(math.sqrt(0.7))


def test_screening_metrics_hand_computed() -> None:
    truth = [0.70, 0.80, 0.85, 0.95, 1.00, 1.10]  # positives (< 0.899): cases 0, 1, 2
    pred = [0.75, 0.95, 0.88, 0.89, 1.05, 0.92]  # called positive: cases 0, 2, 3
    m = screening_metrics(truth, pred)
    # TP = {0, 2}, FP = {3}, FN = {1}, TN = {4, 5}
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3)
    # score = −pred; of the 9 positive/negative pairs the positive scores higher in 3 + 1 + 3
    assert m["auc"] == pytest.approx(7 / 9)


def test_screening_threshold_is_strict_below() -> None:
    # exactly 0.899 is not low BMD; one class only → AUC undefined (NaN), not a crash
    m = screening_metrics([0.899, 1.0, 1.2], [0.899, 1.0, 1.2])
    assert math.isnan(m["auc"]) and math.isnan(m["recall"])
    assert m["specificity"] == 1.0


def test_all_metrics_keys_and_bad_input() -> None:
    m = all_metrics([0.8, 0.9, 1.0], [0.8, 0.9, 1.0])
    assert m["mse"] == 0.0 and m["r2"] == 1.0 and m["auc"] == 1.0
    with pytest.raises(InputError, match="equal-length"):
        all_metrics([0.8, 0.9], [0.8])
    with pytest.raises(InputError, match="NaN"):
        all_metrics([0.8, float("nan")], [0.8, 0.9])


def test_bootstrap_ci_is_seeded_and_brackets_estimate() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(0.85, 0.12, 200)
    pred = truth + rng.normal(0, 0.05, 200)
    a = bootstrap_ci(truth, pred, n_boot=100, seed=3)
    b = bootstrap_ci(truth, pred, n_boot=100, seed=3)
    assert a == b
    point = all_metrics(truth, pred)
    for key in ("mae", "r2", "auc"):
        lo, hi = a[key]
        assert lo < point[key] < hi


def test_subgroup_rows_counts_and_min_n() -> None:
    truth = [0.7, 0.8, 0.9, 1.0, 1.1, 0.75, 0.85, 0.95]
    pred = [0.72, 0.82, 0.88, 1.02, 1.05, 0.8, 0.9, 0.9]
    sex = ["F", "F", "F", "F", "F", "M", "M", None]
    rows = subgroup_metrics(truth, pred, {"sex": sex}, n_boot=20, min_n=2)
    assert [(r.group, r.n) for r in rows] == [("F", 5), ("M", 2)]
    assert rows[0].metrics["mae"] == pytest.approx(np.mean([0.02, 0.02, 0.02, 0.02, 0.05]))
    assert [r.group for r in subgroup_metrics(truth, pred, {"sex": sex}, n_boot=5, min_n=3)] == ["F"]


def test_band_labels() -> None:
    edges = (60, 70, 80)
    assert band(55, edges) == "<60"
    assert band(60, edges) == "60-70"
    assert band(79.9, edges) == "70-80"
    assert band(80, edges) == "≥80"
    assert band(None, edges) is None


def test_fold_summary_and_relative_change() -> None:
    s = summarise_folds([{"mae": 1.0, "auc": float("nan")}, {"mae": 3.0, "auc": 0.8}])
    assert s["mae"] == pytest.approx((2.0, math.sqrt(2.0)))
    assert s["auc"][0] == pytest.approx(0.8) and math.isnan(s["auc"][1])
    assert relative_change(0.833, 1.0) == pytest.approx(-16.7)


def test_fast_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    truth = np.round(rng.normal(0.88, 0.12, 150), 2)  # rounded: ties in the AUC ranks
    pred = np.round(truth + rng.normal(0, 0.06, 150), 2)
    slow, fast = all_metrics(truth, pred), fast_metrics(truth, pred)
    assert set(slow) == set(fast)
    for key in slow:
        assert fast[key] == pytest.approx(slow[key], rel=1e-9, abs=1e-12), key
