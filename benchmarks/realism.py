"""Can image statistics alone tell synthetic hips from real ones? (issue #14 acceptance)

For N synthetic hips/pelvises written by `bmd-edge synth` (the generator on this checkout) and
the real adult hip/pelvis films in ../shared/realworld/{hip,hip_extra} (paediatric and
adolescent films left out by label/file name), computes `bmd_edge.synth.image_stats` on each,
then cross-validates two small classifiers (logistic regression, a shallow random forest) that
see only those statistics. AUC ≈ 0.5: the statistics cannot separate them. With ~8 real films the
AUC is indicative, not a gate: its spread over CV repeats and a bootstrap CI are reported.

Results of earlier generator versions are kept in benchmarks/results/realism.json under their
`--label`, so old vs new sit side by side in benchmarks/results/realism.md. A side-by-side
picture (synthetic beside real at the same display settings) goes to the git-ignored local/.

    .venv/bin/python benchmarks/realism.py --label v2 [--n 48] [--size 512] [--synth DIR]
    .venv/bin/python benchmarks/realism.py --label v2 --other     # also non-hip vs realworld/nonhip
    .venv/bin/python benchmarks/realism.py --label x --recompute  # refit on the stored statistics
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bmd_edge.benchmark.machine import detect_machine
from bmd_edge.synth.image_stats import FEATURES, canonical, feature_vector

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REAL = ROOT.parent / "shared" / "realworld"
LOCAL = ROOT / "local"
PAEDIATRIC_NAME = ("pediatric", "paed", "ddh", "scfe")
# Statistics driven by clipped pixels (burned-in markers, shutters, display clipping): a second
# classifier without them shows what is left once those are matched.
SATURATION = ("sat_white", "sat_black", "p01", "p99")


def real_adult_hips(real: Path = REAL) -> list[Path]:
    """Adult hip/pelvis films: hip_extra by its labels.csv, hip/ by file name."""
    out = [p for p in sorted((real / "hip").glob("*.jpg"))
           if not any(t in p.name.lower() for t in PAEDIATRIC_NAME)]
    with (real / "hip_extra" / "labels.csv").open(newline="") as f:
        out += [real / "hip_extra" / r["file"] for r in csv.DictReader(f)
                if r["age_group"] == "adult"]
    return out


def read_grey(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"cannot read {path}")
    return img


def synthetic_hips(n: int, size: int, seed: int, folder: Path) -> list[Path]:
    """2/3 single-hip views, 1/3 AP pelvis views, as `bmd-edge synth` writes them."""
    from bmd_edge.synth import generate_cohort

    paths = []
    for view, k in (("hip", n - n // 3), ("pelvis", n // 3)):
        out = folder / view
        if not (out / "manifest.csv").exists():
            generate_cohort(k, out, seed=seed, size=size, view=view, workers=2)
        paths += sorted((out / "images").glob("*.png"))[:k]
    return paths


def synthetic_other(per_kind: int, size: int, seed: int, folder: Path) -> list[Path]:
    from bmd_edge.synth.other_anatomy import KINDS
    from bmd_edge.synth.other_writer import generate_other

    paths = []
    for kind in KINDS:
        if not (folder / kind / "manifest.csv").exists():
            generate_other(per_kind, folder / kind, kind=kind, seed=seed, size=size, workers=2)
        paths += sorted((folder / kind / "images").glob("*.png"))[:per_kind]
    return paths


def separability(x_syn: np.ndarray, x_real: np.ndarray, repeats: int = 25,
                 seed: int = 0) -> dict[str, dict[str, float]]:
    """Cross-validated AUC (real = positive) of two small classifiers on the statistics.

    Per repeat: stratified k-fold, out-of-fold scores pooled → one AUC; reported as mean ± SD
    over repeats, plus a 95 % bootstrap CI (resampling images) of the repeat-averaged scores.
    """
    x = np.vstack([x_syn, x_real])
    y = np.r_[np.zeros(len(x_syn)), np.ones(len(x_real))]
    k = int(min(4, len(x_real)))
    models = {
        "logistic": lambda: make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                          LogisticRegression(C=0.5, class_weight="balanced",
                                                             max_iter=2000)),
        "forest": lambda: make_pipeline(SimpleImputer(strategy="median"),
                                        RandomForestClassifier(n_estimators=100, max_depth=3,
                                                               class_weight="balanced",
                                                               random_state=0)),
    }
    out: dict[str, dict[str, float]] = {}
    cv = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    splits = list(cv.split(x, y))
    for name, make in models.items():
        scores = np.zeros((repeats, len(y)))
        for i, (tr, te) in enumerate(splits):
            m = make().fit(x[tr], y[tr])
            scores[i // k, te] = m.predict_proba(x[te])[:, 1]
        aucs = np.array([roc_auc_score(y, s) for s in scores])
        mean_score = scores.mean(axis=0)
        rng = np.random.default_rng(seed)
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        boot = []
        for _ in range(2000):
            idx = np.r_[rng.choice(neg, neg.size), rng.choice(pos, pos.size)]
            boot.append(roc_auc_score(y[idx], mean_score[idx]))
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[name] = {"auc_mean": float(aucs.mean()), "auc_sd": float(aucs.std(ddof=1)),
                     "auc_ci_lo": float(lo), "auc_ci_hi": float(hi)}
    return out


def all_aucs(x_syn: np.ndarray, x_real: np.ndarray) -> dict[str, dict[str, float]]:
    auc = separability(x_syn, x_real)
    keep = [j for j, name in enumerate(FEATURES) if name not in SATURATION]
    auc["logistic_nosat"] = separability(x_syn[:, keep], x_real[:, keep])["logistic"]
    return auc


def univariate_auc(a: np.ndarray, b: np.ndarray) -> float:
    """max(AUC, 1 − AUC) of one statistic alone (0.5: no separation)."""
    ok_a, ok_b = a[np.isfinite(a)], b[np.isfinite(b)]
    if ok_a.size == 0 or ok_b.size == 0:
        return float("nan")
    auc = roc_auc_score(np.r_[np.zeros(ok_a.size), np.ones(ok_b.size)], np.r_[ok_a, ok_b])
    return float(max(auc, 1.0 - auc))


def side_by_side(syn: list[Path], real: list[Path], out: Path, cols: int = 8) -> None:
    """Canonicalised images (same size, same grey mapping: none) in two rows per group."""
    tiles = [canonical(read_grey(p)) for p in syn[:cols]] + \
        [canonical(read_grey(p)) for p in real[:cols]]
    blank = np.zeros_like(tiles[0])
    rows = [tiles[:cols], tiles[cols:]]
    rows = [r + [blank] * (cols - len(r)) for r in rows]
    sheet = np.vstack([np.hstack(r) for r in rows])
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.round(sheet * 255).astype(np.uint8))


def _fmt(v: np.ndarray) -> str:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "–"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{q2:.3g} [{q1:.3g}, {q3:.3g}]"


def write_markdown(db: dict, path: Path) -> None:
    lines = ["# Synthetic vs real: image statistics (issue #14)", "",
             (f"Machine: {db.get('machine', '?')}. Statistics: `bmd_edge/synth/image_stats.py` "
             "(every image → 8-bit levels, shorter side 256 px, centre crop). Real: adult hip/"
             "pelvis films of `../shared/realworld/{hip,hip_extra}` (paediatric/adolescent "
             "films left out); they are a development reference, never committed."), "",
             "## Can a classifier on the statistics separate synthetic from real?", "",
             ("Cross-validated AUC (real = positive; 0.5 = chance), stratified k-fold × 25 "
             "repeats: mean ± SD over repeats, and a 95 % bootstrap CI of the repeat-averaged "
             "scores. Target ≤ 0.75 (indicative with this few real films). The last column "
             "refits the logistic model without the statistics that clipped pixels drive "
             "(burned-in markers, shutters, display clipping)."), "",
             "| comparison | generator | n synthetic | n real | logistic AUC | forest AUC | "
             "logistic AUC without " + ", ".join(SATURATION) + " |",
             "|---|---|---|---|---|---|---|"]
    for r in db["runs"].values():
        cells = []
        for m in ("logistic", "forest", "logistic_nosat"):
            a = r["auc"][m]
            cells.append(f"{a['auc_mean']:.2f} ± {a['auc_sd']:.2f} "
                         f"(CI {a['auc_ci_lo']:.2f}–{a['auc_ci_hi']:.2f})")
        lines.append(f"| {r['comparison']} | {r['label']} ({r['commit']}) | {r['n_syn']} | "
                     f"{r['n_real']} | {cells[0]} | {cells[1]} | {cells[2]} |")
    lines += ["", ("Give-aways (statistics that alone separate with AUC ≥ 0.8; direction: "
              "synthetic vs real median):"), ""]
    for r in db["runs"].values():
        syn, real = np.array(r["synthetic"], float), np.array(r["real"], float)
        worst = sorted(((univariate_auc(syn[:, j], real[:, j]), j) for j in range(len(FEATURES))),
                       reverse=True)
        items = [f"{FEATURES[j]} {auc:.2f} ({np.nanmedian(syn[:, j]):.3g} vs "
                 f"{np.nanmedian(real[:, j]):.3g})" for auc, j in worst if auc >= 0.8]
        lines.append(f"- {r['comparison']} / {r['label']}: " + ("; ".join(items) or "none"))
    for comparison in sorted({r["comparison"] for r in db["runs"].values()}):
        runs = [r for r in db["runs"].values() if r["comparison"] == comparison]
        real = np.array(runs[-1]["real"], float)
        lines += ["", f"## Statistics: {comparison} (median [IQR]; AUC of the statistic alone)",
                  "", "| statistic | real | " + " | ".join(
                      f"{r['label']} | AUC {r['label']}" for r in runs) + " |",
                  "|---|---|" + "---|---|" * len(runs)]
        for j, name in enumerate(FEATURES):
            row = [name, _fmt(real[:, j])]
            for r in runs:
                syn = np.array(r["synthetic"], float)
                row += [_fmt(syn[:, j]), f"{univariate_auc(syn[:, j], real[:, j]):.2f}"]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", ("Reproduce: `.venv/bin/python benchmarks/realism.py --label LABEL [--other]`; "
              "the side-by-side picture is written to `local/` (git-ignored).")]
    path.write_text("\n".join(lines) + "\n")


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def run(comparison: str, syn: list[Path], real: list[Path], label: str, db: dict) -> None:
    x_syn = np.array([feature_vector(read_grey(p)) for p in syn])
    x_real = np.array([feature_vector(read_grey(p)) for p in real])
    auc = all_aucs(x_syn, x_real)
    db["runs"][f"{comparison}/{label}"] = {
        "comparison": comparison, "label": label, "commit": _commit(), "n_syn": len(syn),
        "n_real": len(real), "auc": auc, "synthetic": x_syn.round(6).tolist(),
        "real": x_real.round(6).tolist()}
    print(comparison, label, json.dumps(auc))
    side_by_side(syn, real, LOCAL / f"realism_{comparison}_{label}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="name of this generator version (old, v2…)")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synth", type=Path, help="use this bmd-edge synth output instead")
    ap.add_argument("--other", action="store_true", help="also non-hip vs realworld/nonhip")
    ap.add_argument("--recompute", action="store_true",
                    help="only refit the classifiers on the stored statistics and rewrite the md")
    args = ap.parse_args()
    db_path = RESULTS / "realism.json"
    db = json.loads(db_path.read_text()) if db_path.exists() else {"runs": {}}
    if args.recompute:
        for r in db["runs"].values():
            r["auc"] = all_aucs(np.array(r["synthetic"], float), np.array(r["real"], float))
        db_path.write_text(json.dumps(db, indent=1) + "\n")
        write_markdown(db, RESULTS / "realism.md")
        return
    db["machine"] = detect_machine().line()
    # Rendered cases are kept (git-ignored) per label; delete the folder to re-render.
    cache = LOCAL / "realism" / args.label
    syn = (sorted(args.synth.glob("**/images/*.png")) if args.synth
           else synthetic_hips(args.n, args.size, args.seed, cache / "hip"))
    run("hip", syn, real_adult_hips(), args.label, db)
    if args.other:
        other = synthetic_other(max(args.n // 8, 4), args.size, args.seed, cache / "other")
        run("non-hip", other, sorted((REAL / "nonhip").glob("*.jpg")), args.label, db)
    db_path.write_text(json.dumps(db, indent=1) + "\n")
    write_markdown(db, RESULTS / "realism.md")
    print(f"wrote {RESULTS / 'realism.md'}")


if __name__ == "__main__":
    main()
