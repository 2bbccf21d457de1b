"""Which cases calibrate the int8 ranges and the prediction interval — chosen, listed, explained.

The int8 ranges are only as good as the cases NNCF sees: a calibration set made of one BMD band
or one sex would clip the activations of the others. So the calibration subset is drawn from the
*training* cases, stratified by BMD quantile bin × sex with proportional allocation (every
stratum gets at least one case), and written out as a case list so anyone can re-run it.
The held-out cases are split in two interleaved halves by label rank: one half calibrates the
split-conformal interval, the other measures every exported variant — so the reported coverage
and metrics are not computed on the cases that set the interval.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.references import SCREENING_THRESHOLD_GCM2

CASE_LIST_COLUMNS = ("line", "image", "patient_id", "sex", "fn_bmd", "stratum", "role")


def _label(case: Any) -> float:
    if case.fn_bmd is None:
        raise InputError(f"manifest line {case.line} has no fn_bmd; calibration needs labelled cases")
    return float(case.fn_bmd)


def strata_of(cases: Sequence[Any], n_bins: int = 4) -> np.ndarray:
    """Stratum per case: BMD quantile bin (0..n_bins-1) × 2 + (1 if female else 0)."""
    labels = np.array([_label(c) for c in cases])
    inner = np.linspace(0, 1, n_bins + 1)[1:-1]
    edges = np.quantile(labels, inner) if len(labels) > n_bins else np.array([])
    bins = np.searchsorted(edges, labels, side="right")
    female = np.array([1 if c.record.values.get("sex") == "F" else 0 for c in cases])
    return bins * 2 + female


def select_calibration(cases: Sequence[Any], n: int, seed: int = 0, n_bins: int = 4) -> list[int]:
    """Indices of a stratified subset of `n` cases (all cases when n ≥ len(cases)), sorted."""
    if n < 1:
        raise InputError(f"calibration subset size must be >= 1, got {n}")
    if n >= len(cases):
        return list(range(len(cases)))
    st = strata_of(cases, n_bins)
    rng = np.random.default_rng(seed)
    groups = {s: rng.permutation(np.flatnonzero(st == s)) for s in np.unique(st)}
    # Proportional allocation by largest remainder, then at least one per stratum if room.
    exact = {s: n * len(ix) / len(cases) for s, ix in groups.items()}
    take = {s: int(np.floor(v)) for s, v in exact.items()}
    for s in sorted(groups, key=lambda s: exact[s] - take[s], reverse=True):
        if sum(take.values()) >= n:
            break
        take[s] += 1
    if n >= len(groups):
        for s in groups:
            if take[s] == 0:
                donor = max(take, key=lambda k: take[k])
                take[donor] -= 1
                take[s] = 1
    chosen = [int(i) for s, ix in groups.items() for i in ix[: take[s]]]
    return sorted(chosen)


def split_heldout(n_cases: int, labels: Sequence[float]) -> tuple[list[int], list[int]]:
    """Interleave held-out cases by label rank: even ranks → interval, odd ranks → test."""
    if n_cases < 4:
        raise InputError(f"need at least 4 held-out cases to calibrate and test, got {n_cases}")
    order = np.argsort(np.asarray(labels, dtype=np.float64), kind="stable")
    return sorted(order[0::2].tolist()), sorted(order[1::2].tolist())


@dataclass(frozen=True)
class CaseRow:
    """One line of the case list CSV."""

    line: int  # manifest line of the case
    image: str  # image path as the manifest gives it (relative to the manifest)
    patient_id: str  # patient id ("" when the manifest has none)
    sex: str  # F/M
    fn_bmd: float  # label, g/cm²
    stratum: int  # BMD bin × 2 + female (see strata_of)
    role: str  # "int8-ranges" | "interval" | "test"


def case_rows(cases: Sequence[Any], indices: Sequence[int], role: str, manifest_dir: Path,
              strata: np.ndarray | None = None) -> list[CaseRow]:
    """Rows for the case list, image paths relative to the manifest folder where possible."""
    rows = []
    for i in indices:
        c = cases[i]
        try:
            image = Path(c.image).resolve().relative_to(manifest_dir.resolve()).as_posix()
        except ValueError:
            image = str(c.image)
        rows.append(CaseRow(int(c.line), image, str(c.patient_id or ""),
                            str(c.record.values.get("sex") or ""), round(_label(c), 4),
                            int(strata[i]) if strata is not None else -1, role))
    return rows


def write_case_list(path: str | Path, rows: Sequence[CaseRow]) -> Path:
    """CSV with CASE_LIST_COLUMNS, one row per case."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CASE_LIST_COLUMNS)
        for r in rows:
            w.writerow([r.line, r.image, r.patient_id, r.sex, f"{r.fn_bmd:.4f}", r.stratum, r.role])
    return path


def describe(rows: Sequence[CaseRow], role: str) -> dict[str, Any]:
    """Counts and label range of one role, for bundle.json provenance.calibration."""
    sel = [r for r in rows if r.role == role]
    if not sel:
        return {"n": 0}
    bmd = np.array([r.fn_bmd for r in sel])
    return {"n": len(sel), "female": sum(r.sex == "F" for r in sel),
            "male": sum(r.sex == "M" for r in sel),
            "fn_bmd_min": round(float(bmd.min()), 4), "fn_bmd_max": round(float(bmd.max()), 4),
            "below_0.899": int((bmd < SCREENING_THRESHOLD_GCM2).sum())}


def recipe_markdown(manifest: str, n_train: int, n_heldout: int, subset_size: int, seed: int,
                    n_bins: int, summary: dict[str, Any]) -> str:
    """The calibration recipe as Markdown (written beside the case list)."""
    lines = [
        "# Calibration recipe",
        "",
        f"- Source manifest: `{manifest}` ({n_train} training cases, {n_heldout} held-out cases).",
        f"- int8 ranges (NNCF PTQ): {subset_size} training cases, stratified by FN-BMD quantile "
        f"bin ({n_bins} bins) × sex, proportional allocation, ≥ 1 per stratum, seed {seed}.",
        "- Prediction interval (split conformal, 90 %): even label-rank half of the held-out cases.",
        "- Variant metrics (fp32 / int8): odd label-rank half of the held-out cases.",
        "- Case list: `calibration_cases.csv` (columns: " + ", ".join(CASE_LIST_COLUMNS) + ").",
        "",
        "| role | n | F | M | FN BMD range (g/cm²) | below 0.899 |",
        "|---|---|---|---|---|---|",
    ]
    for role, d in summary.items():
        if d.get("n"):
            lines.append(f"| {role} | {d['n']} | {d['female']} | {d['male']} | "
                         f"{d['fn_bmd_min']:.3f}–{d['fn_bmd_max']:.3f} | {d['below_0.899']} |")
    return "\n".join(lines) + "\n"
