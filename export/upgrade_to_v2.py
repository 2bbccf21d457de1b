"""One-off: turn the shipped format-1 bundle in export/ into format 2 without retraining.

    .venv/bin/python export/upgrade_to_v2.py [--bundle export]

What it does (kept so the shipped bundle.json can be traced to its v1 export):
- maps the v1 keys onto `bundle.BundleMeta` (screening threshold into `references`, training
  data / calibration / versions into `provenance`, input shapes from the spec);
- keeps only the variants whose files ship (int8 OpenVINO IR and ONNX): the fp32 files were
  never committed, so their rows would advertise what a fresh install cannot run; their export
  metrics stay in provenance.calibration.v1_variant_metrics;
- moves the per-variant 86-case interval widths (0.146/0.144, superseded by the 800-case
  recalibration) into provenance, so `info` shows one interval;
- re-stamps the embedded metadata (`bundle_embed.restamp_folder`): the IR's rt_info block by
  a text edit (the .bin is not touched), the ONNX's metadata_props with onnx (graph untouched);
- writes bundle.json and prints the digest for `bundle_trust.PINNED_DIGESTS`.
The next rebuild (export/build_default.py) writes format 2 natively.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bmd_edge.bundle import BundleMeta
from bmd_edge.bundle_embed import restamp_folder

SHIPPED = ("openvino-int8", "onnx-int8")


def upgrade(v1: dict) -> dict:
    """The v2 dict (without `files`) for a v1 bundle.json dict."""
    variants, old_metrics = {}, {}
    for name, v in v1["variants"].items():
        metrics = dict(v["metrics"])
        old_metrics[name] = {k: metrics.pop(k) for k in list(metrics)
                             if k.startswith("interval_") or name not in SHIPPED}
        if name in SHIPPED:
            variants[name] = {"file": v["file"], "files": v["files"], "runtime": v["runtime"],
                              "precision": v["precision"],
                              "inference_precision": v.get("inference_precision", "f32"),
                              "metrics": metrics, "optional": False}
    calibration = dict(v1["calibration"])
    calibration["v1_variant_metrics"] = {
        "note": "export-time numbers moved here by export/upgrade_to_v2.py: per-variant interval "
                "widths from the 86 held-out cases (superseded by `interval`, 800 cases) and the "
                "fp32 variants, whose files are not shipped",
        **old_metrics}
    inp = v1["input"]
    refs = {**v1["references"], "screening_threshold_gcm2": v1["screening_threshold_gcm2"]}
    return {
        "format_version": "bmd-edge-bundle/2", "model": v1["model"],
        "intended_use": v1["intended_use"],
        "input": {"preprocess": inp["preprocess"], "schema": inp["schema"],
                  "names": inp["names"], "shapes": inp["shapes"]},
        "output": v1["output"], "references": refs, "interval": v1["interval"],
        "variants": variants,
        "provenance": {"training_data": v1["training_data"], "calibration": calibration,
                       "versions": v1["versions"]},
        "files": {},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parent)
    a = ap.parse_args()
    v1 = json.loads((a.bundle / "bundle.json").read_text(encoding="utf-8"))
    if v1.get("format_version") != "bmd-edge-bundle/1":
        raise SystemExit(f"{a.bundle}/bundle.json is {v1.get('format_version')!r}, not format 1")
    d = upgrade(v1)
    used = sorted({f for v in d["variants"].values() for f in v["files"]})
    d["files"] = {f: "0" * 64 for f in used}           # placeholders: restamp_folder hashes
    meta = restamp_folder(a.bundle, BundleMeta.from_dict(d))
    print(f"wrote {a.bundle / 'bundle.json'}; pin this digest in bmd_edge/bundle_trust.py:")
    print(meta.digest())


if __name__ == "__main__":
    main()
