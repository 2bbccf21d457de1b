"""`bmd-edge quantize` and `bmd-edge export`: thin wrappers over bmd_edge.compress.pipeline.

torch/nncf/openvino are imported inside the functions, so `bmd-edge --help` stays fast and the
module itself is torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bmd_edge.errors import DependencyError, InputError


def _need_train_extra() -> None:
    try:
        import nncf  # noqa: F401
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        raise DependencyError(f"this command needs the training extra ({err.name} is missing); "
                              "install with: pip install 'bmd-edge[train]'") from None


def _cases(manifest: Optional[Path], synth: Optional[int], out: Path, seed: int, size: int) -> Path:
    if (manifest is None) == (synth is None):
        raise InputError("give exactly one of --manifest FILE or --synth N")
    if manifest is not None:
        if not manifest.is_file():
            raise InputError(f"manifest {manifest} does not exist; pass a CSV written like `bmd-edge synth`")
        return manifest
    if synth < 40:  # type: ignore[operator]
        raise InputError(f"--synth {synth} is too small; use at least 40 cases")
    from bmd_edge.compress.pipeline import synth_manifest

    return synth_manifest(int(synth), out / "synth", seed, size)  # type: ignore[arg-type]


def quantize(
    checkpoint: Annotated[Path, typer.Option(help="fp32 checkpoint (best.pt from `bmd-edge train`).")],
    out: Annotated[Path, typer.Option(help="Output folder: quantized.pt, ptq.pt, quantize.json, case list.")],
    manifest: Annotated[Optional[Path], typer.Option(help="Labelled manifest CSV (the training cohort).")] = None,
    synth: Annotated[Optional[int], typer.Option(help="Instead of --manifest: generate N synthetic cases.")] = None,
    subset_size: Annotated[int, typer.Option(help="Calibration cases for the int8 ranges (stratified BMD × sex).")] = 300,
    qat_epochs: Annotated[int, typer.Option(help="QAT fine-tuning epochs (0 = PTQ only).")] = 3,
    qat_lr: Annotated[float, typer.Option(help="QAT learning rate (low: QAT only nudges).")] = 1e-5,
    keep_float: Annotated[str, typer.Option(help="Layers kept in float: 'head' (final Linear) or 'none'.")] = "head",
    batch_size: Annotated[int, typer.Option(help="Batch size for QAT and evaluation.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed for calibration sampling and QAT shuffling.")] = 0,
) -> None:
    """Compress a checkpoint to int8: NNCF PTQ on a stratified calibration set, then QAT.

    Writes OUT/quantized.pt (NNCF config + state dict, reloadable with nncf load_from_config),
    OUT/ptq.pt (PTQ only), OUT/quantize.json (split, metrics), OUT/calibration_cases.csv and
    OUT/calibration.md (the recipe). Feed OUT to `bmd-edge export --quantized OUT`.
    """
    _need_train_extra()
    from bmd_edge.compress.pipeline import run_quantize
    from bmd_edge.compress.quantize import QuantizeConfig

    cfg = QuantizeConfig(subset_size=subset_size, qat_epochs=qat_epochs, qat_lr=qat_lr,
                         keep_float=keep_float, batch_size=batch_size, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    m = _cases(manifest, synth, out, seed, 256)
    rec = run_quantize(checkpoint, m, out, cfg, log=typer.echo)
    t = rec["torch_metrics"]
    typer.echo(f"test MAE g/cm²: fp32 {t['fp32']['mae']:.4f}, PTQ {t['ptq']['mae']:.4f}, "
               f"QAT {t['qat']['mae']:.4f} → {out / 'quantized.pt'}")


def export(
    checkpoint: Annotated[Path, typer.Option(help="fp32 checkpoint (best.pt).")],
    out: Annotated[Path, typer.Option(help="Bundle folder to create (written atomically).")],
    quantized: Annotated[Optional[Path], typer.Option(help="Folder from `bmd-edge quantize` (enables int8 variants).")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Labelled manifest for held-out metrics (default: the one quantize used).")] = None,
    format: Annotated[Optional[list[str]], typer.Option("--format", help="Export only these formats (repeatable): openvino-int8, onnx-int8, openvino-fp32, onnx-fp32.")] = None,
    coverage: Annotated[float, typer.Option(help="Split-conformal interval coverage.")] = 0.9,
    ship: Annotated[bool, typer.Option(help="Mark fp32 variants optional (the shipped default commits int8 only).")] = False,
    training_data: Annotated[Optional[str], typer.Option(help="One-line description of the training data for bundle.json.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    sign_key: Annotated[Optional[Path], typer.Option(help="Ed25519 private key (PEM) to sign bundle.json with; users trust its public key (see bundle_trust.py).")] = None,
) -> None:
    """Export a bundle: OpenVINO IR (int8, fp32), ONNX (fp32, int8 QDQ) + bundle.json.

    Each file is run by its own runtime on held-out cases (OpenVINO pinned to f32) to record
    MAE/RMSE/R²/AUC, parity with PyTorch and a split-conformal interval; every file's sha256 goes
    into bundle.json, which `Bundle.load` verifies.
    """
    _need_train_extra()
    from bmd_edge.compress.formats import select_formats
    from bmd_edge.compress.pipeline import run_export

    select_formats(format)  # unknown names are rejected before any work
    meta = run_export(checkpoint, out, quantized=quantized, manifest=manifest, formats=format,
                      overwrite=overwrite, optional_fp32=ship, coverage=coverage,
                      training_data=training_data, sign_key=sign_key, log=typer.echo)
    iv = meta.interval
    typer.echo(f"bundle {out}: {', '.join(meta.variants)}; interval ±{iv.halfwidth_gcm2:.3f} "
               f"g/cm² ({iv.coverage:.0%}, n={iv.n_calibration}); "
               f"{'signed' if meta.signature else 'unsigned'}")
