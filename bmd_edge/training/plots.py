"""Evaluation figures as PNG: predicted vs measured, Bland–Altman, ROC at 0.899, field attention.

matplotlib with the Agg backend (no display needed); every function writes one file and returns
its path, so reports can link them. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bmd_edge.training.metrics import SCREEN_THRESHOLD_GCM2


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_plot(truth: np.ndarray, preds: Mapping[str, np.ndarray], path: Path, title: str = "") -> Path:
    """Predicted vs measured BMD with the identity line and the screening threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    lo = float(min(truth.min(), *(p.min() for p in preds.values()))) - 0.02
    hi = float(max(truth.max(), *(p.max() for p in preds.values()))) + 0.02
    for name, pred in preds.items():
        ax.scatter(truth, pred, s=6, alpha=0.5, label=name)
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="identity")
    ax.axhline(SCREEN_THRESHOLD_GCM2, color="grey", ls=":", lw=0.8)
    ax.axvline(SCREEN_THRESHOLD_GCM2, color="grey", ls=":", lw=0.8)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured FN BMD (g/cm²)",
           ylabel="predicted FN BMD (g/cm²)", title=title or "predicted vs measured")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bland_altman_plot(truth: np.ndarray, pred: np.ndarray, path: Path, title: str = "") -> Path:
    """Difference vs mean with the bias and 95 % limits of agreement (bias ± 1.96 SD)."""
    plt = _plt()
    mean, diff = (truth + pred) / 2, pred - truth
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(mean, diff, s=6, alpha=0.5)
    ax.axhline(bias, color="k", lw=1, label=f"bias {bias:+.3f}")
    for sign in (-1, 1):
        ax.axhline(bias + sign * 1.96 * sd, color="k", ls="--", lw=0.8)
    ax.set(xlabel="mean of measured and predicted (g/cm²)", ylabel="predicted − measured (g/cm²)",
           title=title or f"Bland–Altman (LoA ± {1.96 * sd:.3f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_plot(truth: np.ndarray, preds: Mapping[str, np.ndarray], path: Path,
             threshold: float = SCREEN_THRESHOLD_GCM2) -> Path:
    """ROC of the low-BMD screen (positive = measured < threshold; score = −prediction)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    pos = truth < threshold
    fig, ax = plt.subplots(figsize=(5, 5))
    if 0 < pos.sum() < pos.size:
        for name, pred in preds.items():
            fpr, tpr, _ = roc_curve(pos, -pred)
            ax.plot(fpr, tpr, lw=1.2, label=f"{name} (AUC {roc_auc_score(pos, -pred):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 − specificity", ylabel="sensitivity",
           title=f"low-BMD screen at {threshold} g/cm²")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def attention_plot(attention: np.ndarray, names: Sequence[str], path: Path, title: str = "") -> Path:
    """Mean field-level attention per clinical field (the paper's interpretability figure)."""
    plt = _plt()
    mean = attention.mean(axis=0)
    sd = attention.std(axis=0)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(names)), mean, yerr=sd, color="tab:blue", alpha=0.8, capsize=2)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="mean attention", title=title or "field-level metadata attention")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_bars(summary: Mapping[str, Mapping[str, tuple[float, float]]], key: str, path: Path) -> Path:
    """One bar per model: mean ± SD over folds of one metric (ablation figure)."""
    plt = _plt()
    names = list(summary)
    means = [summary[n][key][0] for n in names]
    sds = [summary[n][key][1] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(names)), means, yerr=np.nan_to_num(sds), capsize=3, color="tab:green")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=key, title=f"{key} over folds (mean ± SD)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
