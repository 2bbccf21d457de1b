"""The shipped hip locator on real films, against hand marks (issue #15, real acceptance).

The marks (tests/data/realworld_heads.csv, made by eye; tests/data/README.md) and the policy
(README "Which films predict accepts"):
- every adult hip/pelvis film is accepted and each marked head — except marks flagged
  `uncertain` — is found on the same side of the film within 10 % of the image width;
- paediatric and adolescent films (open growth plates) are refused: outside the intended use;
- of the real non-hip films, ≥ 90 % are refused; full-length spine films show the pelvis and
  are counted apart (reported by benchmarks/locator_realworld.py, not gated here).

Runs the locator the default bundle ships (its file and thresholds). $BMD_EDGE_TEST_LOCATOR may
name a locator file (threshold from metrics.json beside it) or a bundle folder instead, to
check a retrained locator before it is bundled. Per-film numbers: benchmarks/results/
locator_realworld.md.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from bmd_edge.image_io import read_image
from bmd_edge.locate.reference import check_heads, read_marks
from bmd_edge.locate.source import LocatorSource, resolve

pytestmark = pytest.mark.realworld

MARKS = read_marks(Path(__file__).parent / "data" / "realworld_heads.csv")
ADULT = sorted(f for f, ms in MARKS.items() if ms[0].age_group == "adult")
YOUNG = sorted(f for f, ms in MARKS.items() if ms[0].age_group != "adult")
TOLERANCE = 0.10
LOCATOR_ENV = "BMD_EDGE_TEST_LOCATOR"


@pytest.fixture(scope="module")
def shipped() -> LocatorSource:
    """The default bundle's locator (BundleError — a failure — when it ships none)."""
    path = os.environ.get(LOCATOR_ENV)
    return resolve(Path(path) if path else None)


def test_the_marks_cover_every_real_hip_film(realworld_dir: Path) -> None:
    films = {f"{d}/{p.name}" for d in ("hip", "hip_extra") for p in (realworld_dir / d).glob("*.jpg")}
    assert films <= set(MARKS), f"films without marks: {sorted(films - set(MARKS))}"
    assert len(ADULT) >= 8 and len(YOUNG) >= 18


@pytest.mark.parametrize("film", ADULT)
def test_adult_film_is_accepted_with_its_marked_heads_found(
        film: str, shipped: LocatorSource, realworld_dir: Path) -> None:
    pixels = read_image(realworld_dir / film).pixels
    res = shipped.locator.locate(pixels)
    problems = []
    if res.is_hip_score < shipped.hip_threshold:
        problems.append(f"refused: hip score {res.is_hip_score:.3f} < {shipped.hip_threshold:.3f}")
    for chk in check_heads(res, MARKS[film], pixels.shape[1], pixels.shape[0]):
        if chk.mark.quality == "uncertain" or chk.within(TOLERANCE):
            continue
        where = ("not found" if chk.error_frac is None
                 else f"found {100 * chk.error_frac:.1f} % of the width away")
        problems.append(f"{chk.mark.side_in_image} head ({chk.mark.quality} mark) {where}")
    assert not problems, f"{film} with {shipped.label}: " + "; ".join(problems)


@pytest.mark.parametrize("film", YOUNG)
def test_paediatric_film_is_refused_as_outside_intended_use(
        film: str, shipped: LocatorSource, realworld_dir: Path) -> None:
    res = shipped.locator.locate(read_image(realworld_dir / film).pixels)
    assert res.is_hip_score < shipped.hip_threshold, (
        f"{film} ({MARKS[film][0].age_group}) accepted: hip score {res.is_hip_score:.3f} >= "
        f"{shipped.hip_threshold:.3f} with {shipped.label}")


def test_nonhip_films_are_refused(shipped: LocatorSource, realworld_dir: Path) -> None:
    with (realworld_dir / "nonhip" / "labels.csv").open() as fh:
        films = [r["file"] for r in csv.DictReader(fh) if r["body_part"] != "spine"]
    accepted = [f for f in films if shipped.locator.locate(
        read_image(realworld_dir / "nonhip" / f).pixels).is_hip_score >= shipped.hip_threshold]
    assert len(films) >= 60
    assert len(accepted) <= 0.10 * len(films), (
        f"{len(accepted)}/{len(films)} non-hip films accepted with {shipped.label}: {accepted}")
