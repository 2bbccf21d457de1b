"""Clinical schema: parsing, unit hints, BMI derivation, encoding and the stored-schema round trip."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from bmd_edge.errors import BundleError, MetadataError
from bmd_edge.schema import (
    FIELD_NAMES,
    FIELDS,
    ClinicalRecord,
    encode,
    encode_from_dict,
    encode_many,
    parse_record,
    schema_to_dict,
)

FULL = {"age_xray": 75, "age_bmd": 75.5, "sex": "F", "height_cm": 160, "weight_kg": 64,
        "bmi": 25.0, "alcohol_units_week": 6, "activity_score": 7, "diet_score": 3,
        "smoking": "former"}


def test_field_order_is_the_contract() -> None:
    assert FIELD_NAMES == ("age_xray", "age_bmd", "sex", "height_cm", "weight_kg", "bmi",
                           "alcohol_units_week", "activity_score", "diet_score", "smoking")
    assert all(f.std > 0 and f.low < f.high for f in FIELDS)


def test_full_record_encodes_by_hand() -> None:
    values, present = encode(parse_record(FULL))
    # (75-75)/8, (75.5-75)/8, F=1 → (1-.5)/.5, (160-165)/10, (64-75)/15, (25-27)/4.5,
    # (6-6)/8, (7-5)/2, (3-5)/2, former=1 → (1-1)/1
    expected = [0.0, 0.0625, 1.0, -0.5, -11 / 15, -2 / 4.5, 0.0, 1.0, -1.0, 0.0]
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)
    assert values.dtype == np.float32 and present.dtype == np.float32
    assert present.tolist() == [1.0] * 10


def test_missing_fields_give_zero_and_mask() -> None:
    values, present = encode(parse_record({"age_xray": 83, "sex": "male"}))
    assert present.tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert values[0] == pytest.approx(1.0)       # (83-75)/8
    assert values[2] == pytest.approx(-1.0)      # M = code 0 → (0-.5)/.5
    assert values[[1, 3, 4, 5, 6, 7, 8, 9]].tolist() == [0.0] * 8


@pytest.mark.parametrize("raw", ["70", " 70 ", "70.0", 70, 70.0, np.float32(70)])
def test_numeric_strings_and_numbers_are_accepted(raw: object) -> None:
    assert parse_record({"age_xray": raw})["age_xray"] == 70.0


def test_empty_string_and_none_mean_missing() -> None:
    rec = parse_record({"age_xray": "", "height_cm": None, "sex": "  "})
    assert rec.present() == ()


@pytest.mark.parametrize("spelling,expected", [("f", "F"), ("Female", "F"), ("MALE", "M"),
                                               (" m ", "M")])
def test_sex_spellings(spelling: str, expected: str) -> None:
    assert parse_record({"sex": spelling})["sex"] == expected


def test_smoking_codes() -> None:
    codes = [encode(parse_record({"smoking": s}))[0][9] for s in ("never", "Former", "CURRENT")]
    assert codes == [-1.0, 0.0, 1.0]


def test_bmi_is_derived_from_height_and_weight() -> None:
    rec = parse_record({"height_cm": "170", "weight_kg": "72.25"})
    assert rec["bmi"] == pytest.approx(72.25 / 1.7**2)
    assert rec.derived == ("bmi",)


def test_bmi_within_rounding_is_kept() -> None:
    rec = parse_record({"height_cm": 170, "weight_kg": 72.25, "bmi": 25.5})  # true 25.0
    assert rec["bmi"] == 25.5 and rec.derived == ()


def test_inconsistent_bmi_names_all_three_values() -> None:
    with pytest.raises(MetadataError) as err:
        parse_record({"height_cm": 170, "weight_kg": 72.25, "bmi": 27})
    msg = str(err.value)
    assert "bmi = 27" in msg and "height_cm = 170" in msg and "weight_kg = 72.25" in msg
    assert "25.0" in msg


def test_derived_bmi_out_of_range_is_an_error() -> None:
    with pytest.raises(MetadataError, match="give BMI 88.9"):
        parse_record({"height_cm": 150, "weight_kg": 200})


@pytest.mark.parametrize("raw,needles", [
    ({"height_cm": 1.7}, ["height_cm = 1.7", "120 to 220 cm", "looks like metres", "e.g. 170"]),
    ({"height_cm": 67}, ["looks like inches"]),
    ({"height_cm": 1700}, ["looks like millimetres"]),
    ({"weight_kg": 70000}, ["weight_kg = 70000", "30 to 250 kg", "looks like grams"]),
    ({"weight_kg": 330}, ["looks like pounds"]),
    ({"age_xray": 150}, ["age_xray = 150", "18 to 110 years", "implausible"]),
    ({"age_bmd": 9}, ["adults"]),
    ({"activity_score": 55}, ["0-100 score"]),
    ({"bmi": 8}, ["bmi = 8", "12 to 70 kg/m2"]),
])
def test_implausible_values_name_field_value_range_and_hint(raw: dict, needles: list) -> None:
    with pytest.raises(MetadataError) as err:
        parse_record(raw)
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("value,needle", [
    (float("nan"), "not a finite number"), ("inf", "not a finite number"),
    (-3, "negative"), ("abc", "not a number"), ("70 kg", "not a number"),
    (True, "bool"), ([70], "list"),
])
def test_malformed_numbers(value: object, needle: str) -> None:
    with pytest.raises(MetadataError, match=needle) as err:
        parse_record({"weight_kg": value})
    assert "weight_kg" in str(err.value)


def test_bad_category_lists_accepted_spellings() -> None:
    with pytest.raises(MetadataError, match="smoking = 'sometimes'.*current, ex, former, never"):
        parse_record({"smoking": "sometimes"})
    with pytest.raises(MetadataError, match="sex = 1"):
        parse_record({"sex": 1})


def test_unknown_field_lists_accepted_names() -> None:
    with pytest.raises(MetadataError, match="unknown clinical field 'shoe_size'.*age_xray"):
        parse_record({"shoe_size": 42})


def test_short_key_aliases_and_case() -> None:
    rec = parse_record({"age": 70, " Height ": 170, "WEIGHT": 70})
    assert rec["age_xray"] == 70 and rec["height_cm"] == 170 and rec["weight_kg"] == 70
    with pytest.raises(MetadataError, match="given twice"):
        parse_record({"age": 70, "age_xray": 71})


def test_age_gap_over_five_years() -> None:
    parse_record({"age_xray": 70, "age_bmd": 75})  # exactly 5: fine
    with pytest.raises(MetadataError, match="age_xray = 70 and age_bmd = 76 are 6 years apart"):
        parse_record({"age_xray": 70, "age_bmd": 76})


def test_record_is_read_only_and_picklable() -> None:
    rec = parse_record(FULL)
    with pytest.raises(TypeError):
        rec.values["age_xray"] = 1.0  # type: ignore[index]
    again = pickle.loads(pickle.dumps(parse_record({"height_cm": 170, "weight_kg": 72.25})))
    assert again.derived == ("bmi",) and again["bmi"] == pytest.approx(25.0)
    with pytest.raises(TypeError):
        again.values["bmi"] = 1.0  # type: ignore[index]
    direct = ClinicalRecord(values={n: None for n in FIELD_NAMES})
    with pytest.raises(TypeError):
        direct.values["sex"] = "F"  # type: ignore[index]


def test_decimal_comma_gets_a_tip() -> None:
    with pytest.raises(MetadataError, match="decimal separator"):
        parse_record({"weight_kg": "70,5"})


def test_schema_dict_is_json_and_reencodes_identically() -> None:
    stored = json.loads(json.dumps(schema_to_dict()))
    assert stored["names"] == list(FIELD_NAMES)
    assert stored["fields"][2]["codes"] == {"M": 0, "F": 1}
    assert stored["fields"][3]["unit"] == "cm" and stored["fields"][3]["low"] == 120
    rec = parse_record(FULL)
    for a, b in zip(encode(rec), encode_from_dict(stored, rec)):
        np.testing.assert_array_equal(a, b)


def test_stored_schema_normalisation_is_used() -> None:
    stored = schema_to_dict()
    stored["fields"][0]["mean"], stored["fields"][0]["std"] = 70.0, 5.0
    values, _ = encode(parse_record({"age_xray": 80}), schema=stored)
    assert values[0] == pytest.approx(2.0)


def test_malformed_stored_schema_is_a_bundle_error() -> None:
    stored = schema_to_dict()
    del stored["fields"][1]["std"]
    with pytest.raises(BundleError, match="malformed"):
        encode(parse_record(FULL), schema=stored)
    with pytest.raises(BundleError, match="format"):
        encode(parse_record(FULL), schema={**schema_to_dict(), "format": "other/9"})


def test_field_missing_from_model_schema_is_refused() -> None:
    stored = schema_to_dict()
    stored["fields"] = stored["fields"][:9]          # a model without smoking
    values, present = encode(parse_record({"age_xray": 75}), schema=stored)
    assert values.shape == (9,) and present.sum() == 1
    with pytest.raises(MetadataError, match="does not use clinical field.*smoking"):
        encode(parse_record({"smoking": "never"}), schema=stored)


def test_encode_many_stacks() -> None:
    values, present = encode_many([parse_record(FULL), parse_record({"sex": "M"})])
    assert values.shape == present.shape == (2, 10)
    assert present[1].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert encode_many([])[0].shape == (0, 10)


def test_record_built_directly_encodes() -> None:
    rec = ClinicalRecord(values={n: None for n in FIELD_NAMES} | {"bmi": 31.5})
    values, present = encode(rec)
    assert math.isclose(values[5], 1.0) and present.sum() == 1


# --- issue #12: an explicit empty value is an error, values are echoed short -------------------


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sex", "", r"sex is empty; give one of f, female, m, male, or leave it out"),
    ("sex", "  ", r"sex is blank"),
    ("age", "", r"age_xray is empty; give a number in 18 to 110 years"),
    ("smoking", "\t", r"smoking is blank"),
    ("age", [70], r"age_xray = \[70\] is a list"),
    ("age", "abc", r"age_xray = 'abc' is not a number"),
    ("age", np.array(["70"]), r"age_xray = .* is a ndarray"),
    ("height", "F" * 100_000, r"height_cm = 'F{120}… \(100,000 characters\)' is not a number"),
])
def test_parse_value_refuses_explicit_blanks_and_misuse(key: str, value: object,
                                                         message: str) -> None:
    from bmd_edge.schema import parse_value

    with pytest.raises(MetadataError, match=message) as info:
        parse_value(key, value)
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)


def test_parse_value_accepts_what_parse_record_accepts() -> None:
    from bmd_edge.schema import parse_value

    assert parse_value("age", " 70 ") == 70.0 and parse_value("sex", "female") == "F"
    assert parse_value("smoking", "Ex") == "former"
    with pytest.raises(MetadataError, match="unknown clinical field 'x{120}…"):
        parse_value("x" * 5000, 1)
