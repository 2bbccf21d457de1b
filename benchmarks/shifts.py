"""Acquisition shifts: does the shift score flag the cases the model gets wrong?

On a fresh synthetic cohort (not the training, calibration or interval seeds) every case is run
clean and under each shift a department produces — Gaussian noise of 2 % and 4 % of full scale,
gamma 0.8, downscaling by 2 (the film is sent at half the pixels), JPEG re-encoding at quality
85 (8-bit), a 5° rotation (edges replicated), left hips run without `--side`, and the pelvis
view (the labelled hip selected from an AP pelvis) — through the bundle's Predictor with
force=True (a refused case still returns; it counts as flagged). For each: MAE, bias and 90 %
interval coverage over all cases, the flagged (and refused) share, and MAE and coverage over
the unflagged cases, with the issue's targets: unflagged MAE ≤ 1.15 × clean MAE, unflagged
coverage ≥ 0.85, ≤ 10 % of cases both unflagged and outside their interval, ≤ 5 % of clean
cases flagged.

    .venv/bin/python benchmarks/shifts.py --hip HIP_COHORT --pelvis PELVIS_COHORT [--n 500]
        [--bundle export] [--allow-unsigned] [--backend openvino]

Writes benchmarks/results/shifts.md and shifts.png.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pixels(path: Path) -> np.ndarray:
    from bmd_edge.image_io import read_image

    return read_image(path).pixels


def _noise(sd: float) -> Any:
    def f(path: Path, i: int) -> np.ndarray:
        px = _pixels(path)
        rng = np.random.default_rng(1000 + i)
        return np.clip(px + rng.normal(0, sd, px.shape), 0, 1).astype(np.float32)
    return f


def _gamma(path: Path, i: int) -> np.ndarray:
    return (_pixels(path) ** 0.8).astype(np.float32)


def _downscale(path: Path, i: int) -> np.ndarray:
    px = _pixels(path)
    return cv2.resize(px, (px.shape[1] // 2, px.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _jpeg(path: Path, i: int) -> np.ndarray:
    px = np.round(_pixels(path) * 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", px, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return (cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0)


def _rotate(path: Path, i: int) -> np.ndarray:
    px = _pixels(path)
    h, w = px.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 5.0, 1.0)
    return np.clip(cv2.warpAffine(px, m, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE), 0, 1)


def _plain(path: Path, i: int) -> np.ndarray:
    return _pixels(path)


def arrays_of(preds: list[Any]) -> dict[str, np.ndarray]:
    """What a row's numbers need from its predictions (kept as .npz with --cache)."""
    return {"bmd": np.array([p.bmd_gcm2 for p in preds]),
            "lo": np.array([p.interval[0] for p in preds]),
            "hi": np.array([p.interval[1] for p in preds]),
            "flagged": np.array([p.flagged for p in preds]),
            "score": np.array([np.nan if p.shift_score is None else p.shift_score
                               for p in preds])}


def row(name: str, a: dict[str, np.ndarray], y: np.ndarray,
        refuse: float | None) -> dict[str, Any]:
    bmd, lo, hi = a["bmd"], a["lo"], a["hi"]
    inside = (y >= lo) & (y <= hi)
    flagged = a["flagged"].astype(bool)
    score = a["score"]
    refused = score > refuse if refuse is not None else np.zeros_like(flagged)
    un = ~flagged
    err = np.abs(bmd - y)
    return {"name": name, "n": len(y), "mae": float(err.mean()), "bias": float((bmd - y).mean()),
            "coverage": float(inside.mean()), "flagged": float(flagged.mean()),
            "refused": float(np.mean(refused)),
            "mae_unflagged": float(err[un].mean()) if un.any() else float("nan"),
            "cov_unflagged": float(inside[un].mean()) if un.any() else float("nan"),
            "unflagged_outside": float(np.mean(un & ~inside)),
            "score_median": float(np.nanmedian(score)) if np.isfinite(score).any() else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "export")
    ap.add_argument("--allow-unsigned", action="store_true")
    ap.add_argument("--hip", type=Path, required=True, help="fresh hip cohort folder")
    ap.add_argument("--pelvis", type=Path, required=True, help="fresh pelvis cohort folder")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    ap.add_argument("--note", default="", help="a sentence on what the bundle is, printed under the title")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "shifts.md")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep/reuse each row's predictions here (.npz; same bundle and cohorts)")
    a = ap.parse_args()

    from bmd_edge.benchmark.machine import detect_machine
    from bmd_edge.reliability.build import manifest_cases, run_cases
    from bmd_edge.runtime.predictor import Predictor

    p = Predictor.load(a.bundle, backend=a.backend, allow_unsigned=a.allow_unsigned)
    pol = p.reliability.shift if p.reliability is not None else None
    hip = manifest_cases(a.hip / "manifest.csv", a.n)
    with open(a.hip / "manifest.csv", newline="", encoding="utf-8") as fh:
        sides = [r["side"] for r in csv.DictReader(fh)][:a.n]
    left = [c for c, s in zip(hip, sides) if s == "left"]
    pelvis = manifest_cases(a.pelvis / "manifest.csv", a.n)
    runs = [("clean", hip, _plain, ()), ("noise 2 %", hip, _noise(0.02), ()),
            ("noise 4 %", hip, _noise(0.04), ()), ("gamma 0.8", hip, _gamma, ()),
            ("downscale ×½", hip, _downscale, ()), ("JPEG q85", hip, _jpeg, ()),
            ("rotation 5°", hip, _rotate, ()), ("left hips, clean with --side", left, _plain, ()),
            ("left hips without --side", left, _plain, ("side",)),
            ("pelvis view (--select)", pelvis, _plain, ())]
    rows = []
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    for k, (name, cases, tf, drop) in enumerate(runs):
        cache = None if a.cache is None else a.cache / f"shift_{k}_{len(cases)}.npz"
        if cache is not None and cache.is_file():
            arr = dict(np.load(cache, allow_pickle=False))
        else:
            arr = arrays_of(run_cases(p, cases, transform=tf, drop=drop))
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, **arr)
        r = row(name, arr, np.array([c[2] for c in cases]),
                None if pol is None else pol.refuse_threshold)
        rows.append(r)
        print(f"{name}: MAE {r['mae']:.4f} flagged {r['flagged']:.3f} unflagged MAE "
              f"{r['mae_unflagged']:.4f} cov {r['cov_unflagged']:.3f}", flush=True)
    secs = time.perf_counter() - t0
    clean = rows[0]
    lim = 1.15 * clean["mae"]

    def ok(c: bool) -> str:
        return "yes" if c else "**NO**"

    m = p.meta
    L = ["# Acquisition shifts: flagged share, and accuracy and coverage of what is not flagged", "",
         *([a.note, ""] if a.note else []),
         f"Bundle: `{a.bundle}` ({m.model.name} {m.model.version}; {m.provenance.training_data}), "
         f"variant {p.variant}, backend {a.backend}. Cohorts: `{a.hip}` (first {len(hip)} hips; "
         f"{len(left)} of them left hips) and `{a.pelvis}` (first {len(pelvis)} AP pelvis films, "
         "labelled hip selected), 256 px, fresh seeds (not training, calibration or interval "
         "seeds). Facts from the manifests; force=True, so a case past the refuse limit still "
         "returns and counts as flagged.", ""]
    if pol is not None:
        L += [f"Shift policy from the bundle: flag above score {pol.flag_threshold:.3f}, refuse "
              f"above {pol.refuse_threshold:.3f}, flagged interval × min(score / flag, "
              f"{pol.max_widen:g}); embedding {'used' if pol.uses_embedding else 'not available'};"
              f" {pol.n_stats} statistics cases, {pol.n_calibration} calibration cases "
              f"({pol.clean_flagged:.3f} of them flagged).", ""]
    else:
        L += ["The bundle has no shift statistics: nothing is ever flagged.", ""]
    L += [f"Targets: unflagged MAE ≤ 1.15 × clean MAE = {lim:.4f}; unflagged coverage ≥ 0.85; "
          "unflagged and outside ≤ 0.10; clean flagged ≤ 0.05.", "",
          "| shift | n | MAE | bias | coverage | flagged | refused | median score | unflagged MAE "
          "| ≤ 1.15× clean | unflagged coverage | ≥ 0.85 | unflagged & outside | ≤ 0.10 |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---|"]
    for r in rows:
        L.append(f"| {r['name']} | {r['n']} | {r['mae']:.4f} | {r['bias']:+.4f} | "
                 f"{r['coverage']:.3f} | {r['flagged']:.3f} | {r['refused']:.3f} | "
                 f"{r['score_median']:.2f} | {r['mae_unflagged']:.4f} | "
                 f"{ok(r['mae_unflagged'] <= lim or not np.isfinite(r['mae_unflagged']))} | "
                 f"{r['cov_unflagged']:.3f} | "
                 f"{ok(r['cov_unflagged'] >= 0.85 or not np.isfinite(r['cov_unflagged']))} | "
                 f"{r['unflagged_outside']:.3f} | {ok(r['unflagged_outside'] <= 0.10)} |")
    L += ["", f"Clean cases flagged: {clean['flagged']:.3f} (target ≤ 0.05: "
          f"{ok(clean['flagged'] <= 0.05)}). A shift with every case flagged has no unflagged "
          "MAE (nan): nothing unflagged can be wrong.", "",
          f"Machine: {detect_machine().cpu_model}; {secs:.0f} s for all rows, load "
          f"{load0:.1f} at start. Script: `benchmarks/shifts.py`.", ""]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(L), encoding="utf-8")
    _plot(rows, lim, a.out.with_suffix(".png"))
    print("\n".join(L))


def _plot(rows: list[dict[str, Any]], lim: float, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
    ax[0].bar(x - 0.2, [r["mae"] for r in rows], 0.4, label="all cases")
    ax[0].bar(x + 0.2, [r["mae_unflagged"] for r in rows], 0.4, label="unflagged")
    ax[0].axhline(lim, color="k", ls="--", lw=1, label="1.15 × clean MAE")
    ax[0].set_ylabel("MAE g/cm²")
    ax[1].bar(x, [r["flagged"] for r in rows], color="#c0504d")
    ax[1].axhline(0.05, color="k", ls="--", lw=1)
    ax[1].set_ylabel("flagged share")
    ax[2].bar(x - 0.2, [r["coverage"] for r in rows], 0.4, label="all cases")
    ax[2].bar(x + 0.2, [r["cov_unflagged"] for r in rows], 0.4, label="unflagged")
    ax[2].axhline(0.85, color="k", ls="--", lw=1)
    ax[2].set_ylim(0, 1)
    ax[2].set_ylabel("90 % interval coverage")
    for a_ in ax:
        a_.set_xticks(x)
        a_.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax[0].legend(fontsize=7)
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
