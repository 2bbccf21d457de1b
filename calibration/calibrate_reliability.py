"""Fit a bundle's reliability section: shift-score statistics, thresholds, Mondrian intervals.

    .venv/bin/python calibration/calibrate_reliability.py BUNDLE \
        --stats TRAIN/manifest.csv [--stats PELVIS_TRAIN/manifest.csv] \
        --calibration CAL_HIP/manifest.csv --calibration CAL_PELVIS/manifest.csv \
        [--add-embedding] [--backend openvino] [--sign-key KEY] [--report calibration/reliability.md]

--stats: the training distribution (the training cohort's crops: the statistics describe what the
model learned from). --calibration: fresh clean synthetic cases (hip and pelvis views; seeds not
used for training or benchmarks) on which the flag threshold (≤ 5 % of clean cases flagged) and
the per sex × tertile × view interval half-widths are chosen. --add-embedding first gives an
older bundle's model files the `embedding` output (new exports have it). The bundle is
re-stamped; the shipped default's digest must then be re-pinned (bmd_edge/bundle_trust.py).
Policy and numbers: RELIABILITY.md §12 "Shift detection and conditional intervals".
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--stats", type=Path, action="append", required=True)
    ap.add_argument("--calibration", type=Path, action="append", required=True)
    ap.add_argument("--stats-limit", type=int, default=None, help="cases per stats manifest")
    ap.add_argument("--cal-limit", type=int, default=None, help="cases per calibration manifest")
    ap.add_argument("--add-embedding", action="store_true")
    ap.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    ap.add_argument("--sign-key", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=ROOT / "calibration" / "reliability.md")
    a = ap.parse_args()

    from bmd_edge.reliability.build import add_embedding_outputs, calibrate

    if a.add_embedding:
        print("embedding output added to", add_embedding_outputs(a.bundle))
    meta, s = calibrate(a.bundle, a.stats, a.calibration, backend=a.backend,
                        stats_limit=a.stats_limit, cal_limit=a.cal_limit, sign_key=a.sign_key)
    r = meta.reliability
    L = ["# Reliability calibration: shift score thresholds and Mondrian intervals", "",
         f"Date: {dt.date.today().isoformat()}. Script: `calibration/calibrate_reliability.py` "
         f"(this file is its output). Bundle: `{a.bundle}` ({meta.model.name} "
         f"{meta.model.version}), backend {a.backend}. Bundle digest after: `{meta.digest()}`.", "",
         f"Statistics set: {r.shift.n_stats} cases ({', '.join(str(m) for m in a.stats)}). "
         f"Calibration manifests: {', '.join(str(m) for m in a.calibration)}; thresholds from "
         f"the {r.shift.n_calibration} cases of the trained view(s) {', '.join(r.shift.views)}.",
         "",
         f"Shift score: embedding {'used' if r.shift.uses_embedding else 'NOT available'}; "
         f"flag above {r.shift.flag_threshold:.3f} (clean calibration cases flagged: "
         f"{r.shift.clean_flagged:.3f}); refuse above {r.shift.refuse_threshold:.3f}; flagged "
         f"half-width × min(score / flag, {r.shift.max_widen:g}).", "",
         f"Calibration MAE {s['mae_calibration']:.4f} g/cm². Pooled 90 % half-width "
         f"{s['pooled_halfwidth']:.4f} g/cm².", "",
         "| sex | view | predicted-BMD tertile | tertile range g/cm² | n | half-width g/cm² |",
         "|---|---|---|---|---:|---:|"]
    for (sex, view, t), c in sorted(r.intervals.cells.items()):
        lo, hi = r.intervals.edges[(sex, view)]
        rng = [f"< {lo:.3f}", f"{lo:.3f}–{hi:.3f}", f"≥ {hi:.3f}"][t]
        L.append(f"| {sex} | {view} | {('low', 'mid', 'high')[t]} | {rng} | {c.n} | "
                 f"{c.halfwidth_gcm2:.4f} |")
    a.report.write_text("\n".join(L) + "\n", encoding="utf-8")
    print(f"wrote {a.report}")


if __name__ == "__main__":
    main()
