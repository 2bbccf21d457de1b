"""Does the synthetic cohort look like the published one? Writes benchmarks/results/cohort.md.

Checks FN BMD mean/SD by sex at 70–80 y, the age slope, the BMI relation (plateau near 35),
the shares below 0.899 (T = −1) and 0.691 g/cm² (T = −2.5) by sex against NHANES prevalence,
the cross-validated R² of a linear model on metadata alone (target 0.25–0.5), of a simple image
statistic alone (mean grey level in a fixed neck ROI, after flipping left hips), and the oracle
ceiling (true vs measured BMD). Plots: cohort_grid.png (16 cases) and cohort_hist.png.

    .venv/bin/python benchmarks/cohort.py [--cohort DIR] [--n 2000]

Reads DIR (default: the cohort benchmarks/synth_speed.py leaves in /tmp) or generates it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.model_selection import KFold, cross_val_predict  # noqa: E402

from bmd_edge.synth import generate_cohort  # noqa: E402
from bmd_edge.synth.render import NECK_ROI  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
T1, T25 = 0.899, 0.691


def load(cohort: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    with (cohort / "manifest.csv").open() as f:
        man = list(csv.DictReader(f))
    with (cohort / "oracle.csv").open() as f:
        orc = list(csv.DictReader(f))
    return man, orc


def features(man: list[dict[str, str]]) -> np.ndarray:
    """Metadata design matrix: numbers as they are, sex and smoking one-hot."""
    num = ["age_xray", "age_bmd", "height_cm", "weight_kg", "bmi", "alcohol_units_week",
           "activity_score", "diet_score"]
    return np.array([[float(r[k]) for k in num] + [r["sex"] == "F", r["smoking"] == "former",
                                                   r["smoking"] == "current"] for r in man],
                    dtype=float)


def cv_r2(x: np.ndarray, y: np.ndarray) -> float:
    pred = cross_val_predict(LinearRegression(), x, y, cv=KFold(5, shuffle=True, random_state=0))
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def neck_means(cohort: Path, man: list[dict[str, str]]) -> np.ndarray:
    """Mean grey level (0–1) in the fixed neck ROI of each image, left hips flipped first."""
    out = []
    for r in man:
        img = cv2.imread(str(cohort / r["image"]), cv2.IMREAD_UNCHANGED).astype(np.float64)
        if r["side"] == "left":
            img = img[:, ::-1]
        n = img.shape[0]
        x0, y0, x1, y1 = (int(round(f * n)) for f in NECK_ROI)
        out.append(img[y0:y1, x0:x1].mean() / 65535.0)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, default=Path("/tmp/bmd_edge_cohort_2000"))
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    if not (args.cohort / "manifest.csv").exists():
        generate_cohort(args.n, args.cohort, seed=0, size=256)
    man, orc = load(args.cohort)
    y = np.array([float(r["fn_bmd"]) for r in man])
    true = np.array([float(o["true_bmd"]) for o in orc])
    sex = np.array([r["sex"] for r in man])
    age = np.array([float(r["age_bmd"]) for r in man])
    bmi = np.array([float(r["bmi"]) for r in man])
    smoke = np.array([r["smoking"] for r in man])
    lines = [f"# Synthetic cohort vs published FN BMD (n = {len(man)}, seed 0, hip view)", ""]

    lines += ["## FN BMD at 70–80 years (measured label, g/cm², GE Lunar)", "",
              "| sex | n | mean | SD | published mean | published SD |",
              "|---|---|---|---|---|---|"]
    pub = {"F": "0.78–0.88", "M": "0.88–0.98"}
    for s in "FM":
        m = (sex == s) & (age >= 70) & (age < 80)
        lines.append(f"| {s} | {m.sum()} | {y[m].mean():.3f} | {y[m].std(ddof=1):.3f} | "
                     f"{pub[s]} | 0.12–0.16 |")
    lines += ["", "Published: Lunar FN reference data for white adults 70–79 (Lunar/NHANES III "
              "derived; women ≈ 0.83, men ≈ 0.93 g/cm²).", ""]

    lines += ["## Age slope (OLS of label on age at DXA, by sex)", "",
              "| sex | g/cm² per year | % per year of the sex mean | published |",
              "|---|---|---|---|"]
    for s in "FM":
        m = sex == s
        slope = np.polyfit(age[m], y[m], 1)[0]
        lines.append(f"| {s} | {slope:+.4f} | {100 * slope / y[m].mean():+.2f} | "
                     "−0.004 to −0.010 (≈ 0.5–1 %/year after 60) |")
    lines.append("")

    lines += ["## BMI relation (binned means of the label; plateau expected near 35 kg/m²)", "",
              "| BMI bin | n | mean FN BMD | mean, women | mean, men |", "|---|---|---|---|---|"]
    edges = [0, 20, 23, 26, 29, 32, 35, 38, 100]
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (bmi >= lo) & (bmi < hi)
        if m.sum() < 5:
            continue
        f_, m_ = m & (sex == "F"), m & (sex == "M")
        fm = f"{y[f_].mean():.3f}" if f_.sum() >= 5 else "–"
        mm = f"{y[m_].mean():.3f}" if m_.sum() >= 5 else "–"
        lines.append(f"| {lo}–{hi if hi < 100 else ''} | {m.sum()} | {y[m].mean():.3f} | "
                     f"{fm} | {mm} |")
    lines.append("")

    lines += ["## Shares below the screening thresholds (age ≥ 65)", "",
              f"| sex | n | below {T1} (T ≤ −1) | below {T25} (T ≤ −2.5) | published low bone "
              "mass | published FN osteoporosis |", "|---|---|---|---|---|---|"]
    pub_low = {"F": "≈ 50–65 %", "M": "≈ 35–50 %"}
    pub_op = {"F": "≈ 16 %", "M": "≈ 4 %"}
    for s in "FM":
        m = (sex == s) & (age >= 65)
        lines.append(f"| {s} | {m.sum()} | {100 * (y[m] < T1).mean():.1f} % | "
                     f"{100 * (y[m] < T25).mean():.1f} % | {pub_low[s]} | {pub_op[s]} |")
    lines += ["", "Published: NHANES 2005–2010, FN osteoporosis in adults ≥ 65 ≈ 16 % of women "
              "and ≈ 4 % of men; low bone mass (FN or spine) in adults ≥ 50: 51 % of women, 35 % "
              "of men, higher at ≥ 65 (Looker et al., NCHS Data Brief 93, 2012; Wright et al., "
              "JBMR 2014). NHANES uses Hologic and its own reference; 0.899/0.691 are the Lunar "
              "equivalents of T = −1/−2.5 (see DESIGN.md).", ""]

    x_meta = features(man)
    neck = neck_means(args.cohort, man)
    r2_meta = cv_r2(x_meta, y)
    r2_img = cv_r2(neck[:, None], y)
    r2_both = cv_r2(np.column_stack([x_meta, neck]), y)
    r2_oracle = float(1 - ((y - true) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    soft = np.array([float(o["soft_tissue_ap_mm"]) for o in orc])
    expo = np.log(np.array([float(o["exposure_quanta"]) for o in orc]))
    r2_nuis = cv_r2(np.column_stack([soft, expo]), neck)
    lines += ["## How much each source explains (5-fold cross-validated R², linear models)", "",
              "| predictor | R² | target / meaning |", "|---|---|---|",
              f"| metadata alone (10 fields) | {r2_meta:.3f} | 0.25–0.5 |",
              f"| neck-ROI mean grey level alone | {r2_img:.3f} | low: confounded |",
              f"| metadata + neck-ROI mean | {r2_both:.3f} | |",
              f"| soft tissue + log exposure → neck-ROI mean | {r2_nuis:.3f} | nuisance share of "
              "the image statistic |",
              f"| oracle: true BMD vs measured label | {r2_oracle:.3f} | ceiling (label noise "
              "1.5 % CV) |", "",
              f"Neck ROI (fractions of the image, canonical right hip): {NECK_ROI}.", ""]
    for s in "FM":
        m = sex == s
        lines.append(f"Current smokers vs never ({s}): "
                     f"{y[m & (smoke == 'current')].mean() - y[m & (smoke == 'never')].mean():+.3f}"
                     f" g/cm² (≈ −⅓ SD expected).")
    lines.append("")
    (RESULTS / "cohort.md").write_text("\n".join(lines))
    print("\n".join(lines))

    fig, axes = plt.subplots(4, 4, figsize=(10, 10.6))
    for ax, r in zip(axes.ravel(), man[:16]):
        img = cv2.imread(str(args.cohort / r["image"]), cv2.IMREAD_UNCHANGED)
        ax.imshow(img, cmap="gray", vmin=0, vmax=65535)
        ax.set_title(f"{r['sex']} {float(r['age_xray']):.0f} y, {r['side']}\n"
                     f"FN BMD {float(r['fn_bmd']):.3f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("Synthetic hip radiographs (seed 0, 256 px) with their measured FN BMD")
    fig.tight_layout()
    fig.savefig(RESULTS / "cohort_grid.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0.35, 1.45, 45)
    for s, colour in (("F", "tab:red"), ("M", "tab:blue")):
        ax.hist(y[sex == s], bins=bins, alpha=0.5, color=colour,
                label=f"{'women' if s == 'F' else 'men'} (n={int((sex == s).sum())})")
    for t, name in ((T1, "0.899 (T = −1)"), (T25, "0.691 (T = −2.5)")):
        ax.axvline(t, color="k", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[1] * 0.95, " " + name, fontsize=8, va="top")
    ax.set_xlabel("FN BMD, g/cm² (GE Lunar)")
    ax.set_ylabel("cases")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "cohort_hist.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
