"""Image statistics for synthetic-vs-real checks: known inputs move each statistic the known way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bmd_edge.synth.image_stats import (
    FEATURES,
    SIDE,
    canonical,
    edge_rise,
    feature_vector,
    image_statistics,
    nps,
    otsu_contrast,
)


def _phantom(seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """A smooth 'body' with two bright 'bones' and a little noise, 512 px, uint16."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:512, 0:512] / 512.0
    body = 0.35 + 0.15 * np.cos(3 * (x - 0.5)) * np.cos(2 * (y - 0.5))
    bone = ((x - 0.35) ** 2 / 0.01 + (y - 0.5) ** 2 / 0.08 < 1) \
        | ((x - 0.7) ** 2 / 0.02 + (y - 0.45) ** 2 / 0.02 < 1)
    img = body + 0.35 * bone + noise * rng.standard_normal((512, 512))
    return (np.clip(img, 0, 1) * 65535).astype(np.uint16)


def test_canonical_size_range_and_8bit_levels() -> None:
    for img in (_phantom(), np.zeros((300, 700), np.uint8),
                np.dstack([np.full((40, 30), 200, np.uint8)] * 3)):
        v = canonical(img)
        assert v.shape == (SIDE, SIDE) and v.dtype == np.float32
        assert 0.0 <= v.min() <= v.max() <= 1.0
    # 8-bit and 16-bit versions of the same picture give the same statistics.
    a16 = _phantom()
    a8 = np.round(a16 / 257.0).astype(np.uint8)
    s16, s8 = feature_vector(a16), feature_vector(a8)
    assert np.allclose(s16, s8, atol=1e-2, equal_nan=True)
    # A colour (R = G = B) 8-bit JPEG-like array reads as the same grey image.
    assert np.allclose(feature_vector(np.dstack([a8] * 3)), s8, equal_nan=True)
    assert abs(image_statistics(np.dstack([a8] * 3))["p50"] - 0.5) < 0.2
    with pytest.raises(ValueError):
        canonical(np.zeros((5, 5)))


def test_percentiles_and_saturation_of_a_known_image() -> None:
    ramp = np.tile(np.linspace(0, 1, 1000), (1000, 1))
    s = image_statistics(ramp)
    assert s["p50"] == pytest.approx(0.5, abs=0.01)
    assert s["p05"] == pytest.approx(0.05, abs=0.01) and s["p95"] == pytest.approx(0.95, abs=0.01)
    half = np.zeros((256, 256))
    half[:, 128:] = 1.0
    s = image_statistics(half)
    assert s["sat_black"] == pytest.approx(0.5, abs=0.01)
    assert s["sat_white"] == pytest.approx(0.5, abs=0.01)


def test_blurring_lowers_sharpness() -> None:
    img = _phantom(noise=0.002).astype(np.float32) / 65535
    sharp = image_statistics(img)
    blurred = image_statistics(cv2.GaussianBlur(img, (0, 0), 4.0))
    assert blurred["edge_rise_px"] > sharp["edge_rise_px"] + 1.0
    assert blurred["grad_p99"] < sharp["grad_p99"]


def test_edge_rise_of_a_blurred_step_is_2_56_sigma() -> None:
    step = np.zeros((SIDE, SIDE), np.float32)
    step[:, SIDE // 2:] = 1.0
    for sigma in (1.5, 3.0):
        v = cv2.GaussianBlur(step, (0, 0), sigma)
        assert edge_rise(v) == pytest.approx(2.56 * sigma, rel=0.25)


def test_white_noise_flattens_the_nps_slope() -> None:
    rng = np.random.default_rng(1)
    smooth = cv2.GaussianBlur(rng.standard_normal((SIDE, SIDE)).astype(np.float32), (0, 0), 3)
    smooth = 0.5 + 0.05 * smooth / smooth.std()
    white = 0.5 + 0.05 * rng.standard_normal((SIDE, SIDE)).astype(np.float32)
    s_smooth, n_smooth = nps(smooth)
    s_white, _n_white = nps(white)
    assert s_smooth < -2.0 and abs(s_white) < 0.4
    s_mix, n_mix = nps(smooth + 0.01 * rng.standard_normal((SIDE, SIDE)).astype(np.float32))
    assert s_smooth < s_mix < s_white and n_mix > n_smooth


def test_otsu_contrast_of_two_levels() -> None:
    v = np.full((SIDE, SIDE), 0.3, np.float32)
    v[:, : SIDE // 4] = 0.7
    s = otsu_contrast(v)
    assert s["otsu_contrast"] == pytest.approx(0.4, abs=0.01)
    assert s["otsu_bright_fraction"] == pytest.approx(0.25, abs=0.01)
    low = v * 0.5 + 0.25
    assert otsu_contrast(low)["otsu_contrast"] < s["otsu_contrast"]


def test_feature_vector_order_and_finiteness() -> None:
    f = feature_vector(_phantom())
    assert f.shape == (len(FEATURES),) and np.isfinite(f).all()
