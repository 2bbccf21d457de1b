"""A grid of every non-hip synthetic anatomy rendered through the shared physics.

One row per kind, `--per-kind` cases each, exactly as `bmd-edge synth --anatomy KIND` writes
them (same seeds → same images). For the eye: each must be recognisable as the named body part.

    .venv/bin/python benchmarks/other_anatomy_grid.py [--per-kind 5] [--size 256]

Writes benchmarks/results/other_anatomy_grid.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bmd_edge.synth.other_anatomy import KINDS
from bmd_edge.synth.other_writer import make_other_case

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    kinds = list(KINDS)
    fig, axes = plt.subplots(len(kinds), args.per_kind,
                             figsize=(1.8 * args.per_kind, 1.9 * len(kinds)))
    for r, kind in enumerate(kinds):
        for i in range(args.per_kind):
            img, row = make_other_case(kind, args.seed, i, args.size)
            ax = axes[r, i]
            ax.imshow(img, cmap="gray", vmin=0, vmax=65535, interpolation="lanczos")
            flags = "".join((" paed" if row["paediatric"] else "",
                             " +pelvis" if row["contains_pelvis"] else ""))
            ax.set_title(f"{kind}: {row['view']}{flags}", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Synthetic non-hip anatomy through the shared physics "
                 f"(bmd-edge synth --anatomy KIND --seed {args.seed})", fontsize=9)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "other_anatomy_grid.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
