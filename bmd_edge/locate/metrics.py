"""How well a locator does on labelled films: detection, centre error, side, refusal (numpy).

`locate` is any callable film → LocateResult (the torch model during training, a `Locator` on
an exported file afterwards), so training-time and shipped numbers come from the same code.
The hip-film threshold is *chosen* here on one set (the lowest score that still accepts
`keep` of the hip films) and then *applied* to another, never tuned on the set it reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

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
