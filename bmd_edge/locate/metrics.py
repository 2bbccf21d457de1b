"""How well a locator does on labelled films: detection, centre error, side, refusal (numpy).

`locate` is any callable film → LocateResult (the torch model during training, a `Locator` on
an exported file afterwards), so training-time and shipped numbers come from the same code.
The hip-film threshold is *chosen* here on one set (the lowest score that still accepts
`keep` of the hip films) and then *applied* to another, never tuned on the set it reports.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bmd_edge.locate.data import Sample
from bmd_edge.locate.decode import LocateResult
from bmd_edge.locate.spec import SIDES


@dataclass(frozen=True)
class LocatorMetrics:
    n_hip_films: int
    n_other_films: int
    n_heads: int
    head_found: float            # share of labelled heads with a found hip within radius + 2 % width
    side_correct: float          # share of labelled heads found *and* given their side in the image
    centre_err_median_pct: float  # |found − true| head centre, % of image width, found heads
    centre_err_p95_pct: float
    radius_err_median_pct: float  # |found − true| radius, % of true radius
    angle_err_median_deg: float  # neck-axis direction error
    false_hips_on_hip_films: float  # found hips with no labelled head near, per hip film
    hip_score_threshold: float
    hip_films_accepted: float
    other_films_refused: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def choose_threshold(hip_scores: Sequence[float], keep: float = 0.99) -> float:
    """Highest threshold accepting at least `keep` of the hip films (a quantile, not a search
    over negatives, so it does not fit the refusal set)."""
    return float(np.quantile(np.asarray(hip_scores), 1.0 - keep)) if len(hip_scores) else 0.5


def evaluate(locate: Callable[[np.ndarray], LocateResult], samples: Sequence[Sample],
             threshold: float | None = None) -> LocatorMetrics:
    """Score `locate` on samples; threshold None chooses it on these hip films (keep 99 %)."""
    found = sides = n_heads = false_hips = 0
    errs, rerrs, aerrs, hip_scores, other_scores = [], [], [], [], []
    for s in samples:
        img = s.pixels.astype(np.float32)
        res = locate(img)
        (hip_scores if s.is_hip else other_scores).append(res.is_hip_score)
        if not s.is_hip:
            continue
        width = img.shape[1]
        used = set()
        for hp in s.hips:
            n_heads += 1
            true_side = SIDES[0] if hp.neck[0] < hp.head[0] else SIDES[1]
            dists = [math.dist(h.head_xy, hp.head) for h in res.hips]
            if not dists:
                continue
            j = int(np.argmin(dists))
            if dists[j] > hp.head_r + 0.02 * width:
                continue
            used.add(j)
            h = res.hips[j]
            sides += h.side_in_image == true_side
            found += 1
            errs.append(100.0 * dists[j] / width)
            rerrs.append(100.0 * abs(h.head_r - hp.head_r) / max(hp.head_r, 1e-6))
            ta = math.degrees(math.atan2(hp.neck[1] - hp.head[1], hp.neck[0] - hp.head[0]))
            aerrs.append(abs((h.neck_angle_deg - ta + 180.0) % 360.0 - 180.0))
        false_hips += len(res.hips) - len(used)
    thr = choose_threshold(hip_scores) if threshold is None else threshold
    med = (lambda v: float(np.median(v)) if v else float("nan"))
    n_hip = len(hip_scores)
    return LocatorMetrics(
        n_hip_films=n_hip, n_other_films=len(other_scores), n_heads=n_heads,
        head_found=found / n_heads if n_heads else float("nan"),
        side_correct=sides / n_heads if n_heads else float("nan"),
        centre_err_median_pct=med(errs),
        centre_err_p95_pct=float(np.percentile(errs, 95)) if errs else float("nan"),
        radius_err_median_pct=med(rerrs), angle_err_median_deg=med(aerrs),
        false_hips_on_hip_films=false_hips / n_hip if n_hip else float("nan"),
        hip_score_threshold=thr,
        hip_films_accepted=float(np.mean(np.asarray(hip_scores) >= thr)) if n_hip else float("nan"),
        other_films_refused=(float(np.mean(np.asarray(other_scores) < thr)) if other_scores
                             else float("nan")),
    )


@dataclass(frozen=True)
class ReferenceHead:
    """One hand-marked head on a real film (tests/data/realworld_heads.csv), in fractions."""

    file: str                    # relative to realworld/
    side_in_image: str
    x_frac: float
    y_frac: float
    r_frac: float                # of the image width
    age_group: str
    quality: str                 # clear | faint | estimated | uncertain


def load_reference_heads(path: str | Path) -> dict[str, list[ReferenceHead]]:
    """file → its marked heads."""
    out: dict[str, list[ReferenceHead]] = {}
    with Path(path).open() as f:
        for r in csv.DictReader(f):
            out.setdefault(r["file"], []).append(ReferenceHead(
                r["file"], r["side_in_image"], float(r["head_x_frac"]), float(r["head_y_frac"]),
                float(r["head_r_frac"]), r["age_group"], r["mark_quality"]))
    return out


def reference_errors(res: LocateResult, refs: Sequence[ReferenceHead], width: int, height: int
                     ) -> list[tuple[ReferenceHead, float | None, bool]]:
    """Per marked head: distance to the nearest found hip in % of the image width (None when
    nothing was found) and whether that hip has the marked side in the image."""
    out: list[tuple[ReferenceHead, float | None, bool]] = []
    for ref in refs:
        xy = (ref.x_frac * width, ref.y_frac * height)
        if not res.hips:
            out.append((ref, None, False))
            continue
        d = [math.dist(h.head_xy, xy) for h in res.hips]
        j = int(np.argmin(d))
        out.append((ref, 100.0 * d[j] / width, res.hips[j].side_in_image == ref.side_in_image))
    return out
