"""Write calibration/report.md: the acceptance numbers of a bundle, int8 (QAT and PTQ) vs fp32.

Usage: python calibration/make_report.py BUNDLE_DIR QUANTIZE_DIR [--out calibration/report.md]
Reads the metrics `bmd-edge export` recorded in BUNDLE_DIR/bundle.json (every file run by its own
runtime on the held-out test half, OpenVINO pinned to f32), re-exports the PTQ-only model of
QUANTIZE_DIR (ptq.pt) to a temporary bundle with the same code for the PTQ column, and checks:
fp32 parity ≤ 1e-4 g/cm², int8 MAE increase ≤ 2 % and AUC drop ≤ 0.01, int8 IR ≤ 30 % of fp32 IR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def _ptq_variants(bundle_meta: dict, qdir: Path, checkpoint: Path) -> dict:
    from bmd_edge.compress.pipeline import run_export

    with tempfile.TemporaryDirectory() as tmp:
        fake = Path(tmp) / "q"
        fake.mkdir()
        shutil.copy(qdir / "quantize.json", fake / "quantize.json")
        shutil.copy(qdir / "ptq.pt", fake / "quantized.pt")
        meta = run_export(checkpoint, Path(tmp) / "b", quantized=fake,
                          coverage=bundle_meta.interval.coverage,
                          formats=["openvino-int8", "onnx-int8"], log=lambda s: None)
        return _as_rows(meta)


def _as_rows(meta: object) -> dict:
    """Variant name → {"metrics": {...}} with the per-variant interval width folded in."""
    prov = meta.provenance  # type: ignore[attr-defined]
    return {n: {"metrics": {**v.metrics,
                            "interval_halfwidth_gcm2": prov.interval_halfwidth_of(n)}}
            for n, v in meta.variants.items()}  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("quantize_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("report.md"))
    args = ap.parse_args()
    from bmd_edge.bundle import Bundle

    meta = Bundle.load(args.bundle, allow_unsigned=True).meta  # a fresh export, before pinning
    rec = json.loads((args.quantize_dir / "quantize.json").read_text())
    v = _as_rows(meta)
    ptq = _ptq_variants(meta, args.quantize_dir, Path(rec["checkpoint"]))
    fp32 = v["openvino-fp32"]["metrics"]
    rows, checks = [], []
    for label, var in [("fp32 OpenVINO", v["openvino-fp32"]), ("fp32 ONNX Runtime", v["onnx-fp32"]),
                       ("int8 QAT OpenVINO", v["openvino-int8"]), ("int8 QAT ONNX Runtime", v["onnx-int8"]),
                       ("int8 PTQ OpenVINO", ptq["openvino-int8"]), ("int8 PTQ ONNX Runtime", ptq["onnx-int8"])]:
        m = var["metrics"]
        d_mae = (m["mae"] - fp32["mae"]) / fp32["mae"] * 100
        rows.append(f"| {label} | {m['mae']:.4f} | {m['rmse']:.4f} | {m['r2']:.3f} | {m['auc']:.3f} | "
                    f"{d_mae:+.2f} % | {fp32['auc'] - m['auc']:+.4f} | {m['max_abs_diff_vs_torch_gcm2']:.2e} | "
                    f"{m['interval_halfwidth_gcm2']:.3f} | {m['size_bytes'] / 1e6:.2f} |")
        if label.startswith("fp32"):
            checks.append((f"{label} vs PyTorch max |Δ| ≤ 1e-4 g/cm²",
                           m["max_abs_diff_vs_torch_gcm2"] <= 1e-4))
        elif "QAT" in label:
            checks.append((f"{label}: MAE increase ≤ 2 % ({d_mae:+.2f} %)", d_mae <= 2.0))
            checks.append((f"{label}: AUC drop ≤ 0.01 ({fp32['auc'] - m['auc']:+.4f})",
                           fp32["auc"] - m["auc"] <= 0.01))
    bin8 = (args.bundle / "model_int8.bin").stat().st_size
    bin32 = (args.bundle / "model_fp32.bin").stat().st_size
    checks.append((f"int8 IR weights ≤ 30 % of fp32 IR ({bin8 / bin32:.1%}: {bin8 / 1e6:.1f} vs "
                   f"{bin32 / 1e6:.1f} MB)", bin8 <= 0.3 * bin32))
    t = rec["torch_metrics"]
    qc = rec["quantize_config"]
    lines = [
        "# Calibration report", "",
        f"Bundle `{args.bundle}` ({meta.model.name} {meta.model.version}); written by "
        "`calibration/make_report.py`. Metrics on the held-out test half "
        f"(n={meta.provenance.test_cases()}); interval calibrated on the other half "
        f"(n={meta.interval.n_calibration}, {meta.interval.coverage:.0%} split conformal). "
        f"OpenVINO runs pinned to f32 inference precision.", "",
        f"Quantization: NNCF PTQ (model_type={qc['model_type']}, kept float: {qc['keep_float']}, "
        f"{rec['summary']['int8-ranges']['n']} stratified calibration cases, BN folded: "
        f"{rec['bn_folded']} pairs), then QAT {qc['qat_epochs']} epochs at lr {qc['qat_lr']}.", "",
        "| variant | MAE | RMSE | R² | AUC@0.899 | ΔMAE vs fp32 | AUC drop | max |Δ| vs torch | "
        "interval ± | size MB |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"PyTorch on the same cases: fp32 MAE {t['fp32']['mae']:.4f}, PTQ {t['ptq']['mae']:.4f}, "
        f"QAT {t['qat']['mae']:.4f} g/cm².", "", "## Acceptance", "",
        *[f"- [{'x' if ok else ' '}] {name}" for name, ok in checks], "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta.provenance.versions.items()), "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
