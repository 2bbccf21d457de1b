"""Input quality gate: refuse inputs that are clearly not a hip/pelvis radiograph.

Why: the model returns a number for any array, and a confident BMD for a holiday photo or a
noise frame is worse than no answer. The gate is cheap (one 64×64 area-resize plus a few means,
~1 ms) and deliberately coarse — it catches gross mistakes, it does not judge image quality.

Checks, each a named feature with a threshold calibrated on the real hip/pelvis files in
shared/realworld/hip (all pass), random noise and a colour photo:

- blank:      robust intensity range (p99.5 − p0.5) < 0.03, i.e. a near-constant frame.
- low_range:  robust range < 0.12 (real hip films: ≥ 0.33): a washed-out, unwindowed frame.
- colour:     the reader's "colour in X% of pixels" note > 20 % (annotated X-rays: ≤ 4 %).
- noise:      neighbouring-pixel correlation on the 64×64 thumbnail < 0.5 (radiographs ≥ 0.87,
              white noise ≈ 0): no anatomical structure at all.
- modality:   a DICOM whose Modality tag names a cross-sectional or non-X-ray study (CT, MR, NM,
              PT, US, …): a slice is not a projection radiograph, whatever its pixels look like
              (the MR files in shared/realworld/dicom passed every pixel check and got a BMD).

Whether the film shows a hip at all is not a threshold's job: the learned hip locator decides
(`runtime/front_end.py`, issue #15). It replaced the hand-set aspect-ratio and chest-layout
checks that used to live here (38 of 44 real non-hip films got a BMD past them).

`check_quality(radiograph, force=False)` raises QualityGateError (exit 2) naming the failed
checks, or with `force=True` returns them as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from bmd_edge.errors import QualityGateError


@dataclass(frozen=True)
class GateThresholds:
    min_range_blank: float = 0.03    # robust range below this: a blank frame
    min_range: float = 0.12          # robust range below this: too little contrast to read
    max_colour_fraction: float = 0.20  # coloured-pixel share above this: a photograph
    min_smoothness: float = 0.5      # thumbnail lag-1 correlation below this: noise


@dataclass(frozen=True)
class QualityReport:
    features: dict[str, float]              # measured values, for logs and calibration
    failures: tuple[str, ...]               # one sentence per failed check
    warnings: tuple[str, ...] = field(default=())  # what the caller should show (with --force)

    @property
    def passed(self) -> bool:
        return not self.failures


# DICOM Modality values that are never a projection radiograph of the hip. Unknown, absent,
# CR/DX/RG/DR/OT (other) and fluoroscopy-type values pass: the pixel checks judge those.
NOT_RADIOGRAPH_MODALITIES = frozenset({"CT", "MR", "NM", "PT", "US", "MG", "IVUS", "OCT", "OP",
                                       "ES", "SM", "XC", "ECG", "RTIMAGE", "SEG", "SR", "PR"})

_THUMB = 64


def colour_fraction(warnings: tuple[str, ...]) -> float:
    """Share of coloured pixels the image reader reported (0 when it reported none): read from
    its `warn.Warn` record, not parsed back out of the sentence."""
    for w in warnings:
        if getattr(w, "code", None) == "colour-converted":
            return float(w.value)  # type: ignore[attr-defined]
    return 0.0


def measure(pixels: np.ndarray, warnings: tuple[str, ...] = ()) -> dict[str, float]:
    """The gate's features for a float H×W image in [0, 1] (1 = bone bright)."""
    h, w = pixels.shape
    step = max(1, max(h, w) // 256)
    lo, hi = np.percentile(pixels[::step, ::step], (0.5, 99.5))
    rng = float(hi - lo)
    thumb = cv2.resize(np.ascontiguousarray(pixels, np.float32), (_THUMB, _THUMB),
                       interpolation=cv2.INTER_AREA)
    t = np.clip((thumb - lo) / max(rng, 1e-6), 0.0, 1.0)
    a, b = t[:, :-1].ravel(), t[:, 1:].ravel()
    smooth = float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-6 and b.std() > 1e-6 else 1.0

    return {
        "range": rng,
        "colour_fraction": colour_fraction(warnings),
        "smoothness": smooth,
    }


def evaluate(features: dict[str, float], th: GateThresholds = GateThresholds()) -> list[str]:
    """One plain sentence per failed check (empty list = passed)."""
    f = features
    fails: list[str] = []
    if f["range"] < th.min_range_blank:
        fails.append(f"blank or near-constant image (intensity range {f['range']:.3f}, "
                     f"need >= {th.min_range})")
    elif f["range"] < th.min_range:
        fails.append(f"tiny dynamic range ({f['range']:.3f}, need >= {th.min_range})")
    if f["colour_fraction"] > th.max_colour_fraction:
        fails.append(f"colour image ({100 * f['colour_fraction']:.0f}% coloured pixels; an X-ray "
                     f"has at most {100 * th.max_colour_fraction:.0f}%, e.g. annotations)")
    if f["range"] >= th.min_range_blank and f["smoothness"] < th.min_smoothness:
        fails.append(f"no anatomical structure, looks like noise (smoothness "
                     f"{f['smoothness']:.2f}, need >= {th.min_smoothness})")
    return fails


def modality_failures(info: Any) -> list[str]:
    """One sentence if the DICOM Modality tag says this is not a projection radiograph."""
    modality = str(getattr(info, "modality", None) or "").strip().upper()
    if modality in NOT_RADIOGRAPH_MODALITIES:
        return [f"DICOM Modality is {modality}, not a radiograph (accepted: CR, DX, RG or "
                "absent)"]
    return []


def check_quality(radiograph: Any, *, force: bool = False,
                  thresholds: GateThresholds = GateThresholds()) -> QualityReport:
    """Gate one Radiograph: QualityGateError if it fails, or warnings when `force` is set."""
    feats = measure(np.asarray(radiograph.pixels), tuple(radiograph.warnings))
    fails = evaluate(feats, thresholds) + modality_failures(getattr(radiograph, "info", None))
    if fails and not force:
        raise QualityGateError(
            f"not a hip/pelvis radiograph: {'; '.join(fails)} (use --force to run anyway)")
    warns = tuple(f"quality gate overridden with --force: {m}" for m in fails)
    return QualityReport(features=feats, failures=tuple(fails), warnings=warns)
