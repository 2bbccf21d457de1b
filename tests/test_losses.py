"""Weighted Smooth L1: weights and loss values checked against numbers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bmd_edge.errors import InputError
from bmd_edge.model.losses import WeightedSmoothL1Loss

LABELS = np.array([0.7, 0.9, 1.1])  # g/cm2; symmetric around 0.9, one below the 0.899 threshold


def hand_weights(train: np.ndarray, at: np.ndarray, *, alpha: float, emphasis: float,
                 clip: tuple[float, float], threshold: float = 0.899) -> np.ndarray:
    """The documented recipe written out with numpy, independent of the implementation."""
    n = len(train)
    h = np.std(train, ddof=1) * n ** (-1 / 5)

    def kde(x: np.ndarray) -> np.ndarray:
        z = (x[:, None] - train[None, :]) / h
        return np.exp(-0.5 * z**2).sum(axis=1) / (n * h * math.sqrt(2 * math.pi))

    mean_d = kde(train).mean()

    def raw(x: np.ndarray) -> np.ndarray:
        r = np.clip((kde(x) / mean_d) ** -alpha, *clip)
        return r * np.where(x < threshold, 1 + emphasis, 1.0)

    return raw(at) / raw(train).mean()


def test_kde_numbers_by_hand() -> None:
    loss = WeightedSmoothL1Loss(alpha=0.5, low_emphasis=1.0).fit(LABELS)
    # Scott's rule: h = SD * n^(-1/5) = 0.2 * 3^(-0.2)
    h = 0.2 * 3 ** (-0.2)
    assert float(loss.bandwidth) == pytest.approx(h, rel=1e-12)
    # density at 0.9: (1 + 2 exp(-0.5 (0.2/h)^2)) / (3 h sqrt(2 pi))
    e = math.exp(-0.5 * (0.2 / h) ** 2)
    e2 = math.exp(-0.5 * (0.4 / h) ** 2)
    d_mid = (1 + 2 * e) / (3 * h * math.sqrt(2 * math.pi))
    d_end = (1 + e + e2) / (3 * h * math.sqrt(2 * math.pi))
    dens = loss.density(torch.tensor(LABELS)).numpy()
    np.testing.assert_allclose(dens, [d_end, d_mid, d_end], rtol=1e-12)
    # weights: inverse sqrt of relative density, x2 below 0.899, normalised to mean 1
    mean_d = (2 * d_end + d_mid) / 3
    raw = np.array([2 * (d_end / mean_d) ** -0.5, (d_mid / mean_d) ** -0.5, (d_end / mean_d) ** -0.5])
    expected = raw / raw.mean()
    w = loss.weights(torch.tensor(LABELS)).numpy()
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert w.mean() == pytest.approx(1.0, abs=1e-12)
    assert w[0] / w[2] == pytest.approx(2.0, rel=1e-12)  # same density, 1 + low_emphasis
    assert w[1] < w[2]  # the crowded middle label counts least


def test_bandwidth_matches_scipy_gaussian_kde() -> None:
    from scipy import stats  # scipy comes with scikit-learn ([train] extra)
    rng = np.random.default_rng(0)
    train = rng.normal(0.85, 0.14, size=40)
    loss = WeightedSmoothL1Loss().fit(train)
    grid = np.linspace(0.5, 1.2, 7)
    np.testing.assert_allclose(loss.density(torch.tensor(grid)).numpy(),
                               stats.gaussian_kde(train)(grid), rtol=1e-10)


def test_weights_for_unseen_labels_and_clipping() -> None:
    rng = np.random.default_rng(1)
    train = np.concatenate([rng.normal(0.9, 0.05, 50), [0.55]])  # one far outlier
    clip = (0.5, 3.0)
    loss = WeightedSmoothL1Loss(alpha=1.0, low_emphasis=0.5, clip=clip).fit(train)
    at = np.array([0.55, 0.8, 0.9, 1.0, 1.4])
    expected = hand_weights(train, at, alpha=1.0, emphasis=0.5, clip=clip)
    got = loss.weights(torch.tensor(at)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # the outlier's inverse density is huge; the clip caps it at 3 (x1.5 emphasis) before normalising
    norm = float(loss.norm)
    assert got[0] == pytest.approx(3.0 * 1.5 * norm, rel=1e-10)
    # the same label gets the same weight whatever batch it is in
    again = loss.weights(torch.tensor([1.0, 0.9], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(again, got[[3, 2]], rtol=0, atol=0)


def test_smooth_l1_piecewise_values_with_unit_weights() -> None:
    # alpha=0 and no emphasis: every weight is exactly 1, so this is plain Smooth L1
    loss = WeightedSmoothL1Loss(beta=0.05, alpha=0.0, low_emphasis=0.0).fit(LABELS)
    target = torch.tensor([0.9, 1.0])
    small = loss(torch.tensor([0.91, 1.0]), target)  # |d| = 0.01 < beta: 0.5 d^2 / beta
    assert small.item() == pytest.approx((0.5 * 0.01**2 / 0.05 + 0.0) / 2, rel=1e-5)
    large = loss(torch.tensor([0.9, 1.2]), target)  # |d| = 0.2 > beta: |d| - beta / 2
    assert large.item() == pytest.approx((0.0 + 0.2 - 0.025) / 2, rel=1e-5)


def test_weighted_loss_value_by_hand() -> None:
    loss = WeightedSmoothL1Loss(beta=0.05, alpha=0.5, low_emphasis=1.0).fit(LABELS)
    target = np.array([0.7, 0.9, 1.1])
    pred = np.array([0.8, 0.92, 1.1])  # errors 0.1 (linear part), 0.02 (quadratic part), 0
    w = hand_weights(LABELS, target, alpha=0.5, emphasis=1.0, clip=(0.1, 10.0))
    per = np.array([0.1 - 0.025, 0.5 * 0.02**2 / 0.05, 0.0])
    value = loss(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    assert value.item() == pytest.approx(float((w * per).mean()), rel=1e-5)


def test_gradient_reaches_predictions_and_low_bmd_errors_cost_more() -> None:
    loss = WeightedSmoothL1Loss(beta=0.05).fit(LABELS)
    pred = torch.tensor([0.8, 1.2], requires_grad=True)  # same error 0.1 for a low and a high label
    value = loss(pred, torch.tensor([0.7, 1.1]))
    value.backward()
    assert pred.grad is not None
    assert pred.grad[0].item() == pytest.approx(2 * pred.grad[1].item(), rel=1e-5)


def test_misuse_fails_with_clear_errors() -> None:
    with pytest.raises(InputError, match="fit"):
        WeightedSmoothL1Loss()(torch.zeros(2), torch.zeros(2))
    with pytest.raises(InputError, match="beta"):
        WeightedSmoothL1Loss(beta=0.0)
    with pytest.raises(InputError, match=">= 2 finite"):
        WeightedSmoothL1Loss().fit([0.8])
    with pytest.raises(InputError, match="non-finite"):
        WeightedSmoothL1Loss().fit([0.8, float("nan"), 0.9])
    with pytest.raises(InputError, match="bandwidth"):
        WeightedSmoothL1Loss().fit([0.8, 0.8, 0.8])
    fitted = WeightedSmoothL1Loss(bandwidth=0.05).fit([0.8, 0.8, 0.8])  # explicit h is fine
    assert fitted.weights(torch.tensor([0.8])).item() == pytest.approx(1.0)
    with pytest.raises(InputError, match="shape"):
        fitted(torch.zeros(3), torch.zeros(2))
