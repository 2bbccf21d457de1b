"""Synthetic ground-truth landmarks as hips the canonical crop accepts (numpy-free, torch-free).

`landmarks.csv` names each hip by the PATIENT's side (`right_head_x`, `left_head_x`, ...), in the
stored PNG's pixels. The crop needs the side of the IMAGE the shaft runs to; it follows from the
geometry (the neck point lies on the shaft's side of the head), so a mirrored film needs no flag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bmd_edge.errors import InputError

PATIENT_SIDES = ("right", "left")


@dataclass(frozen=True)
class LandmarkHip:
    """One hip's ground truth in film pixels, shaped like the locator's FoundHip."""

    patient_side: str                 # "right" | "left": which of the patient's hips
    side_in_image: str                # "left" | "right": the side its shaft runs to
    head_xy: tuple[float, float]
    head_r: float
    neck_xy: tuple[float, float]
    roi_xy: tuple[float, float] | None = None   # DXA-style FN box centre, when given

    @classmethod
    def of(cls, patient_side: str, head_xy: tuple[float, float], head_r: float,
           neck_xy: tuple[float, float], roi_xy: tuple[float, float] | None = None) -> LandmarkHip:
        """Build one, deriving side_in_image from where the neck point lies."""
        side = "left" if neck_xy[0] < head_xy[0] else "right"
        return cls(patient_side, side, (float(head_xy[0]), float(head_xy[1])), float(head_r),
                   (float(neck_xy[0]), float(neck_xy[1])), roi_xy)


def _num(row: Mapping[str, object], key: str) -> float | None:
    raw = row.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        v = float(str(raw))
    except ValueError:
        raise InputError(f"landmark column {key} holds {raw!r}; expected a number") from None
    return v if math.isfinite(v) else None


def hips_from_landmarks(row: Mapping[str, object]) -> dict[str, LandmarkHip]:
    """Every hip a landmarks.csv (or oracle.csv) row describes, keyed by the patient's side.

    A hip film has one, an AP pelvis two; a hip whose columns are empty is absent.
    """
    hips = {}
    for ps in PATIENT_SIDES:
        vals = [_num(row, f"{ps}_{k}") for k in ("head_x", "head_y", "head_r", "neck_x", "neck_y")]
        if any(v is None for v in vals):
            continue
        hx, hy, r, nx, ny = (float(v) for v in vals)  # type: ignore[arg-type]
        rx, ry = _num(row, f"{ps}_roi_x"), _num(row, f"{ps}_roi_y")
        roi = (rx, ry) if rx is not None and ry is not None else None
        hips[ps] = LandmarkHip.of(ps, (hx, hy), r, (nx, ny), roi)
    return hips
