"""The ablation's statistics: Nadeau–Bengio corrected t-test, seed spread, folds, paper cohort."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from bmd_edge.errors import InputError
from bmd_edge.training.paired_stats import corrected_resampled_ttest, seed_spread


def test_corrected_ttest_matches_a_hand_computation() -> None:
    # d = 1..5: mean 3, s² = 10/4 = 2.5, J = 5, n_test/n_train = 20/80 = 0.25
    # var(d̄) = (1/5 + 0.25) · 2.5 = 1.125 -> se = 1.06066, t = 3/1.06066 = 2.82843, df = 4
    # t_{0.975, 4} = 2.77645 -> CI 3 ± 2.94486 = (0.05514, 5.94486); two-sided p = 0.04742
    r = corrected_resampled_ttest([1, 2, 3, 4, 5], n_train=80, n_test=20)
    assert r.mean == pytest.approx(3.0)
    assert r.se == pytest.approx(math.sqrt(1.125))
    assert r.t == pytest.approx(2.828427, abs=1e-5)
    assert r.df == 4
    assert (r.ci_low, r.ci_high) == (pytest.approx(0.055135, abs=1e-5), pytest.approx(5.944865, abs=1e-5))
    assert r.p == pytest.approx(0.047421, abs=1e-5)
    # the uncorrected standard error sqrt(s²/J) = sqrt(0.5) is narrower: the correction widens
    assert r.naive_se == pytest.approx(math.sqrt(0.5))
    assert r.se > r.naive_se


def test_corrected_ttest_widens_with_the_test_share_and_handles_constant_differences() -> None:
    d = np.random.default_rng(0).normal(0.01, 0.02, 30)
    narrow = corrected_resampled_ttest(d, n_train=900, n_test=100)
    wide = corrected_resampled_ttest(d, n_train=500, n_test=500)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low
    assert corrected_resampled_ttest([0.0, 0.0, 0.0], 9, 1).p == 1.0
    assert corrected_resampled_ttest([0.5, 0.5], 9, 1).p == 0.0
    with pytest.raises(InputError):
        corrected_resampled_ttest([1.0], 9, 1)
    with pytest.raises(InputError):
        corrected_resampled_ttest([1.0, float("nan")], 9, 1)


def test_seed_spread_is_the_sd_of_per_seed_means() -> None:
    s = seed_spread({0: [1.0, 3.0], 1: [4.0, 4.0], 2: [6.0, 8.0]})
    assert s.per_seed == {0: 2.0, 1: 4.0, 2: 7.0}
    assert s.sd == pytest.approx(np.std([2.0, 4.0, 7.0], ddof=1))
    assert (s.low, s.high) == (2.0, 7.0)
    assert math.isnan(seed_spread({3: [1.0]}).sd)


def _fake_cases(n: int, seed: int) -> list[SimpleNamespace]:
    rng = np.random.default_rng(seed)
    return [SimpleNamespace(fn_bmd=float(rng.normal(0.85, 0.13)), patient_id=f"P{i}", line=i + 2,
                            record=SimpleNamespace(values={"sex": "F" if rng.random() < 0.489 else "M"}))
            for i in range(n)]


def test_ten_folds_of_233_are_disjoint_and_stratified_on_sex_and_bmd() -> None:
    from bmd_edge.training.cv import make_folds

    cases = _fake_cases(233, 1)
    folds = make_folds(cases, 10, seed=3)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(233))  # every case tested exactly once
    bmd = np.array([c.fn_bmd for c in cases])
    female = np.array([c.record.values["sex"] == "F" for c in cases])
    low = bmd < np.median(bmd)
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert len(te) in (23, 24)
        # stratified: each fold's share of women and of below-median BMD within ±1 case of even
        assert abs(female[te].sum() - female.mean() * len(te)) <= 1.5
        assert abs(low[te].sum() - low.mean() * len(te)) <= 1.5
    other = make_folds(cases, 10, seed=4)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other))  # seeds differ


def test_paper_like_selection_matches_the_papers_age_range_and_sex_split() -> None:
    from bmd_edge.synth.cohort import sample_subject
    from bmd_edge.synth.paper_cohort import select_paper_indices

    idx = select_paper_indices(233, seed=77)
    assert len(idx) == len(set(idx)) == 233
    people = [sample_subject(np.random.default_rng([77, i]), i) for i in idx]
    assert all(71.6 <= p.age_xray <= 80.6 for p in people)
    assert sum(p.sex == "F" for p in people) == 114  # 48.9 % of 233
    with pytest.raises(InputError):
        select_paper_indices(10, seed=0, age_range=(200.0, 201.0), max_draws=100)
