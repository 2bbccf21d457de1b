"""Draw what the hip locator found on every real hip film, beside the hand marks, for a human look.

Each film gets: the located femoral head (circle, red = side_in_image left, magenta = right),
the neck axis (head → neck point, green), the femoral-neck ROI box (yellow), the hip-film score
and whether it clears the threshold, and the hand marks from tests/data/realworld_heads.csv
(cyan circle + cross) with each head's centre error in % of the image width.

Pictures go to the git-ignored local/located/ only: the films' licences do not allow committing
them or pictures of them.

    .venv/bin/python scripts/draw_located_hips.py                       # the shipped bundle's locator
    .venv/bin/python scripts/draw_located_hips.py --locator RUN/locator_int8.xml   # a run's file
    .venv/bin/python scripts/draw_located_hips.py --nonhip              # also the non-hip films
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

from bmd_edge.image_io import read_image
from bmd_edge.locate.decode import LocateResult
from bmd_edge.locate.reference import HeadMark, check_heads, read_marks
from bmd_edge.locate.source import resolve

ROOT = Path(__file__).resolve().parents[1]
MARKS = ROOT / "tests" / "data" / "realworld_heads.csv"
REAL = ROOT.parent / "shared" / "realworld"
SIDE_COLOUR = {"left": (0, 0, 255), "right": (255, 0, 255)}   # BGR
MARK_COLOUR = (255, 255, 0)
ROI_COLOUR = (0, 230, 255)
NECK_COLOUR = (0, 200, 0)


def draw(pixels: np.ndarray, res: LocateResult, marks: list[HeadMark], hip_threshold: float,
         title: str) -> np.ndarray:
    """One annotated BGR picture of a film, scaled so its long side is 1000 px."""
    h, w = pixels.shape
    s = 1000 / max(h, w)  # small films are enlarged so the labels stay legible
    grey = cv2.resize((np.clip(pixels, 0, 1) * 255).astype(np.uint8), (round(w * s), round(h * s)),
                      interpolation=cv2.INTER_AREA)
    vis = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    lw = max(1, round(max(vis.shape) / 400))

    def pt(xy: tuple[float, float]) -> tuple[int, int]:
        return round(xy[0] * s), round(xy[1] * s)

    for m in marks:
        c = pt(m.xy(w, h))
        cv2.circle(vis, c, max(2, round(m.r_frac * w * s)), MARK_COLOUR, lw, cv2.LINE_AA)
        cv2.drawMarker(vis, c, MARK_COLOUR, cv2.MARKER_CROSS, 6 + 4 * lw, lw)
    for hip in res.hips:
        col = SIDE_COLOUR[hip.side_in_image]
        box = cv2.boxPoints(((hip.roi_xy[0] * s, hip.roi_xy[1] * s),
                             (hip.roi_len * s, hip.roi_width * s), hip.roi_angle_deg))
        cv2.polylines(vis, [np.round(box).astype(np.int32)], True, ROI_COLOUR, lw, cv2.LINE_AA)
        cv2.line(vis, pt(hip.head_xy), pt(hip.neck_xy), NECK_COLOUR, lw, cv2.LINE_AA)
        cv2.circle(vis, pt(hip.head_xy), max(2, round(hip.head_r * s)), col, lw, cv2.LINE_AA)
        cv2.drawMarker(vis, pt(hip.head_xy), col, cv2.MARKER_TILTED_CROSS, 6 + 4 * lw, lw)
    verdict = "accepted" if res.is_hip_score >= hip_threshold else "REFUSED"
    lines = [title, f"hip score {res.is_hip_score:.3f} vs {hip_threshold:.3f}: {verdict}"]
    for chk in check_heads(res, marks, w, h):
        err = "not found" if chk.error_frac is None else f"err {100 * chk.error_frac:.1f}% w"
        lines.append(f"mark {chk.mark.side_in_image} ({chk.mark.quality}): {err}")
    extra = [f"found {hp.side_in_image} conf {hp.confidence:.2f}" for hp in res.hips
             if not any(m.side_in_image == hp.side_in_image for m in marks)]
    lines += extra
    fs = 0.45 * max(1.0, max(vis.shape) / 700)
    for k, text in enumerate(lines):
        y = round((k + 1) * 22 * fs / 0.45)
        cv2.putText(vis, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 3 * lw, cv2.LINE_AA)
        cv2.putText(vis, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 255, 255), lw, cv2.LINE_AA)
    return vis


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--locator", type=Path, default=None,
                    help="locator file (.xml/.onnx) or bundle folder; default: the shipped bundle")
    ap.add_argument("--hip-threshold", type=float, default=None,
                    help="hip-film threshold (default: the bundle's, or metrics.json beside a file)")
    ap.add_argument("--realworld", type=Path, default=REAL)
    ap.add_argument("--out", type=Path, default=ROOT / "local" / "located")
    ap.add_argument("--nonhip", action="store_true", help="also draw realworld/nonhip/*.jpg")
    args = ap.parse_args(argv)
    src = resolve(args.locator, args.hip_threshold)
    marks = read_marks(MARKS)
    files = list(marks)
    if args.nonhip:
        with (args.realworld / "nonhip" / "labels.csv").open() as fh:
            files += [f"nonhip/{r['file']}" for r in csv.DictReader(fh)]
    args.out.mkdir(parents=True, exist_ok=True)
    for rel in files:
        rad = read_image(args.realworld / rel)
        res = src.locator.locate(rad.pixels)
        pic = draw(rad.pixels, res, marks.get(rel, []), src.hip_threshold, rel)
        name = rel.replace("/", "_").rsplit(".", 1)[0] + ".png"
        cv2.imwrite(str(args.out / name), pic)
    print(f"{len(files)} films drawn into {args.out} with {src.label}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
