"""The clinical metadata schema: the ten fields the model reads beside the image.

One place says, for every field, its unit, the range we accept, how it is normalised and what a
wrong unit usually looks like. Training, the runtime and the manifest reader all go through
`parse_record` (validate once, fail with the bad value and what would be accepted) and `encode`
(the only function that turns facts into model inputs). `schema_to_dict` writes all of it into
checkpoints and bundles so another runtime re-encodes exactly as training did
(`encode(record, schema=bundle_schema)`).

Scales, chosen and documented here because the paper's cohort data are not public:
- ages in years; the model is for adults (18–110); X-ray and DXA must be ≤ 5 years apart (the
  paper's cohort had both within about a year; a larger gap means the BMD label is stale).
- alcohol in UK units per week (1 unit = 8 g ethanol).
- activity_score and diet_score on 0–10: a questionnaire score rescaled to 0 (least active /
  poorest diet) … 10 (most active / best diet). Rescale your instrument linearly onto 0–10.
- Normalisation means/SDs describe an older-adult cohort (about 60–90 years, both sexes),
  the population the paper and our synthetic cohort target.
- Categorical fields are coded, then normalised like continuous ones, so missing (0) sits at
  the centre: sex F=1, M=0 → (code−0.5)/0.5 gives F=+1, M=−1; smoking never=0, former=1,
  current=2 → (code−1)/1 gives −1, 0, +1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from bmd_edge.errors import BundleError, MetadataError, quoted

SCHEMA_FORMAT = "bmd-edge-schema/1"
MAX_AGE_GAP_YEARS = 5.0   # X-ray and DXA further apart than this: the label no longer fits
BMI_TOLERANCE = 0.6       # kg/m²; a stated BMI may differ this much from weight/height² (rounding)


@dataclass(frozen=True)
class ClinicalField:
    """One clinical fact: how to read it, check it and encode it."""

    name: str                      # the manifest column and the keyword argument
    unit: str                      # printed in every error so users know what to give
    kind: str                      # "continuous" | "categorical"
    low: float                     # lowest plausible value (categorical: lowest code)
    high: float                    # highest plausible value (categorical: highest code)
    mean: float                    # normalisation centre (older-adult cohort)
    std: float                     # normalisation scale; encoded = (value − mean) / std
    choices: tuple[str, ...] = ()  # categorical labels; index = code
    description: str = ""          # one line for --help and `info`
    # (low, high, hint): when an out-of-range value falls in [low, high], say what it looks like
    unit_hints: tuple[tuple[float, float, str], ...] = ()
    # accepted spellings (lower case) → canonical choice, for categorical fields
    aliases: Mapping[str, str] = field(default_factory=dict)


def _aliases(pairs: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(pairs)


_AGE_HINTS = ((110.0, 1e12, "implausible for a person's age in years"),
              (0.0, 18.0, "bmd-edge is for adults (18 years and over)"))

FIELDS: tuple[ClinicalField, ...] = (
    ClinicalField("age_xray", "years", "continuous", 18.0, 110.0, 75.0, 8.0,
                  description="age on the day of the radiograph", unit_hints=_AGE_HINTS),
    ClinicalField("age_bmd", "years", "continuous", 18.0, 110.0, 75.0, 8.0,
                  description="age on the day of the DXA scan", unit_hints=_AGE_HINTS),
    ClinicalField("sex", "F/M", "categorical", 0.0, 1.0, 0.5, 0.5, choices=("M", "F"),
                  description="sex (F or M; female/male accepted)",
                  aliases=_aliases({"f": "F", "female": "F", "m": "M", "male": "M"})),
    ClinicalField("height_cm", "cm", "continuous", 120.0, 220.0, 165.0, 10.0,
                  description="standing height",
                  unit_hints=((0.5, 2.5, "looks like metres; give centimetres, e.g. 170"),
                              (48.0, 84.0, "looks like inches; give centimetres (in x 2.54)"),
                              (1200.0, 2200.0, "looks like millimetres; give centimetres"))),
    ClinicalField("weight_kg", "kg", "continuous", 30.0, 250.0, 75.0, 15.0,
                  description="body weight",
                  unit_hints=((250.0, 550.0, "looks like pounds; give kilograms (lb x 0.4536)"),
                              (30000.0, 250000.0, "looks like grams; give kilograms"))),
    ClinicalField("bmi", "kg/m2", "continuous", 12.0, 70.0, 27.0, 4.5,
                  description="body-mass index; derived from height and weight when absent"),
    ClinicalField("alcohol_units_week", "UK units/week", "continuous", 0.0, 150.0, 6.0, 8.0,
                  description="alcohol, UK units per week (1 unit = 8 g ethanol)",
                  unit_hints=((150.0, 1e12, "implausible; give UK units per week, 1 unit = 8 g"),)),
    ClinicalField("activity_score", "score 0-10", "continuous", 0.0, 10.0, 5.0, 2.0,
                  description="physical activity, questionnaire score rescaled to 0-10",
                  unit_hints=((10.0, 100.0, "looks like a 0-100 score; divide by 10"),)),
    ClinicalField("diet_score", "score 0-10", "continuous", 0.0, 10.0, 5.0, 2.0,
                  description="diet quality, questionnaire score rescaled to 0-10",
                  unit_hints=((10.0, 100.0, "looks like a 0-100 score; divide by 10"),)),
    ClinicalField("smoking", "never/former/current", "categorical", 0.0, 2.0, 1.0, 1.0,
                  choices=("never", "former", "current"),
                  description="smoking status (never, former or current)",
                  aliases=_aliases({"never": "never", "former": "former", "ex": "former",
                                    "current": "current"})),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME: Mapping[str, ClinicalField] = MappingProxyType({f.name: f for f in FIELDS})
# Short spellings accepted as keys (CLI flags, runtime keyword arguments).
KEY_ALIASES: Mapping[str, str] = MappingProxyType({
    "age": "age_xray", "height": "height_cm", "weight": "weight_kg",
    "alcohol": "alcohol_units_week", "activity": "activity_score", "diet": "diet_score",
})


@dataclass(frozen=True)
class ClinicalRecord:
    """Validated clinical facts: every field name present, None where unknown."""

    values: Mapping[str, float | str | None]  # continuous → float, categorical → canonical choice
    derived: tuple[str, ...] = ()             # fields we computed (e.g. "bmi"), for warnings

    def __post_init__(self) -> None:
        # A read-only copy: a record once validated cannot be changed behind the encoder's back.
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "derived", tuple(self.derived))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # mappingproxy cannot be pickled; DataLoader workers and process pools need records.
        return (ClinicalRecord, (dict(self.values), self.derived))

    def __getitem__(self, name: str) -> float | str | None:
        return self.values[name]

    def present(self) -> tuple[str, ...]:
        """Names of the fields that have a value, in schema order."""
        return tuple(n for n in FIELD_NAMES if self.values.get(n) is not None)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _range_text(f: ClinicalField) -> str:
    return f"{_fmt(f.low)} to {_fmt(f.high)} {f.unit}"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _parse_number(f: ClinicalField, value: object) -> float:
    """A finite number inside the field's range, from a number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, np.number)):
        raise MetadataError(f"{f.name} = {quoted(value)} is a {type(value).__name__}; "
                            f"give a number in {_range_text(f)}", field=f.name)
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            tip = " (use a dot as the decimal separator)" if "," in value else ""
            raise MetadataError(f"{f.name} = {quoted(value)} is not a number; give a plain number "
                                f"in {_range_text(f)}{tip}", field=f.name) from None
    else:
        x = float(value)
    if not math.isfinite(x):
        raise MetadataError(f"{f.name} = {quoted(value)} is not a finite number; give a number in "
                            f"{_range_text(f)} or leave it empty if unknown", field=f.name)
    if x < 0:
        raise MetadataError(f"{f.name} = {_fmt(x)} is negative; accepted {_range_text(f)}",
                            field=f.name)
    if not f.low <= x <= f.high:
        hint = next((h for lo, hi, h in f.unit_hints if lo <= x <= hi), None)
        tail = f" ({hint})" if hint else ""
        raise MetadataError(f"{f.name} = {_fmt(x)} is outside the accepted range "
                            f"{_range_text(f)}{tail}", field=f.name)
    return x


def _parse_choice(f: ClinicalField, value: object) -> str:
    """A canonical choice label, from any accepted spelling (case-insensitive, trimmed)."""
    key = value.strip().lower() if isinstance(value, str) else None
    if key is None or key not in f.aliases:
        raise MetadataError(f"{f.name} = {quoted(value)} is not an accepted value; "
                            f"give one of {', '.join(sorted(f.aliases))}", field=f.name)
    return f.aliases[key]


def parse_value(key: str, value: object) -> float | str:
    """One clinical value given explicitly (a keyword argument, a command-line option): checked
    like `parse_record` checks it, except that an empty or blank string is an error, never
    "unknown" — `sex=""` from an unset variable must not run as "sex missing". None is for
    unknown. Raises MetadataError naming the field and what would be accepted."""
    f = FIELDS_BY_NAME[_canonical_key(key)]
    if isinstance(value, str) and not value.strip():
        raise MetadataError(f"{f.name} is {'empty' if not value else 'blank'}; give "
                            f"{_accepted_text(f)}, or leave it out (None) if unknown",
                            field=f.name)
    return _parse_choice(f, value) if f.kind == "categorical" else _parse_number(f, value)


def _accepted_text(f: ClinicalField) -> str:
    if f.kind == "categorical":
        return "one of " + ", ".join(sorted(f.aliases))
    return f"a number in {_range_text(f)}"


def _canonical_key(key: object) -> str:
    name = str(key).strip().lower()
    name = KEY_ALIASES.get(name, name)
    if name not in FIELDS_BY_NAME:
        raise MetadataError(f"unknown clinical field {quoted(key)}; accepted: "
                            f"{', '.join(FIELD_NAMES)}")
    return name


def parse_record(raw: Mapping[str, object]) -> ClinicalRecord:
    """Validate raw facts (numbers or strings; None/"" = unknown) into a ClinicalRecord.

    Raises MetadataError naming the field, the bad value and what would be accepted. BMI is
    derived from height and weight when absent, and checked against them when all three are given.
    """
    values: dict[str, float | str | None] = {n: None for n in FIELD_NAMES}
    seen: dict[str, object] = {}
    for key, value in raw.items():
        name = _canonical_key(key)
        if name in seen and not (_is_missing(value) or _is_missing(seen[name])):
            raise MetadataError(f"{name} given twice ({quoted(seen[name])} and "
                                f"{quoted(value)}); give it once", field=name)
        if name in seen and _is_missing(value):
            continue
        seen[name] = value
        if _is_missing(value):
            continue
        f = FIELDS_BY_NAME[name]
        values[name] = _parse_choice(f, value) if f.kind == "categorical" else _parse_number(f, value)

    derived: list[str] = []
    h, w, bmi = values["height_cm"], values["weight_kg"], values["bmi"]
    if isinstance(h, float) and isinstance(w, float):
        computed = w / (h / 100.0) ** 2
        if bmi is None:
            f = FIELDS_BY_NAME["bmi"]
            if not f.low <= computed <= f.high:
                raise MetadataError(f"height_cm = {_fmt(h)} and weight_kg = {_fmt(w)} give BMI "
                                    f"{computed:.1f}, outside {_range_text(f)}; check both",
                                    field="height_cm")
            values["bmi"] = computed
            derived.append("bmi")
        elif abs(float(bmi) - computed) > BMI_TOLERANCE:
            raise MetadataError(f"bmi = {_fmt(float(bmi))} does not match height_cm = {_fmt(h)} "
                                f"and weight_kg = {_fmt(w)} (weight/height^2 = {computed:.1f} "
                                f"kg/m2, tolerance {BMI_TOLERANCE}); fix one or leave bmi empty",
                                field="bmi")

    ax, ab = values["age_xray"], values["age_bmd"]
    if isinstance(ax, float) and isinstance(ab, float) and abs(ax - ab) > MAX_AGE_GAP_YEARS:
        raise MetadataError(f"age_xray = {_fmt(ax)} and age_bmd = {_fmt(ab)} are "
                            f"{abs(ax - ab):g} years apart; at most {_fmt(MAX_AGE_GAP_YEARS)} "
                            f"years accepted (the BMD must describe the bone on the X-ray)",
                            field="age_xray")
    return ClinicalRecord(values=values, derived=tuple(derived))


def schema_to_dict() -> dict[str, Any]:
    """Everything another runtime needs to re-encode a record, as JSON-able data."""
    return {
        "format": SCHEMA_FORMAT,
        "names": list(FIELD_NAMES),
        "max_age_gap_years": MAX_AGE_GAP_YEARS,
        "bmi_tolerance": BMI_TOLERANCE,
        "fields": [
            {"name": f.name, "unit": f.unit, "kind": f.kind, "low": f.low, "high": f.high,
             "mean": f.mean, "std": f.std, "choices": list(f.choices),
             "codes": {c: i for i, c in enumerate(f.choices)},
             "description": f.description,
             "unit_hints": [[lo, hi, h] for lo, hi, h in f.unit_hints],
             "aliases": dict(f.aliases)}
            for f in FIELDS
        ],
        "encoding": "continuous: (value - mean) / std; categorical: (code - mean) / std with "
                    "code = index in choices; missing: value 0 and present 0",
    }


def _encoding_table(schema: Mapping[str, Any] | None) -> list[tuple[str, str, float, float,
                                                                    Sequence[str]]]:
    """(name, kind, mean, std, choices) per field, from this module or a stored schema dict."""
    if schema is None:
        return [(f.name, f.kind, f.mean, f.std, f.choices) for f in FIELDS]
    try:
        if schema["format"] != SCHEMA_FORMAT:
            raise BundleError(f"schema format {schema['format']!r} is not supported; "
                              f"expected {SCHEMA_FORMAT!r}")
        table = [(str(d["name"]), str(d["kind"]), float(d["mean"]), float(d["std"]),
                  tuple(str(c) for c in d["choices"])) for d in schema["fields"]]
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"stored clinical schema is malformed ({type(err).__name__}: {err}); "
                          f"expected the dict written by schema_to_dict()") from None
    for name, kind, _mean, std, _choices in table:
        if kind not in ("continuous", "categorical") or not std > 0:
            raise BundleError(f"stored schema field {name!r} has kind {kind!r}, std {std}; "
                              f"expected continuous/categorical and std > 0")
    return table


def encode(record: ClinicalRecord, schema: Mapping[str, Any] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for one record: (values float32[F] normalised, 0 where missing; present {0,1}).

    `schema` is a stored `schema_to_dict()` (from a checkpoint or bundle): its field order,
    means, SDs and choice codes are used, so the runtime encodes exactly as training did.
    """
    table = _encoding_table(schema)
    values = np.zeros(len(table), dtype=np.float32)
    present = np.zeros(len(table), dtype=np.float32)
    for i, (name, kind, mean, std, choices) in enumerate(table):
        if name not in record.values:
            raise MetadataError(f"the model expects clinical field {name!r}, unknown to this "
                                f"bmd-edge version; accepted fields: {', '.join(FIELD_NAMES)}")
        v = record.values[name]
        if v is None:
            continue
        if kind == "categorical":
            if v not in choices:
                raise MetadataError(f"{name} = {v!r} has no code in the model's schema; "
                                    f"it accepts {', '.join(choices)}", field=name)
            x = float(list(choices).index(str(v)))
        else:
            x = float(v)
        values[i] = (x - mean) / std
        present[i] = 1.0
    used = {row[0] for row in table}
    unused = [n for n in record.present() if n not in used]
    if unused:
        raise MetadataError(f"the model does not use clinical field(s) {', '.join(unused)}; "
                            f"leave them out (it uses {', '.join(sorted(used))})")
    return values, present


def encode_from_dict(schema: Mapping[str, Any], record: ClinicalRecord
                     ) -> tuple[np.ndarray, np.ndarray]:
    """`encode` with a stored schema dict first (the runtime's spelling)."""
    return encode(record, schema=schema)


def encode_many(records: Sequence[ClinicalRecord], schema: Mapping[str, Any] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Stacked `encode` for a batch: (values float32[N, F], present float32[N, F])."""
    n_fields = len(_encoding_table(schema))
    if not records:
        return np.zeros((0, n_fields), np.float32), np.zeros((0, n_fields), np.float32)
    pairs = [encode(r, schema) for r in records]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
