"""`bmd-edge train`, `cv` and `evaluate`: thin Typer wrappers over `bmd_edge.training`.

Torch is imported inside the functions (the torch-free zone covers this module's top level).
Library errors become one `error: ...` line and exit code 2 here, so the same holds under
`bmd-edge` and under Typer's CliRunner.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from bmd_edge.errors import InputError, ManifestError
from bmd_edge.training.config import FUSIONS, LOSSES, PRESETS, describe_presets, resolve_config

_PRESET_HELP = "Preset (all values shown below): " + ", ".join(PRESETS)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        typer.echo(text, err=True)


def _load_cases(manifest: Path | None, synth: int | None, synth_size: int, seed: int,
                tmp: Path, quiet: bool) -> tuple[list[Any], Path]:
    """Labelled cases from --manifest, or from a synthetic cohort generated into tmp."""
    from bmd_edge.manifest import read_manifest

    if (manifest is None) == (synth is None):
        raise InputError("give exactly one of --manifest CSV or --synth N")
    if synth is not None:
        if synth < 8:
            raise InputError(f"--synth needs at least 8 cases, got {synth}")
        from bmd_edge.synth import generate_cohort

        _say(quiet, f"generating a synthetic cohort of {synth} cases ({synth_size} px) in {tmp}")
        # workers=1: synth's process pool forks, and a fork of a process that already used
        # OpenCV's thread pool can deadlock inside cv2 (seen in the test suite)
        manifest = Path(generate_cohort(synth, tmp / "synth", seed=seed, size=synth_size, workers=1))
    m = read_manifest(manifest, require_label=True)
    cases = [c for c in m.cases if c.fn_bmd is not None]
    if m.problems:
        _say(quiet, f"warning: {len(m.problems)} manifest row(s) skipped; first: {m.problems[0]}")
    if len(cases) < 8:
        raise ManifestError(f"{manifest}: {len(cases)} usable labelled case(s); training needs ≥ 8")
    return cases, Path(manifest)


def _is_main() -> bool:
    """Rank 0 (or a plain single-process run): the one process that prints and writes files."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


@contextlib.contextmanager
def _distributed() -> Iterator[None]:
    """Leave the torch process group on the way out (a no-op outside torchrun)."""
    try:
        yield
    finally:
        from bmd_edge.training.distributed import teardown

        teardown()


def _regularisation(augment: bool | None, field_dropout: float | None) -> dict[str, Any]:
    """--augment/--no-augment and --field-dropout as config overrides (None = the preset's)."""
    changes: dict[str, Any] = {}
    if augment is not None:
        from bmd_edge.training.config import AugmentConfig

        changes["augment"] = AugmentConfig(enabled=augment)
    if field_dropout is not None:
        changes["field_dropout"] = field_dropout
        if field_dropout == 0:
            changes["field_dropout_all"] = 0.0
    return changes


def _print_config(cfg: Any, quiet: bool) -> None:
    if quiet:
        return
    typer.echo("resolved config:", err=True)
    for key, value in cfg.to_dict().items():
        typer.echo(f"  {key:18s} {value}", err=True)

# Options shared by `train` and `cv` (one definition, one help text).
EpochsOpt = Annotated[int | None, typer.Option(help="Override: maximum epochs.")]
LrOpt = Annotated[float | None, typer.Option(help="Override: peak AdamW learning rate.")]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Override: global images per optimizer step (split evenly over torchrun processes).")]
ImageSizeOpt = Annotated[int | None, typer.Option(help="Override: input px (multiple of 32).")]
FusionOpt = Annotated[str | None, typer.Option(help=f"Override: {'|'.join(FUSIONS)}.")]
LossOpt = Annotated[str | None, typer.Option(help=f"Override: {'|'.join(LOSSES)}.")]
WorkersOpt = Annotated[int | None, typer.Option(help="Override: DataLoader worker processes.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="Override: torch threads per process (0 = torch default; under torchrun: cores // processes on the node).")]
ManifestOpt = Annotated[Path | None, typer.Option(help="Cohort manifest CSV (needs fn_bmd).")]
SynthSizeOpt = Annotated[int, typer.Option(help="Synthetic image side in px.")]
PretrainedOpt = Annotated[Path | None, typer.Option(help="Start the image encoder from these weights: a torchvision ResNet .pth of the same variant (RGB stem summed to gray) or a bmd-edge best.pt.")]


def train(
    preset: Annotated[str, typer.Option(help=_PRESET_HELP)] = "cpu-fast",
    manifest: ManifestOpt = None,
    synth: Annotated[int | None, typer.Option(help="Train on N synthetic cases instead (generated in a temp dir).")] = None,
    synth_size: SynthSizeOpt = 256,
    out: Annotated[Path, typer.Option(help="Output folder: best.pt, history.csv, config.json.")] = Path("runs/train"),
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    image_size: ImageSizeOpt = None,
    fusion: FusionOpt = None,
    loss: LossOpt = None,
    seed: Annotated[int | None, typer.Option(help="Override: seed for init, shuffling, augmentation.")] = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    patience: Annotated[int | None, typer.Option(help="Override: early-stopping patience (epochs).")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Override: validation share when the manifest has no split column.")] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment", help="Override: training-time image jitter on/off.")] = None,
    field_dropout: Annotated[float | None, typer.Option(help="Override: per-field chance to hide a clinical field in training (0 = off; also turns off the age+sex-only draw).")] = None,
    batchnorm: Annotated[str | None, typer.Option(help="Override: BatchNorm under torchrun: batch (per process) | sync (SyncBatchNorm, GPU only) | frozen (running stats).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="On-disk cache of decoded/preprocessed images (.npy per case); safe to share between ranks.")] = None,
    pretrained: PretrainedOpt = None,
    resume: Annotated[Path | None, typer.Option(help="Continue from a last.pt of an earlier run with the same options.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No config print-out, progress bar or epoch log.")] = False,
) -> None:
    """(docstring set below from the presets)"""
    cfg = resolve_config(preset, epochs=epochs, lr=lr, batch_size=batch_size,
                         image_size=image_size, fusion=fusion, loss=loss, seed=seed,
                         workers=workers, threads=threads, patience=patience,
                         val_fraction=val_fraction, batchnorm=batchnorm,
                         cache_dir=None if cache_dir is None else str(cache_dir),
                         pretrained=None if pretrained is None else str(pretrained),
                         **_regularisation(augment, field_dropout))
    main = _is_main()
    quiet = quiet or not main
    _print_config(cfg, quiet)
    from bmd_edge.training.trainer import fit, split_cases

    with _distributed(), tempfile.TemporaryDirectory(prefix="bmd-edge-synth-") as tmp:
        cases, _ = _load_cases(manifest, synth, synth_size, cfg.seed, Path(tmp), quiet)
        tr, va = split_cases(cases, cfg.val_fraction, cfg.seed)
        out.mkdir(parents=True, exist_ok=True)
        if main:
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        _say(quiet, f"training on {len(tr)} cases, validating on {len(va)}")
        res = fit(cfg, tr, va, out, quiet=quiet, resume=resume,
                  log=None if quiet else (lambda s: typer.echo(s, err=True)))
    m = res.best_metrics
    if main:
        typer.echo(f"best epoch {res.best_epoch}: val MAE {m['mae']:.4f} g/cm², R² {m['r2']:.3f}, "
                   f"AUC {m['auc']:.3f} → {res.checkpoint}")


train.__doc__ = (
    "Train a BMD model (full precision) on a manifest or a synthetic cohort; writes OUT/best.pt.\n\n"
    "Presets: " + describe_presets() + ".\n\nOverrides replace single preset values; the resolved "
    "config is printed first and stored in the checkpoint.\n\nSeveral processes: run it under "
    "`torchrun --nproc_per_node N` (and --nnodes/--node_rank/--rdzv_* for several machines); "
    "--batch-size stays the global batch, split evenly over the processes; rank 0 writes the files."
)


def cv(
    preset: Annotated[str, typer.Option(help=_PRESET_HELP)] = "cpu-fast",
    manifest: ManifestOpt = None,
    synth: Annotated[int | None, typer.Option(help="Cross-validate on N synthetic cases instead.")] = None,
    synth_size: SynthSizeOpt = 256,
    folds: Annotated[int, typer.Option(help="k of the stratified k-fold (the paper: 10).")] = 10,
    out: Annotated[Path, typer.Option(help="Output folder: oof.csv, metrics.json, subgroups.csv, PNGs.")] = Path("runs/cv"),
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    image_size: ImageSizeOpt = None,
    fusion: FusionOpt = None,
    loss: LossOpt = None,
    seed: Annotated[int | None, typer.Option(help="Override: seed (also shuffles the folds).")] = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    baselines: Annotated[bool, typer.Option(help="Also cross-validate OST and OLS on the same folds.")] = True,
    batchnorm: Annotated[str | None, typer.Option(help="Override: BatchNorm under torchrun: batch | sync (GPU only) | frozen.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="On-disk cache of decoded/preprocessed images (.npy per case).")] = None,
    pretrained: PretrainedOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only the final summary.")] = False,
) -> None:
    """Stratified k-fold CV (strata: BMD quantile × sex; grouped by patient_id): mean ± SD over folds,
    subgroup metrics with bootstrap CIs, out-of-fold predictions and plots, plus OST/OLS baselines."""
    cfg = resolve_config(preset, epochs=epochs, lr=lr, batch_size=batch_size,
                         image_size=image_size, fusion=fusion, loss=loss, seed=seed,
                         workers=workers, threads=threads, batchnorm=batchnorm,
                         cache_dir=None if cache_dir is None else str(cache_dir),
                         pretrained=None if pretrained is None else str(pretrained))
    main = _is_main()
    quiet = quiet or not main
    _print_config(cfg, quiet)
    from bmd_edge.training.cv import run_cv
    from bmd_edge.training.evaluate import read_oracle, write_report

    log = None if quiet else (lambda s: typer.echo(s, err=True))
    with _distributed(), tempfile.TemporaryDirectory(prefix="bmd-edge-synth-") as tmp:
        cases, mpath = _load_cases(manifest, synth, synth_size, cfg.seed, Path(tmp), quiet)
        res = run_cv({cfg.fusion: cfg}, cases, folds, out, seed=cfg.seed,
                     baselines=baselines, log=log)
        summary = res.summary()
        if main:
            write_report(out, cases, res.truth, res.oof, cfg.fusion,
                         attention=res.attention.get(cfg.fusion) if cfg.fusion == "xattn" else None,
                         oracle=read_oracle(mpath),
                         extra={"folds": folds, "config": cfg.to_dict(),
                                "fold_mean_sd": {n: {k: list(v) for k, v in s.items()}
                                                 for n, s in summary.items()}})
    if not main:
        return
    for name, s in summary.items():
        typer.echo(f"{name:8s} MAE {s['mae'][0]:.4f} ± {s['mae'][1]:.4f}  "
                   f"R² {s['r2'][0]:.3f} ± {s['r2'][1]:.3f}  AUC {s['auc'][0]:.3f} ± {s['auc'][1]:.3f}")
    typer.echo(f"report: {out}/metrics.json, {out}/oof.csv")


def evaluate(
    manifest: Annotated[Path, typer.Option(help="Labelled manifest CSV to evaluate on.")],
    checkpoint: Annotated[Path | None, typer.Option(help="A best.pt written by `bmd-edge train` (PyTorch).")] = None,
    model: Annotated[Path | None, typer.Option(help="A bundle folder (e.g. export/): scores its variant torch-free.")] = None,
    variant: Annotated[str | None, typer.Option(help="With --model: variant name or precision (default int8).")] = None,
    backend: Annotated[str, typer.Option(help="With --model: openvino or onnxruntime.")] = "openvino",
    allow_unsigned: Annotated[bool, typer.Option("--allow-unsigned", help="With --model: score a bundle nobody vouches for.")] = False,
    out: Annotated[Path, typer.Option(help="Output folder: metrics.json, subgroups.csv, PNGs.")] = Path("runs/eval"),
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
) -> None:
    """Evaluate a checkpoint (--checkpoint) or a bundle variant (--model) on a labelled manifest:
    MSE/MAE/RMSE/R²/r, the 0.899 g/cm² screen, subgroups with bootstrap 95 % CIs, and scatter /
    Bland–Altman / ROC / attention plots."""
    if (checkpoint is None) == (model is None):
        raise InputError("give exactly one of --checkpoint (a best.pt) or --model (a bundle "
                         "folder such as export/)")
    if checkpoint is not None and (checkpoint.is_dir() or checkpoint.suffix in
                                   (".onnx", ".xml", ".bin", ".json")):
        raise InputError(f"{checkpoint} is part of a bundle, not a PyTorch checkpoint; score it "
                         f"with --model {checkpoint if checkpoint.is_dir() else checkpoint.parent}")
    if model is not None:
        from bmd_edge.runtime.evaluate import evaluate_bundle

        report = evaluate_bundle(model, manifest, out, backend=backend, variant=variant,
                                 allow_unsigned=allow_unsigned, batch_size=batch_size)
    else:
        from bmd_edge.training.evaluate import evaluate_checkpoint

        assert checkpoint is not None
        report = evaluate_checkpoint(checkpoint, manifest, out, batch_size=batch_size,
                                     workers=workers)
    m = report["metrics"][report["primary"]]
    typer.echo(f"n={report['n']}: MAE {m['mae']:.4f} g/cm², RMSE {m['rmse']:.4f}, R² {m['r2']:.3f}, "
               f"r {m['pearson_r']:.3f}, AUC {m['auc']:.3f}, recall {m['recall']:.3f} → {out}")
