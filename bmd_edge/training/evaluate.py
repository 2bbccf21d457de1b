"""Evaluate one model (or a set of out-of-fold predictions): metrics, subgroups, plots.

`evaluate_checkpoint` is what `bmd-edge evaluate` runs; `write_report` is shared with `cv` so a
single model and a cross-validation report the same numbers the same way: metrics.json,
subgroups.csv (counts + bootstrap 95 % CIs), predictions.csv and four PNGs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.errors import BundleError, ManifestError
from bmd_edge.training.metrics import all_metrics, band, bootstrap_ci, subgroup_metrics

AGE_EDGES = (65.0, 70.0, 75.0, 80.0, 85.0)  # years: 5-year bands across an older cohort
BMI_EDGES = (18.5, 25.0, 30.0, 35.0)  # kg/m²: WHO underweight / normal / overweight / obese


def predict_cases(
    model: Any, cases: Sequence[object], cfg_or_spec: Any, *, batch_size: int = 32, workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(BMD g/cm², field attention (N, F)) for cases, in case order, no augmentation."""
    from torch.utils.data import DataLoader

    from bmd_edge.preprocess import PreprocessSpec
    from bmd_edge.training.data import BmdDataset, EpochSampler
    from bmd_edge.training.trainer import WORKER_CONTEXT, predict

    spec = cfg_or_spec
    if not isinstance(spec, PreprocessSpec):
        spec = PreprocessSpec(size=cfg_or_spec.image_size)
    ds = BmdDataset(cases, spec, require_label=False, cache=False)
    loader = DataLoader(ds, batch_size=batch_size, sampler=EpochSampler(len(ds), 0, False),
                        num_workers=workers,
                        multiprocessing_context=WORKER_CONTEXT if workers > 0 else None)
    pred, attn, idx = predict(model, loader)
    order = np.argsort(idx)
    return pred[order], attn[order]


def read_oracle(manifest_path: str | Path) -> dict[str, dict[str, str]] | None:
    """oracle.csv next to a synthetic manifest, keyed by image file name (None when absent)."""
    path = Path(manifest_path).with_name("oracle.csv")
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    key = "image" if rows and "image" in rows[0] else None
    if key is None:
        return None
    return {Path(r[key]).name: r for r in rows}


def _oracle_col(oracle: Mapping[str, Mapping[str, str]], *candidates: str) -> str | None:
    cols = next(iter(oracle.values())).keys() if oracle else []
    for cand in candidates:
        for col in cols:
            if col == cand:
                return col
    return None


def subgroup_labels(
    cases: Sequence[object], oracle: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, list[str | None]]:
    """Grouping variables: sex, age band, BMI band, and exposure tertile from the oracle."""
    vals = [c.record.values for c in cases]
    groups: dict[str, list[str | None]] = {
        "sex": [v.get("sex") for v in vals],
        "age band": [band(v.get("age_xray"), AGE_EDGES) for v in vals],
        "BMI band": [band(v.get("bmi"), BMI_EDGES) for v in vals],
    }
    col = _oracle_col(oracle or {}, "exposure_quanta", "exposure", "exposure_mas", "dose")
    if oracle and col:
        raw = [oracle.get(Path(c.image).name, {}).get(col) for c in cases]
        x = np.array([float(r) if r not in (None, "") else np.nan for r in raw])
        if np.isfinite(x).sum() >= 3:
            t1, t2 = np.nanquantile(x, [1 / 3, 2 / 3])
            groups[f"{col} tertile"] = [
                None if not np.isfinite(v) else ("low" if v < t1 else "mid" if v < t2 else "high")
                for v in x
            ]
    return groups


def oracle_ceiling(cases: Sequence[object], oracle: Mapping[str, Mapping[str, str]] | None,
                   truth: np.ndarray) -> dict[str, float] | None:
    """Metrics of a perfect model that predicts the generator's true BMD: the noise floor."""
    col = _oracle_col(oracle or {}, "true_bmd", "bmd_true", "fn_bmd_true", "true_fn_bmd")
    if not oracle or not col:
        return None
    rows = [oracle.get(Path(c.image).name) for c in cases]
    if any(r is None or r.get(col) in (None, "") for r in rows):
        return None
    return all_metrics(truth, np.array([float(r[col]) for r in rows]))


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.4f}"


def write_report(
    out_dir: str | Path,
    cases: Sequence[object],
    truth: np.ndarray,
    preds: Mapping[str, np.ndarray],
    primary: str,
    *,
    attention: np.ndarray | None = None,
    oracle: Mapping[str, Mapping[str, str]] | None = None,
    extra: Mapping[str, Any] | None = None,
    n_boot: int = 200,
) -> dict[str, Any]:
    """Write metrics.json, subgroups.csv, predictions.csv and PNG plots; return the metrics."""
    from bmd_edge.schema import FIELD_NAMES
    from bmd_edge.training import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred = preds[primary]
    report: dict[str, Any] = {
        "n": int(truth.size),
        "primary": primary,
        "metrics": {name: all_metrics(truth, p) for name, p in preds.items()},
        "ci95": {k: list(v) for k, v in bootstrap_ci(truth, pred, n_boot=n_boot).items()},
        **(extra or {}),
    }
    ceiling = oracle_ceiling(cases, oracle, truth)
    if ceiling:
        report["oracle_ceiling"] = ceiling
    rows = subgroup_metrics(truth, pred, subgroup_labels(cases, oracle), n_boot=n_boot)
    with open(out / "subgroups.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variable", "group", "n", "mae", "mae_lo", "mae_hi", "r2", "r2_lo", "r2_hi",
                    "auc", "auc_lo", "auc_hi", "recall", "specificity"])
        for r in rows:
            w.writerow([r.variable, r.group, r.n,
                        *(_fmt(v) for k in ("mae", "r2", "auc")
                          for v in (r.metrics[k], *r.ci[k])),
                        _fmt(r.metrics["recall"]), _fmt(r.metrics["specificity"])])
    report["subgroups"] = [{"variable": r.variable, "group": r.group, "n": r.n,
                            "mae": r.metrics["mae"], "mae_ci95": list(r.ci["mae"])} for r in rows]
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["line", "image", "fn_bmd", *preds])
        for i, c in enumerate(cases):
            w.writerow([c.line, Path(c.image).name, f"{truth[i]:.5f}",
                        *(f"{p[i]:.5f}" for p in preds.values())])
    plots.scatter_plot(truth, preds, out / "scatter.png")
    plots.bland_altman_plot(truth, pred, out / "bland_altman.png", title=f"Bland–Altman: {primary}")
    plots.roc_plot(truth, preds, out / "roc.png")
    if attention is not None and np.isfinite(attention).all():
        plots.attention_plot(attention, FIELD_NAMES, out / "attention.png")
        report["field_attention"] = dict(zip(FIELD_NAMES, attention.mean(axis=0).tolist()))
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def evaluate_checkpoint(
    checkpoint: str | Path, manifest: str | Path, out_dir: str | Path, *,
    batch_size: int = 32, workers: int = 0,
) -> dict[str, Any]:
    """Load a checkpoint, predict every labelled case of a manifest, write the report."""
    from bmd_edge.manifest import read_manifest
    from bmd_edge.model.checkpoint import load_checkpoint
    from bmd_edge.preprocess import PreprocessSpec

    if not Path(checkpoint).is_file():
        raise BundleError(f"checkpoint not found: {checkpoint}; pass the best.pt written by train")
    model, meta = load_checkpoint(checkpoint)
    spec = PreprocessSpec.from_dict(meta["preprocess"])
    m = read_manifest(manifest, require_label=True)
    cases = [c for c in m.cases if c.fn_bmd is not None]
    if len(cases) < 2:
        raise ManifestError(f"{manifest}: needs ≥ 2 cases with fn_bmd to evaluate, found {len(cases)}")
    pred, attn = predict_cases(model, cases, spec, batch_size=batch_size, workers=workers)
    truth = np.array([c.fn_bmd for c in cases], dtype=np.float64)
    fusion = meta.get("model_config", {}).get("fusion", "model")
    return write_report(out_dir, cases, truth, {fusion: pred}, fusion,
                        attention=attn if fusion == "xattn" else None,
                        oracle=read_oracle(manifest),
                        extra={"checkpoint": str(checkpoint), "manifest": str(manifest)})
