"""`predict` and its hip locator on the real films, against the hand marks (issue #15).

By default through the real predict path (`Predictor.predict` on each file, shipped bundle or
--locator BUNDLE_DIR): a film is accepted when it gets a result, and its heads are the ones the
result reports. --locator FILE (.xml/.onnx of a training run, threshold from metrics.json
beside it) judges the bare locator instead, for a locator not yet in a bundle.

Per film: the hip-film score, accepted or refused (and why), and for each hand-marked head
(tests/data/realworld_heads.csv) whether a head was found on the same side of the film and how
far from the mark, in % of the image width. The acceptance it reports (the same as
tests/test_locate_realworld.py gates):
- every adult hip/pelvis film accepted, each marked head (except `uncertain` marks) found within
  10 % of the width;
- paediatric and adolescent films refused (outside the intended use; README);
- of realworld/nonhip/, ≥ 90 % refused, full-length spine films (which show the pelvis) counted
  apart and not in that figure.

Writes benchmarks/results/locator_realworld.md + locator_realworld.png (numbers only, no picture
of any film).

    nice -n 10 .venv/bin/python benchmarks/locator_realworld.py [--locator FILE_OR_BUNDLE_DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.benchmark.machine import detect_machine
from bmd_edge.errors import BundleError, InputError
from bmd_edge.image_io import read_image
from bmd_edge.locate.decode import LocateResult
from bmd_edge.locate.reference import HeadCheck, check_heads, read_marks
from bmd_edge.locate.source import LocatorSource, resolve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKS = ROOT / "tests" / "data" / "realworld_heads.csv"
REAL = ROOT.parent / "shared" / "realworld"
TOLERANCE = 0.10            # head centre within 10 % of the image width
NONHIP_REFUSED = 0.90       # share of non-hip films (spine excluded) that must be refused
SPINE = "spine"             # full-length spine films: show the pelvis; counted apart
PROFILE = {"age": 70, "sex": "F"}


@dataclass
class FilmRow:
    file: str
    group: str                              # adult | adolescent | paediatric | nonhip | spine
    score: float                            # the locator's hip-film score
    refusal: str | None                     # predict's one-line refusal; None: it gave a result
    checks: list[HeadCheck] = field(default_factory=list)
    n_found: int = 0
    shape: tuple[int, int] = (0, 0)         # film height, width in pixels

    @property
    def accepted(self) -> bool:
        return self.refusal is None

    @property
    def ok(self) -> bool:
        if self.group == "adult":
            return self.accepted and all(c.within(TOLERANCE) for c in self.checks
                                         if c.mark.quality != "uncertain")
        return not self.accepted


# A judge looks at one film: (located hips with the hip-film score, refusal or None, shape).
Judge = Callable[[Path], tuple[LocateResult, "str | None", tuple[int, int]]]


def locator_judge(src: LocatorSource) -> Judge:
    """The bare locator and its hip-film threshold (a training run's file, before a bundle)."""
    def judge(path: Path) -> tuple[LocateResult, str | None, tuple[int, int]]:
        px = read_image(path).pixels
        res = src.locator.locate(px)
        refusal = (None if res.is_hip_score >= src.hip_threshold else
                   f"hip score {res.is_hip_score:.2f} < {src.hip_threshold:.2f}")
        return res, refusal, px.shape
    return judge


def predict_judge(predictor: Any) -> Judge:
    """The real predict path (`Predictor.predict` on the file); the hips are the ones the result
    reports, the score is its locator's."""
    def judge(path: Path) -> tuple[LocateResult, str | None, tuple[int, int]]:
        px = read_image(path).pixels
        res = predictor.locator.locate(px)
        try:
            pred = predictor.predict(path, **PROFILE)
        except InputError as err:
            return res, str(err), px.shape
        found = tuple(h.found for h in pred.hips if h.found is not None)
        return LocateResult(res.is_hip_score, found), None, px.shape
    return judge


def run(locator_path: Path | None, hip_threshold: float | None,
        real: Path) -> tuple[list[FilmRow], str, float]:
    if locator_path is not None and locator_path.is_file():
        src = resolve(locator_path, hip_threshold)
        judge, label, thr = locator_judge(src), src.label + " (locator alone)", src.hip_threshold
    else:
        from bmd_edge.runtime.predictor import Predictor

        predictor = Predictor.load(locator_path, allow_unsigned=locator_path is not None)
        if predictor.locator is None:
            raise BundleError(f"bundle {predictor.bundle.root} has no hip locator (issue #15)")
        section = predictor.bundle.meta.locator
        judge, thr = predict_judge(predictor), section.hip_film_threshold
        label = (f"bundle {predictor.bundle.root} ({section.name} {section.version}), through "
                 f"Predictor.predict (age {PROFILE['age']}, sex {PROFILE['sex']})")
    marks = read_marks(MARKS)
    rows = []
    for rel, ms in marks.items():
        res, refusal, (h, w) = judge(real / rel)
        rows.append(FilmRow(rel, ms[0].age_group, res.is_hip_score, refusal,
                            check_heads(res, ms, w, h), len(res.hips), (h, w)))
    with (real / "nonhip" / "labels.csv").open() as fh:
        labels = list(csv.DictReader(fh))
    for lab in labels:
        res, refusal, _ = judge(real / "nonhip" / lab["file"])
        group = SPINE if lab["body_part"] == SPINE else "nonhip"
        rows.append(FilmRow(f"nonhip/{lab['file']}", group, res.is_hip_score, refusal,
                            n_found=len(res.hips)))
    return rows, label, thr


def verdict(r: FilmRow) -> str:
    """"yes", or "no: " and the refusal (shortened; `|` would break the table)."""
    if r.refusal is None:
        return "yes"
    why = r.refusal.replace("|", "/").split("; use --force")[0]
    return "no: " + (why if len(why) <= 70 else why[:67] + "...")


def head_cell(c: HeadCheck) -> str:
    m = c.mark
    if c.error_frac is None:
        return f"{m.side_in_image} ({m.quality}): not found"
    return f"{m.side_in_image} ({m.quality}): {100 * c.error_frac:.1f} %"


def summary(rows: list[FilmRow]) -> list[str]:
    def share(sel: list[FilmRow], accepted: bool) -> str:
        n = sum(r.accepted == accepted for r in sel)
        return f"{n}/{len(sel)}" if sel else "—"

    adult = [r for r in rows if r.group == "adult"]
    gated = [c for r in adult for c in r.checks if c.mark.quality != "uncertain"]
    errs = [c.error_frac for c in gated if c.error_frac is not None]
    young = [r for r in rows if r.group in ("paediatric", "adolescent")]
    nonhip = [r for r in rows if r.group == "nonhip"]
    spine = [r for r in rows if r.group == SPINE]
    refused = sum(not r.accepted for r in nonhip) / max(1, len(nonhip))
    med = f"{100 * float(np.median(errs)):.1f} %" if errs else "—"
    return [
        "| check | result | target | met |", "|---|---|---|---|",
        (f"| adult films accepted | {share(adult, True)} | all | "
        f"{'yes' if all(r.accepted for r in adult) else 'no'} |"),
        (f"| adult marked heads found within 10 % of width | "
        f"{sum(c.within(TOLERANCE) for c in gated)}/{len(gated)} (median error {med}) | all | "
        f"{'yes' if all(c.within(TOLERANCE) for c in gated) else 'no'} |"),
        (f"| paediatric + adolescent files refused | {share(young, False)} | all | "
        f"{'yes' if not any(r.accepted for r in young) else 'no'} |"),
        (f"| non-hip films refused (spine excluded) | {share(nonhip, False)} ({refused:.0%}) | "
        f"≥ 90 % | {'yes' if refused >= NONHIP_REFUSED else 'no'} |"),
        f"| full-length spine films refused (not gated) | {share(spine, False)} | reported | — |",
    ]


def candidates(compared: list[tuple[str, list[FilmRow]]]) -> list[str]:
    """One column per locator judged (the report's own first): the summary's results side by
    side, so a training run's checkpoints can be chosen on the real films too."""
    if len(compared) < 2:
        return []
    tables = [summary(rows)[2:] for _, rows in compared]
    out = ["## Candidates compared", "", "| check | " + " | ".join(n for n, _ in compared) + " |",
           "|---|" + "---|" * len(compared)]
    for k, line in enumerate(tables[0]):
        name = line.split(" | ")[0].lstrip("| ")
        out.append(f"| {name} | " + " | ".join(t[k].split(" | ")[1] for t in tables) + " |")
    bias = [geometry_bias(rows).split(": ", 1)[-1] for _, rows in compared]
    out.append("| located heads vs marks | " + " | ".join(bias) + " |")
    return [*out, "", ("A locator file is judged alone (its hip score against its run's threshold); "
            "a bundle folder through `predict`, which also refuses a film when no head is found."),
            ""]


def geometry_bias(rows: list[FilmRow]) -> str:
    """Where the located adult heads sit relative to the marks, as medians: towards the shaft
    (lateral) and downwards in % of the width, and the located/marked radius ratio — a
    systematic offset says more to whoever trains the locator than the error alone."""
    lat, down, ratio = [], [], []
    for r in rows:
        h, w = r.shape
        for c in r.checks if r.group == "adult" else ():
            if c.found is None:
                continue
            mx, my = c.mark.xy(w, h)
            dx = (c.found.head_xy[0] - mx) * (-1 if c.mark.side_in_image == "left" else 1)
            lat.append(100 * dx / w)
            down.append(100 * (c.found.head_xy[1] - my) / w)
            ratio.append(c.found.head_r / (c.mark.r_frac * w))
    if not lat:
        return "Located adult heads vs marks: none found."
    return (f"Located adult heads vs marks (n = {len(lat)}, medians): "
            f"{np.median(lat):+.1f} % of width towards the shaft, {np.median(down):+.1f} % "
            f"downwards; located/marked head radius × {np.median(ratio):.2f}.")


def plot(rows: list[FilmRow], threshold: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = ["adult", "adolescent", "paediatric", "nonhip", SPINE]
    rng = np.random.default_rng(0)
    for k, g in enumerate(groups):
        s = [r.score for r in rows if r.group == g]
        a.scatter(k + rng.uniform(-0.15, 0.15, len(s)), s, s=14, alpha=0.7)
    a.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    a.set_xticks(range(len(groups)), groups)
    a.set_ylabel("hip-film score")
    a.set_title("real films: hip-film score by group")
    a.legend(loc="center right")
    adult = [r for r in rows if r.group == "adult"]
    labels, vals = [], []
    for r in adult:
        for c in r.checks:
            labels.append(f"{Path(r.file).stem[:22]} {c.mark.side_in_image[0].upper()}")
            vals.append(100 * c.error_frac if c.error_frac is not None else np.nan)
    y = np.arange(len(vals))
    found = np.isfinite(vals)
    b.barh(y[found], np.asarray(vals)[found], color="tab:blue")
    b.scatter(np.full((~found).sum(), 1.0), y[~found], marker="x", color="r", label="not found")
    b.axvline(100 * TOLERANCE, color="k", ls="--", lw=1, label="10 % of width")
    b.set_yticks(y, labels, fontsize=7)
    b.invert_yaxis()
    b.set_xlabel("head centre error, % of image width")
    b.set_title("adult marked heads")
    b.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--locator", type=Path, default=None,
                    help="locator file (judged alone) or bundle folder (through predict, "
                         "unsigned allowed); default: the shipped bundle through predict")
    ap.add_argument("--compare", type=Path, nargs="*", default=[],
                    help="more locator files / bundle folders: one summary column each")
    ap.add_argument("--hip-threshold", type=float, default=None)
    ap.add_argument("--realworld", type=Path, default=REAL)
    args = ap.parse_args()
    rows, label, thr = run(args.locator, args.hip_threshold, args.realworld)
    machine = detect_machine()
    compared = [(str(args.locator or "shipped bundle"), rows)] + [(str(c), run(c, None, args.realworld)[0])
                                          for c in args.compare]
    lines = ["# predict and its hip locator on the real films, against hand marks (issue #15)", "",
             f"Locator: {label}; hip-film threshold {thr:.4f}.",
             f"Machine: {machine.line()}; load {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
             ("Marks: tests/data/realworld_heads.csv (by eye; see tests/data/README.md). Head error "
             "= distance from the mark to the located head on the same side of the film, in % of "
             "the image width. `ok` = what the README's policy asks of that film."), "",
             "## Summary", "", *summary(rows), "", geometry_bias(rows), "",
             *candidates(compared),
             "## Hip/pelvis films", "",
             "| file | group | hip score | accepted | heads found | marked heads: error | ok |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.group in ("nonhip", SPINE):
            continue
        cells = "; ".join(head_cell(c) for c in r.checks)
        lines.append(f"| {r.file} | {r.group} | {r.score:.3f} | {verdict(r)} "
                     f"| {r.n_found} | {cells} | {'yes' if r.ok else '**no**'} |")
    lines += ["", "## Non-hip films (realworld/nonhip)", "",
              "| file | group | hip score | accepted | heads found |", "|---|---|---|---|---|"]
    lines += [f"| {r.file} | {r.group} | {r.score:.3f} | {verdict(r)} | "
              f"{r.n_found} |" for r in rows if r.group in ("nonhip", SPINE)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "locator_realworld.md").write_text("\n".join(lines) + "\n")
    plot(rows, thr, RESULTS / "locator_realworld.png")
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
