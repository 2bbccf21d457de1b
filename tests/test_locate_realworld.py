"""`predict` on real films, against hand marks (issue #15, real acceptance).

The marks (tests/data/realworld_heads.csv, made by eye; tests/data/README.md) and the policy
(README "Which films `predict` accepts"):
- every adult hip/pelvis film gives a result, and each marked head — except marks flagged
  `uncertain` — is among the result's located hips, on the same side of the film, within 10 %
  of the image width;
- paediatric and adolescent films (open growth plates) are refused: outside the intended use;
- of the real non-hip films, ≥ 90 % are refused; full-length spine films show the pelvis and
  are counted apart (benchmarks/locator_realworld.py reports them; not gated here).

Runs the real predict path (`Predictor.predict` on the file: read, DICOM evidence, locator,
refusal, per-hip BMD) with the shipped default bundle; a bundle without a hip locator fails.
$BMD_EDGE_TEST_BUNDLE may name another bundle folder (e.g. one built with
`python -m bmd_edge.locate.bundle_entry export RUN OUT` to check a retrained locator before it
ships; it is run unsigned). Per-film numbers: benchmarks/results/locator_realworld.md.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from bmd_edge.errors import InputError
from bmd_edge.image_io import read_image
from bmd_edge.locate.decode import LocateResult
from bmd_edge.locate.reference import check_heads, read_marks
from bmd_edge.runtime.predictor import Prediction, Predictor

pytestmark = pytest.mark.realworld

MARKS = read_marks(Path(__file__).parent / "data" / "realworld_heads.csv")
ADULT = sorted(f for f, ms in MARKS.items() if ms[0].age_group == "adult")
YOUNG = sorted(f for f, ms in MARKS.items() if ms[0].age_group != "adult")
TOLERANCE = 0.10
BUNDLE_ENV = "BMD_EDGE_TEST_BUNDLE"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """The shipped default bundle (or $BMD_EDGE_TEST_BUNDLE); it must carry a hip locator."""
    path = os.environ.get(BUNDLE_ENV)
    pred = Predictor.load(Path(path) if path else None, allow_unsigned=bool(path))
    if pred.locator is None:
        # Issue #15 is open until a default bundle ships a locator that meets this file; the
        # xfail is reported in every run, and it disappears the day the locator ships.
        pytest.xfail(f"bundle {pred.bundle.root} has no hip locator yet (issue #15 open): "
                     "predict neither finds hips nor refuses non-hip films")
    return pred


def _refusal(predictor: Predictor, path: Path) -> tuple[str | None, Prediction | None]:
    """(the one-line refusal or None, the Prediction when there was one)."""
    try:
        return None, predictor.predict(path, age=70, sex="F")
    except InputError as err:
        return str(err), None


def test_the_marks_cover_every_real_hip_film(realworld_dir: Path) -> None:
    films = {f"{d}/{p.name}" for d in ("hip", "hip_extra") for p in (realworld_dir / d).glob("*.jpg")}
    assert films <= set(MARKS), f"films without marks: {sorted(films - set(MARKS))}"
    assert len(ADULT) >= 8 and len(YOUNG) >= 18


@pytest.mark.parametrize("film", ADULT)
def test_adult_film_gives_a_result_with_its_marked_heads_found(
        film: str, predictor: Predictor, realworld_dir: Path) -> None:
    refused, pred = _refusal(predictor, realworld_dir / film)
    assert refused is None, f"{film} refused: {refused}"
    h, w = read_image(realworld_dir / film).pixels.shape
    assert pred is not None
    located = LocateResult(pred.hip_film_score or 0.0,
                           tuple(hp.found for hp in pred.hips if hp.found is not None))
    problems = []
    for chk in check_heads(located, MARKS[film], w, h):
        if chk.mark.quality == "uncertain" or chk.within(TOLERANCE):
            continue
        where = ("not found" if chk.error_frac is None
                 else f"found {100 * chk.error_frac:.1f} % of the width away")
        problems.append(f"{chk.mark.side_in_image} head ({chk.mark.quality} mark) {where}")
    assert not problems, f"{film}: " + "; ".join(problems)


@pytest.mark.parametrize("film", YOUNG)
def test_paediatric_film_is_refused_as_outside_intended_use(
        film: str, predictor: Predictor, realworld_dir: Path) -> None:
    refused, pred = _refusal(predictor, realworld_dir / film)
    score = None if pred is None else pred.hip_film_score
    assert refused is not None, (
        f"{film} ({MARKS[film][0].age_group}) got a BMD: hip-film score {score}")
    assert "\n" not in refused


def test_nonhip_films_are_refused(predictor: Predictor, realworld_dir: Path) -> None:
    with (realworld_dir / "nonhip" / "labels.csv").open() as fh:
        films = [r["file"] for r in csv.DictReader(fh) if r["body_part"] != "spine"]
    accepted = [f for f in films if _refusal(predictor, realworld_dir / "nonhip" / f)[0] is None]
    assert len(films) >= 60
    assert len(accepted) <= 0.10 * len(films), (
        f"{len(accepted)}/{len(films)} non-hip films got a BMD: {accepted}")
