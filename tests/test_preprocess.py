"""Preprocessing: hand-computed crops, flips, windows and resize rules; spec round trip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmd_edge.errors import InputError
from bmd_edge.preprocess import PreprocessSpec, preprocess, select_side

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"
# Identity-like spec: full-range window, no normalisation, no flip — outputs read as windowed [0,1].
RAW = {"window_percentiles": (0.0, 100.0), "mean": 0.0, "std": 1.0, "canonical_side": None}
IMG_2x4 = np.arange(8, dtype=np.float32).reshape(2, 4)  # 2 rows, 4 columns


def test_letterbox_pads_rows_with_background() -> None:
    out = preprocess(IMG_2x4, PreprocessSpec(size=4, **RAW))
    assert out.shape == (1, 4, 4) and out.dtype == np.float32
    expected = np.zeros((4, 4), np.float32)
    expected[1:3] = IMG_2x4 / 7.0          # window 0..7, centred vertically
    np.testing.assert_allclose(out[0], expected, atol=1e-7)


def test_letterbox_pads_columns_and_normalises() -> None:
    spec = PreprocessSpec(size=4, window_percentiles=(0.0, 100.0), canonical_side=None)
    out = preprocess(IMG_2x4.T.copy(), spec)   # 4 rows, 2 columns
    expected = np.zeros((4, 4), np.float32)
    expected[:, 1:3] = IMG_2x4.T / 7.0
    np.testing.assert_allclose(out[0], (expected - 0.5) / 0.25, atol=1e-6)
    assert out[0, 0, 0] == -2.0            # background after (0 - 0.5) / 0.25


def test_letterbox_shrinks_with_area_averaging() -> None:
    img = np.array([[0, 2, 4, 4], [2, 4, 4, 4], [8, 8, 0, 0], [8, 8, 0, 0]], np.float32)
    out = preprocess(img, PreprocessSpec(size=2, **RAW))
    np.testing.assert_allclose(out[0], [[2 / 8, 4 / 8], [8 / 8, 0.0]], atol=1e-6)


def test_stretch_upscales_linearly() -> None:
    img = np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    out = preprocess(img, PreprocessSpec(size=4, resize="stretch", **RAW))
    # half-pixel centres: source rows -0.25, 0.25, 0.75, 1.25 → clamped 0, .25, .75, 1
    np.testing.assert_allclose(out[0][:, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    assert np.all(out[0] == out[0][:, :1])


def test_center_crop_cuts_the_long_side() -> None:
    out = preprocess(IMG_2x4, PreprocessSpec(size=2, resize="center-crop", **RAW))
    np.testing.assert_allclose(out[0], [[1 / 7, 2 / 7], [5 / 7, 6 / 7]], atol=1e-6)


def test_percentile_window_clips() -> None:
    img = np.arange(10, dtype=np.float32).reshape(2, 5)
    spec = PreprocessSpec(size=5, window_percentiles=(10, 90), mean=0.0, std=1.0,
                          canonical_side=None)
    out = preprocess(img, spec)[0]
    # np.percentile (linear) of 0..9: 10 % → 0.9, 90 % → 8.1; rows 0 and 4 and row 3 are padding
    expected = np.clip((img - 0.9) / 7.2, 0, 1)
    np.testing.assert_allclose(out[1:3], expected, atol=1e-6)
    assert out[1, 0] == 0.0 and out[2, 4] == 1.0 and out[1, 1] == pytest.approx(0.1 / 7.2)


def test_flat_image_is_all_background() -> None:
    out = preprocess(np.full((6, 6), 0.3, np.float32), PreprocessSpec(size=4, **RAW))
    assert np.all(out == 0.0)


def test_left_hip_is_flipped_to_canonical_right() -> None:
    spec = PreprocessSpec(size=4, **{**RAW, "canonical_side": "right"})
    right = preprocess(IMG_2x4, spec, side="right")
    left = preprocess(IMG_2x4, spec, side="left")
    np.testing.assert_array_equal(left[0], right[0][:, ::-1])
    np.testing.assert_array_equal(right, preprocess(IMG_2x4, spec))  # no side: no flip


@pytest.mark.parametrize("rule", ["letterbox", "stretch", "center-crop"])
@pytest.mark.parametrize("shape", [(37, 53), (40, 55), (31, 64), (200, 97)])
def test_flip_equals_flipping_the_input_first(rule: str, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = rng.random(shape, dtype=np.float32)
    spec = PreprocessSpec(size=16, resize=rule)
    flipped_first = preprocess(img[:, ::-1].copy(), spec)
    np.testing.assert_allclose(preprocess(img, spec, side="left"), flipped_first, atol=1e-5)


def test_select_side_crops_the_right_half_for_the_patients_right() -> None:
    pelvis = np.arange(16, dtype=np.float32).reshape(2, 8)
    np.testing.assert_array_equal(select_side(pelvis, "right"), [[1, 2], [9, 10]])
    np.testing.assert_array_equal(select_side(pelvis, "left"), [[5, 6], [13, 14]])
    tall = np.arange(24, dtype=np.float32).reshape(6, 4)   # halves 6x2: cut top and bottom
    np.testing.assert_array_equal(select_side(tall, "right"), [[8, 9], [12, 13]])


def test_select_implies_side_and_flips_left_hip() -> None:
    pelvis = np.zeros((4, 8), np.float32)
    pelvis[:, 4:] = np.arange(16, dtype=np.float32).reshape(4, 4)  # image right = patient left
    spec = PreprocessSpec(size=4, **{**RAW, "canonical_side": "right"})
    out = preprocess(pelvis, spec, select="left")[0]
    np.testing.assert_allclose(out, (np.arange(16).reshape(4, 4) / 15.0)[:, ::-1], atol=1e-6)


def test_integer_pixels_match_float_pixels() -> None:
    rng = np.random.default_rng(1)
    u16 = rng.integers(0, 65536, (40, 30), dtype=np.uint16)
    spec = PreprocessSpec(size=24)
    np.testing.assert_allclose(preprocess(u16, spec), preprocess(u16 / 65535.0, spec), atol=1e-4)


def test_large_image_window_uses_subsample_close_to_exact() -> None:
    img = np.tile(np.linspace(0, 1, 1000, dtype=np.float32), (1000, 1))
    img[:5, :5] = 50.0                      # a burned-in marker must not set the window
    out = preprocess(img, PreprocessSpec(size=50, window_percentiles=(1, 99), **{
        k: v for k, v in RAW.items() if k != "window_percentiles"}))[0]
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(out[25], np.clip((np.linspace(0, 1, 50) - 0.01) / 0.98, 0, 1),
                               atol=0.02)


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((4, 4, 3), np.float32), "2-D"), (np.zeros((1, 9), np.float32), "too small"),
    (np.array([[0, np.nan], [1, 2]], np.float32), "NaN"), ([[0, 1], [2, 3]], "2-D"),
    (np.zeros((4, 4), bool), "dtype"),
])
def test_bad_images_are_input_errors(bad: object, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        preprocess(bad, PreprocessSpec(size=4))  # type: ignore[arg-type]


def test_bad_side_names_accepted_values() -> None:
    with pytest.raises(InputError, match="side 'L' is invalid; accepted: left, right"):
        preprocess(IMG_2x4, PreprocessSpec(size=4), side="L")
    with pytest.raises(InputError, match="select 'both'"):
        preprocess(IMG_2x4, PreprocessSpec(size=4), select="both")


def test_spec_round_trip_through_json() -> None:
    spec = PreprocessSpec(size=64, resize="center-crop", window_percentiles=(1, 99), mean=0.4,
                          std=0.2, canonical_side="left")
    again = PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.window_percentiles == (1.0, 99.0)
    assert PreprocessSpec.from_dict({}) == PreprocessSpec()


@pytest.mark.parametrize("d,needle", [
    ({"resize": "pad"}, "resize rule 'pad' is unknown; accepted: letterbox, stretch, center-crop"),
    ({"size": 0}, "size 0"), ({"size": 2.5}, "size 2.5"),
    ({"window_percentiles": [99, 1]}, "low < high"), ({"window_percentiles": [1]}, "two numbers"),
    ({"std": 0}, "std > 0"), ({"canonical_side": "up"}, "canonical_side 'up'"),
    ({"sizes": 3}, "unknown key.*sizes.*accepted: size"),
])
def test_spec_validation(d: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        PreprocessSpec.from_dict(d)


@pytest.mark.realworld
def test_real_pelvis_radiograph() -> None:
    path = REALWORLD / "hip" / "normal-pelvis-ap.jpg"
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    spec = PreprocessSpec(size=64)
    a = preprocess(pixels, spec, select="right")
    b = preprocess(pixels, spec, select="left")
    assert a.shape == b.shape == (1, 64, 64) and np.isfinite(a).all()
    lo, hi = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    assert a.min() >= lo and a.max() <= hi
    assert a.std() > 0.5                       # real contrast survives the window
    # both hips of a normal pelvis, each flipped to look like a right hip, look alike
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.6
    np.testing.assert_array_equal(a, preprocess(pixels, spec, select="right"))  # deterministic


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 40), w=st.integers(2, 40), size=st.integers(2, 24),
       rule=st.sampled_from(["letterbox", "stretch", "center-crop"]),
       side=st.sampled_from([None, "left", "right"]), seed=st.integers(0, 2**16))
def test_any_image_gives_a_bounded_square(h: int, w: int, size: int, rule: str,
                                          side: str | None, seed: int) -> None:
    img = np.random.default_rng(seed).normal(size=(h, w)).astype(np.float32) * 1e3
    out = preprocess(img, PreprocessSpec(size=size, resize=rule), side=side)
    assert out.shape == (1, size, size) and out.dtype == np.float32
    assert out.min() >= -2.0 - 1e-6 and out.max() <= 2.0 + 1e-6   # (0|1 - 0.5) / 0.25
