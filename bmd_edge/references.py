"""Femoral-neck BMD reference tables (T-score, Z-score) and the WHO categories, as data.

Why data and not constants in code: a bundle carries its own copy (`bundle.json["references"]`)
so a site can ship a different, locally validated reference without a code change, and a report
can always name the table a score came from.

All values are femoral neck, g/cm², on the GE Lunar scale (the scale of the model's output).

T-score reference: NHANES III non-Hispanic white women aged 20–29, femoral neck, Hologic
0.858 ± 0.120 g/cm² (Looker AC et al. 1997 J Bone Miner Res 12:1761–1768; updated data in
Looker AC et al. 1998 Osteoporos Int 8:468–489), converted to GE Lunar with the standard femoral
neck cross-calibration Lunar ≈ 1.158 × Hologic + 0.045 (as reported by Lu Y, Fuerst T, Hui S,
Genant HK 2001, Osteoporos Int 12:438–444). Result: mean 1.0386, SD 0.1390 — so T = −1 at
0.8996 (the 0.899 g/cm² screening threshold) and T = −2.5 at 0.6912 g/cm².

Z-score reference: age- and sex-matched NHANES III NHW femoral-neck means and SDs by decade
(Looker 1998), converted to Lunar with the same equation (mean × 1.158 + 0.045, SD × 1.158).
Only the 20–29 rows (0.858 ± 0.120 women, 0.934 ± 0.137 men) are the widely quoted young-adult
values; the older decades are approximate transcriptions and the table says so (`status`): verify
against Looker 1998 Table 2 before relying on a Z-score clinically.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from bmd_edge.errors import MetadataError

REFERENCES_FORMAT = "bmd-edge-references/1"

# Hologic → GE Lunar femoral-neck cross-calibration (slope, intercept); applied to means, and the
# slope alone to SDs (an SD is a difference, the intercept cancels).
HOLOGIC_TO_LUNAR_FN: tuple[float, float] = (1.158, 0.045)

# WHO operational definition (1994), applied to the femoral-neck T-score.
WHO_NORMAL_MIN_T = -1.0
# The screen the paper uses: FN BMD below T = −1 on GE Lunar (0.8996, rounded as published).
# The one copy in code: new bundles record it (references.screening_threshold_gcm2) and every
# result is read out with the bundle's value.
SCREENING_THRESHOLD_GCM2 = 0.899
WHO_OSTEOPOROSIS_MAX_T = -2.5

# NHANES III NHW femoral neck BMD, Hologic g/cm²: (age_low, age_high, mean, sd) per decade.
_NHANES3_FN_HOLOGIC: dict[str, list[tuple[int, int, float, float]]] = {
    "F": [
        (20, 29, 0.858, 0.120),
        (30, 39, 0.839, 0.118),
        (40, 49, 0.801, 0.117),
        (50, 59, 0.742, 0.112),
        (60, 69, 0.688, 0.109),
        (70, 79, 0.637, 0.108),
        (80, 120, 0.584, 0.104),
    ],
    "M": [
        (20, 29, 0.934, 0.137),
        (30, 39, 0.878, 0.132),
        (40, 49, 0.840, 0.124),
        (50, 59, 0.804, 0.122),
        (60, 69, 0.772, 0.120),
        (70, 79, 0.738, 0.118),
        (80, 120, 0.684, 0.120),
    ],
}


def hologic_to_lunar(mean_h: float, sd_h: float) -> tuple[float, float]:
    """Convert a Hologic FN mean and SD to the GE Lunar scale (rounded to 4 decimals)."""
    slope, intercept = HOLOGIC_TO_LUNAR_FN
    return round(slope * mean_h + intercept, 4), round(slope * sd_h, 4)


def _build_default() -> dict[str, Any]:
    t_mean, t_sd = hologic_to_lunar(0.858, 0.120)
    bands: dict[str, list[dict[str, float]]] = {}
    for sex, rows in _NHANES3_FN_HOLOGIC.items():
        bands[sex] = []
        for lo, hi, m, s in rows:
            mean, sd = hologic_to_lunar(m, s)
            bands[sex].append({"age_low": lo, "age_high": hi, "mean_gcm2": mean, "sd_gcm2": sd,
                               "hologic_mean_gcm2": m, "hologic_sd_gcm2": s})
    conversion = "Lunar = 1.158 × Hologic + 0.045 (SD × 1.158); standard FN cross-calibration " \
                 "(Lu Y, Fuerst T, Hui S, Genant HK 2001, Osteoporos Int 12:438–444)"
    return {
        "format": REFERENCES_FORMAT,
        "site": "femoral neck",
        "scale": "GE Lunar",
        "unit": "g/cm2",
        "t_score": {
            "name": "NHANES III white women 20-29 y, femoral neck (Lunar)",
            "mean_gcm2": t_mean,
            "sd_gcm2": t_sd,
            "source": "Looker AC et al. 1997 J Bone Miner Res 12:1761-1768; "
                      "Looker AC et al. 1998 Osteoporos Int 8:468-489 (Hologic 0.858 ± 0.120)",
            "conversion": conversion,
            "applies_to": "both sexes (ISCD: female white reference for men and women)",
        },
        "z_score": {
            "name": "NHANES III non-Hispanic white, femoral neck, by sex and age decade (Lunar)",
            "source": "Looker AC et al. 1998 Osteoporos Int 8:468-489",
            "conversion": conversion,
            "status": "20-29 rows are the published young-adult values; older decades are "
                      "approximate transcriptions - verify against Looker 1998 before clinical use",
            "bands": bands,
        },
        "who": {
            "source": "WHO Technical Report Series 843 (1994)",
            "normal_min_t": WHO_NORMAL_MIN_T,
            "osteoporosis_max_t": WHO_OSTEOPOROSIS_MAX_T,
        },
    }


_DEFAULT = _build_default()


def default_references() -> dict[str, Any]:
    """A fresh copy of the built-in reference tables (callers may modify it, e.g. in a bundle)."""
    return copy.deepcopy(_DEFAULT)


def _tables(refs: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _DEFAULT if refs is None else refs


def t_score(bmd_gcm2: float, refs: Mapping[str, Any] | None = None) -> float:
    """T = (BMD − young-adult mean) / young-adult SD, with the table's (or the default) values."""
    t = _tables(refs)["t_score"]
    return (float(bmd_gcm2) - float(t["mean_gcm2"])) / float(t["sd_gcm2"])


def bmd_at_t(t: float, refs: Mapping[str, Any] | None = None) -> float:
    """The BMD (g/cm²) at a given T-score: the inverse of `t_score` (used for plot scales)."""
    tab = _tables(refs)["t_score"]
    return float(tab["mean_gcm2"]) + float(t) * float(tab["sd_gcm2"])


def _norm_sex(sex: str) -> str:
    s = str(sex).strip().upper()
    s = {"FEMALE": "F", "MALE": "M"}.get(s, s)
    if s not in ("F", "M"):
        raise MetadataError(f"sex {sex!r} is not recognised; use F or M")
    return s


def z_band(age: float, sex: str, refs: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The age- and sex-matched reference row for `age` years; MetadataError outside the table."""
    bands = _tables(refs)["z_score"]["bands"][_norm_sex(sex)]
    a = float(age)
    if not math.isfinite(a):
        raise MetadataError(f"age {age!r} is not a number; give years, e.g. 70")
    for row in bands:
        # Bands are whole-year decades: 20-29 covers ages in [20, 30).
        if float(row["age_low"]) <= a < float(row["age_high"]) + 1:
            return dict(row)
    lo, hi = bands[0]["age_low"], bands[-1]["age_high"]
    raise MetadataError(f"age {age} years is outside the Z-score reference ({lo}-{hi} years)")


def z_score(bmd_gcm2: float, age: float, sex: str,
            refs: Mapping[str, Any] | None = None) -> float:
    """Z = (BMD − age/sex-matched mean) / matched SD."""
    row = z_band(age, sex, refs)
    return (float(bmd_gcm2) - float(row["mean_gcm2"])) / float(row["sd_gcm2"])


def who_category(t: float, refs: Mapping[str, Any] | None = None) -> str:
    """WHO category from a T-score: ≥ −1 normal, (−2.5, −1) osteopenia, ≤ −2.5 osteoporosis."""
    who = _tables(refs).get("who", _DEFAULT["who"])
    if t >= float(who["normal_min_t"]):
        return "normal"
    if t <= float(who["osteoporosis_max_t"]):
        return "osteoporosis"
    return "osteopenia"


def t_reference_name(refs: Mapping[str, Any] | None = None) -> str:
    """The name of the T-score reference table (shown beside every T-score)."""
    return str(_tables(refs)["t_score"]["name"])


def z_reference_name(refs: Mapping[str, Any] | None = None) -> str:
    """The name of the Z-score reference table."""
    return str(_tables(refs)["z_score"]["name"])


def validate_references(refs: Mapping[str, Any]) -> None:
    """Check a (bundle-supplied) table has what the scores need; MetadataError names the gap."""
    try:
        t = refs["t_score"]
        if not (float(t["sd_gcm2"]) > 0 and 0.2 < float(t["mean_gcm2"]) < 2.0):
            raise ValueError(f"t_score mean/sd {t['mean_gcm2']}/{t['sd_gcm2']}")
        for sex in ("F", "M"):
            rows = refs["z_score"]["bands"][sex]
            if not rows or any(float(r["sd_gcm2"]) <= 0 for r in rows):
                raise ValueError(f"z_score bands for {sex} empty or with SD <= 0")
    except (KeyError, TypeError, ValueError) as err:
        raise MetadataError(
            f"reference table is incomplete or invalid ({err}); need t_score.mean_gcm2/sd_gcm2 "
            "and z_score.bands.F/M rows with age_low, age_high, mean_gcm2, sd_gcm2"
        ) from None
