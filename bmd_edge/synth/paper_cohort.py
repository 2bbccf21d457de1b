"""A synthetic cohort drawn like the paper's: ages 71.6–80.6 years, 48.9 % women.

The XAttn-BMD paper's Hertfordshire subset (n = 233) is older and narrower in age than the
default synthetic population (60–90). Instead of changing the generator, we draw people with the
ordinary v2 world (`sample_subject`, the same rng stream `draw_case` uses, so the person drawn
here is exactly the person rendered) and keep the first women and men, in index order, whose age
at X-ray lies in the paper's range, until the sex split matches. Only the selected indices are
rendered, so selection costs microseconds per person and rendering stays ~90 ms per image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.synth.cohort import sample_subject

PAPER_AGE_RANGE = (71.6, 80.6)  # years at X-ray (PAPER.md: Hertfordshire Cohort Study subset)
PAPER_FEMALE_SHARE = 0.489  # 48.9 % women


def select_paper_indices(n: int, seed: int, *, age_range: tuple[float, float] = PAPER_AGE_RANGE,
                         female_share: float = PAPER_FEMALE_SHARE,
                         max_draws: int = 1_000_000) -> list[int]:
    """Case indices (sorted) of n people in the age range with round(n·share) women."""
    if n < 2:
        raise InputError(f"a paper-like cohort needs n >= 2, got {n}")
    want = {"F": round(n * female_share), "M": n - round(n * female_share)}
    got: dict[str, list[int]] = {"F": [], "M": []}
    lo, hi = age_range
    for i in range(max_draws):
        subj = sample_subject(np.random.default_rng([seed, i]), i)
        if lo <= subj.age_xray <= hi and len(got[subj.sex]) < want[subj.sex]:
            got[subj.sex].append(i)
            if all(len(got[s]) == want[s] for s in want):
                return sorted(got["F"] + got["M"])
    raise InputError(f"found only {len(got['F'])} women and {len(got['M'])} men aged {lo}-{hi} "
                     f"in {max_draws} draws; widen the range")


def generate_paper_cohort(n: int, out: str | Path, *, seed: int, size: int = 256,
                          workers: int | None = None) -> Path:
    """Render the selected people into `out` (images, manifest, landmarks, oracle CSVs)."""
    # the writer's chunk worker and CSV writer: one rendering path for every cohort
    from bmd_edge.synth.writer import (
        LANDMARK_COLUMNS,
        MANIFEST_COLUMNS,
        _write_chunk,
        _write_csv,
        run_chunks,
    )

    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    indices = select_paper_indices(n, seed)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    jobs = [(seed, indices[s:s + 16], size, "hip", False, str(root))
            for s in range(0, len(indices), 16)]
    rows = run_chunks(_write_chunk, jobs, workers)
    _write_csv(root / "oracle.csv", list(rows[0][1]), [o for _, o, _ in rows])
    _write_csv(root / "landmarks.csv", list(LANDMARK_COLUMNS), [lm for _, _, lm in rows])
    manifest = root / "manifest.csv"
    _write_csv(manifest, list(MANIFEST_COLUMNS), [m for m, _, _ in rows])
    return manifest
