"""The canonical femoral-neck crop: mirroring, rotating or rescaling a film leaves the crop alone."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from bmd_edge.errors import InputError
from bmd_edge.locate.crop import CanonicalCrop, CropSpec, canonical_crop, model_input
from bmd_edge.locate.landmark_hips import LandmarkHip, hips_from_landmarks
from bmd_edge.synth.writer import make_case

SPEC = CropSpec(size=64)


@pytest.fixture(scope="module")
def hip_film() -> tuple[np.ndarray, LandmarkHip]:
    img16, _subj, _oracle, marks = make_case(5, 0, 192, "hip")
    (hip,) = hips_from_landmarks(marks).values()
    return img16.astype(np.float32) / 65535.0, hip


@pytest.fixture(scope="module")
def pelvis_film() -> tuple[np.ndarray, dict[str, LandmarkHip]]:
    img16, _subj, _oracle, marks = make_case(5, 1, 192, "pelvis")
    return img16.astype(np.float32) / 65535.0, hips_from_landmarks(marks)


def _moved(hip: LandmarkHip, m: np.ndarray) -> LandmarkHip:
    """The same hip after the film went through the 2×3 affine `m` (radius scales with it); its
    shaft changes image side only when `m` mirrors."""
    def p(xy: tuple[float, float]) -> tuple[float, float]:
        v = m[:, :2] @ np.asarray(xy) + m[:, 2]
        return float(v[0]), float(v[1])
    k = math.sqrt(abs(np.linalg.det(m[:, :2])))
    other = {"left": "right", "right": "left"}[hip.side_in_image]
    side = other if np.linalg.det(m[:, :2]) < 0 else hip.side_in_image
    return LandmarkHip(hip.patient_side, side, p(hip.head_xy), hip.head_r * k, p(hip.neck_xy))


def _close(a: CanonicalCrop, b: CanonicalCrop, tol: float) -> None:
    """Same picture: mean absolute difference (where both lie on the film) under `tol` of the
    crop's intensity range, and a correlation that a shifted or turned crop would not reach."""
    both = np.isfinite(a.pixels) & np.isfinite(b.pixels)
    assert both.mean() > 0.8
    x, y = a.pixels[both], b.pixels[both]
    spread = float(np.percentile(x, 99) - np.percentile(x, 1))
    assert float(np.mean(np.abs(x - y))) < tol * spread
    assert float(np.corrcoef(x, y)[0, 1]) > 0.97


def test_mirrored_film_gives_the_same_crop(hip_film: tuple[np.ndarray, LandmarkHip]) -> None:
    film, hip = hip_film
    w = film.shape[1]
    flip = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]])
    mirrored_hip = _moved(hip, flip)
    assert mirrored_hip.side_in_image != hip.side_in_image
    a = canonical_crop(film, hip, SPEC)
    b = canonical_crop(np.ascontiguousarray(film[:, ::-1]), mirrored_hip, SPEC)
    assert a.mirrored != b.mirrored
    _close(a, b, 0.005)


@pytest.mark.parametrize("angle", [-30.0, 12.0, 40.0])
def test_rotated_film_gives_the_same_crop(hip_film: tuple[np.ndarray, LandmarkHip],
                                          angle: float) -> None:
    """Within ±45° of upright. (A film upside down is indistinguishable from a mirrored one by
    head and neck point alone; the side channel of the hip — the side its shaft runs to — decides,
    as the locator reports it for films within its trained ±15°.)"""
    film, hip = hip_film
    h, w = film.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    turned = cv2.warpAffine(film, m, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    _close(canonical_crop(film, hip, SPEC), canonical_crop(turned, _moved(hip, m), SPEC), 0.04)


@pytest.mark.parametrize("factor", [0.7, 2.5])
def test_rescaled_film_gives_the_same_crop(hip_film: tuple[np.ndarray, LandmarkHip],
                                           factor: float) -> None:
    """Magnification drops out: the crop is measured in head radii, not pixels."""
    film, hip = hip_film
    h, w = film.shape
    nw, nh = round(w * factor), round(h * factor)
    resized = cv2.resize(film, (nw, nh), interpolation=cv2.INTER_AREA if factor < 1
                         else cv2.INTER_LINEAR)
    fx, fy = nw / w, nh / h  # cv2.resize: x' = (x + ½)·f − ½
    m = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])
    _close(canonical_crop(film, hip, SPEC), canonical_crop(resized, _moved(hip, m), SPEC), 0.05)


def test_a_shifted_crop_is_told_apart(hip_film: tuple[np.ndarray, LandmarkHip]) -> None:
    """The tolerance above is tight enough to fail when the hip is misplaced by half a radius."""
    film, hip = hip_film
    off = LandmarkHip.of(hip.patient_side, (hip.head_xy[0] + 0.5 * hip.head_r, hip.head_xy[1]),
                         hip.head_r, (hip.neck_xy[0] + 0.5 * hip.head_r, hip.neck_xy[1]))
    with pytest.raises(AssertionError):
        _close(canonical_crop(film, hip, SPEC), canonical_crop(film, off, SPEC), 0.05)


def test_both_pelvis_hips_land_in_the_canonical_frame(
        pelvis_film: tuple[np.ndarray, dict[str, LandmarkHip]]) -> None:
    """Each hip of an AP pelvis: head at the same crop point, neck axis at the canonical angle,
    head radius = size / fov; the patient's left hip (shaft to the image-right) is mirrored."""
    film, hips = pelvis_film
    assert set(hips) == {"right", "left"}
    assert hips["right"].side_in_image == "left" and hips["left"].side_in_image == "right"
    heads = []
    for side, hip in hips.items():
        crop = canonical_crop(film, hip, SPEC)
        assert crop.mirrored == (side == "left")
        head, neck = crop.from_film(np.array([hip.head_xy, hip.neck_xy]))
        angle = math.degrees(math.atan2(neck[1] - head[1], neck[0] - head[0]))
        assert abs(angle - SPEC.neck_angle_deg) < 1e-6
        edge = crop.from_film(np.array(hip.head_xy) + np.array([hip.head_r, 0.0]))[0]
        assert np.hypot(*(edge - head)) == pytest.approx(SPEC.size / SPEC.fov_head_radii)
        heads.append(head)
        np.testing.assert_allclose(crop.to_film(crop.from_film(np.array([hip.neck_xy]))),
                                   [hip.neck_xy], atol=1e-9)
        corners = crop.film_corners()
        side_len = np.hypot(*(corners[1] - corners[0]))
        assert side_len == pytest.approx(SPEC.fov_head_radii * hip.head_r)
    np.testing.assert_allclose(heads[0], heads[1], atol=1e-9)


def test_model_input_windows_the_crop_and_blanks_what_lies_off_the_film() -> None:
    film = np.tile(np.linspace(0.0, 1.0, 40, dtype=np.float32), (40, 1))
    hip = LandmarkHip.of("right", (2.0, 2.0), 5.0, (-3.0, 8.0))  # near the corner: crop leaves it
    crop = canonical_crop(film, hip, SPEC)
    assert 0.2 < crop.outside_fraction < 0.95
    x = model_input(crop, SPEC)
    assert x.shape == (1, SPEC.size, SPEC.size) and x.dtype == np.float32
    off = np.isnan(crop.pixels)
    assert np.all(x[0][off] == pytest.approx(-SPEC.mean / SPEC.std))
    assert float(x.max()) == pytest.approx((1 - SPEC.mean) / SPEC.std)


def test_spec_round_trip_and_refusals() -> None:
    spec = CropSpec(size=96, fov_head_radii=5.0, interpolation="cubic")
    assert CropSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(InputError, match="unknown key"):
        CropSpec.from_dict({**spec.to_dict(), "zoom": 2})
    for bad in ({"size": 4}, {"fov_head_radii": 0.0}, {"side_in_image": "up"},
                {"interpolation": "nearest"}, {"window_percentiles": (50, 10)},
                {"neck_angle_deg": float("nan")}):
        with pytest.raises(InputError):
            CropSpec(**bad)  # type: ignore[arg-type]


def test_unusable_hip_or_film_is_refused(hip_film: tuple[np.ndarray, LandmarkHip]) -> None:
    film, hip = hip_film
    for bad in (LandmarkHip("right", "up", hip.head_xy, hip.head_r, hip.neck_xy),
                LandmarkHip("right", "left", hip.head_xy, 0.0, hip.neck_xy),
                LandmarkHip("right", "left", hip.head_xy, hip.head_r, hip.head_xy)):
        with pytest.raises(InputError):
            canonical_crop(film, bad, SPEC)
    with pytest.raises(InputError):
        canonical_crop(np.zeros((4, 4, 3)), hip, SPEC)
    nan_film = film.copy()
    nan_film[int(hip.head_xy[1]), int(hip.head_xy[0])] = np.nan
    with pytest.raises(InputError, match="NaN"):
        canonical_crop(nan_film, hip, SPEC)


def test_landmark_rows_give_each_hip_with_its_image_side() -> None:
    row = {"right_head_x": "50", "right_head_y": "40", "right_head_r": "10", "right_neck_x": "30",
           "right_neck_y": "60", "left_head_x": "", "left_head_y": ""}
    hips = hips_from_landmarks(row)
    assert list(hips) == ["right"] and hips["right"].side_in_image == "left"
    with pytest.raises(InputError, match="right_head_r"):
        hips_from_landmarks({**row, "right_head_r": "ten"})
