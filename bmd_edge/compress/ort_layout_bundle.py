"""Give an already exported bundle's onnx-int8 file ONNX Runtime's layout (ort_layout.py).

    python -m bmd_edge.compress.ort_layout_bundle BUNDLE OUT --films FOLDER [--n 64]

Why: a bundle exported before ort_layout existed (or by an export path that skipped it) ships
NNCF's QDQ graph, which ONNX Runtime runs with most convolutions in fp32 and weights dequantized
on every call. This rewrites that one file without re-exporting: the new output quantizers are
sized on the model inputs the runtime itself builds for real films (`Predictor.prepare` on the
bundle's primary variant, so a canonical-crop bundle is calibrated on crops), every other file is
copied, the model files are re-stamped and the bundle is re-hashed into OUT. The variant's
recorded metrics were measured on the NNCF graph (the tool says so; re-export to refresh
them). A shipped default must then be re-pinned (bundle_trust.PINNED_DIGESTS).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from bmd_edge.errors import BundleError, InputError

ONNX_INT8 = "onnx-int8"


def is_ort_layout(path: Path) -> bool:
    """True when `path` already went through ort_layout (its added nodes are named so)."""
    import onnx

    return any(n.name.startswith("ort_layout/") for n in onnx.load(str(path)).graph.node)


def calibration_feeds(bundle: object, films: list[Path], batch: int = 16) -> list[dict[str, np.ndarray]]:
    """Model inputs the runtime builds for `films` (one per located hip), in batches."""
    from bmd_edge.runtime.predictor import Predictor

    p = Predictor.load(bundle, backend="openvino", threads=1)
    images, values, present = [], [], []
    for f in films:
        try:
            prep = p.prepare(f, age=72, sex="F")
        except InputError:
            continue  # a film the front end refuses is no calibration case
        for im in prep.images:
            images.append(im)
            values.append(prep.values)
            present.append(prep.present)
    if not images:
        raise InputError("none of the films gave a model input; give hip or pelvis radiographs")
    out = []
    for s in range(0, len(images), batch):
        out.append({"image": np.stack(images[s:s + batch]).astype(np.float32),
                    "values": np.stack(values[s:s + batch]).astype(np.float32),
                    "present": np.stack(present[s:s + batch]).astype(np.float32)})
    return out


def relayout_bundle(src: str | Path, out: str | Path, films: list[Path], *,
                    allow_unsigned: bool = True, overwrite: bool = False) -> Path:
    """Write OUT: SRC with its onnx-int8 file in ORT's layout, re-stamped and re-hashed."""
    from bmd_edge.bundle import Bundle, staging_dir, write_bundle
    from bmd_edge.bundle_embed import stamp
    from bmd_edge.compress.ort_layout import ort_layout

    b = Bundle.load(src, allow_unsigned=allow_unsigned)
    if ONNX_INT8 not in b.meta.variants:
        raise BundleError(f"bundle {b.root} has no {ONNX_INT8} variant to rewrite")
    target = b.meta.variants[ONNX_INT8].file
    if is_ort_layout(b.verified_file(ONNX_INT8)):
        raise InputError(f"{target} in {b.root} is already in ONNX Runtime's layout")
    feeds = calibration_feeds(b, films)
    stage = staging_dir(out)
    try:
        for f in b.meta.files:
            (stage / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(b.root / f, stage / f)
        rep = ort_layout(b.root / target, stage / target, feeds)
        meta = replace(b.meta, signature=None)
        for v in meta.variants.values():
            stamp(stage / v.file, meta.embedded())
        written = write_bundle(stage, meta, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    print(f"{target}: {rep.fused.get('QLinearConv', 0)} of {rep.convs} convolutions fuse into "
          f"QLinearConv ({rep.output_quantizers_added} output quantizers, {rep.calibrated} sized "
          f"on {sum(len(f['image']) for f in feeds)} model inputs); the variant's metrics in "
          "bundle.json were measured on the NNCF graph")
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--films", type=Path, required=True, help="folder of hip/pelvis films")
    ap.add_argument("--n", type=int, default=64, help="films to calibrate on")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    films = sorted(p for p in a.films.iterdir()
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm", ".tif", ".tiff"))[:a.n]
    from bmd_edge.bundle import Bundle

    out = relayout_bundle(a.bundle, a.out, films, overwrite=a.overwrite)
    print(f"{out}: digest {Bundle.load(out, allow_unsigned=True).meta.digest()}")


if __name__ == "__main__":
    main()
