"""Reference tables: hand-computed T/Z-scores, WHO cut-offs and the 0.899 g/cm² threshold."""

from __future__ import annotations

import json

import pytest

from bmd_edge import references as R
from bmd_edge.errors import MetadataError


def test_t_reference_converted_to_lunar() -> None:
    refs = R.default_references()
    # 1.158 * 0.858 + 0.045 = 1.038564 ; 1.158 * 0.120 = 0.13896
    assert refs["t_score"]["mean_gcm2"] == pytest.approx(1.0386, abs=1e-4)
    assert refs["t_score"]["sd_gcm2"] == pytest.approx(0.1390, abs=1e-4)
    assert "Looker" in refs["t_score"]["source"] and "1.158" in refs["t_score"]["conversion"]


def test_screening_threshold_is_t_minus_one() -> None:
    assert R.t_score(0.899) == pytest.approx(-1.0, abs=0.01)
    assert R.t_score(0.691) == pytest.approx(-2.5, abs=0.01)
    assert R.bmd_at_t(-1.0) == pytest.approx(0.8996, abs=1e-4)
    # hand: (1.0 - 1.0386) / 0.1390 = -0.27770
    assert R.t_score(1.0) == pytest.approx(-0.27770, abs=1e-4)


@pytest.mark.parametrize(
    ("t", "category"),
    [(0.5, "normal"), (-1.0, "normal"), (-1.01, "osteopenia"), (-2.49, "osteopenia"),
     (-2.5, "osteoporosis"), (-4.0, "osteoporosis")],
)
def test_who_categories(t: float, category: str) -> None:
    assert R.who_category(t) == category


def test_z_score_uses_matching_decade_and_sex() -> None:
    # Women 70-79: Hologic 0.637 +/- 0.108 -> Lunar 1.158*0.637+0.045 = 0.782646, SD 0.125064
    row = R.z_band(75, "F")
    assert row["mean_gcm2"] == pytest.approx(0.7826, abs=1e-4)
    assert R.z_score(0.7826, 75, "female") == pytest.approx(0.0, abs=1e-3)
    assert R.z_score(0.7826 - 0.1251, 79.9, "F") == pytest.approx(-1.0, abs=1e-3)
    # A man of 75 with the same BMD is further below his own reference.
    assert R.z_score(0.7826, 75, "M") < R.z_score(0.7826, 75, "F")
    # Decade boundaries: 80.0 belongs to the 80+ band.
    assert R.z_band(80.0, "F")["age_low"] == 80


def test_z_score_errors_name_the_problem() -> None:
    with pytest.raises(MetadataError, match="outside the Z-score reference"):
        R.z_score(0.8, 12, "F")
    with pytest.raises(MetadataError, match="sex 'X'"):
        R.z_score(0.8, 70, "X")


def test_tables_are_json_data_and_overridable() -> None:
    refs = json.loads(json.dumps(R.default_references()))
    refs["t_score"]["mean_gcm2"] = 1.0
    refs["t_score"]["sd_gcm2"] = 0.1
    assert R.t_score(0.9, refs) == pytest.approx(-1.0)
    R.validate_references(refs)
    # the defaults were not changed by editing the copy
    assert R.default_references()["t_score"]["mean_gcm2"] == pytest.approx(1.0386, abs=1e-4)
    del refs["z_score"]["bands"]["M"]
    with pytest.raises(MetadataError, match="reference table"):
        R.validate_references(refs)
