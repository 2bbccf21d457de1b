"""Label-free signs of transfer to real films (issue #16, reported, not gated).

There is no DXA for the real films, so two things that need no label are measured on the real
ADULT pelvis films of ../shared/realworld/ (both hips on one film, per
tests/data/realworld_heads.csv):
- the left–right BMD difference on the same film (in healthy adults typically a few hundredths
  of a g/cm²; a model reading the film, not the person, shows large ones), and
- the spread of each hip's BMD when the same film is rotated ±3°, scaled ±5 % (about the film
  centre, canvas kept) or re-encoded as JPEG at quality 85 and 95 — none of which changes the
  bone.

Everything goes through the predict path (`Predictor.predict`, the shipped bundle unless
--bundle) with one fixed profile (70-year-old woman), so only the image differs. Hips are keyed
by the side of the film they are drawn on. Bundles that return every located hip
(`Prediction.hips`, issue #15) are read from it; older bundles get the pre-#15 half-film crops
(`select`). A film the predict path refuses is run again with `force=True` and marked.

Writes benchmarks/results/real_transfer.md + real_transfer.png (numbers only).

    nice -n 10 .venv/bin/python benchmarks/real_transfer.py [--bundle DIR]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bmd_edge.benchmark.machine import detect_machine
from bmd_edge.errors import InputError
from bmd_edge.image_io import read_image
from bmd_edge.locate.reference import read_marks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKS = ROOT / "tests" / "data" / "realworld_heads.csv"
REAL = ROOT.parent / "shared" / "realworld"
PROFILE = {"age": 70, "sex": "F"}
SIDES = ("left", "right")    # side of the film (image-left = patient's right, displayed AP)


def _affine(px: np.ndarray, angle: float, scale: float) -> np.ndarray:
    h, w = px.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    return cv2.warpAffine(px, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _jpeg(px: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.round(np.clip(px, 0, 1) * 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if dec is None:
        raise RuntimeError("JPEG decoding failed")
    return dec.astype(np.float32) / 255.0


PERTURB: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda p: p,
    "rotate +3°": lambda p: _affine(p, 3.0, 1.0),
    "rotate −3°": lambda p: _affine(p, -3.0, 1.0),
    "scale +5 %": lambda p: _affine(p, 0.0, 1.05),
    "scale −5 %": lambda p: _affine(p, 0.0, 0.95),
    "JPEG q95": lambda p: _jpeg(p, 95),
    "JPEG q85": lambda p: _jpeg(p, 85),
}


@dataclass
class Reading:
    bmd: dict[str, float] = field(default_factory=dict)   # side of the film → BMD
    refused: str = ""                                      # the refusal, when force was needed
    method: str = "located"                                # "located" | "half-film crop"
    halfwidth: float = float("nan")                        # the 90 % interval's half-width


def read_hips(predictor: Any, pixels: np.ndarray) -> Reading:
    """BMD of every hip of one film through the predict path, keyed by side of the film."""
    out = Reading()
    try:
        pred = predictor.predict(pixels, **PROFILE)
    except InputError as err:
        out.refused = str(err)
        pred = predictor.predict(pixels, force=True, **PROFILE)
    if pred.interval is not None:
        out.halfwidth = (pred.interval[1] - pred.interval[0]) / 2
    out.bmd = {h.side_in_image: float(h.bmd_gcm2) for h in getattr(pred, "hips", ())
               if h.side_in_image in SIDES}
    if out.bmd or getattr(predictor, "locator", None) is not None:
        return out
    # Pre-#15 bundle: the half-film crop; select="right" (the patient's right) is the image-left.
    out.method = "half-film crop"
    for side, select in (("left", "right"), ("right", "left")):
        out.bmd[side] = float(predictor.predict(pixels, select=select, force=bool(out.refused),
                                                **PROFILE).bmd_gcm2)
    return out


def adult_pelvis_films() -> list[str]:
    """Adult films with a head marked on each side of the film (both hips visible)."""
    return [f for f, ms in read_marks(MARKS).items() if ms[0].age_group == "adult"
            and {m.side_in_image for m in ms if m.quality != "uncertain"} == set(SIDES)]


def run(bundle: Path | None, real: Path) -> tuple[dict[str, dict[str, Reading]], str]:
    from bmd_edge.runtime.predictor import Predictor

    predictor = Predictor.load(bundle, allow_unsigned=bundle is not None)  # a dev bundle
    label = f"{predictor.bundle.root} ({predictor.variant})" \
        if hasattr(predictor, "bundle") else str(bundle or "default bundle")
    results: dict[str, dict[str, Reading]] = {}
    for film in adult_pelvis_films():
        px = read_image(real / film).pixels
        results[film] = {name: read_hips(predictor, f(px)) for name, f in PERTURB.items()}
    return results, label


def film_lines(results: dict[str, dict[str, Reading]]) -> tuple[list[str], list[str]]:
    """The left–right table and the perturbation-spread table."""
    lr = ["| film | image-left hip | image-right hip | left − right | refused? |",
          "|---|---|---|---|---|"]
    spread = ["| film | hip (side of film) | " + " | ".join(PERTURB) + " | range | SD |",
              "|---|---|" + "---|" * (len(PERTURB) + 2)]
    for film, by in results.items():
        o = by["original"].bmd
        diff = (f"{o['left'] - o['right']:+.3f}" if set(SIDES) <= set(o) else "— (one hip)")
        cell = {s: f"{o[s]:.3f}" if s in o else "not found" for s in SIDES}
        ref = by["original"].refused
        lr.append(f"| {film} | {cell['left']} | {cell['right']} | {diff} | "
                  f"{('yes: ' + ref) if ref else 'no'} |")
        for s in SIDES:
            vals = [by[p].bmd.get(s) for p in PERTURB]
            got = [v for v in vals if v is not None]
            cells = " | ".join("missing" if v is None else f"{v:.3f}" for v in vals)
            rng = f"{max(got) - min(got):.3f}" if len(got) > 1 else "—"
            sd = f"{float(np.std(got, ddof=1)):.3f}" if len(got) > 2 else "—"
            spread.append(f"| {film} | {s} | {cells} | {rng} | {sd} |")
    return lr, spread


def plot(results: dict[str, dict[str, Reading]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = list(PERTURB)
    k = 0
    ticks, labels = [], []
    for film, by in results.items():
        for s, mk in zip(SIDES, ("o", "s")):
            vals = [by[p].bmd.get(s, np.nan) for p in names]
            x = k + np.linspace(-0.3, 0.3, len(names))
            ax.plot(x, vals, mk + "-", ms=4, lw=0.8)
            ticks.append(k)
            labels.append(f"{Path(film).stem[:18]}\n{s}")
            k += 1
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylabel("predicted FN BMD, g/cm²")
    ax.set_title("each hip under " + ", ".join(names[1:]) + " (left to right within a hip)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=None, help="default: the shipped bundle")
    ap.add_argument("--realworld", type=Path, default=REAL)
    args = ap.parse_args()
    results, label = run(args.bundle, args.realworld)
    lr, spread = film_lines(results)
    diffs = [abs(by["original"].bmd["left"] - by["original"].bmd["right"])
             for by in results.values() if set(SIDES) <= set(by["original"].bmd)]
    ranges = []
    for by in results.values():
        for s in SIDES:
            got = [by[p].bmd[s] for p in PERTURB if s in by[p].bmd]
            if len(got) > 1:
                ranges.append(max(got) - min(got))
    first = next(iter(results.values()))["original"] if results else Reading()
    machine = detect_machine()
    lines = ["# Label-free transfer signals on real adult pelvis films (issue #16, reported)", "",
             (f"Bundle: {label}. Profile: age {PROFILE['age']}, sex {PROFILE['sex']} for every "
             "film, so only the image differs."),
             f"Machine: {machine.line()}; load {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
             (f"Films: {len(results)} adult pelvis films with both hips marked "
             "(tests/data/realworld_heads.csv). Hips keyed by the side of the film "
             "(image-left = patient's right when displayed AP)."), "",
             "## Summary", "",
             "- |left − right| on the original films: "
             + (f"median {np.median(diffs):.3f}, max {max(diffs):.3f} g/cm² (n = {len(diffs)})"
                if diffs else "no film gave both hips"),
             f"- per-hip BMD range over the {len(PERTURB) - 1} perturbations + original: "
             + (f"median {np.median(ranges):.3f}, max {max(ranges):.3f} g/cm² (n = {len(ranges)})"
                if ranges else "—"),
             (f"- For scale: the bundle's 90 % interval half-width is {first.halfwidth:.3f} "
             "g/cm²; healthy adults' left–right FN BMD differences are typically a few "
             "hundredths of a g/cm²."),
             (f"- Hips read by: {first.method} (`located`: the predict path's own located hips, "
             "`half-film crop`: a bundle without a hip locator, pre-#15 `select`)."),
             ("- hip-fai-cam-morphology.jpg is a PA overview (source title); the others AP. "
             "pelvis_fracdiag_02 is left out: its image-left head is not clearly on the film."),
             "",
             "## Left − right on the same film", "", *lr, "",
             "## Each hip under rotation, scale and JPEG re-encoding (g/cm²)", "", *spread, ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_transfer.md").write_text("\n".join(lines))
    plot(results, RESULTS / "real_transfer.png")
    print("\n".join(ln for ln in lines if ln.startswith("- ")))


if __name__ == "__main__":
    main()
