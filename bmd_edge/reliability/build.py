"""Calibrate a bundle's reliability section from synthetic cohorts (build time; runs the bundle).

    add_embedding_outputs(folder)              # older bundles: expose the head's input
    r = calibrate(folder, stats=[...], calibration=[...])   # run, fit, write npz + section

`stats` manifests are the training crops' distribution (the training cohort); `calibration`
manifests are fresh clean cases (hip and pelvis views) on which the flag threshold (≤ 5 % of
clean cases flagged) and the Mondrian interval tables are chosen. Every case runs through the
same `Predictor.prepare`/`session.run_full` the CLI uses, so the statistics describe exactly
what the runtime will compute. The result is written into the bundle folder (`reliability.npz`
+ bundle.json `reliability`, model files re-stamped); the caller re-pins or re-signs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.reliability.quality import quality_features, windowed

STATS_FILE = "reliability.npz"
FACT_COLUMNS = ("height_cm", "weight_kg", "bmi", "alcohol_units_week", "activity_score",
                "diet_score", "smoking")


@dataclass
class Collected:
    """What the runtime computes for each case of a cohort."""

    y: np.ndarray               # labels g/cm²
    pred: np.ndarray            # predicted BMD
    emb: np.ndarray | None      # (N, D) model embedding
    quality: np.ndarray         # (N, Q) quality features (template given) or zeros
    sex: np.ndarray             # "F"/"M"
    view: np.ndarray            # "hip"/"pelvis"
    mean_image: np.ndarray      # mean windowed model input (the template)


def manifest_cases(manifest: Path, limit: int | None = None,
                   drop_side: bool = False) -> list[tuple[Path, dict[str, Any], float]]:
    """(image path, Predictor keyword facts, label) per manifest row."""
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    out = []
    for r in rows:
        rec: dict[str, Any] = {k: r[k] for k in FACT_COLUMNS if r.get(k) not in (None, "")}
        rec.update(age=float(r["age_xray"]), age_bmd=float(r["age_bmd"]), sex=r["sex"])
        if r.get("select"):
            rec["select"] = r["select"]
        elif r.get("side") and not drop_side:
            rec["side"] = r["side"]
        out.append((manifest.parent / r["image"], rec, float(r["fn_bmd"])))
    return out


def collect(predictor: Any, cases: Sequence[tuple[Any, dict[str, Any], float]],
            template: np.ndarray | None = None, batch: int = 32) -> Collected:
    """Run every case (force=True: gate-refused synthetic cases still count) and keep the
    runtime's own numbers: prediction, embedding and — when `template` is given — the quality
    features of the model input the runtime built (whole film or the located hip's crop)."""
    from bmd_edge.runtime.predictor import _as_radiograph

    spec = predictor.spec
    ys, preds, embs, quals, sexes, views = [], [], [], [], [], []
    acc: np.ndarray | None = None
    for i in range(0, len(cases), batch):
        chunk = cases[i:i + batch]
        prepared = []
        for path, rec, _ in chunk:
            rg, _name = _as_radiograph(path)
            p = predictor.prepare(rg, force=True, **rec)
            prepared.append(p)
            if template is not None:
                quals.append(quality_features(p.images[0], rg.pixels, mean=spec.mean,
                                              std=spec.std, template=template))
        image = np.stack([p.images[0] for p in prepared])    # the labelled hip's input
        values = np.stack([p.values for p in prepared])
        present = np.stack([p.present for p in prepared])
        bmd, _, emb = predictor.session.run_full(image, values, present)
        for p in prepared:
            w = windowed(p.images[0], spec.mean, spec.std).astype(np.float64)
            acc = w if acc is None else acc + w
            sexes.append(p.sex)
            views.append(p.view)
        ys += [c[2] for c in chunk]
        preds.append(bmd)
        if emb is not None:
            embs.append(emb)
    return Collected(np.array(ys), np.concatenate(preds).astype(np.float64),
                     np.concatenate(embs).astype(np.float64) if embs else None,
                     np.array(quals), np.array(sexes), np.array(views),
                     (acc / max(1, len(cases))).astype(np.float32))


def add_embedding_outputs(folder: Path) -> list[str]:
    """Give every installed ONNX variant an `embedding` output and rebuild each IR variant from
    its ONNX sibling (same precision). Returns the files changed. Needs onnx + openvino."""
    from bmd_edge.bundle import Bundle
    from bmd_edge.compress.embedding_output import add_embedding_output
    from bmd_edge.compress.export import onnx_to_ir

    b = Bundle.load(folder, allow_unsigned=True)
    changed = []
    onnx_by_precision = {}
    for v in b.meta.variants.values():
        if v.file.endswith(".onnx") and (folder / v.file).is_file():
            add_embedding_output(folder / v.file)
            onnx_by_precision[v.precision] = folder / v.file
            changed.append(v.file)
    for v in b.meta.variants.values():
        if v.file.endswith(".xml") and (folder / v.file).is_file():
            src = onnx_by_precision.get(v.precision)
            if src is None:
                raise ValueError(f"no ONNX {v.precision} variant to rebuild {v.file} from")
            onnx_to_ir(src, folder / v.file)
            changed.append(v.file)
    if changed:
        from bmd_edge.bundle_embed import restamp_folder

        restamp_folder(folder, b.meta)
    return changed


def calibrate(folder: Path, stats: Sequence[Path], calibration: Sequence[Path], *,
              backend: str = "openvino", coverage: float | None = None,
              flag_rate: float = 0.04, refuse_factor: float = 2.0, max_widen: float = 3.0,
              stats_limit: int | None = None, cal_limit: int | None = None,
              sign_key: Path | None = None, log: Callable[[str], None] = print) -> Any:
    """Fit and write the reliability section of the bundle in `folder`; returns the new meta
    and a summary dict."""
    from bmd_edge.bundle import Bundle
    from bmd_edge.bundle_embed import restamp_folder
    from bmd_edge.reliability import fit
    from bmd_edge.reliability.scorer import ShiftScorer
    from bmd_edge.reliability.section import Reliability, ShiftPolicy
    from bmd_edge.runtime.predictor import Predictor

    folder = Path(folder)
    b = Bundle.load(folder, allow_unsigned=True)
    if b.meta.reliability is not None:  # recalibrating: start from a bundle without the section
        b = Bundle(folder, replace(b.meta, reliability=None), b.trust)
    p = Predictor.load(b, backend=backend, variant="int8", allow_unsigned=True)
    if not getattr(p.session, "has_embedding", False):
        log("model has no 'embedding' output: shift score from image statistics only")
    spec = p.spec
    s_cases = [c for m in stats for c in manifest_cases(Path(m), stats_limit)]
    c_cases = [c for m in calibration for c in manifest_cases(Path(m), cal_limit)]
    log(f"statistics set: {len(s_cases)} cases; calibration set: {len(c_cases)} cases")
    first = collect(p, s_cases)                         # template = mean training crop
    template = first.mean_image
    s_q = collect(p, s_cases, template).quality          # second pass: quality vs template
    arrays = fit.fit_statistics(s_q, first.emb, template)
    uses_emb = first.emb is not None
    scorer = ShiftScorer(arrays, uses_emb, spec.mean, spec.std)
    cal = collect(p, c_cases, template)
    c_q = cal.quality
    # Medians of each raw number on clean calibration cases, one number at a time (the scorer's
    # "quality" is the max of two, so each is read with the other switched off).
    zmax = np.array([float(np.abs((q - arrays["quality_center"]) / arrays["quality_scale"]
                                  - arrays["quality_mean"]).max()) for q in c_q])
    arrays["quality_median_zmax"] = np.float64(1e9)   # off while reading the distances
    raw = [scorer.score(q, None if cal.emb is None else cal.emb[i]) for i, q in enumerate(c_q)]
    fit.set_medians(arrays, np.array([r.quality for r in raw]),
                    None if not uses_emb else np.array([r.embedding for r in raw]), zmax)
    scorer = ShiftScorer(arrays, uses_emb, spec.mean, spec.std)
    scores = np.array([scorer.score(q, None if cal.emb is None else cal.emb[i]).score
                       for i, q in enumerate(c_q)])
    # Thresholds from the views the statistics set holds (the views the model learned from):
    # a view absent from training (e.g. pelvis for a hip-only model) is a shift to flag, not
    # part of "clean"; every view still gets its interval cells from its unflagged cases.
    trained_views = set(first.view.tolist())
    ref = np.isin(cal.view, sorted(trained_views))
    if not ref.any():
        raise ValueError(f"no calibration case of the trained views {sorted(trained_views)}")
    flag, refuse = fit.thresholds(scores[ref], flag_rate, refuse_factor)
    clean = scores <= flag
    cov = coverage or b.meta.interval.coverage
    # Interval cells: a trained view's unflagged cases; every case of an untrained view (all of
    # them are flagged at run time, by the view rule, and not widened: the cell is their width).
    cells = clean | ~ref
    mondrian = fit.fit_mondrian(cal.y[cells], cal.pred[cells], cal.sex[cells], cal.view[cells],
                                cov)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (folder / STATS_FILE).write_bytes(buf.getvalue())
    desc = (f"{len(c_cases)} clean synthetic cases from " + ", ".join(
        f"{Path(m).parent.name}" for m in calibration) + f"; statistics from {len(s_cases)} "
        "training-distribution cases (" + ", ".join(Path(m).parent.name for m in stats) + ")")
    policy = ShiftPolicy(STATS_FILE, uses_emb, flag, refuse, max_widen, len(s_cases),
                         int(ref.sum()), float(np.mean(~clean[ref])),
                         desc + f"; thresholds from the {', '.join(sorted(trained_views))} view",
                         tuple(sorted(trained_views)))
    meta = replace(b.meta, reliability=Reliability(policy, mondrian),
                   files={**b.meta.files, STATS_FILE: "0" * 64})
    written = restamp_folder(folder, meta, sign_key)
    summary = {"flag_threshold": flag, "refuse_threshold": refuse,
               "clean_flagged_calibration": float(np.mean(~clean[ref])),
               "flagged_by_view": {v: float(np.mean(~clean[cal.view == v]))
                                   for v in sorted(set(cal.view.tolist()))},
               "mae_calibration": float(np.mean(np.abs(cal.y - cal.pred))),
               "cells": {"/".join(map(str, k)): (c.halfwidth_gcm2, c.n)
                         for k, c in mondrian.cells.items()},
               "pooled_halfwidth": mondrian.fallback_halfwidth_gcm2}
    log(f"flag {flag:.3f} refuse {refuse:.3f}; clean flagged {np.mean(~clean[ref]):.3f} "
        f"(by view {summary['flagged_by_view']}); "
        f"MAE {summary['mae_calibration']:.4f}; digest {written.digest()}")
    return written, summary


def run_cases(predictor: Any, cases: Sequence[tuple[Any, dict[str, Any], float]], *,
              transform: Callable[[Any, int], Any] | None = None,
              drop: Sequence[str] = (), batch: int = 32) -> list[Any]:
    """Predictions (force=True, so a refused case still returns, flagged) for benchmarks:
    `transform(path, index)` gives the image actually fed; `drop` removes facts (e.g. side)."""
    out: list[Any] = []
    for i in range(0, len(cases), batch):
        prepared = []
        for k, (path, rec, _) in enumerate(cases[i:i + batch]):
            facts = {f: v for f, v in rec.items() if f not in drop}
            img = transform(path, i + k) if transform is not None else path
            prepared.append(predictor.prepare(img, force=True, **facts))
        out += predictor.infer(prepared)
    return out
