"""A small synthetic archive for the screen tests: N good images and 10 bad files, one manifest.

Good images are `bmd-edge synth` PNGs (128 px), each written `copies` times under a different
name and with its own age, so 300 inputs cost 60 synthetic renders. The bad files are the kinds
an archive really holds: empty, cut, text or HTML under an image name, 1-pixel and 8×8000
images, a blank and a noise frame (quality gate), garbage under .jpg, and a PDF under .tif.
"""

from __future__ import annotations

import csv
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np

BAD_FILES = 10


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def bad_files(folder: Path) -> list[Path]:
    """Write the ten bad files into `folder` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = _png((rng.random((128, 128)) * 65535).astype(np.uint16))
    files = {
        "bad_empty.png": b"",
        "bad_text.png": b"patient list, not an image\n" * 20,
        "bad_cut.png": good[: len(good) // 3],
        "bad_1x1.png": _png(np.zeros((1, 1), np.uint8)),
        "bad_8x8000.png": _png(np.zeros((8, 8000), np.uint8)),
        "bad_blank.png": _png(np.full((128, 128), 30000, np.uint16)),
        "bad_noise.png": _png((rng.random((128, 128)) * 255).astype(np.uint8)),
        "bad_garbage.jpg": b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, 500, np.uint8)),
        "bad_page.dcm": b"<html><body>404</body></html>",
        "bad_doc.tif": b"%PDF-1.4\n" + zlib.compress(b"x" * 200),
    }
    out = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out.append(folder / name)
    assert len(out) == BAD_FILES
    return out


def build_archive(synth_dir: Path, out: Path, copies: int) -> Path:
    """`out/manifest.csv` over `copies` copies of each synth image plus the bad files."""
    with open(synth_dir / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    (out / "images").mkdir(parents=True, exist_ok=True)
    listing: list[dict[str, str]] = []
    for k in range(copies):
        for row in rows:
            src = synth_dir / row["image"]
            name = f"images/c{k}_{Path(row['image']).name}"
            shutil.copyfile(src, out / name)
            r = dict(row, image=name, patient_id=f"P{k}-{row['patient_id']}")
            age = float(row["age_xray"]) + k   # a different person's facts on each copy
            r["age_xray"] = f"{age:.1f}"
            r["age_bmd"] = f"{age:.1f}"
            listing.append(r)
    for i, p in enumerate(bad_files(out / "images")):
        listing.append(dict(rows[i], image=f"images/{p.name}", patient_id=f"BAD-{i}"))
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(listing)
    return manifest
