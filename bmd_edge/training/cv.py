"""Stratified (grouped) k-fold cross-validation of deep models and the non-deep baselines.

Folds: StratifiedKFold on strata = BMD quantile bin × sex (StratifiedGroupKFold by patient_id
when the manifest has one), k = 10 as in the paper. Inside each training fold a further
stratified slice (cfg.val_fraction) drives early stopping, so the held-out fold is never used to
pick weights — its numbers are honest out-of-fold estimates. Baselines (OST score with a linear
calibration, OLS on the metadata with missing-value indicators) are fitted on the same training
folds. Out-of-fold predictions go to OUT/oof.csv after every fold.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.training.config import TrainConfig
from bmd_edge.training.data import case_label
from bmd_edge.training.metrics import all_metrics, summarise_folds
from bmd_edge.training.trainer import strata

BASELINES = ("OST", "OLS")


def fold_strata(cases: Sequence[object], k: int) -> np.ndarray:
    """BMD quantile bin × sex, with fewer bins (4 → 1) until every stratum has ≥ k cases."""
    for n_bins in (4, 3, 2, 1):
        y = strata(cases, n_bins=n_bins)
        if np.bincount(y)[np.bincount(y) > 0].min() >= k:
            break
    return y


def make_folds(cases: Sequence[object], k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train indices, test indices) pairs: disjoint tests covering every case once."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if k < 2 or k > len(cases):
        raise InputError(f"folds must be between 2 and the number of cases ({len(cases)}), got {k}")
    y = fold_strata(cases, k)
    ids = [getattr(c, "patient_id", None) for c in cases]
    x = np.zeros(len(cases))
    if any(ids) and len(set(ids)) < len(ids):
        groups = [pid or f"case{i}" for i, pid in enumerate(ids)]
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(x, y, groups)]
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(x, y)]


def _field(cases: Sequence[object], name: str) -> np.ndarray:
    vals = [c.record.values.get(name) for c in cases]
    return np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)


def ost_baseline(train: Sequence[object], test: Sequence[object]) -> np.ndarray:
    """OST = (weight kg − age)/5, mapped to g/cm² by a line fitted on the training fold.

    A missing weight or age is filled with the training fold's median (OST needs both).
    """
    from sklearn.linear_model import LinearRegression

    def ost(cases: Sequence[object], fill: tuple[float, float]) -> np.ndarray:
        w, a = _field(cases, "weight_kg"), _field(cases, "age_xray")
        w, a = np.where(np.isnan(w), fill[0], w), np.where(np.isnan(a), fill[1], a)
        return ((w - a) / 5.0)[:, None]

    fill = (float(np.nanmedian(_field(train, "weight_kg"))), float(np.nanmedian(_field(train, "age_xray"))))
    y = np.array([case_label(c) for c in train])
    reg = LinearRegression().fit(ost(train, fill), y)
    return reg.predict(ost(test, fill))


def ols_baseline(train: Sequence[object], test: Sequence[object]) -> np.ndarray:
    """Ordinary least squares on encoded metadata + presence flags (missing-value indicators)."""
    from sklearn.linear_model import LinearRegression

    from bmd_edge.schema import encode

    def design(cases: Sequence[object]) -> np.ndarray:
        enc = [encode(c.record) for c in cases]
        return np.hstack([np.stack([e[0] for e in enc]), np.stack([e[1] for e in enc])])

    y = np.array([case_label(c) for c in train])
    return LinearRegression().fit(design(train), y).predict(design(test))


@dataclass
class CVResult:
    """Out-of-fold predictions and per-fold metrics for every model that was cross-validated."""

    folds: list[tuple[np.ndarray, np.ndarray]]  # (train, test) index pairs
    truth: np.ndarray  # measured BMD per case (g/cm²)
    oof: dict[str, np.ndarray] = field(default_factory=dict)  # model → prediction per case
    attention: dict[str, np.ndarray] = field(default_factory=dict)  # model → (N, F) attention
    fold_of: np.ndarray | None = None  # which fold held each case out
    per_fold: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # model → metrics

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Mean ± SD over folds per model and metric."""
        return {name: summarise_folds(rows) for name, rows in self.per_fold.items()}

    def completed_folds(self) -> int:
        return min((len(v) for v in self.per_fold.values()), default=0)


def write_oof(path: Path, cases: Sequence[object], result: CVResult) -> Path:
    """One row per case: fold, measured BMD, sex, age, and each model's out-of-fold prediction."""
    names = list(result.oof)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["line", "image", "patient_id", "fold", "fn_bmd", "sex", "age_xray", *names])
        for i, c in enumerate(cases):
            fold = "" if result.fold_of is None or result.fold_of[i] < 0 else int(result.fold_of[i])
            preds = ["" if np.isnan(result.oof[n][i]) else f"{result.oof[n][i]:.5f}" for n in names]
            w.writerow([c.line, Path(c.image).name, getattr(c, "patient_id", "") or "", fold,
                        f"{result.truth[i]:.5f}", c.record.values.get("sex") or "",
                        c.record.values.get("age_xray") or "", *preds])
    return path


def run_cv(
    configs: Mapping[str, TrainConfig],
    cases: Sequence[object],
    k: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    baselines: bool = True,
    quiet: bool = True,
    log: Callable[[str], None] | None = None,
    on_fold: Callable[[int, CVResult], None] | None = None,
    max_folds: int | None = None,
    init_from: Mapping[str, str] | None = None,
    resume: bool = False,
) -> CVResult:
    """Cross-validate each named config (and OST/OLS) on the same folds; fold-outer order so a
    partial result after any fold covers every model.

    `init_from` maps a config name to an earlier config name: in every fold, the first starts its
    image encoder from the second's best.pt of that fold (never from a model that saw the test
    fold), which is how the ablation emulates the paper's pretrained image encoder.
    With `resume`, a run whose folder already holds a last.pt continues from it (a finished run
    is only re-evaluated), so an interrupted or extended CV does not retrain what it has.
    """
    from bmd_edge.training.distributed import detect
    from bmd_edge.training.trainer import fit, split_cases

    cases = list(cases)
    init_from = dict(init_from or {})
    order = list(configs)
    for name, source in init_from.items():
        if name not in configs or source not in configs or order.index(source) >= order.index(name):
            raise InputError(f"init_from {name!r} <- {source!r}: both must be configs, the source first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folds = make_folds(cases, k, seed)
    n = len(cases)
    names = list(configs) + (list(BASELINES) if baselines else [])
    result = CVResult(folds=folds, truth=np.array([case_label(c) for c in cases]),
                      fold_of=np.full(n, -1), oof={m: np.full(n, np.nan) for m in names},
                      per_fold={m: [] for m in names})
    for f, (tr, te) in enumerate(folds[: max_folds or k]):
        train_c, test_c = [cases[i] for i in tr], [cases[i] for i in te]
        result.fold_of[te] = f
        truth = result.truth[te]
        for name, cfg in configs.items():
            if log:
                log(f"fold {f + 1}/{k}: training {name} on {len(tr)} cases")
            inner_tr, inner_val = split_cases(train_c, cfg.val_fraction, cfg.seed + f,
                                              use_split_column=False)
            if name in init_from:
                source = out / f"fold{f:02d}" / init_from[name] / "best.pt"
                cfg = dataclasses.replace(cfg, pretrained=str(source))
            run_dir = out / f"fold{f:02d}" / name
            last = run_dir / "last.pt"
            res = fit(cfg, inner_tr, inner_val, run_dir, quiet=quiet,
                      resume=last if resume and last.is_file() else None)
            from bmd_edge.training.evaluate import predict_cases

            pred, attn = predict_cases(res.model, test_c, cfg)
            result.oof[name][te] = pred
            result.attention.setdefault(name, np.full((n, attn.shape[1]), np.nan))[te] = attn
            result.per_fold[name].append(all_metrics(truth, pred))
            if log:
                m = result.per_fold[name][-1]
                log(f"fold {f + 1}/{k} {name}: MAE {m['mae']:.4f} R² {m['r2']:.3f} AUC {m['auc']:.3f}")
        if baselines:
            for name, fn in (("OST", ost_baseline), ("OLS", ols_baseline)):
                pred = fn(train_c, test_c)
                result.oof[name][te] = pred
                result.per_fold[name].append(all_metrics(truth, pred))
        if detect().is_main:  # under torchrun every rank runs the folds; rank 0 writes
            write_oof(out / "oof.csv", cases, result)
        if on_fold:
            on_fold(f, result)
    return result
