"""The hip locator on held-out synthetic films and on the real development films.

Writes benchmarks/results/locator.md (+ locator_scores.png: hip-film score distributions, no
pictures of films) from an exported locator run folder (`python -m bmd_edge.locate.train`).
The hip-film threshold is the one the training run chose on its validation hips (keep 99 %);
it is applied, not re-tuned, to fresh-seed synthetic sets and to the real films. Drawings of the
found heads on real films go to the git-ignored local/locator_real/ folder, never to results/.

Usage: nice -n 10 python benchmarks/locator.py --run local/runs/run1 \
         [--pos local/data/hip_eval] [--neg local/data/eval_knee ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from bmd_edge.benchmark.machine import detect_machine
from bmd_edge.image_io import read_image
from bmd_edge.locate import Locator, LocatorSpec
from bmd_edge.locate.data import load_cohort
from bmd_edge.locate.metrics import (
    LocatorMetrics,
    ReferenceHead,
    evaluate,
    load_reference_heads,
    reference_errors,
)
from bmd_edge.runtime.backends import SessionConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REAL = ROOT.parent / "shared" / "realworld"
DRAW = ROOT / "local" / "locator_real"
HEADS = ROOT / "tests" / "data" / "realworld_heads.csv"   # hand-marked by the "marks" work


def real_rows(loc: Locator, folder: Path, threshold: float, draw: bool,
              refs: dict[str, list[ReferenceHead]]) -> list[dict]:
    labels = {}
    if (folder / "labels.csv").is_file():
        labels = {r["file"]: r for r in csv.DictReader((folder / "labels.csv").open())}
    rows = []
    for p in sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")):
        img = read_image(p).pixels
        res = loc.locate(img)
        lab = labels.get(p.name, {})
        marked = refs.get(f"{folder.name}/{p.name}", [])
        errs = reference_errors(res, marked, img.shape[1], img.shape[0])
        rows.append({"marked": marked, "errs": errs,"file": p.name, "body_part": lab.get("body_part", ""),
                     "age_group": lab.get("age_group", "") or (marked[0].age_group if marked else ""),
                     "score": res.is_hip_score,
                     "accepted": res.is_hip_score >= threshold,
                     "hips": "+".join(h.side_in_image for h in res.hips) or "none",
                     "width": img.shape[1],
                     "heads": "; ".join(f"{h.side_in_image} ({h.head_xy[0]:.0f},{h.head_xy[1]:.0f}) "
                                        f"r {h.head_r:.0f} c {h.confidence:.2f}" for h in res.hips)})
        if draw:
            DRAW.mkdir(parents=True, exist_ok=True)
            vis = cv2.cvtColor((np.clip(img, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
            for h in res.hips:
                c = tuple(round(v) for v in h.head_xy)
                cv2.circle(vis, c, max(2, round(h.head_r)), (0, 0, 255), 2)
                cv2.line(vis, c, tuple(round(v) for v in h.neck_xy), (0, 255, 0), 2)
            cv2.putText(vis, f"hip {res.is_hip_score:.2f}", (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                        (255, 255, 0), 2)
            cv2.imwrite(str(DRAW / f"{folder.name}_{p.stem}.png"), vis)
    return rows


def err_cell(errs: list) -> str:
    """'l 1.2; r 35.0 (wrong side)' per marked head; '-' where no hip was found at all."""
    return "; ".join(f"{ref.side_in_image[0]} " + ("none found" if e is None else f"{e:.1f}")
                     + ("" if e is None or ok else " (other side)") for ref, e, ok in errs) or ""


def latency_ms(loc: Locator, img: np.ndarray, n: int = 50) -> float:
    loc.locate(img)
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        loc.locate(img)
        t.append(time.perf_counter() - t0)
    return 1000 * float(np.median(t))


def metric_table(named: list[tuple[str, LocatorMetrics]]) -> list[str]:
    keys = list(named[0][1].as_dict())
    out = ["| metric | " + " | ".join(n for n, _ in named) + " |",
           "|---|" + "---|" * len(named)]
    for k in keys:
        out.append(f"| {k} | " + " | ".join(f"{m.as_dict()[k]:.4g}" for _, m in named) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--pos", type=Path, nargs="*", default=[])
    ap.add_argument("--neg", type=Path, nargs="*", default=[])
    ap.add_argument("--no-draw", action="store_true")
    args = ap.parse_args()
    run = args.run
    val = json.loads((run / "metrics.json").read_text())
    thr = val["hip_score_threshold"]
    loc = Locator(run / "locator.xml", SessionConfig(backend="openvino", threads=1))
    spec: LocatorSpec = loc.spec
    named = [("synthetic validation (run split)", LocatorMetrics(**val))]
    int8 = None
    if (run / "locator_int8.xml").is_file():
        int8 = Locator(run / "locator_int8.xml", SessionConfig(backend="openvino", threads=1))
    if (run / "metrics_int8.json").is_file():
        named.append(("int8, synthetic validation",
                      LocatorMetrics(**json.loads((run / "metrics_int8.json").read_text()))))
    fresh = [s for f in [*args.pos, *args.neg] for s in load_cohort(f, spec)]
    if fresh:
        named.append(("fresh-seed synthetic", evaluate(loc.locate, fresh, threshold=thr)))
        if int8 is not None:
            named.append(("int8, fresh-seed synthetic", evaluate(int8.locate, fresh, threshold=thr)))
    refs = load_reference_heads(HEADS) if HEADS.is_file() else {}
    sets = {name: real_rows(loc, REAL / name, thr, not args.no_draw, refs)
            for name in ("hip", "hip_extra", "nonhip") if (REAL / name).is_dir()}
    img = fresh[0].pixels.astype(np.float32) if fresh else np.random.rand(256, 256)
    ms = latency_ms(loc, img.astype(np.float32))
    ms8 = latency_ms(int8, img.astype(np.float32)) if int8 is not None else float("nan")
    machine = detect_machine()
    lines = ["# Hip locator (issue #15)", "",
             f"Machine: {machine.line()}",
             f"Load average while measuring: {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
             "",
             (f"Run `{run.name}`: input {spec.size} px, stride {spec.stride}; hip-film threshold "
              f"{thr:.4f} (chosen on the run's validation hips: keeps 99 %), applied unchanged "
              "below."),
             "", "## Synthetic", "", *metric_table(named), "",
             "## Real development films (numbers only)", ""]
    for name, rows in sets.items():
        acc = np.mean([r["accepted"] for r in rows]) if rows else float("nan")
        by_age = {}
        for r in rows:
            by_age.setdefault(r["age_group"] or "unlabelled", []).append(r["accepted"])
        ages = "; ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_age.items()))
        lines += [f"### realworld/{name}: {len(rows)} films, accepted {acc:.0%} ({ages})", "",
                  ("| file | body part | age | hip score | accepted | marked heads: error % of "
                   "width (side) | hips found (side in image, head x,y px, r, conf) |"),
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['file']} | {r['body_part']} | {r['age_group']} | {r['score']:.3f} | "
                  f"{'yes' if r['accepted'] else 'no'} | {err_cell(r['errs'])} | "
                  f"{r['heads'] or 'none'} |" for r in rows]
        lines.append("")
        if name == "nonhip":
            rest = [r for r in rows if r["body_part"] != "spine"]
            lines += [(f"Refused, not counting the full-length spine films (they show the pelvis; "
                       f"policy in tests/test_locate_realworld.py): "
                       f"{sum(not r['accepted'] for r in rest)}/{len(rest)}."), ""]
    marked = [r for rows in sets.values() for r in rows if r["marked"]]
    if marked:
        lines += [("### Marked heads (tests/data/realworld_heads.csv): found within 10 % of the "
                   "width, on accepted films"), "",
                  ("| age group | films accepted | heads within 10 % | side in image right | "
                   "median error % |"), "|---|---|---|---|---|"]
        for age in ("adult", "adolescent", "paediatric"):
            rs = [r for r in marked if r["marked"][0].age_group == age]
            es = [(e, so, r["accepted"]) for r in rs for _, e, so in r["errs"]]
            if not rs:
                continue
            within = sum(e is not None and e <= 10 and a for e, _, a in es)
            side = sum(e is not None and e <= 10 and so and a for e, so, a in es)
            med = np.median([e for e, _, _ in es if e is not None]) if any(
                e is not None for e, _, _ in es) else float("nan")
            lines.append(f"| {age} | {sum(r['accepted'] for r in rs)}/{len(rs)} | "
                         f"{within}/{len(es)} | {side}/{len(es)} | {med:.1f} |")
        lines.append("")
    lines += [(f"Latency: locate (letterbox + OpenVINO 1 thread + decode) p50 fp32 {ms:.2f} ms, "
               f"int8 {ms8:.2f} ms on a {img.shape[1]}-px film, under the load above."), ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "locator.md").write_text("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    groups = {f"real {k}": [r["score"] for r in v] for k, v in sets.items()}
    if fresh:
        groups["synthetic hip/pelvis"] = [loc.locate(s.pixels.astype(np.float32)).is_hip_score
                                          for s in fresh if s.is_hip]
        groups["synthetic other"] = [loc.locate(s.pixels.astype(np.float32)).is_hip_score
                                     for s in fresh if not s.is_hip]
    for k, v in groups.items():
        if v:
            ax.hist(v, bins=20, range=(0, 1), histtype="step", label=f"{k} (n={len(v)})",
                    density=True)
    ax.axvline(thr, color="k", ls="--", label="threshold")
    ax.set_xlabel("hip/pelvis-film score")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "locator_scores.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
