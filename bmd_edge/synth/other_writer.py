"""Write non-hip synthetic radiographs: 16-bit PNGs and a manifest of anatomy/view/flags.

The same guarantees as the hip cohort writer: a case's bytes depend only on (kind, seed, index,
size) — `np.random.default_rng([seed, index, kind id])` — not on worker count or order; files are
written atomically; the manifest is written last. There is no BMD: these films exist to teach a
detector what is not an adult hip.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.synth.other_anatomy import KINDS, physics_view, render_anatomy
from bmd_edge.synth.writer import _write_csv, case_name, encode_png, run_chunks, write_atomic

OTHER_COLUMNS = ("image", "anatomy", "view", "contains_pelvis", "paediatric", "side",
                 "pixel_spacing_mm")


def make_other_case(kind: str, seed: int, index: int, size: int) -> tuple[np.ndarray,
                                                                          dict[str, object]]:
    """Render one case through the shared physics: (uint16 image, manifest row)."""
    from bmd_edge.synth.physics import expose, sample_acquisition

    rng = np.random.default_rng([seed, index, zlib.crc32(kind.encode())])
    maps = render_anatomy(kind, rng, size=size)
    acq = sample_acquisition(rng, view=physics_view(kind))
    img = expose(maps, acq, rng)
    img16 = np.round(np.clip(img, 0.0, 1.0) * 65535.0).astype(np.uint16)
    lab = maps.labels
    row: dict[str, object] = {
        "image": f"images/{case_name(index)}.png", "anatomy": lab["anatomy"],
        "view": lab["view"], "contains_pelvis": int(bool(lab["contains_pelvis"])),
        "paediatric": int(bool(lab["paediatric"])), "side": lab.get("side", ""),
        "pixel_spacing_mm": round(maps.px_mm, 5)}
    return img16, row


def _write_chunk(args: tuple[str, int, list[int], int, str]) -> list[dict[str, object]]:
    kind, seed, indices, size, out = args
    import cv2

    cv2.setNumThreads(1)
    rows = []
    for i in indices:
        img, row = make_other_case(kind, seed, i, size)
        write_atomic(Path(out) / "images" / f"{case_name(i)}.png", encode_png(img))
        rows.append(row)
    return rows


def generate_other(n: int, out: str | Path, *, kind: str, seed: int = 0, size: int = 256,
                   workers: int | None = None,
                   progress: Callable[[int], None] | None = None) -> Path:
    """Write n radiographs of `kind` into out/images and out/manifest.csv; return the manifest."""
    if kind not in KINDS:
        raise InputError(f"anatomy {kind!r} is not known; give hip or one of {', '.join(KINDS)}")
    if n < 1 or n > 1_000_000:
        raise InputError(f"n = {n} cases is not accepted; give 1 to 1000000")
    if not 32 <= size <= 4096:
        raise InputError(f"size = {size} px is not accepted; give 32 to 4096")
    if workers is not None and workers < 1:
        raise InputError(f"workers = {workers} is not accepted; give 1 or more")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(f"out = {str(root)!r} is a file; give a folder to write the images into")
    (root / "images").mkdir(parents=True, exist_ok=True)
    workers = min(workers or os.cpu_count() or 1, n)
    chunk = max(1, min(16, n // (workers * 4) or 1))
    jobs = [(kind, seed, list(range(s, min(s + chunk, n))), size, str(root))
            for s in range(0, n, chunk)]
    rows: list[dict[str, object]] = []
    rows.extend(run_chunks(_write_chunk, jobs, workers, progress))
    manifest = root / "manifest.csv"
    _write_csv(manifest, list(OTHER_COLUMNS), rows)
    return manifest
