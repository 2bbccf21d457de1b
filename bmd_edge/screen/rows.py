"""The results row: one row per hip, the same columns in every Parquet part.

One image gives one row per hip: the hip the locator found and named (`Prediction.hip`;
an AP pelvis gives two rows, `left` and `right`), else the hip given (`select`, `side`), or
`unspecified`. The row's identity is (`key`, `hip`), not `key` alone, so when a
hip locator (issue #15) finds both hips of an AP pelvis, that image will give two rows — `left`
and `right` — under one key, and readers and the resume logic need no change.

No column holds a path, a file name or a patient identifier unless `--include-ids` was given
(then `source_path`, `patient_id`, `dicom_patient_ids` are added). Error messages are made with
a neutral name (`input <path_key prefix>`) so a refusal reason never leaks the path either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROW_FORMAT = "bmd-edge-screen-row/1"
UNSPECIFIED_HIP = "unspecified"

# (name, arrow type name, meaning). Types: string, float64, bool, int64, list<string>, timestamp.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("key", "string", "HMAC of path, size, mtime, model, facts: the resume key"),
    ("hip", "string", "left | right | unspecified: which hip this row is about"),
    ("path_key", "string", "HMAC of the path alone: links a file's rows across changes"),
    ("input_digest", "string", "HMAC of the file's bytes; null when it could not be read"),
    ("status", "string", "ok | failed"),
    ("refusal_kind", "string", "error class (QualityGateError, ImageReadError, ...) when failed"),
    ("refusal_reason", "string", "one-line reason when failed (no path in it)"),
    ("bmd_gcm2", "float64", "femoral-neck BMD, g/cm², GE Lunar scale"),
    ("interval_low", "float64", "split-conformal interval, g/cm²"),
    ("interval_high", "float64", "split-conformal interval, g/cm²"),
    ("interval_coverage", "float64", "nominal coverage of the interval"),
    ("t_score", "float64", "vs the bundle's young-adult reference"),
    ("z_score", "float64", "vs age/sex reference; null outside its ages"),
    ("who_category", "string", "normal | osteopenia | osteoporosis"),
    ("screen_positive", "bool", "bmd_gcm2 < threshold_gcm2"),
    ("threshold_gcm2", "float64", "screening cut-off used"),
    ("flags", "list<string>", "warnings: conversions, DICOM conflicts, --force overrides"),
    ("age", "float64", "age at X-ray used, years"),
    ("sex", "string", "F | M used"),
    ("model_name", "string", "bundle model name"),
    ("model_version", "string", "bundle model version"),
    ("variant", "string", "bundle variant that ran"),
    ("backend", "string", "openvino | onnxruntime"),
    ("run_id", "string", "the screen run that wrote this row"),
    ("screened_at", "timestamp", "UTC time the row was made"),
)
ID_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("source_path", "string", "the image path (only with --include-ids)"),
    ("patient_id", "string", "the listing's patient_id (only with --include-ids)"),
    ("dicom_patient_ids", "string", "DICOM identifying tags (only with --include-ids)"),
)


def arrow_schema(include_ids: bool) -> Any:
    """The pyarrow schema every part of a results folder uses."""
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64(), "bool": pa.bool_(),
             "int64": pa.int64(), "list<string>": pa.list_(pa.string()),
             "timestamp": pa.timestamp("ms", tz="UTC")}
    cols = COLUMNS + (ID_COLUMNS if include_ids else ())
    return pa.schema([(name, types[t]) for name, t, _ in cols],
                     metadata={b"format": ROW_FORMAT.encode()})


def hip_of(facts: Mapping[str, object]) -> str:
    """The hip a row is about: the cropped side of a pelvis, else the side shown, else unknown."""
    for k in ("select", "side"):
        v = facts.get(k)
        if isinstance(v, str) and v.strip().lower() in ("left", "right"):
            return v.strip().lower()
    return UNSPECIFIED_HIP


def base_row(item: Mapping[str, Any], *, run_id: str, now: Any, model: Mapping[str, str],
             include_ids: bool) -> dict[str, Any]:
    """The columns every row has, filled from the pending input and the run."""
    row: dict[str, Any] = {name: None for name, _, _ in COLUMNS}
    row.update(key=item["key"], path_key=item["path_key"], run_id=run_id, screened_at=now,
               flags=[], **model)
    if include_ids:
        row.update(source_path=item["path"], patient_id=item.get("patient_id"),
                   dicom_patient_ids=None)
    return row


def fill_ok(row: dict[str, Any], pred: Any, include_ids: bool) -> None:
    """Copy a Prediction's read-out into a row."""
    inputs = pred.inputs
    row.update(
        status="ok", bmd_gcm2=float(pred.bmd_gcm2), t_score=float(pred.t_score),
        z_score=None if pred.z_score is None else float(pred.z_score),
        who_category=pred.who_category, screen_positive=bool(pred.screen_positive),
        threshold_gcm2=float(pred.threshold_gcm2), flags=list(pred.warnings),
        age=_float(inputs.get("age_xray")), sex=inputs.get("sex"),
        hip=getattr(pred, "hip", None) or hip_of(inputs), backend=pred.backend)
    if pred.interval is not None:
        row.update(interval_low=float(pred.interval[0]), interval_high=float(pred.interval[1]),
                   interval_coverage=float(pred.interval[2]))
    if include_ids:
        ids = pred.patient_ids or {}
        row["dicom_patient_ids"] = ";".join(f"{k}={v}" for k, v in sorted(ids.items())) or None


def fill_failed(row: dict[str, Any], kind: str, reason: str, facts: Mapping[str, object]) -> None:
    """A refusal: the reason, and the facts we know (for the summary's strata)."""
    row.update(status="failed", refusal_kind=kind, refusal_reason=reason, hip=hip_of(facts),
               age=_float(facts.get("age")), sex=_sex(facts.get("sex")))


def _float(v: object) -> float | None:
    try:
        return None if v is None else float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _sex(v: object) -> str | None:
    s = str(v).strip().upper()[:1] if v is not None else ""
    return s if s in ("F", "M") else None
