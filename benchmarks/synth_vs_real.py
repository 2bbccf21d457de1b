"""Synthetic hips and pelvises beside the real adult ones, at the same display settings.

Writes a LOCAL, git-ignored picture (default `local/synth_vs_real.png`): real films from
`../shared/realworld/` are never committed, nor are pictures of them. Every tile is shown the
same way: grey levels as stored (0–1 over the file's bit depth), resized to 256 px on the long
side, no per-tile contrast stretch. If the image-statistics module exists
(`bmd_edge.synth.image_stats`), its per-image statistics are printed for both sets.

    .venv/bin/python benchmarks/synth_vs_real.py [--out local/synth_vs_real.png] [--n 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bmd_edge.image_io import read_image
from bmd_edge.synth import generate_cohort

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realworld"
# Adult hips and pelvises only (the paediatric films are `other`'s paed_pelvis anatomy).
REAL_ADULT = ["hip/normal-hip.jpg", "hip/normal-pelvis-ap.jpg", "hip/hip-fai-cam-morphology.jpg",
              "hip/hip-femoral-neck-stress-fracture.jpg", "hip_extra/hip_fracdiag_01.jpg",
              "hip_extra/hip_fracdiag_02.jpg", "hip_extra/pelvis_fracdiag_01.jpg",
              "hip_extra/pelvis_fracdiag_02.jpg"]


def tile(pixels: np.ndarray, side: int = 256) -> np.ndarray:
    """Resize so the long side is `side`, keeping the grey levels as stored."""
    h, w = pixels.shape
    s = side / max(h, w)
    return cv2.resize(pixels, (max(round(w * s), 1), max(round(h * s), 1)),
                      interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "local" / "synth_vs_real.png")
    ap.add_argument("--n", type=int, default=8, help="synthetic images per view")
    args = ap.parse_args()
    real = [(name, read_image(REAL / name).pixels) for name in REAL_ADULT if (REAL / name).exists()]
    synth: list[tuple[str, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for view in ("hip", "pelvis"):
            out = Path(tmp) / view
            generate_cohort(args.n, out, seed=1, size=512, view=view, workers=1)
            for i in range(args.n):
                synth.append((f"synthetic {view} {i}",
                              read_image(out / "images" / f"case_{i:05d}.png").pixels))
    try:
        from bmd_edge.synth import image_stats  # type: ignore[attr-defined]
    except ImportError:
        image_stats = None
    if image_stats is not None and hasattr(image_stats, "image_statistics"):
        for name, px in real + synth:
            print(name, image_stats.image_statistics(px))
    cols = 4
    rows = (len(real) + cols - 1) // cols + (len(synth) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows))
    cells = list(axes.ravel())
    items = real + [("", None)] * ((-len(real)) % cols) + synth
    for ax, (name, px) in zip(cells, items):
        ax.axis("off")
        if px is None:
            continue
        ax.imshow(tile(px), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(("real: " if not name.startswith("synthetic") else "") + name.split("/")[-1],
                     fontsize=7)
    fig.suptitle("Real adult hips/pelvises (top) vs synthetic (bottom), same display: stored "
                 "grey levels, 0–1", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70)
    print(f"wrote {args.out} (git-ignored; never commit it)")


if __name__ == "__main__":
    main()
