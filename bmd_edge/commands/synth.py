"""`bmd-edge synth`: write a synthetic hip-radiograph cohort (images, manifest, oracle)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from bmd_edge.commands.failure import fail
from bmd_edge.errors import BmdEdgeError, InputError


def synth(
    n: Annotated[int, typer.Option("--n", help="Number of cases (1 or more).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the cohort into.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same bytes.")] = 0,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 256,
    dicom: Annotated[bool, typer.Option("--dicom", help="Also write DICOM files.")] = False,
    view: Annotated[str, typer.Option("--view", help="hip (one hip) or pelvis (AP pelvis).")]
    = "hip",
    workers: Annotated[Optional[int], typer.Option(
        "--workers", help="Worker processes (default: all cores); output does not depend on it.")]
    = None,
    anatomy: Annotated[str, typer.Option("--anatomy", help=(
        "hip (default), or a non-hip body part: knee, shoulder, elbow, hand, wrist, foot, "
        "ankle, spine, chest, long_spine, paed_pelvis (images + manifest, no BMD)."))] = "hip",
) -> None:
    """Generate a synthetic hip-radiograph cohort with known femoral-neck BMD.

    Writes OUT/images/*.png (16-bit), OUT/manifest.csv, OUT/landmarks.csv and OUT/oracle.csv.

    landmarks.csv gives every hip's head centre/radius, neck axis and femoral-neck box in
    pixels (a pelvis view: both hips; manifest `select` names the labelled one to crop).
    The oracle holds the true BMD and the nuisance: never train on it.

    --dicom also writes OUT/dicom/*.dcm. Same seed, same bytes, for any --workers.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from bmd_edge.synth import generate_cohort

    try:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task("synth", total=max(n, 0))
            if anatomy != "hip":
                from bmd_edge.synth.other_writer import generate_other

                if dicom:
                    raise InputError("--dicom is written for --anatomy hip only")
                view = anatomy
                manifest = generate_other(n, out, kind=anatomy, seed=seed, size=size,
                                          workers=workers,
                                          progress=lambda k: bar.update(task, completed=k))
            else:
                manifest = generate_cohort(n, out, seed=seed, size=size, dicom=dicom, view=view,
                                           workers=workers,
                                           progress=lambda k: bar.update(task, completed=k))
    except BmdEdgeError as err:  # the one error path (commands/failure.py)
        raise typer.Exit(fail(err)) from None
    used = workers or os.cpu_count() or 1
    typer.echo(f"wrote {n} cases to {manifest.parent} ({view} view, {size} px, {used} workers); "
               f"manifest: {manifest}")
