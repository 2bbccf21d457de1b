"""Put an exported locator into a BMD bundle: its files, its `locator` section, a fresh bundle.json.

Why a function of its own: `bmd-edge export`, `export/build_default.py` and the tiny test bundle
all attach a locator the same way — files copied beside the BMD model, every file hashed, the
thresholds and the run's held-out metrics recorded, the BMD model files re-stamped with the new
metadata — so `Predictor.load` finds one contract whoever built the bundle. Torch-free.

    python -m bmd_edge.locate.bundle_entry BUNDLE RUN_DIR OUT [--sign-key KEY] [--fp32]
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bmd_edge.errors import BundleError

# (variant name, main file, runtime, precision) as `locate.export` names the run's files.
RUN_FILES = (("openvino-int8", "locator_int8.xml", "openvino", "int8"),
             ("onnx-int8", "locator_int8.onnx", "onnxruntime", "int8"),
             ("openvino-fp32", "locator.xml", "openvino", "fp32"),
             ("onnx-fp32", "locator.onnx", "onnxruntime", "fp32"))
HEAD_THRESHOLD = 0.3   # heatmap peak below this is no head (the trainer's decode default)


def locator_section(run_dir: str | Path, *, name: str = "hip-locator", version: str | None = None,
                    precisions: tuple[str, ...] = ("int8", "fp32"),
                    hip_film_threshold: float | None = None,
                    head_threshold: float = HEAD_THRESHOLD,
                    training_data: str = "") -> tuple[Any, dict[str, Path]]:
    """(LocatorSection, {bundle file name: source path}) for a locator run folder.

    The hip-film threshold defaults to the one the run chose on its held-out hip films
    (metrics.json `hip_score_threshold`, keep 99 %); metrics come from metrics(_int8).json.
    """
    from bmd_edge.bundle import LocatorSection, Variant
    from bmd_edge.locate.locator import read_spec

    run = Path(run_dir)
    metrics: dict[str, Any] = {}
    for prec, fname in (("fp32", "metrics.json"), ("int8", "metrics_int8.json")):
        if (run / fname).is_file():
            metrics[prec] = json.loads((run / fname).read_text())
    variants: dict[str, Any] = {}
    files: dict[str, Path] = {}
    spec = None
    for vname, main, runtime, prec in RUN_FILES:
        if prec not in precisions or not (run / main).is_file():
            continue
        used = (main, str(Path(main).with_suffix(".bin"))) if main.endswith(".xml") else (main,)
        if not all((run / f).is_file() for f in used):
            continue
        found = read_spec(run / main)
        if spec is not None and found != spec:
            raise BundleError(f"locator files in {run} disagree on their spec")
        spec = found
        variants[vname] = Variant(vname, main, used, runtime, prec)
        files.update({f: run / f for f in used})
    if spec is None:
        wanted = ", ".join(m for _, m, _, p in RUN_FILES if p in precisions)
        raise BundleError(f"no exported locator files ({wanted}) in {run}")
    if hip_film_threshold is None:
        ref = metrics.get("int8") or metrics.get("fp32") or {}
        if "hip_score_threshold" not in ref:
            raise BundleError(f"{run} has no metrics.json with hip_score_threshold; give "
                              "hip_film_threshold")
        hip_film_threshold = float(ref["hip_score_threshold"])
    section = LocatorSection(
        name=name, version=version or run.name, spec=spec, variants=variants,
        hip_film_threshold=float(hip_film_threshold), head_threshold=float(head_threshold),
        metrics=metrics, provenance={"training_data": training_data or f"locator run {run.name}",
                                     "run": run.name})
    return section, files


def add_locator(bundle_dir: str | Path, run_dir: str | Path, out: str | Path, *,
                sign_key: str | Path | None = None, overwrite: bool = False,
                **section_kw: Any) -> Path:
    """A copy of the bundle at `out` with the run's locator attached (replacing any earlier
    one); BMD model files re-stamped, every file re-hashed, signed when `sign_key`. The shipped
    default is unsigned: re-pin its digest (bundle_trust.PINNED_DIGESTS) afterwards."""
    from bmd_edge.bundle import Bundle, staging_dir, write_bundle
    from bmd_edge.bundle_embed import stamp

    src = Bundle.load(bundle_dir, allow_unsigned=True)
    section, files = locator_section(run_dir, **section_kw)
    stage = staging_dir(out)
    try:
        old = set(src.meta.locator and {f for v in src.meta.locator.variants.values()
                                         for f in v.files} or ())
        for f in src.meta.files:
            if f not in old and (src.root / f).is_file():
                (stage / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src.root / f, stage / f)
        for f, path in files.items():
            shutil.copy2(path, stage / f)
        meta = replace(src.meta, locator=section, signature=None)
        for v in meta.variants.values():
            if (stage / v.file).is_file():
                stamp(stage / v.file, meta.embedded())
        return write_bundle(stage, meta, out, overwrite=overwrite, sign_key=sign_key)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def main(argv: list[str]) -> None:
    from bmd_edge.bundle import Bundle

    key = argv[argv.index("--sign-key") + 1] if "--sign-key" in argv else None
    pos = [a for i, a in enumerate(argv) if not a.startswith("--")
           and (i == 0 or argv[i - 1] != "--sign-key")]
    written = add_locator(pos[0], pos[1], pos[2], sign_key=key, overwrite=True,
                          precisions=("int8", "fp32") if "--fp32" in argv else ("int8",))
    print(f"{written}: digest {Bundle.load(written, allow_unsigned=True).meta.digest()}")


if __name__ == "__main__":
    main(sys.argv[1:])
