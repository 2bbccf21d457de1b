"""`bmd-edge benchmark`: accuracy vs latency for every variant of a model, one table.

Thin wrapper over `bmd_edge.benchmark` (runner → table → gate). Heavy imports happen inside the
function; no torch here (the PyTorch row runs in its own worker process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bmd_edge.errors import InputError


def _parse_files(items: list[str]) -> tuple[tuple[str, Path], ...]:
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--file {item!r} is not ROW=PATH; e.g. --file ov-int8-ptq=ptq/model.xml")
        out.append((name.strip(), Path(path.strip())))
    return tuple(out)


def _parse_variants(items: list[str]) -> tuple[str, ...] | None:
    names = tuple(n.strip() for item in items for n in item.split(",") if n.strip())
    return names or None


def benchmark(
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Bundle folder (default: the shipped export/).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint .pt for the PyTorch eager fp32 row.")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Labelled manifest CSV (image, clinical columns, fn_bmd).")] = None,
    synth: Annotated[int, typer.Option("--synth", help="Synthetic cases to generate when no --manifest is given.")] = 64,
    threads: Annotated[Optional[int], typer.Option(help="Threads per runtime (default: cores, at most 4).")] = None,
    runs: Annotated[int, typer.Option(help="Timed batch-1 inferences per variant (latency percentiles).")] = 100,
    out: Annotated[Path, typer.Option(help="Folder for latency.md / latency.json / latency.png.")] = Path("benchmark-results"),
    min_auc: Annotated[Optional[float], typer.Option(help="Fail (exit 1) if a measured variant's ROC-AUC is below this.")] = None,
    max_mae: Annotated[Optional[float], typer.Option(help="Fail (exit 1) if a measured variant's MAE (g/cm²) is above this.")] = None,
    variants: Annotated[Optional[list[str]], typer.Option("--variants", help="Rows to run, comma-separated or repeated (default: all).")] = None,
    file: Annotated[Optional[list[str]], typer.Option("--file", help="ROW=PATH: model file for a row, e.g. ov-int8-ptq=ptq/model.xml.")] = None,
    seconds: Annotated[float, typer.Option(help="Timed window per throughput configuration (s).")] = 1.0,
    decode: Annotated[bool, typer.Option("--decode/--no-decode", help="Also time decode+preprocess of PNG/JPEG/DICOM.")] = True,
    peaks: Annotated[bool, typer.Option("--peaks/--no-peaks", help="Measure the fp32/int8 matmul peaks.")] = True,
    isolate: Annotated[bool, typer.Option("--isolate/--in-process", help="One process per variant (honest peak RSS).")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic cohort (not 0: the default model trained on seed 0).")] = 2026,
    allow_unsigned: Annotated[bool, typer.Option("--allow-unsigned", help="Benchmark a bundle that is neither the shipped one nor signed by a key you trust.")] = False,
) -> None:
    """Benchmark every variant (PyTorch fp32, ORT fp32/int8, OpenVINO f32/bf16/int8 PTQ/QAT) on the
    same preprocessed cases: accuracy (MAE, RMSE, R², AUC at 0.899), latency p50/p95/p99 at batch 1,
    best throughput, first inference, peak RSS, GFLOPs and share of the measured matmul peak.
    Writes OUT/latency.md, .json, .png. Exits 1 when a measured variant misses --min-auc/--max-mae."""
    from bmd_edge.benchmark.gate import check_floors
    from bmd_edge.benchmark.measure import MeasureConfig
    from bmd_edge.benchmark.runner import BenchConfig, run_benchmark
    from bmd_edge.benchmark.table import render_rich, write_outputs
    from bmd_edge.bundle import default_bundle_path
    from bmd_edge.runtime.backends import default_threads

    t = default_threads() if threads is None else threads
    if t < 1 or t > 256:
        raise InputError(f"--threads {t} is not valid; use an integer 1-256")
    if runs < 1:
        raise InputError(f"--runs {runs} is not valid; use 1 or more")
    if seconds <= 0:
        raise InputError(f"--seconds {seconds} is not valid; use a positive number")
    if min_auc is not None and not 0.0 <= min_auc <= 1.0:
        raise InputError(f"--min-auc {min_auc} is not valid; use a value in [0, 1]")
    if max_mae is not None and max_mae <= 0:
        raise InputError(f"--max-mae {max_mae} is not valid; use a positive value in g/cm²")
    if manifest is not None and not manifest.is_file():
        raise InputError(f"--manifest {manifest} does not exist; pass a CSV file")
    bundle = model if model is not None else (None if checkpoint is not None else default_bundle_path())
    cfg = BenchConfig(
        bundle=bundle, checkpoint=checkpoint, manifest=manifest, synth_n=synth, seed=seed,
        measure=MeasureConfig(threads=t, runs=runs, throughput_seconds=seconds,
                              streams=tuple(sorted({1, t}))),
        only=_parse_variants(variants or []), files=_parse_files(file or []), isolate=isolate,
        peaks=peaks, decode_sizes=(512, 2048) if decode else (), allow_unsigned=allow_unsigned,
    )
    res = run_benchmark(cfg)
    render_rich(res)
    paths = write_outputs(res, out)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    failures = check_floors(res.variants, min_auc, max_mae)
    if failures:
        for f in failures:
            typer.echo(f"error: accuracy floor failed: {f.message()}", err=True)
        raise typer.Exit(code=1)
