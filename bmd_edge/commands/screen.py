"""`bmd-edge screen`: opportunistic screening of a whole archive with Ray Data (`.[scale]`).

Thin wrapper over `bmd_edge.screen.engine.screen`; Ray and pyarrow are imported only when the
command runs, so the edge install's `bmd-edge --help` works without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from bmd_edge.commands.failure import fail
from bmd_edge.commands.inference import Backend, Side, Smoking
from bmd_edge.errors import BmdEdgeError, InputError


def screen(
    source: Annotated[Path, typer.Argument(
        help="A folder of images (walked recursively), a manifest .csv, or a .parquet/.csv "
             "listing with an image or path column and optional clinical columns.",
        show_default=False)],
    out: Annotated[Path, typer.Option(help="Results folder (Parquet parts + summary); "
                                           "rerun with the same folder to resume.")],
    age: Annotated[float | None, typer.Option(help="Age for rows without one.")] = None,
    sex: Annotated[str | None, typer.Option(help="Sex (F/M) for rows without one.")] = None,
    height_cm: Annotated[float | None, typer.Option(help="Height in cm.")] = None,
    weight_kg: Annotated[float | None, typer.Option(help="Weight in kg.")] = None,
    smoking: Annotated[Smoking | None, typer.Option(help="Smoking status.")] = None,
    side: Annotated[Side | None, typer.Option(help="Which hip every image shows.")] = None,
    select: Annotated[Side | None, typer.Option(
        help="Pelvis views: crop this hip (patient's side) first.")] = None,
    model: Annotated[Path | None, typer.Option(
        help="Bundle folder (default: the shipped bundle).")] = None,
    backend: Annotated[Backend, typer.Option(help="Inference runtime.")] = Backend.openvino,
    variant: Annotated[str | None, typer.Option(
        help="Bundle variant name or precision (int8 default, fp32).")] = None,
    address: Annotated[str | None, typer.Option(
        help="Join this Ray cluster (e.g. ray://head:10001 or auto); default: a local one.")
    ] = None,
    num_cpus: Annotated[int | None, typer.Option(
        help="Local cluster CPUs (default: this machine's cores).", min=1, max=4096)] = None,
    actors: Annotated[int | None, typer.Option(
        help="Predictor actors (default: one per cluster CPU).", min=1, max=100000)] = None,
    threads: Annotated[int, typer.Option(help="Inference threads per actor.", min=1, max=64)
                       ] = 1,
    batch_size: Annotated[int, typer.Option(
        help="Images per batch and per Parquet part.", min=1, max=100000)] = 64,
    object_store_mb: Annotated[int, typer.Option(
        help="Local object store cap, MiB (Ray Data's budget too).", min=100, max=10**7)] = 512,
    include_ids: Annotated[bool, typer.Option(
        "--include-ids", help="Store image paths and patient identifiers (default: keyed "
                              "hashes only).")] = False,
    force: Annotated[bool, typer.Option(
        help="Run images the quality gate refuses (with a warning).")] = False,
    ray_progress: Annotated[bool, typer.Option(
        help="Show Ray Data's own progress bars.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Screen every hip/pelvis radiograph of an archive into Parquet, resumably, with Ray Data.

    One row per hip: BMD, interval, T/Z-score, WHO category, screen flag, refusal reason,
    model version and keyed digests (paths and identifiers only with --include-ids). A rerun
    skips inputs already in --out (by path, size, mtime, model and facts), so a killed run
    continues and a nightly run does only new images. Runs on a local Ray cluster with this
    machine's cores, or on an existing cluster with --address.
    """
    from bmd_edge.screen.engine import ScreenOptions
    from bmd_edge.screen.engine import screen as run_screen

    defaults: dict[str, Any] = {
        "age": age, "sex": sex, "height_cm": height_cm, "weight_kg": weight_kg,
        "smoking": smoking.value if smoking else None,
        "side": side.value if side else None, "select": select.value if select else None,
    }
    opts = ScreenOptions(bundle=model, backend=backend.value, variant=variant,
                         force=force, include_ids=include_ids, address=address,
                         num_cpus=num_cpus, actors=actors, threads=threads,
                         batch_size=batch_size, object_store_mb=object_store_mb,
                         ray_progress=ray_progress)
    try:
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} is a file; screen writes a folder of Parquet parts")
        result = _run(run_screen, source, out, defaults, opts)
    except BmdEdgeError as err:  # the one error path (commands/failure.py)
        raise typer.Exit(fail(err)) from None
    s = result.report
    if json_out:
        typer.echo(json.dumps({"schema_version": 1, "out": str(result.out), **s.to_dict()},
                              default=str))
        return
    c = result.plan_counts
    typer.echo(f"{c['listed']} listed, {c['already_done']} already done, {c['pending']} run: "
              f"{result.n_ok} ok, {result.n_failed} failed in {result.seconds:.1f} s "
              f"→ {result.out}", err=True)
    typer.echo(f"folder: {s.n_inputs} inputs, {s.n_ok} ok, {s.n_failed} failed, "
              f"{s.n_positive} screen-positive; report {result.out / 'summary.md'}", err=True)


def _run(run_screen: Any, source: Path, out: Path, defaults: dict[str, Any], opts: Any) -> Any:
    """Run with a rich progress bar (our summary bar; Ray Data prints its own too)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    err = Console(stderr=True, highlight=False)
    with Progress(TextColumn("screen"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("screen", total=None, failed=0)
        failed = 0

        def on_plan(p: Any) -> None:
            bar.update(task, total=p.pending.num_rows)

        def progress(n_ok: int, n_failed: int) -> None:
            nonlocal failed
            failed += n_failed
            bar.update(task, advance=n_ok + n_failed, failed=failed)

        return run_screen(source, out, defaults, opts, progress=progress, on_plan=on_plan)
