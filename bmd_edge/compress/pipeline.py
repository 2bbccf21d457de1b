"""The two jobs behind `bmd-edge quantize` and `bmd-edge export`, as library functions.

quantize: checkpoint + labelled cases → train/held-out split (the trainer's own split) →
stratified calibration subset → fold BN → PTQ → QAT → OUT/quantized.pt (+ OUT/ptq.pt,
OUT/quantize.json with the split and torch-side metrics, OUT/calibration_cases.csv + recipe).
export: checkpoint [+ quantized] + held-out cases → every format row → run each file in its own
runtime → metrics, parity, split-conformal interval → bundle.json → atomic rename.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.references import SCREENING_THRESHOLD_GCM2

Log = Callable[[str], None]


@dataclass(frozen=True)
class Arrays:
    """Model-ready held-out or calibration data (numpy, so runtimes and torch can share it)."""

    image: np.ndarray  # (N, 1, S, S) float32, preprocessed with the checkpoint's spec
    values: np.ndarray  # (N, F) float32, schema-encoded
    present: np.ndarray  # (N, F) float32 in {0, 1}
    label: np.ndarray  # (N,) float32 g/cm²

    def batches(self, size: int, idx: Sequence[int] | None = None) -> list[tuple[np.ndarray, ...]]:
        """(image, values, present) batches over `idx` (all cases when None), in order."""
        ix = np.arange(len(self.label)) if idx is None else np.asarray(idx, dtype=int)
        return [(self.image[ix[s:s + size]], self.values[ix[s:s + size]],
                 self.present[ix[s:s + size]]) for s in range(0, len(ix), size)]


def load_arrays(cases: Sequence[Any], spec: Any) -> Arrays:
    """Decode + preprocess every case once (no augmentation)."""
    from bmd_edge.training.data import BmdDataset

    ds = BmdDataset(cases, spec, cache=True, threads=2)
    image = np.stack([ds.image(i, None) for i in range(len(ds))]).astype(np.float32)
    return Arrays(image, ds.values.astype(np.float32), ds.present.astype(np.float32),
                  ds.labels.astype(np.float32))


def torch_batches(batches: Sequence[Sequence[np.ndarray]]) -> list[tuple[Any, ...]]:
    import torch

    return [tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in b) for b in batches]


def read_cases(manifest: str | Path) -> list[Any]:
    """Labelled cases of a manifest; ManifestError/InputError when unusable."""
    from bmd_edge.manifest import read_manifest

    m = read_manifest(manifest, require_label=True)
    if m.problems:
        p = m.problems[0]
        raise InputError(f"manifest {manifest} has {len(m.problems)} bad rows; first: line "
                         f"{p.line} {p.column or ''}: {p.message}")
    if len(m.cases) < 8:
        raise InputError(f"manifest {manifest} has {len(m.cases)} labelled cases; need at least 8")
    return list(m.cases)


def synth_manifest(n: int, out: Path, seed: int, size: int) -> Path:
    """A synthetic cohort of n cases under out/ (the shipped default is trained on one)."""
    from bmd_edge.synth import generate_cohort

    return Path(generate_cohort(n, out, seed=seed, size=size, dicom=False, view="hip", workers=1))


def split(cases: Sequence[Any], train_cfg: dict[str, Any] | None, seed: int) -> tuple[list, list]:
    """The trainer's train/held-out split, with the checkpoint's val fraction and seed."""
    from bmd_edge.training.trainer import split_cases

    frac = float((train_cfg or {}).get("val_fraction", 0.2) or 0.2)
    return split_cases(list(cases), frac, int((train_cfg or {}).get("seed", seed)))


def metrics_of(label: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R², AUC at 0.899 (the four numbers the bundle keeps per variant)."""
    from bmd_edge.training.metrics import all_metrics

    m = all_metrics(label, pred, SCREENING_THRESHOLD_GCM2)
    return {k: round(float(m[k]), 6) for k in ("mae", "rmse", "r2", "auc")}


def versions() -> dict[str, str]:
    """Package/runtime versions recorded in bundle.json."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("bmd-edge", "torch", "nncf", "onnx", "onnxruntime", "openvino", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def replace_cfg(cfg: Any, **kw: Any) -> Any:
    return dataclasses.replace(cfg, **kw)


def _fp32(checkpoint: str | Path) -> tuple[Any, dict[str, Any]]:
    from bmd_edge.model.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)


def _spec(meta: dict[str, Any]) -> Any:
    from bmd_edge.preprocess import PreprocessSpec

    size = int(meta["model_config"].get("image_size", 224))
    return PreprocessSpec.from_dict(meta["preprocess"]) if meta.get("preprocess") else PreprocessSpec(size=size)


def run_quantize(checkpoint: str | Path, manifest: str | Path, out: str | Path,
                 cfg: Any = None, log: Log = print) -> dict[str, Any]:
    """PTQ + QAT a checkpoint; write OUT/{quantized.pt, ptq.pt, quantize.json, case list, recipe}."""
    import torch

    from bmd_edge.compress import calibration as cal
    from bmd_edge.compress.quantize import (
        QuantizeConfig,
        fold_batchnorm,
        predict_batches,
        ptq,
        qat,
        save_quantized,
    )
    from bmd_edge.training.config import TrainConfig
    from bmd_edge.training.data import BmdDataset
    from bmd_edge.training.trainer import make_loader, make_loss

    cfg = cfg or QuantizeConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, meta = _fp32(checkpoint)
    spec = _spec(meta)
    cases = read_cases(manifest)
    train, held = split(cases, meta.get("train_config"), cfg.seed)
    calib_idx = cal.select_calibration(train, cfg.subset_size, cfg.seed)
    st = cal.strata_of(train)
    held_labels = [float(c.fn_bmd) for c in held]
    interval_idx, test_idx = cal.split_heldout(len(held), held_labels)
    rows = (cal.case_rows(train, calib_idx, "int8-ranges", Path(manifest).parent, st)
            + cal.case_rows(held, interval_idx, "interval", Path(manifest).parent)
            + cal.case_rows(held, test_idx, "test", Path(manifest).parent))
    cal.write_case_list(out / "calibration_cases.csv", rows)
    summary = {r: cal.describe(rows, r) for r in ("int8-ranges", "interval", "test")}
    (out / "calibration.md").write_text(cal.recipe_markdown(
        str(manifest), len(train), len(held), len(calib_idx), cfg.seed, 4, summary), encoding="utf-8")
    log(f"calibration: {len(calib_idx)} of {len(train)} training cases; held-out {len(held)}")

    calib = load_arrays([train[i] for i in calib_idx], spec)
    heldout = load_arrays(held, spec)
    test_b = torch_batches(heldout.batches(cfg.batch_size, test_idx))
    y_test = heldout.label[test_idx]
    calib_b = torch_batches(calib.batches(cfg.batch_size))
    res: dict[str, Any] = {"fp32": metrics_of(y_test, predict_batches(model, test_b))}
    n_folded = fold_batchnorm(model, calib_b[0])
    q = ptq(model, calib_b, cfg)
    res["ptq"] = metrics_of(y_test, predict_batches(q, test_b))
    base = {**meta, "state_dict": {}}
    extra = {"calibration": summary, "manifest": str(Path(manifest).resolve())}
    save_quantized(out / "ptq.pt", q, base, dataclasses.replace(cfg, qat_epochs=0), extra)
    log(f"PTQ ({n_folded} BN folded, keep_float={cfg.keep_float}): test MAE {res['ptq']['mae']:.4f} "
        f"(fp32 {res['fp32']['mae']:.4f})")

    try:
        tcfg = TrainConfig.from_dict(meta.get("train_config") or {})
    except Exception:  # noqa: BLE001 - an older/foreign train_config: fall back to defaults
        tcfg = TrainConfig()
    tcfg = dataclasses.replace(tcfg, workers=0, batch_size=cfg.batch_size, seed=cfg.seed)
    train_ds = BmdDataset(train, spec, augment=tcfg.augment, seed=cfg.seed, cache=True, threads=2)
    loader, _ = make_loader(train_ds, tcfg, shuffle=True)
    losses = qat(q, loader, make_loss(tcfg, train_ds.labels), cfg, log)
    res["qat"] = metrics_of(y_test, predict_batches(q, test_b))
    res["qat_losses"] = losses
    save_quantized(out / "quantized.pt", q, base, cfg, extra)
    log(f"QAT {cfg.qat_epochs} epochs: test MAE {res['qat']['mae']:.4f}")
    record = {"checkpoint": str(Path(checkpoint).resolve()), "manifest": str(Path(manifest).resolve()),
              "quantize_config": cfg.to_dict(), "bn_folded": n_folded,
              "train_lines": [int(c.line) for c in train], "heldout_lines": [int(c.line) for c in held],
              "calibration_lines": [int(train[i].line) for i in calib_idx],
              "interval_idx": interval_idx, "test_idx": test_idx, "summary": summary,
              "torch_metrics": res}
    write_json(out / "quantize.json", record)
    del torch
    return record


INTENDED_USE = ("Research and engineering use: estimates femoral-neck BMD (g/cm², GE Lunar scale) "
                "from an AP hip radiograph plus clinical facts, as a screening aid at 0.899 g/cm² "
                "(T-score -1). Not a medical device and not for diagnosis; DXA remains the reference.")


def _build(ck: dict[str, Any]) -> Any:
    from bmd_edge.model import ModelConfig, build_model

    return build_model(ModelConfig.from_dict(ck["model_config"])).eval()


def run_export(checkpoint: str | Path, out: str | Path, *, quantized: str | Path | None = None,
               manifest: str | Path | None = None, formats: Sequence[str] | None = None,
               overwrite: bool = False, optional_fp32: bool = False, coverage: float = 0.9,
               batch_size: int = 16, training_data: str | None = None,
               model_name: str = "xattn-bmd", sign_key: str | Path | None = None,
               log: Log = print) -> Any:
    """Write a verified bundle to `out` (signed with `sign_key` if given); returns its
    `bundle.BundleMeta`."""
    from bmd_edge.compress import calibration as cal
    from bmd_edge.compress.formats import select_formats

    model, meta = _fp32(checkpoint)
    spec = _spec(meta)
    rec: dict[str, Any] = {}
    if quantized is not None:
        qdir = Path(quantized)
        rec_path = qdir / "quantize.json"
        if not rec_path.is_file():
            raise InputError(f"--quantized {qdir} holds no quantize.json; pass the folder "
                             "written by `bmd-edge quantize`")
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    manifest = manifest or rec.get("manifest")
    if manifest is None:
        raise InputError("export needs held-out cases: pass --manifest (or --quantized from quantize)")
    cases = read_cases(manifest)
    if rec:
        by_line = {int(c.line): c for c in cases}
        missing = [ln for ln in rec["heldout_lines"] if ln not in by_line]
        if missing:
            raise InputError(f"manifest {manifest} lacks held-out lines {missing[:5]} recorded by quantize")
        held = [by_line[ln] for ln in rec["heldout_lines"]]
        interval_idx, test_idx = rec["interval_idx"], rec["test_idx"]
    else:
        _, held = split(cases, meta.get("train_config"), 0)
        interval_idx, test_idx = cal.split_heldout(len(held), [float(c.fn_bmd) for c in held])
    chosen = select_formats(formats)
    if quantized is None:
        int8 = [f.name for f in chosen if f.precision == "int8"]
        if formats and int8:
            raise InputError(f"formats {int8} need --quantized (a folder from `bmd-edge quantize`)")
        chosen = tuple(f for f in chosen if f.precision != "int8")
        log("no --quantized given: exporting fp32 variants only")

    return export_arrays(model, meta, spec, load_arrays(held, spec), interval_idx, test_idx, rec,
                         out, chosen=chosen, quantized=quantized, overwrite=overwrite,
                         optional_fp32=optional_fp32, coverage=coverage, batch_size=batch_size,
                         training_data=training_data or f"checkpoint {Path(checkpoint).name}; "
                                                        f"cases from manifest {Path(manifest).name}",
                         model_name=model_name, sign_key=sign_key, log=log)


def export_arrays(model: Any, meta: dict[str, Any], spec: Any, data: Arrays,
                  interval_idx: Sequence[int], test_idx: Sequence[int], rec: dict[str, Any],
                  out: str | Path, *, chosen: Sequence[Any], quantized: str | Path | None,
                  overwrite: bool, optional_fp32: bool, coverage: float, batch_size: int,
                  training_data: str, model_name: str, sign_key: str | Path | None,
                  log: Log, extra: dict[str, Any] | None = None) -> Any:
    """The format-independent half of export: held-out arrays → every chosen format → metrics,
    interval, bundle.json → atomic rename. `meta["crop"]` (a canonical-crop model) goes into the
    input section; `extra` adds top-level bundle.json sections (e.g. the hip locator)."""
    import shutil

    import torch

    from bmd_edge import __version__
    from bmd_edge.bundle import FORMAT_VERSION, Bundle, BundleMeta, staging_dir, write_bundle
    from bmd_edge.bundle_embed import stamp
    from bmd_edge.compress.conformal import conformal_halfwidth, empirical_coverage
    from bmd_edge.compress.export import run_model_file, write_variant
    from bmd_edge.compress.formats import FORMATS
    from bmd_edge.compress.quantize import load_quantized, predict_batches
    from bmd_edge.references import default_references
    from bmd_edge.schema import schema_to_dict

    batches = data.batches(batch_size)
    tb = torch_batches(batches)
    ref = {"fp32": predict_batches(model, tb)}
    qmodel = None
    if quantized is not None:
        qmodel, qck = load_quantized(Path(quantized) / "quantized.pt", _build, tb[0])
        ref["int8"] = predict_batches(qmodel, tb)

    stage = staging_dir(out)
    scratch = tempfile.TemporaryDirectory()
    try:
        example = tb[0]
        # The interval half sizes the few quantizers ORT's int8 layout adds (ort_layout.py):
        # images only, never the test half that scores every variant.
        calib = [dict(zip(("image", "values", "present"), b))
                 for b in data.batches(batch_size, interval_idx)]
        for fmt in chosen:
            write_variant(fmt, stage, model, qmodel, example, scratch=Path(scratch.name),
                          calibration=calib, log=log)
        y = data.label.astype(np.float64)
        variants: dict[str, Any] = {}
        intervals: dict[str, Any] = {}
        per_variant_interval: dict[str, Any] = {}
        for fmt in chosen:
            pred, precision = run_model_file(stage / fmt.file, batches)
            iv = conformal_halfwidth(y[interval_idx], pred[interval_idx], coverage)
            intervals[fmt.name] = iv
            m = metrics_of(y[test_idx], pred[test_idx])
            m["max_abs_diff_vs_torch_gcm2"] = float(np.abs(pred - ref[fmt.precision]).max())
            per_variant_interval[fmt.name] = {
                "halfwidth_gcm2": round(iv.halfwidth_gcm2, 6),
                "coverage_test": round(empirical_coverage(y[test_idx], pred[test_idx],
                                                          iv.halfwidth_gcm2), 4)}
            m["size_bytes"] = sum((stage / f).stat().st_size for f in fmt.files)
            variants[fmt.name] = {"file": fmt.file, "files": list(fmt.files), "runtime": fmt.runtime,
                                  "precision": fmt.precision, "inference_precision": precision,
                                  "metrics": m, "optional": optional_fp32 and not fmt.in_default_bundle}
            log(f"{fmt.name}: MAE {m['mae']:.4f} AUC {m['auc']:.3f} "
                f"|Δ torch| {m['max_abs_diff_vs_torch_gcm2']:.2e} size {m['size_bytes'] / 1e6:.2f} MB")
        primary = next((n for n in ("openvino-int8", "onnx-int8", "openvino-fp32", "onnx-fp32")
                        if n in variants), None)
        if primary is None:
            raise InputError("no export format selected; choose from " + ", ".join(f.name for f in FORMATS))
        calib_meta = {"recipe": "calibration.md" if rec else None,
                      "int8_ranges": rec.get("summary", {}).get("int8-ranges"),
                      "interval_cases": len(interval_idx), "test_cases": len(test_idx),
                      "split": "held-out cases interleaved by label rank: even → interval, odd → test",
                      "quantize_config": rec.get("quantize_config"),
                      "torch_metrics_test": {**{"fp32": metrics_of(y[test_idx], ref["fp32"][test_idx])},
                                             **rec.get("torch_metrics", {})},
                      "interval_per_variant": per_variant_interval}
        bundle_meta = {
            "format_version": FORMAT_VERSION,
            "model": {"name": model_name, "version": __version__,
                      "config": meta["model_config"], "label": meta.get("label")},
            "intended_use": INTENDED_USE,
            "input": {"preprocess": spec.to_dict(), "schema": meta.get("schema") or schema_to_dict(),
                      "names": ["image", "values", "present"],
                      "shapes": {"image": ["batch", 1, data.image.shape[-1], data.image.shape[-1]],
                                 "values": ["batch", len(data.values[0])],
                                 "present": ["batch", len(data.values[0])]},
                      **({"crop": meta["crop"]} if meta.get("crop") else {})},
            "output": {"name": "bmd", "unit": "g/cm2", "scale": "GE Lunar femoral neck",
                       "attention": "field_attention (batch, fields): share of metadata attention"},
            "references": {**default_references(),
                           "screening_threshold_gcm2": SCREENING_THRESHOLD_GCM2},
            "interval": {**intervals[primary].to_dict(), "variant": primary},
            "variants": variants,
            "provenance": {
                "training_data": training_data,
                "calibration": calib_meta, "versions": versions()},
            # placeholders until write_bundle hashes the stamped files
            "files": {f: "0" * 64 for fmt in chosen for f in fmt.files},
            **(extra or {}),
        }
        typed = BundleMeta.from_dict(bundle_meta)  # the one validation, before any stamping
        for fmt in chosen:
            stamp(stage / fmt.file, typed.embedded())
        write_bundle(stage, typed, out, overwrite=overwrite, sign_key=sign_key)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        scratch.cleanup()
    del torch
    return Bundle.load(out, allow_unsigned=True).meta
