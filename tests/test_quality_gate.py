"""Quality gate: every real hip/pelvis film passes; noise, blank, photo, MR are refused.

Whether a film shows a hip is the locator's job (tests/test_front_end.py), not this gate's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bmd_edge.errors import QualityGateError
from bmd_edge.image_io import read_image
from bmd_edge.runtime.quality_gate import check_quality, colour_fraction, evaluate, measure
from bmd_edge.warn import Warn

REAL = Path(__file__).resolve().parents[2] / "shared" / "realworld"
HIPS = sorted((REAL / "hip").glob("*.jpg"))


@pytest.mark.realworld
def test_realworld_folder_present() -> None:
    assert len(HIPS) == 12, f"expected the 12 real hip/pelvis JPEGs in {REAL / 'hip'}"


@pytest.mark.realworld
@pytest.mark.parametrize("path", HIPS, ids=lambda p: p.name)
def test_every_real_hip_film_passes(path: Path) -> None:
    report = check_quality(read_image(path))
    assert report.passed, report.failures
    assert report.warnings == ()


def _write(path: Path, img: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), img)
    return path


def test_random_noise_is_refused(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (300, 300), dtype=np.uint8)
    with pytest.raises(QualityGateError, match="noise"):
        check_quality(read_image(_write(tmp_path / "noise.png", noise)))


def test_colour_photo_is_refused(tmp_path: Path) -> None:
    # A smooth "sunset" photo: sky gradient blue→orange, green ground, a yellow sun.
    h, w = 240, 320
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = y / h
    bgr = np.stack([255 * (1 - t), 120 + 60 * t, 60 + 190 * t], -1)
    bgr[y > 0.7 * h] = (40, 160, 60)
    sun = (x - 220) ** 2 + (y - 80) ** 2 < 30 ** 2
    bgr[sun] = (40, 230, 250)
    rg = read_image(_write(tmp_path / "photo.jpg", bgr.astype(np.uint8)))
    assert colour_fraction(rg.warnings) > 0.9
    with pytest.raises(QualityGateError, match="colour image"):
        check_quality(rg)


def test_blank_and_flat_frames_are_refused(tmp_path: Path) -> None:
    flat = np.full((200, 200), 128, np.uint8)
    with pytest.raises(QualityGateError, match="blank"):
        check_quality(read_image(_write(tmp_path / "flat.png", flat)))
    # 16-bit film using only 5 % of the range with smooth structure: tiny dynamic range
    y, x = np.mgrid[0:200, 0:200].astype(np.float32)
    low = (30000 + 3000 * np.sin(x / 30) * np.cos(y / 40)).astype(np.uint16)
    with pytest.raises(QualityGateError, match="tiny dynamic range"):
        check_quality(read_image(_write(tmp_path / "low.png", low)))


def test_force_turns_a_refusal_into_a_warning() -> None:
    noise = np.random.default_rng(2).random((64, 64)).astype(np.float32)

    class Rg:  # a Radiograph-like object: the gate only reads .pixels and .warnings
        pixels = noise
        warnings: tuple[str, ...] = ()

    with pytest.raises(QualityGateError, match="noise"):
        check_quality(Rg())
    report = check_quality(Rg(), force=True)
    assert not report.passed and "noise" in report.warnings[0] and "--force" in report.warnings[0]


def test_wide_films_and_chest_layouts_are_not_the_gates_business() -> None:
    """The hand-set aspect-ratio and chest-layout checks are gone: the locator judges anatomy
    (a full-length film 6:1 wide reaches it; tests/test_front_end.py shows it refused)."""
    y, x = np.mgrid[0:64, 0:400].astype(np.float32)
    strip = np.clip(0.5 + 0.4 * np.sin(x / 40) * np.cos(y / 20), 0, 1).astype(np.float32)

    class Rg:
        pixels = strip
        warnings: tuple[str, ...] = ()

    assert check_quality(Rg()).passed
    assert set(measure(strip)) == {"range", "colour_fraction", "smoothness"}


def test_thresholds_hand_features() -> None:
    ok = {"range": 0.5, "colour_fraction": 0.03, "smoothness": 0.9}
    assert evaluate(ok) == []
    assert len(evaluate({**ok, "smoothness": 0.3, "colour_fraction": 0.5})) == 2
    note = "RGB converted to grayscale (colour in 3.54% of pixels)"
    assert colour_fraction((Warn("colour-converted", "image", "0.0354", note),)) == \
        pytest.approx(0.0354)
    assert colour_fraction((note,)) == 0.0  # the record is read, never the sentence
    # a smooth ramp is structure, not noise
    ramp = np.tile(np.linspace(0, 1, 100, dtype=np.float32), (80, 1))
    assert measure(ramp)["smoothness"] > 0.99


@pytest.mark.parametrize("view", ["hip", "pelvis"])
def test_synthetic_cohort_passes(tmp_path: Path, view: str) -> None:
    from bmd_edge.synth import generate_cohort

    manifest = generate_cohort(6, tmp_path / view, seed=11, size=128, dicom=False, view=view,
                               workers=1)
    images = sorted((Path(manifest).parent / "images").glob("*.png"))
    assert len(images) == 6
    for path in images:
        report = check_quality(read_image(path))
        assert report.passed, (path.name, report.failures)
