"""The paper's ablation asked in the paper's regime: does fusing image and clinical fields beat both?

Protocol (full text and every deviation from the paper in `results/ablation.md`):
- cohorts drawn like the paper's (ages 71.6–80.6, 48.9 % women, the ten fields), v2 world, new
  seeds: n = 233 (stratified 10-fold CV × seeds 0, 1, 2) and n = 2,000 (5-fold CV, seed 0);
- image encoder pretrained on hip LANDMARKS of a separate 2,000-hip cohort (ImageNet stand-in),
  then FROZEN: features cached once per image, only fusion + heads trained per fold;
- rows xattn/WSL1, concat/WSL1, image-only, metadata-only (same frozen features, WSL1 loss),
  OLS and OST on the same folds; MSE, MAE, R², AUC and recall at 0.899 g/cm² per fold;
- paired differences xattn − each row with the Nadeau–Bengio corrected resampled t-test and the
  spread over seeds. Every finished unit is appended to results/ablation/units_<cohort>.jsonl,
  and the report is rewritten after every fold, so a partial run is readable and resumable.

Prepare first (cohorts + encoder): nice -n 10 python benchmarks/ablation_prepare.py
Usage: nice -n 10 python benchmarks/ablation.py [--cohort n233 n2000] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ablation_prepare import PRETRAIN_COHORT, SEED_233, SEED_2000, cohort_dirs

RESULTS = Path(__file__).resolve().parent / "results"
UNITS = RESULTS / "ablation"
PLAN = {"n233": {"k": 10, "seeds": (0, 1, 2), "cfg": {}},
        # 7.6× the steps per epoch of n = 233: fewer epochs reach the same number of updates
        "n2000": {"k": 5, "seeds": (0,), "cfg": {"epochs": 40, "patience": 8}}}
METRICS = (("mse", "MSE", 5, False), ("mae", "MAE", 4, False), ("r2", "R²", 3, True),
           ("auc", "AUC", 3, True), ("recall", "recall", 3, True))
PAPER = {"mse": -16.7, "mae": -6.03, "r2": +16.4}  # xattn vs concat, the paper's abstract


def _units(name: str) -> list[dict]:
    from bmd_edge.training.probe_cv import read_results

    return read_results(UNITS / f"units_{name}.jsonl")


def progress_line(units: Sequence[dict], k: int, seeds: Sequence[int]) -> str:
    from bmd_edge.training.probe_cv import ROWS

    done = {r: sum(1 for u in units if u["row"] == r) for r in ROWS}
    full = [s for s in seeds if all(sum(1 for u in units if u["row"] == r and u["seed"] == s) == k
                                    for r in ROWS)]
    return (f"**{min(done.values())}/{k * len(seeds)} folds done for every row** "
            f"(planned {len(seeds)} seed(s) × {k} folds; complete seeds: "
            f"{', '.join(map(str, full)) or 'none yet'}; units per row: "
            + ", ".join(f"{r} {n}" for r, n in done.items()) + ")")


def summary_table(units: Sequence[dict]) -> list[str]:
    """Mean ± SD over all folds (of all seeds) per row, plus pooled out-of-fold R² per seed."""
    from bmd_edge.training.probe_cv import ROWS

    return summary_table_rows(units, ROWS)


def summary_table_rows(units: Sequence[dict], rows: Sequence[str] | None = None) -> list[str]:
    from bmd_edge.training.metrics import all_metrics

    rows = list(rows or dict.fromkeys(u["row"] for u in units))
    lines = ["| row | folds | " + " | ".join(m[1] for m in METRICS) + " | pooled OOF R² (per seed) |",
             "|---|---|" + "---|" * len(METRICS) + "---|"]
    for row in rows:
        us = [u for u in units if u["row"] == row]
        if not us:
            continue
        cells = []
        for key, _, digits, _ in METRICS:
            v = np.array([u["metrics"][key] for u in us], dtype=float)
            v = v[np.isfinite(v)]
            cells.append(f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if v.size > 1
                         else (f"{v.mean():.{digits}f}" if v.size else "n/a"))
        pooled = []
        for seed in sorted({u["seed"] for u in us}):
            su = [u for u in us if u["seed"] == seed]
            idx = np.concatenate([u["test_idx"] for u in su])
            pred = np.concatenate([u["pred"] for u in su])
            truth = truth_of(su[0]["_cohort"])[idx]
            pooled.append(f"{all_metrics(truth, pred)['r2']:.3f}")
        lines.append(f"| {row} | {len(us)} | " + " | ".join(cells) + f" | {', '.join(pooled)} |")
    return lines


_TRUTH: dict[str, np.ndarray] = {}


def truth_of(name: str) -> np.ndarray:
    return _TRUTH[name]


def paired_rows(units: Sequence[dict], pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[dict]]:
    """Markdown rows and raw records of the paired differences (a − b) per metric."""
    from bmd_edge.training.paired_stats import corrected_resampled_ttest, seed_spread
    from bmd_edge.training.probe_cv import paired_differences

    lines = ["| a − b | metric | mean diff | 95 % CI (Nadeau–Bengio) | p | naive CI (uncorrected) "
             "| per-seed means (SD over seeds) | folds a better |",
             "|---|---|---|---|---|---|---|---|"]
    records = []
    for a, b in pairs:
        for key, label, digits, higher in METRICS:
            d = paired_differences(units, a, b, key)
            flat = [x for v in d.values() for _, x, _, _ in v]
            if len(flat) < 2:
                continue
            n_tr = float(np.mean([t for v in d.values() for _, _, t, _ in v]))
            n_te = float(np.mean([t for v in d.values() for _, _, _, t in v]))
            r = corrected_resampled_ttest(flat, n_tr, n_te)
            s = seed_spread({k: [x for _, x, _, _ in v] for k, v in d.items()})
            from scipy.stats import t as student_t

            half = float(student_t.ppf(0.975, r.df)) * r.naive_se
            won = sum(1 for x in flat if (x > 0 if higher else x < 0))
            dg = digits + 1
            seeds = ", ".join(f"{m:+.{dg}f}" for m in s.per_seed.values())
            sd = f" ({s.sd:.{dg}f})" if math.isfinite(s.sd) else ""
            lines.append(f"| {a} − {b} | {label} | {r.mean:+.{dg}f} | [{r.ci_low:+.{dg}f}, "
                         f"{r.ci_high:+.{dg}f}] | {r.p:.3f} | [{r.mean - half:+.{dg}f}, "
                         f"{r.mean + half:+.{dg}f}] | {seeds}{sd} | {won}/{len(flat)} |")
            records.append({"a": a, "b": b, "metric": key, "higher_is_better": higher,
                            "mean": r.mean, "ci": [r.ci_low, r.ci_high], "p": r.p,
                            "n_folds": r.n_folds, "per_seed": s.per_seed, "seed_sd": s.sd})
    return lines, records


def late_fusion_rows(units: Sequence[dict], k: int) -> list[str]:
    """Headroom check: a linear late fusion a·image-only + b·OLS + c, per test fold fitted on the
    other folds' out-of-fold predictions (3 numbers; those models saw this fold in training, a
    negligible leak for 3 coefficients). If it beats image-only, the fields carry information
    beyond what the image row extracted, and a fused model *could* beat both."""
    from sklearn.linear_model import LinearRegression

    from bmd_edge.training.metrics import all_metrics

    out = ["| seed | image-only R² | OLS R² | late fusion R² | late − image ΔR² | "
           "late fusion MAE | xattn/WSL1 R² | concat/WSL1 R² |", "|---|---|---|---|---|---|---|---|"]
    for seed in sorted({u["seed"] for u in units}):
        pooled = {}
        for row in ("image-only", "OLS", "xattn/WSL1", "concat/WSL1"):
            su = [u for u in units if u["seed"] == seed and u["row"] == row]
            if len(su) != k:
                break
            p = np.full(len(truth_of(su[0]["_cohort"])), np.nan)
            fold = np.full(p.size, -1)
            for u in su:
                p[u["test_idx"]] = u["pred"]
                fold[u["test_idx"]] = u["fold"]
            pooled[row] = p
        if len(pooled) < 4:
            continue
        y = truth_of(units[0]["_cohort"])
        x = np.column_stack([pooled["image-only"], pooled["OLS"]])
        late = np.empty_like(y)
        for f in range(k):
            tr, te = fold != f, fold == f
            late[te] = LinearRegression().fit(x[tr], y[tr]).predict(x[te])
        m = {name: all_metrics(y, p) for name, p in {**pooled, "late": late}.items()}
        out.append(f"| {seed} | {m['image-only']['r2']:.3f} | {m['OLS']['r2']:.3f} | "
                   f"{m['late']['r2']:.3f} | {m['late']['r2'] - m['image-only']['r2']:+.3f} | "
                   f"{m['late']['mae']:.4f} | {m['xattn/WSL1']['r2']:.3f} | "
                   f"{m['concat/WSL1']['r2']:.3f} |")
    return out if len(out) > 2 else []


def relative_change_rows(units: Sequence[dict]) -> list[str]:
    from bmd_edge.training.metrics import relative_change

    out = ["| metric | xattn vs concat, this run | paper |", "|---|---|---|"]
    for key, label in (("mse", "MSE"), ("mae", "MAE"), ("r2", "R²")):
        a = np.mean([u["metrics"][key] for u in units if u["row"] == "xattn/WSL1"])
        b = np.mean([u["metrics"][key] for u in units if u["row"] == "concat/WSL1"])
        out.append(f"| {label} | {relative_change(a, b):+.1f} % | {PAPER[key]:+.1f} % |")
    return out


def verdict(records: Sequence[dict], cohort: str) -> str:
    """Plain-language reading of the claim 'fused beats both single-modality models'."""
    def find(a: str, b: str, m: str) -> dict | None:
        return next((r for r in records if r["a"] == a and r["b"] == b and r["metric"] == m), None)

    parts = []
    for fused in ("xattn/WSL1", "concat/WSL1"):
        says = []
        for single in ("image-only", "metadata-only"):
            r2, mae = find(fused, single, "r2"), find(fused, single, "mae")
            if r2 is None or mae is None:
                continue
            lo, hi = r2["ci"]
            if lo > 0 and mae["ci"][1] < 0:
                word = "beats"
            elif hi < 0 and mae["ci"][0] > 0:
                word = "is worse than"
            else:
                word = "is not distinguishable from"
            says.append(f"{word} {single} (ΔR² {r2['mean']:+.3f}, 95 % CI [{lo:+.3f}, {hi:+.3f}]; "
                        f"ΔMAE {mae['mean']:+.4f} [{mae['ci'][0]:+.4f}, {mae['ci'][1]:+.4f}] g/cm²)")
        if says:
            parts.append(f"{fused} " + " and ".join(says))
    xc = find("xattn/WSL1", "concat/WSL1", "r2")
    if xc:
        lo, hi = xc["ci"]
        cmp = ("better than" if lo > 0 else "worse than" if hi < 0 else "not distinguishable from")
        parts.append(f"cross-attention is {cmp} concatenation (ΔR² {xc['mean']:+.3f}, "
                     f"[{lo:+.3f}, {hi:+.3f}])")
    if not parts:
        return f"{cohort}: not enough folds yet."
    return f"**{cohort}:** " + "; ".join(parts) + "."


def plots(units_by: dict[str, list[dict]], records_by: dict[str, list[dict]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bmd_edge.training.probe_cv import ROWS

    names = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, label) in zip(axes, (("r2", "R²"), ("mae", "MAE (g/cm²)"))):
        data, ticks = [], []
        for cohort, units in units_by.items():
            for row in ROWS:
                v = [u["metrics"][key] for u in units if u["row"] == row]
                if v:
                    data.append(v)
                    ticks.append(f"{row}\n{cohort}")
        if data:
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(ticks) + 1), ticks, rotation=70, fontsize=7)
        ax.set_ylabel(label)
        ax.set_title(f"per-fold {label} (all folds of all seeds)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "ablation_folds.png", dpi=110)
    plt.close(fig)
    names.append("ablation_folds.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (key, label) in zip(axes, (("r2", "ΔR² (a − b)"), ("mae", "ΔMAE (a − b), g/cm²"))):
        y, labels = 0, []
        for cohort, recs in records_by.items():
            for r in (r for r in recs if r["metric"] == key):
                color = "tab:blue" if cohort == "n233" else "tab:orange"
                ax.errorbar(r["mean"], y, xerr=[[r["mean"] - r["ci"][0]], [r["ci"][1] - r["mean"]]],
                            fmt="o", color=color, capsize=3)
                labels.append(f"{r['a']} − {r['b']} ({cohort})")
                y += 1
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(label + "  [95 % CI, Nadeau–Bengio]")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "ablation_paired.png", dpi=110)
    plt.close(fig)
    names.append("ablation_paired.png")
    return names


PAIRS = [("xattn/WSL1", b) for b in ("concat/WSL1", "image-only", "metadata-only", "OLS", "OST")]
PAIRS += [("concat/WSL1", "image-only"), ("concat/WSL1", "metadata-only"),
          ("image-only", "metadata-only")]


def write_report(work: Path, started: float) -> None:
    from bmd_edge.benchmark.machine import detect_machine

    units_by = {}
    for name in PLAN:
        us = _units(name)
        for u in us:
            u["_cohort"] = name
        if us:
            units_by[name] = us
    pre = json.loads((work / "pretrain" / "summary.json").read_text()) \
        if (work / "pretrain" / "summary.json").is_file() else {}
    overlap = json.loads((work / "overlap.json").read_text()) if (work / "overlap.json").is_file() else {}
    from dataclasses import asdict

    from bmd_edge.training.probe_cv import ProbeConfig

    probe = next((u["config"] for us in units_by.values() for u in us), asdict(ProbeConfig()))
    lines = [
        "# The paper's ablation in the paper's regime (synthetic v2 world)",
        "",
        "Question (PAPER.md): does the fused model (cross-attention, or concatenation) beat **both** "
        "single-modality models, and does cross-attention beat concatenation? Rows, folds and "
        "metrics as the paper; the encoder protocol differs (see *Deviations*). Produced by "
        "`benchmarks/ablation_prepare.py` + `benchmarks/ablation.py`; every finished (seed, fold, "
        "row) is a line in `ablation/units_<cohort>.jsonl` (metrics, test indices, predictions).",
        "",
        "## Protocol and preset",
        "",
        f"- **Cohorts** (`bmd_edge.synth.paper_cohort`): people drawn by the v2 world, the first "
        f"whose age at X-ray is 71.6–80.6 y kept until 48.9 % are women; rendered 256 px hip views. "
        f"n = 233 (seed {SEED_233}; 114 women) and n = 2,000 (seed {SEED_2000}; 978 women).",
        f"- **Image encoder, pretrained on a task other than BMD**: "
        f"{pre.get('arch', 'resnet18')} (width {pre.get('width', 32)}, 1-channel stem) at "
        f"{pre.get('image_size', 128)} px, trained to regress the hip landmarks of `landmarks.csv` "
        f"(femoral-head centre and radius, neck–shaft point, DXA neck-box centre, length, width, "
        f"angle) on a separate cohort of 2,000 hips (`bmd-edge synth --n 2000 --seed 0`, "
        f"`{PRETRAIN_COHORT}`), {pre.get('epochs', '?')} epochs "
        f"({pre.get('minutes', float('nan')):.0f} min wall in the background), 10 % held out. "
        f"Held-out median error at the end: head centre {pre.get('val_head_centre_px', float('nan')):.1f} px, "
        f"head radius {pre.get('val_head_radius_px', float('nan')):.1f} px, neck point "
        f"{pre.get('val_neck_px', float('nan')):.1f} px (of 256). This is our stand-in for the "
        f"paper's ImageNet start: ImageNet weights cannot be downloaded on this machine. "
        f"BMD labels of the pretraining cohort are never read.",
        "- **No overlap**: " + ("; ".join(f"{k}: {v['shared_people']} shared people, "
                                          f"{v['identical_images']} identical images"
                                          for k, v in overlap.get("pairs", {}).items())
                                or "check pending (written when the n = 2,000 cohort is rendered)")
        + " (people compared by their ten fields + label; `patient_id` strings repeat across "
          "seeds by construction).",
        "- **Frozen encoder, linear-probe-style**: the encoder's S/32 × S/32 feature map "
        "(256 channels, 4 × 4) is computed once per image and cached; per fold only the 1×1 token "
        "projection, position embedding, metadata encoder, fusion and head are trained "
        f"(d_model {probe.get('d_model', 64)}, {probe.get('n_layers', 3)} layers × "
        f"{probe.get('n_heads', 4)} heads as the paper, dropout {probe.get('dropout', 0.1)}, "
        f"AdamW lr {probe.get('lr', 1e-3)}, wd {probe.get('weight_decay', 1e-2)}, batch "
        f"{probe.get('batch_size', 32)}, ≤ {probe.get('epochs', 150)} epochs, early stopping "
        f"(patience {probe.get('patience', 20)}) on the WSL1 loss of a stratified "
        f"{probe.get('val_fraction', 0.15):.0%} inner split of the training fold; the test fold "
        "never picks weights; n = 2,000: ≤ 40 epochs, patience 8, as each epoch has 7.6× the "
        "updates). The token projection is per position (`PositionwiseProjection`): with a "
        "frozen trunk, a shared 1×1 projection followed by the models' mean over tokens averaged "
        "away where a feature fires (ridge on mean-pooled features R² 0.07, on the flattened map "
        "0.32 at n = 233; a first run with the shared projection gave image-only R² < 0). All four deep rows use Weighted Smooth L1 and the same features, "
        "so they differ only in fusion. OLS (ten fields + missing indicators) and OST "
        "((weight − age)/5, linearly calibrated) are fitted on the same training folds.",
        "- **Folds**: scikit-learn StratifiedKFold on BMD quartile × sex; n = 233: 10 folds × "
        "seeds 0, 1, 2; n = 2,000: 5 folds × seed 0. Metrics per test fold with scikit-learn: "
        "MSE, MAE, R², ROC-AUC and recall for low BMD (< 0.899 g/cm², positive class).",
        "- **Paired differences** a − b on the same test folds: mean, 95 % CI and p of the "
        "Nadeau–Bengio corrected resampled t-test (variance × (1/J + n_test/n_train), df = J − 1, "
        "J = seeds × folds), the uncorrected CI for comparison, the mean difference of each seed "
        "and their SD (spread over CV repetitions), and how many folds a wins.",
        "- **CPU budget / preset**: 2 shared cores with two other engineers training "
        "(≈ 1/3 of the machine); pretraining ≈ 30 min in the background, then each fold's "
        "models train in seconds on cached features. " + detect_machine().line(),
        "",
        "## Deviations from the paper (all deliberate, all forced by the CPU budget or the data)",
        "",
        "1. Encoder pretrained on synthetic hip landmarks, not ImageNet (not downloadable here).",
        "2. Encoder **frozen** (features cached) instead of fine-tuned: the paper fine-tunes the "
        "ResNet34 per fold; 3 × 10 folds × 4 deep rows of CNN fine-tuning do not fit ≈ 0.7 CPU "
        "core. A frozen encoder limits what the image rows can learn about BMD (the encoder never "
        "saw a density label), so absolute accuracy is below a fine-tuned model's; the fusion "
        "question is still asked on equal terms. No image augmentation (features are fixed).",
        "3. Smaller images and encoder: ResNet18 at width 32 and 128 px, not ResNet34 at 224 px; "
        "fusion d_model 64. The `paper` preset (ResNet34, 224 px) is GPU-only and the GPU is not "
        "lent to this task: those rows were not attempted.",
        "4. Inner 15 % split for early stopping: the paper reports 90 % train / 10 % validation "
        "folds; we never let the test fold choose the epoch.",
        "5. Synthetic data (v2 world): the clinical fields' contribution beyond the image is sized "
        "from the literature (`bmd_edge/synth/WORLD.md`: an image oracle explains R² ≈ 0.88, the "
        "fields R² ≈ 0.35, late-fusion headroom ≈ +0.016 R²), not from Hertfordshire data.",
        "",
    ]
    records_by = {}
    for name, us in units_by.items():
        _, records = paired_rows(us, PAIRS)
        records_by[name] = records
    lines += ["## Verdict on the paper's claim on this data", ""]
    lines += [verdict(records_by.get(n, []), f"n = {int(n[1:]):,}") for n in PLAN if n in records_by]
    if not records_by:
        lines.append("No fold has finished yet: the runs are in progress (see the tables below "
                     "as they fill).")
    if len(records_by) == len(PLAN) and all(
            len(_units(n)) == 6 * PLAN[n]["k"] * len(PLAN[n]["seeds"]) for n in PLAN):
        lines += ["", VERDICT_TEXT, ""]  # written for the finished runs; not for partial ones
    else:
        lines += ["", "(Runs in progress: the plain-language reading is added when every "
                  "planned fold is done; a comparison counts as a win only when the "
                  "Nadeau–Bengio 95 % CIs of both ΔR² and ΔMAE exclude zero in its favour.)", ""]
    for name, us in units_by.items():
        plan = PLAN[name]
        table, _ = paired_rows(us, PAIRS)
        lines += [f"## n = {int(name[1:]):,}: {plan['k']}-fold CV × seeds {', '.join(map(str, plan['seeds']))}",
                  "", progress_line(us, plan["k"], plan["seeds"]), "",
                  "### Rows (mean ± SD over folds)", "", *summary_table(us), "",
                  "MSE in (g/cm²)², MAE in g/cm²; AUC and recall for FN BMD < 0.899 g/cm². The last "
                  "column pools each seed's out-of-fold predictions.", "",
                  "### Paired differences (xattn and the fused rows against each other row)", "",
                  *table, "",
                  "Negative ΔMSE/ΔMAE and positive ΔR²/ΔAUC/Δrecall favour a. The naive CI ignores "
                  "that training folds overlap and is shown only to see what the correction does.", "",
                  "### Cross-attention vs concatenation, relative change (mean over folds)", "",
                  *relative_change_rows(us), ""]
        late = late_fusion_rows(us, plan["k"])
        if late:
            lines += ["### Headroom: linear late fusion of image-only and OLS (pooled out of fold)",
                      "", *late, "",
                      "If the late fusion beats image-only, the clinical fields carry information "
                      "the image row did not extract, so a fused model could beat both; the deep "
                      "fused rows are then judged against that reachable gain.", ""]
    if units_by:
        figs = plots(units_by, records_by)
        lines += ["## Figures", "", *(f"![{f}]({f})" for f in figs), ""]
    lines += [f"Report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"this process ran {(time.time() - started) / 60:.1f} min."]
    (RESULTS / "ablation.md").write_text("\n".join(lines) + "\n")


VERDICT_TEXT = """\
**In plain words.** The paper's claim — the fused model beats *both* single-modality models — is
**not reproduced on this data**. With a large cohort (n = 2,000) both fused models are clearly
better than the clinical fields alone (ΔR² ≈ +0.30, every fold), but neither is better than the
image alone: cross-attention ties image-only (ΔR² +0.004, CI −0.07 to +0.08), concatenation is
ahead in all five folds but by an amount the fold-corrected test cannot separate from zero
(+0.042, CI −0.008 to +0.092; the uncorrected CI would have called it significant). In the
paper's own regime (n = 233, 10 folds × 3 seeds) nothing is resolved: every fused-vs-single
ΔR² interval spans zero (only xattn − metadata-only's ΔMAE, −0.014, CI −0.026 to −0.001,
excludes it), and the simple OLS on the ten fields (pooled R² ≈ 0.21–0.23) is as good as
any deep row on frozen features (0.04–0.32).

Cross-attention vs concatenation reproduces the paper's *size* at n = 233 — MSE −16 %, MAE −9 %
(paper −16.7 %, −6.0 %), ahead in 24 of 30 folds — but the Nadeau–Bengio interval includes zero
(ΔR² +0.148, CI −0.011 to +0.307, p = 0.07), and at n = 2,000 the sign reverses (ΔR² −0.038,
CI −0.105 to +0.028). The likelier reading is that concatenation (an MLP over all field tokens)
over-fits 200 training cases more than cross-attention does, not that cross-attention fuses
better. Fusion had room to help: a 3-coefficient linear late fusion of the image-only and OLS
predictions gains +0.11 to +0.16 R² over image-only at n = 233 and +0.053 at n = 2,000 (the
world's designed headroom from micro-architecture the image cannot show is ≈ +0.016 R² for an
ideal image model; a weaker image model leaves more to the fields). The deep fused rows reach
part of that gain at best (concat +0.04 at n = 2,000) and none of it reliably.

Limits of this verdict: a frozen encoder pretrained on synthetic landmarks (not a fine-tuned
ImageNet ResNet34), synthetic v2 data whose field contribution was sized from the literature,
one seed at n = 2,000, and no fine-tuned rows (CPU budget)."""


def main() -> None:
    global RESULTS, UNITS
    import dataclasses

    from bmd_edge.manifest import read_manifest
    from bmd_edge.training.data import case_label
    from bmd_edge.training.probe_cv import ProbeConfig, cached_features, run_probe_cv

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, default=Path("local/ablation"))
    ap.add_argument("--cohort", nargs="+", choices=list(PLAN), default=list(PLAN))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="run only these of the planned CV seeds now (the rest on a later call)")
    ap.add_argument("--out", type=Path, default=None, help="where the report and units go")
    ap.add_argument("--max-units", type=int, default=None, help="stop after this many (smoke runs)")
    args = ap.parse_args()
    if args.out is not None:
        RESULTS, UNITS = args.out, args.out / "ablation"
    started = time.time()
    log = lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True)
    encoder = args.work / "pretrain" / "encoder.pt"
    blob_cfg = None
    dirs = cohort_dirs(args.work)
    cases_by = {}
    for name in PLAN:
        if (dirs[name] / "manifest.csv").is_file():
            cases_by[name] = list(read_manifest(dirs[name] / "manifest.csv", require_label=True).cases)
            _TRUTH[name] = np.array([case_label(c) for c in cases_by[name]])
    if not args.report_only:
        import torch

        blob_cfg = torch.load(encoder, map_location="cpu", weights_only=True)
        summary = {**blob_cfg["config"], **blob_cfg["history"][-1],
                   "minutes": sum(h["seconds"] for h in blob_cfg["history"]) / 60}
        (args.work / "pretrain" / "summary.json").write_text(json.dumps(summary, indent=1))
        for name in args.cohort:
            if name not in cases_by:
                log(f"{name}: cohort not rendered yet, skipped")
                continue
            cases = cases_by[name]
            feats = cached_features(args.work / f"features_{name}.npy", encoder, cases,
                                    int(blob_cfg["config"]["image_size"]))
            log(f"{name}: features {feats.shape}")
            plan = PLAN[name]
            count = {"n": 0}

            def on_unit(unit: dict, count: dict = count) -> None:
                count["n"] += 1
                if count["n"] % 6 == 0:  # six rows: one fold of every row
                    write_report(args.work, started)

            seeds = [s for s in plan["seeds"] if args.seeds is None or s in args.seeds]
            cfg = dataclasses.replace(ProbeConfig(), **plan["cfg"])
            run_probe_cv(cases, feats, UNITS / f"units_{name}.jsonl", k=plan["k"], seeds=seeds,
                         cfg=cfg, log=log, on_unit=on_unit, max_units=args.max_units)
            write_report(args.work, started)
    write_report(args.work, started)
    log(f"wrote {RESULTS / 'ablation.md'}")


if __name__ == "__main__":
    main()
