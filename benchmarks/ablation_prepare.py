"""Prepare the paper-regime ablation: two paper-like cohorts, an overlap check, a pretrained encoder.

Steps (each skipped when its output exists, so the job resumes after an interruption):
1. n = 233 cohort like the paper's (ages 71.6–80.6, 48.9 % women), v2 world, seed 20260233;
2. the image encoder pretrained on the landmarks of a separate 2,000-hip cohort (seed 0), not on
   BMD -> WORK/pretrain/encoder.pt (resumable per epoch);
3. n = 2,000 cohort drawn the same way as 1, seed 20262000;
4. a check that no two of the three cohorts share a person (ten fields + label) or an image
   (SHA-1) -> WORK/overlap.json.

Usage: nice -n 10 python benchmarks/ablation_prepare.py [--work local/ablation] [--pretrain-cohort DIR]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import time
from pathlib import Path

SEED_233, SEED_2000 = 20260233, 20262000
PRETRAIN_COHORT = Path("/work/wt/locate/local/data/hip2000")  # `bmd-edge synth --n 2000 --seed 0`
PERSON_KEYS = ("age_xray", "age_bmd", "sex", "height_cm", "weight_kg", "bmi",
               "alcohol_units_week", "activity_score", "diet_score", "smoking", "fn_bmd")


def cohort_dirs(work: Path) -> dict[str, Path]:
    return {"n233": work / f"cohort_n233_seed{SEED_233}", "n2000": work / f"cohort_n2000_seed{SEED_2000}"}


def _people_and_hashes(cohort: Path) -> tuple[set[tuple[str, ...]], set[str]]:
    with open(cohort / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    people = {tuple(r[k] for k in PERSON_KEYS) for r in rows}
    hashes = {hashlib.sha1((cohort / r["image"]).read_bytes()).hexdigest() for r in rows}
    return people, hashes


def overlap_report(cohorts: dict[str, Path]) -> dict[str, object]:
    """Shared people / identical images between every pair of cohorts (all must be 0)."""
    sets = {name: _people_and_hashes(path) for name, path in cohorts.items()}
    names = list(sets)
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs[f"{a} vs {b}"] = {"shared_people": len(sets[a][0] & sets[b][0]),
                                    "identical_images": len(sets[a][1] & sets[b][1])}
    return {"cohorts": {k: str(v) for k, v in cohorts.items()},
            "sizes": {k: len(v[1]) for k, v in sets.items()}, "pairs": pairs,
            "note": "patient_id strings (SYNTH-<index>) repeat across seeds by design; "
                    "people are compared by their ten fields and label, images by SHA-1"}


def main() -> None:
    from bmd_edge.synth.paper_cohort import generate_paper_cohort
    from bmd_edge.training.landmark_pretrain import PretrainConfig, pretrain

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, default=Path("local/ablation"))
    ap.add_argument("--pretrain-cohort", type=Path, default=PRETRAIN_COHORT)
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--only", choices=("encoder", "n2000"), default=None,
                    help="encoder: steps 1-2 only; n2000: steps 3-4 only (so the n = 233 CV can "
                         "run in between without two heavy jobs at once)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True)
    dirs = cohort_dirs(args.work)
    sizes = {"n233": (233, SEED_233), "n2000": (2000, SEED_2000)}

    def render(name: str) -> None:
        n, seed = sizes[name]
        if not (dirs[name] / "manifest.csv").is_file():
            log(f"rendering {name} ({n} cases, seed {seed}) into {dirs[name]}")
            generate_paper_cohort(n, dirs[name], seed=seed, size=256, workers=1)
        log(f"{name} ready")

    # the n = 233 CV needs the small cohort and the encoder; the n = 2,000 cohort comes last
    if args.only != "n2000":
        render("n233")
        cfg = dataclasses.replace(PretrainConfig(), epochs=args.epochs)
        encoder = pretrain(args.pretrain_cohort, args.work / "pretrain", cfg, log=log)
        log(f"encoder ready: {encoder}")
    if args.only == "encoder":
        return
    render("n2000")
    overlap = args.work / "overlap.json"
    if not overlap.is_file():
        report = overlap_report({"pretrain": args.pretrain_cohort, **dirs})
        overlap.write_text(json.dumps(report, indent=1))
        log(f"overlap: {report['pairs']}")


if __name__ == "__main__":
    main()
