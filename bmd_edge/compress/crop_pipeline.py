"""Quantize and export a canonical-crop BMD model (`training.crop_train`) into a bundle.

The crop model's data are hips of synthetic cohorts, not manifest rows, so the two halves of
`pipeline.run_quantize/run_export` that read a manifest are replaced here; everything after the
data (PTQ, QAT, every format, parity, split-conformal interval, bundle.json) is the same code.

Held out = the labelled hips of the films the training run validated on (RUN/split.json): they
are split by label rank into interval and test cases, as `pipeline` does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.compress.pipeline import (
    Arrays,
    Log,
    export_arrays,
    metrics_of,
    torch_batches,
    write_json,
)
from bmd_edge.errors import InputError


def crop_arrays(samples: Sequence[Any], spec: Any) -> Arrays:
    """Exact-landmark crops of `samples` (no jitter) as model-ready arrays."""
    from bmd_edge.training.crop_dataset import CropDataset

    ds = CropDataset(samples, spec)
    image = np.stack([ds.image(i, None) for i in range(len(ds))]).astype(np.float32)
    return Arrays(image, ds.values, ds.present, ds.labels)


def _split(run: Path, crop: Any) -> tuple[list[Any], list[Any]]:
    """(training hips, held-out labelled hips) of a crop training run, from its split.json."""
    from bmd_edge.training.crop_data import samples_from_cohort

    path = run / "split.json"
    if not path.is_file():
        raise InputError(f"{run} holds no split.json; pass the folder crop_train wrote")
    split = json.loads(path.read_text(encoding="utf-8"))
    val = set(split["val_images"])
    samples = [s for c in split["cohorts"] for s in samples_from_cohort(c)]
    train = [s for s in samples if str(s.image) not in val]
    held = [s for s in samples if str(s.image) in val and s.labelled]
    if len(held) < 8:
        raise InputError(f"{run}/split.json names {len(held)} held-out hips; need at least 8")
    return train, held


def _held_idx(held: Sequence[Any]) -> tuple[list[int], list[int]]:
    from bmd_edge.compress import calibration as cal

    return cal.split_heldout(len(held), [s.label for s in held])


def run_crop_quantize(run: str | Path, out: str | Path, cfg: Any = None, *,
                      qat_samples: int = 1200, log: Log = print) -> dict[str, Any]:
    """PTQ (stratified calibration hips) + QAT (jittered crops of `qat_samples` training hips)
    of RUN/best.pt; writes OUT/quantized.pt and OUT/quantize.json."""
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
    from bmd_edge.locate.crop import CropSpec
    from bmd_edge.model.checkpoint import load_checkpoint
    from bmd_edge.training.config import TrainConfig
    from bmd_edge.training.crop_data import CropAugment
    from bmd_edge.training.crop_dataset import CropDataset
    from bmd_edge.training.trainer import make_loader, make_loss

    cfg = cfg or QuantizeConfig()
    run, out = Path(run), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, meta = load_checkpoint(run / "best.pt")
    if not meta.get("crop"):
        raise InputError(f"{run}/best.pt is not a canonical-crop model (no 'crop' in it)")
    spec = CropSpec.from_dict(meta["crop"])
    train, held = _split(run, spec)
    calib_idx = cal.select_calibration(train, cfg.subset_size, cfg.seed)
    interval_idx, test_idx = _held_idx(held)
    log(f"calibration: {len(calib_idx)} of {len(train)} training hips; held-out {len(held)}")
    calib = crop_arrays([train[i] for i in calib_idx], spec)
    heldout = crop_arrays(held, spec)
    test_b = torch_batches(heldout.batches(cfg.batch_size, test_idx))
    y_test = heldout.label[test_idx]
    res: dict[str, Any] = {"fp32": metrics_of(y_test, predict_batches(model, test_b))}
    n_folded = fold_batchnorm(model, torch_batches(calib.batches(cfg.batch_size))[0])
    q = ptq(model, torch_batches(calib.batches(cfg.batch_size)), cfg)
    res["ptq"] = metrics_of(y_test, predict_batches(q, test_b))
    log(f"PTQ: test MAE {res['ptq']['mae']:.4f} (fp32 {res['fp32']['mae']:.4f})")
    base = {**meta, "state_dict": {}}
    extra = {"crop_run": str(run.resolve())}
    tcfg = dataclasses.replace(TrainConfig.from_dict(meta.get("train_config") or {}), workers=0,
                               batch_size=cfg.batch_size, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(rng.choice(len(train), min(qat_samples, len(train)), replace=False))
    qat_ds = CropDataset([train[i] for i in pick], spec, augment=CropAugment(), seed=cfg.seed,
                         field_dropout=tcfg.field_dropout,
                         field_dropout_all=tcfg.field_dropout_all)
    loader, _ = make_loader(qat_ds, tcfg, shuffle=True)
    res["qat_losses"] = qat(q, loader, make_loss(tcfg, qat_ds.labels), cfg, log)
    res["qat"] = metrics_of(y_test, predict_batches(q, test_b))
    save_quantized(out / "quantized.pt", q, base, cfg, extra)
    log(f"QAT {cfg.qat_epochs} epochs on {len(pick)} hips: test MAE {res['qat']['mae']:.4f}")
    summary = {"int8-ranges": {"n": len(calib_idx), "source": "training hips, stratified"},
               "interval": {"n": len(interval_idx)}, "test": {"n": len(test_idx)}}
    record = {"checkpoint": str((run / "best.pt").resolve()), "run": str(run.resolve()),
              "quantize_config": cfg.to_dict(), "bn_folded": n_folded,
              "qat_hips": len(pick), "interval_idx": interval_idx, "test_idx": test_idx,
              "summary": summary, "torch_metrics": res}
    write_json(out / "quantize.json", record)
    del torch
    return record


def run_crop_export(run: str | Path, quantized: str | Path, out: str | Path, *,
                    optional_fp32: bool = True, overwrite: bool = False, coverage: float = 0.9,
                    batch_size: int = 16, training_data: str, model_name: str = "xattn-bmd",
                    extra: dict[str, Any] | None = None, sign_key: str | Path | None = None,
                    log: Log = print) -> Any:
    """Every format of RUN/best.pt (+ QUANTIZED int8) → a verified bundle at `out`."""
    from bmd_edge.compress.formats import select_formats
    from bmd_edge.locate.crop import CropSpec
    from bmd_edge.model.checkpoint import load_checkpoint
    from bmd_edge.preprocess import PreprocessSpec

    run = Path(run)
    model, meta = load_checkpoint(run / "best.pt")
    spec = CropSpec.from_dict(meta["crop"])
    rec = json.loads((Path(quantized) / "quantize.json").read_text(encoding="utf-8"))
    _, held = _split(run, spec)
    return export_arrays(
        model, meta, PreprocessSpec.from_dict(meta["preprocess"]), crop_arrays(held, spec),
        rec["interval_idx"], rec["test_idx"], rec, out, chosen=select_formats(None),
        quantized=quantized, overwrite=overwrite, optional_fp32=optional_fp32, coverage=coverage,
        batch_size=batch_size, training_data=training_data, model_name=model_name,
        sign_key=sign_key, log=log, extra=extra)
