"""Recalibrate the shipped bundle's split-conformal interval on a larger, fresh synthetic cohort.

Why: the export pipeline computed the 90 % half-width on only 86 held-out cases of the training
cohort (seed 0); with so few cases the ⌈(n+1)·0.9⌉-th residual is a noisy, here conservative,
quantile (coverage 0.947 on 600 fresh cases, issue 4 wants within 3 points of 0.90). This draws
a separate calibration cohort (seed 4242: not 0, which trained the model, and not 12345, which
benchmarks/interval_coverage.py tests on), runs the bundle's int8 variant through the same
`Predictor` the CLI uses (OpenVINO by default), takes the half-width from
`bmd_edge.compress.conformal.conformal_halfwidth`, writes it into bundle.json's `interval`
and re-stamps the model files' embedded copy (`bundle_embed.restamp_folder`). The shipped bundle
is pinned by digest: the script prints the new digest for `bmd_edge/bundle_trust.py`
(or pass --sign-key to sign another bundle).

    .venv/bin/python calibration/recalibrate_interval.py [--n 800] [--seed 4242] [--size 256]
        [--bundle export] [--backend openvino] [--cohort DIR] [--dry-run]

Model weights are not touched; only their embedded metadata and so their sha256 sums change.
Writes calibration/interval.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Manifest columns passed to Predictor besides age_xray/age_bmd/sex/side (as the coverage
# benchmark does, so calibration and test cases are exchangeable).
FIELDS = ("height_cm", "weight_kg", "bmi", "alcohol_units_week", "activity_score", "diet_score",
          "smoking")


def records_of(rows: list[dict[str, str]]) -> list[dict[str, object]]:
    """Predictor keyword facts for every manifest row (empty columns left out)."""
    out = []
    for r in rows:
        rec: dict[str, object] = {k: r[k] for k in FIELDS if r.get(k) not in (None, "")}
        rec.update(age=float(r["age_xray"]), age_bmd=float(r["age_bmd"]), sex=r["sex"],
                   side=r["side"] or None)
        out.append(rec)
    return out


def predict_cohort(bundle: Path, cohort: Path, rows: list[dict[str, str]],
                   backend: str) -> tuple[np.ndarray, str, int]:
    """(predicted BMD per row, variant name, cases the quality gate would refuse)."""
    from bmd_edge.runtime.predictor import Predictor

    # A fresh rebuild is not pinned yet: this script is where its digest gets made.
    p = Predictor.load(bundle, backend=backend, variant="int8", allow_unsigned=True)
    # force=True: gate-refused synthetic cases still run (flagged), exactly as the coverage
    # benchmark counts them, so the calibration and test populations match.
    preds = p.predict_batch([cohort / r["image"] for r in rows], records_of(rows), force=True)
    gated = sum(any("quality gate overridden" in w for w in o.warnings) for o in preds)
    return np.array([o.bmd_gcm2 for o in preds], np.float64), p.variant, gated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "export")
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    ap.add_argument("--cohort", type=Path, default=None,
                    help="reuse a cohort folder already generated with these n/seed/size")
    ap.add_argument("--report", type=Path, default=ROOT / "calibration" / "interval.md")
    ap.add_argument("--dry-run", action="store_true", help="compute and print; write nothing")
    ap.add_argument("--sign-key", type=Path, default=None, help="sign the result (not pinned)")
    args = ap.parse_args()
    if args.seed in (0, 12345):
        sys.exit(f"error: seed {args.seed} is the training (0) or coverage-test (12345) cohort; "
                 "give another seed")

    from dataclasses import replace

    from bmd_edge.bundle import META_FILE, Bundle, Interval
    from bmd_edge.bundle_embed import restamp_folder
    from bmd_edge.compress.conformal import conformal_halfwidth, empirical_coverage

    meta_path = args.bundle / META_FILE
    bundle = Bundle.load(args.bundle, allow_unsigned=True)  # validated; trust is re-made below
    old = bundle.meta.interval.to_dict()
    coverage = bundle.meta.interval.coverage

    work = Path(tempfile.mkdtemp(prefix="bmd-recal-"))
    t0 = time.perf_counter()
    if args.cohort is None:
        from bmd_edge.synth import generate_cohort

        cohort = generate_cohort(args.n, work / "cohort", seed=args.seed, size=args.size,
                                 workers=1).parent
    else:
        cohort = args.cohort
    gen_s = time.perf_counter() - t0
    with open(cohort / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != args.n:
        sys.exit(f"error: cohort {cohort} has {len(rows)} cases; expected --n {args.n}")
    y = np.array([float(r["fn_bmd"]) for r in rows])
    t1 = time.perf_counter()
    pred, variant, gated = predict_cohort(args.bundle, cohort, rows, args.backend)
    run_s = time.perf_counter() - t1

    iv = conformal_halfwidth(y, pred, coverage)
    cov_old = empirical_coverage(y, pred, float(old["halfwidth_gcm2"]))
    cov_new = empirical_coverage(y, pred, iv.halfwidth_gcm2)
    mae = float(np.mean(np.abs(y - pred)))
    cal_set = (f"{iv.n_calibration} synthetic hips from bmd_edge.synth.generate_cohort seed "
               f"{args.seed}, {args.size} px (training used seed 0, the coverage benchmark seed "
               f"12345); predictions by {variant} via Predictor ({args.backend}, force=True, "
               "manifest facts and side); calibration/recalibrate_interval.py")
    print(f"n={iv.n_calibration} variant={variant} half-width {old['halfwidth_gcm2']:.4f} -> "
          f"{iv.halfwidth_gcm2:.4f} g/cm2; coverage on this cohort {cov_old:.3f} -> {cov_new:.3f}; "
          f"MAE {mae:.4f}; gate-refused (forced) {gated}; gen {gen_s:.0f} s, run {run_s:.0f} s")
    if args.dry_run:
        shutil.rmtree(work, ignore_errors=True)
        return

    new = Interval(iv.method, iv.coverage, iv.halfwidth_gcm2, iv.n_calibration, variant, cal_set)
    written = restamp_folder(args.bundle, replace(bundle.meta, interval=new), args.sign_key)
    print(f"new digest (pin it in bmd_edge/bundle_trust.py PINNED_DIGESTS): {written.digest()}")

    today = dt.date.today().isoformat()
    L = ["# Split-conformal interval of the shipped bundle: recalibration", "",
         f"Date: {today}. Script: `calibration/recalibrate_interval.py` (this file is its output).",
         "",
         (f"Why: the export pipeline's 90 % half-width ({float(old['halfwidth_gcm2']):.4f} g/cm²) "
          f"came from only {old.get('n_calibration')} held-out cases of the training cohort, and a "
          "small calibration set can be lucky either way (the first shipped bundle's 0.1585 covered "
          "0.947 of 600 fresh cases, over 3 points above nominal 0.90)."), "",
         (f"Calibration set: {cal_set}. Half-width: "
          "`bmd_edge.compress.conformal.conformal_halfwidth`, the ⌈(n+1)·coverage⌉-th smallest "
          f"|y − ŷ| (rank {int(np.ceil((iv.n_calibration + 1) * coverage))} of "
          f"{iv.n_calibration})."), "",
         "| | n calibration | half-width g/cm² | coverage on this calibration cohort |",
         "|---|---:|---:|---:|",
         (f"| before | {old.get('n_calibration')} | {float(old['halfwidth_gcm2']):.4f} | "
          f"{cov_old:.3f} |"),
         f"| after | {iv.n_calibration} | {iv.halfwidth_gcm2:.4f} | {cov_new:.3f} |", "",
         f"Nominal coverage {coverage:.2f}. MAE on this cohort {mae:.4f} g/cm². Cases the quality "
         f"gate would refuse (run with force=True, as in the coverage benchmark): {gated}. "
         f"Cohort generated in {gen_s:.0f} s"
         + ("" if args.cohort is None else f" (reused from {cohort})")
         + f", inference {run_s:.0f} s.", "",
         ("bundle.json's `interval` changed, and with it the metadata copy embedded in the "
          "model files (`bundle_embed.restamp_folder`: IR rt_info and ONNX metadata_props; "
          "weights untouched) and their `files` sums; the shipped bundle's pinned digest must be "
          "updated. Held-out check: benchmarks/results/interval_coverage.md."), ""]
    args.report.write_text("\n".join(L), encoding="utf-8")
    print(f"wrote {meta_path} and {args.report}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
