"""`bmd-edge predict` and `bmd-edge info`: torch-free inference from the command line.

`predict --json` prints one JSON object. Its schema (stable; `schema_version` changes when a
key is renamed or removed, never when one is added):

    schema_version   1
    source           image file name (no folders)
    bmd_gcm2         femoral-neck BMD, g/cm², GE Lunar scale (4 decimals)
    unit, scale      "g/cm2", "GE Lunar femoral neck"
    interval         {low, high, coverage} split-conformal interval, or null
    t_score          vs t_reference (young-adult NHANES III women, converted to Lunar)
    t_reference      name of the T-score table
    z_score          vs age/sex-matched reference, or null outside its ages
    z_reference      name of the Z-score table
    who_category     "normal" | "osteopenia" | "osteoporosis" (from the T-score)
    screen_positive  true when bmd_gcm2 < threshold_gcm2
    threshold_gcm2   0.899 (T-score −1, GE Lunar femoral neck)
    field_attention  [{field, weight}] for the given clinical fields, most-attended first
    inputs           the clinical facts used (after DICOM tags filled gaps)
    model            {name, version, variant, backend, precision}
    intended_use     the bundle's intended-use statement
    warnings         list of strings (conversions, DICOM conflicts, --force overrides, a
                     "FLAGGED: image unlike the training data ..." shift warning)
    reliability      {shift_score, flagged, interval_cell}: the shift score (1 ≈ a typical
                     clean case; null when the bundle has no shift statistics), whether it
                     passed the bundle's flag limit, and the Mondrian interval cell used
                     (e.g. "F/hip/low"; null: the bundle's single half-width)
    hip              patient side of the reported hip ("left" | "right" | null): with two hips
                     (an AP pelvis) the one with the lower BMD, as a DXA dual-femur report
                     diagnoses on the lower side; bmd_gcm2 … screen_positive above are its values
    laterality_source  where `hip` came from: "dicom" (ImageLaterality/Laterality of a
                     single-hip film), "display-convention" (patient's right on the viewer's
                     left), "--side" (no hip located: bundle without locator, or --force), "unknown"
    hip_film_score   the locator's 0-1 "hip or pelvis radiograph" score (null: no locator)
    hips             one object per hip estimated, image-left first: {hip, laterality_source,
                     side_in_image (the side of the film its shaft lies on), bmd_gcm2, interval,
                     t_score, z_score, who_category, screen_positive, field_attention,
                     located: {confidence, head_xy [x, y], head_r, neck_angle_deg,
                     roi {xy, len, width, angle_deg}} in original-image pixels, or null}
    patient_ids      only with --include-ids: DICOM identifying tags

Batch mode (IMAGE is a folder or a manifest .csv, with --out results.csv) writes one row per
hip (an AP pelvis: two rows, `hip` left and right; a failed image: one row) with the columns in
`bmd_edge.runtime.batch.RESULT_COLUMNS`.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bmd_edge.errors import BmdEdgeError, InputError, shown


class Backend(str, Enum):
    openvino = "openvino"
    onnxruntime = "onnxruntime"


class Side(str, Enum):
    left = "left"
    right = "right"


class Smoking(str, Enum):
    never = "never"
    former = "former"
    current = "current"


ALLOW_UNSIGNED = typer.Option(
    "--allow-unsigned", help="Run a bundle that is neither the shipped one nor signed by a key you "
    "trust (every result then carries a warning).")
TRUSTED_KEY = typer.Option(
    "--trusted-key", help="An Ed25519 public key file (PEM) to trust, besides "
    "$BMD_EDGE_TRUSTED_KEYS and ~/.config/bmd-edge/trusted_keys/*.pub.")


def _fail(err: BmdEdgeError) -> typer.Exit:
    from bmd_edge.commands.failure import fail

    return typer.Exit(fail(err))


def predict(
    image: Annotated[Path, typer.Argument(help="Hip/pelvis radiograph (PNG, JPEG, TIFF, DICOM), "
                                               "or a folder / manifest .csv for batch mode.",
                                          show_default=False)],
    age: Annotated[Optional[float], typer.Option(help="Age in years (default: DICOM tag).")] = None,
    sex: Annotated[Optional[str], typer.Option(help="F or M (default: DICOM tag).")] = None,
    height_cm: Annotated[Optional[float], typer.Option(help="Height in cm.")] = None,
    weight_kg: Annotated[Optional[float], typer.Option(help="Weight in kg.")] = None,
    bmi: Annotated[Optional[float], typer.Option(help="Body-mass index, kg/m².")] = None,
    smoking: Annotated[Optional[Smoking], typer.Option(help="Smoking status.")] = None,
    alcohol: Annotated[Optional[float], typer.Option(help="Alcohol, UK units/week.")] = None,
    activity: Annotated[Optional[float], typer.Option(help="Activity score 0-10.")] = None,
    diet: Annotated[Optional[float], typer.Option(help="Diet quality score 0-10.")] = None,
    side: Annotated[Optional[Side], typer.Option(
        help="Which hip you expect (checked against the DICOM tag or display convention; a "
             "conflict is a warning, the crop never depends on it).")] = None,
    select: Annotated[Optional[Side], typer.Option(
        help="Pelvis view: report only this hip (patient's side).")] = None,
    model: Annotated[Optional[Path], typer.Option(
        help="Bundle folder (default: the shipped bundle).")] = None,
    backend: Annotated[Backend, typer.Option(help="Inference runtime.")] = Backend.openvino,
    variant: Annotated[Optional[str], typer.Option(
        help="Bundle variant name or precision (int8 default, fp32).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Inference threads (default: cores, max 4).",
                                                   min=1, max=256)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Also write a PNG report here.")] = None,
    include_ids: Annotated[bool, typer.Option(
        "--include-ids", help="Show DICOM patient identifiers (hidden by default).")] = False,
    force: Annotated[bool, typer.Option(help="Run even if the quality gate or the hip locator "
                                             "refuses the image (with a warning).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Batch mode: results CSV.")] = None,
    strict: Annotated[bool, typer.Option(help="Batch mode: exit 1 if any image failed.")] = False,
    dicom_out: Annotated[Optional[Path], typer.Option(
        "--dicom-out", help="DICOM source: also write a Structured Report and a Secondary "
                            "Capture of the report into this folder (the source's study).")
    ] = None,
    allow_unsigned: Annotated[bool, ALLOW_UNSIGNED] = False,
    trusted_key: Annotated[Optional[list[Path]], TRUSTED_KEY] = None,
) -> None:
    """Estimate femoral-neck BMD from a hip radiograph plus age and sex (and optional facts).

    Prints the BMD with its interval, T-score, Z-score, WHO category, the screening flag at
    0.899 g/cm², the clinical fields that weighed most, the model and its intended use.
    A research tool: not a diagnosis.
    """
    fields: dict[str, Any] = {
        "age": age, "sex": sex, "height_cm": height_cm, "weight_kg": weight_kg, "bmi": bmi,
        "smoking": smoking.value if smoking else None, "alcohol_units_week": alcohol,
        "activity_score": activity, "diet_score": diet,
        "side": side.value if side else None, "select": select.value if select else None,
    }
    try:
        try:
            batch = image.is_dir() or image.suffix.lower() == ".csv"
            exists = image.exists()
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise InputError(f"cannot use image path {shown(image)}: "
                             f"{exc.strerror or exc}") from None
        if not exists:
            raise InputError(f"image {shown(image, 300)} does not exist; give a radiograph file, "
                             "a folder or a manifest .csv")
        if batch and out is None:
            raise InputError(f"{image} is a {'folder' if image.is_dir() else 'manifest'}; "
                             "batch mode needs --out results.csv")
        if not batch and out is not None:
            raise InputError(f"--out is for batch mode; {image.name} is a single image")
        if batch and report is not None:
            raise InputError("--report draws one person's result; it is not available in batch mode")
        if batch and dicom_out is not None:
            raise InputError("--dicom-out writes one image's results; for many images run "
                             "`bmd-edge serve` or call bmd_edge.dicom_out.write_results")
        source_header = None
        if dicom_out is not None:
            from bmd_edge.dicom_out import read_source

            source_header = read_source(image)
        from bmd_edge.runtime.output_files import check_output_path

        # Before any work: an output must never replace an input (the manifest, the radiograph).
        if out is not None:
            out = check_output_path(out, [image])
        if report is not None:
            report = check_output_path(report, [image], "--report", example="report.png")
            if report.suffix.lower() != ".png":  # before the temp file (.png) would hide it
                raise InputError(f"--report {shown(report.name)} must end in .png")
        from bmd_edge.runtime.predictor import Predictor

        predictor = Predictor.load(model, backend=backend.value, variant=variant,
                                   threads=threads, allow_unsigned=allow_unsigned,
                                   trusted_keys=tuple(trusted_key or ()))
        if batch:
            assert out is not None
            code = _run_batch(predictor, image, out, fields, force=force, json_out=json_out,
                              include_ids=include_ids, strict=strict)
            raise typer.Exit(code)
        prepared = predictor.prepare(image, force=force, **fields)
        result = predictor.infer([prepared])[0]
        if report is not None:
            from bmd_edge.image_io import read_image
            from bmd_edge.runtime.output_files import PNG_MAGIC, atomic_output
            from bmd_edge.runtime.report import write_report

            film = read_image(image).pixels   # the located heads are drawn on the film itself
            # Complete or absent, never half a picture; locked like --out.
            with atomic_output(report, "--report", PNG_MAGIC, suffix=".png") as tmp:
                try:
                    write_report(result, prepared.image, tmp, references=predictor.references,
                                 patient_ids=result.patient_ids if include_ids else None,
                                 film=film)
                except OSError as err:
                    raise InputError(f"cannot write --report {report}: "
                                     f"{err.strerror or err}") from None
        if dicom_out is not None:
            from bmd_edge.dicom_out import write_results

            try:
                for k, one in enumerate(result.per_hip()):   # one SR (and SC) per hip
                    write_results(one, source_header, dicom_out,
                                  model_input=prepared.images[k], references=predictor.references)
            except OSError as err:
                raise InputError(f"cannot write --dicom-out {dicom_out}: "
                                 f"{err.strerror or err}") from None
        if json_out:
            typer.echo(json.dumps(result.to_dict(include_ids=include_ids), ensure_ascii=False))
        else:
            _print(result, include_ids=include_ids, report=report)
    except BmdEdgeError as err:
        raise _fail(err) from None


def _print(p: Any, *, include_ids: bool, report: Path | None) -> None:
    """The human read-out (rich): the numbers first, then how they were made."""
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False)
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    src = f" — {p.source}" if p.source else ""
    iv = ""
    if p.interval is not None:
        iv = f"  ({p.interval[2]:.0%} interval {p.interval[0]:.3f}–{p.interval[1]:.3f})"
    t.add_row("Femoral-neck BMD", f"[bold]{p.bmd_gcm2:.3f} g/cm²[/bold] (GE Lunar){iv}")
    t.add_row("Hip", _hip_line(p))
    t.add_row("T-score", f"{p.t_score:+.1f}  [dim]vs {p.t_reference}[/dim]")
    z = "n/a" if p.z_score is None else f"{p.z_score:+.1f}"
    t.add_row("Z-score", f"{z}  [dim]vs {p.z_reference}, age {p.inputs.get('age_xray', '?'):g}, "
                         f"{p.inputs.get('sex', '?')}[/dim]")
    colour = {"normal": "green", "osteopenia": "yellow", "osteoporosis": "red"}[p.who_category]
    if len(p.hips) > 1:
        for h in p.hips:
            hz = "n/a" if h.z_score is None else f"{h.z_score:+.1f}"
            t.add_row(f"  {h.hip or '?'} hip", f"{h.bmd_gcm2:.3f} g/cm²  T {h.t_score:+.1f}  "
                                               f"Z {hz}  {h.who_category}")
    t.add_row("WHO category", f"[{colour}]{p.who_category}[/{colour}]")
    flag = ("[red]POSITIVE[/red] (BMD below" if p.screen_positive else "negative (BMD at or above")
    t.add_row("Low-BMD screen", f"{flag} {p.threshold_gcm2} g/cm², T-score −1)")
    top = ", ".join(f"{n} {w:.2f}" for n, w in p.field_attention[:4]) or "none given"
    t.add_row("Fields weighed most", top)
    t.add_row("Model", f"{p.model_name} {p.model_version} [dim]({p.variant}, {p.backend}, "
                       f"{p.precision})[/dim]")
    if include_ids and p.patient_ids:
        t.add_row("Patient", "; ".join(f"{k}: {v}" for k, v in sorted(p.patient_ids.items())))
    if report is not None:
        t.add_row("Report", str(report))
    con.print(f"[bold]bmd-edge[/bold]{src}")
    con.print(t)
    if p.intended_use:
        con.print(f"[dim]Intended use: {p.intended_use}[/dim]")
    for w in p.warnings:
        con.print(f"[yellow]warning:[/yellow] {w}")


def _hip_line(p: Any) -> str:
    """Which hip the numbers are about, how its side is known and how it was found."""
    source = {"dicom": "DICOM laterality", "display-convention":
              "display convention: patient's right on the viewer's left",
              "--side": "--side", "unknown": "side unknown"}.get(p.laterality_source,
                                                                 p.laterality_source)
    found = ""
    if p.hip_film_score is not None:
        conf = [h.found.confidence for h in p.hips if h.found is not None]
        found = (f"; located, head confidence {min(conf):.2f}" if conf else "; not located")
    side = p.hip or "unknown"
    if len(p.hips) > 1:
        side = f"{side} (the lower of {len(p.hips)} hips found)"
    return f"{side} [dim]({source}{found})[/dim]"


def _run_batch(predictor: Any, source: Path, out: Path, fields: dict[str, Any], *,
               force: bool, json_out: bool, include_ids: bool, strict: bool) -> int:
    """Folder or manifest → results CSV with a progress bar and a summary; the exit code."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from bmd_edge.file_checks import display_name
    from bmd_edge.runtime import batch as B

    defaults = {k: v for k, v in fields.items() if v is not None}
    if source.is_dir():
        items, pre_failed = B.items_from_directory(source, defaults), []
    else:
        items, pre_failed = B.items_from_manifest(source, defaults)
    err = Console(stderr=True, highlight=False, soft_wrap=True)  # one line per failure
    with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("predict", total=len(items))
        summary = B.run_batch(predictor, items, out, force=force, include_ids=include_ids,
                              pre_failed=pre_failed, inputs=[source],
                              progress=lambda n: bar.advance(task, n))
    if json_out:
        typer.echo(json.dumps({"schema_version": 1, "out": display_name(summary.out),
                               "n_ok": summary.n_ok,
                               "n_failed": summary.n_failed,
                               "failures": [{"source": s, "error": e}
                                            for s, e in summary.failures]}))
    else:
        shown = escape(display_name(summary.out))  # names are text, never rich markup
        for s, e in summary.failures[:20]:
            err.print(f"[yellow]failed:[/yellow] {escape(s)}: {escape(e)}")
        if len(summary.failures) > 20:
            err.print(f"... and {len(summary.failures) - 20} more failures (see {shown})")
        err.print(f"{summary.n_ok} ok, {summary.n_failed} failed in {summary.seconds:.1f} s "
                  f"({summary.images_per_second:.0f} images/s) → {shown}")
    return 1 if (strict and summary.n_failed) else 0


def info(
    model: Annotated[Optional[Path], typer.Option(
        help="Bundle folder (default: the shipped bundle).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print bundle.json's summary as JSON.")
                        ] = False,
    allow_unsigned: Annotated[bool, ALLOW_UNSIGNED] = False,
    trusted_key: Annotated[Optional[list[Path]], TRUSTED_KEY] = None,
) -> None:
    """Describe a model bundle: model, trust, intended use, installed variants, references."""
    try:
        from bmd_edge.bundle import Bundle

        b = Bundle.load(model, allow_unsigned=allow_unsigned,
                        trusted_keys=tuple(trusted_key or ()))
        m = b.meta
        installed = b.installed()
        summary = {
            "path": str(b.root), "model": m.model.to_dict(), "trust": b.trust.describe(),
            "intended_use": m.intended_use, "training_data": m.provenance.training_data,
            "variants": {n: {"file": v.file, "runtime": v.runtime, "precision": v.precision,
                             "metrics": dict(v.metrics)}
                         for n, v in m.variants.items() if n in installed},
            "not_installed": [n for n in m.variants if n not in installed],
            "interval": m.interval.to_dict(),
            "screening_threshold_gcm2": m.references.screening_threshold_gcm2,
            "t_reference": refs_name(m, "t"), "z_reference": refs_name(m, "z"),
            "preprocess": m.input.preprocess.to_dict(), "versions": dict(m.provenance.versions),
            "locator": None if m.locator is None else {
                "name": m.locator.name, "version": m.locator.version,
                "hip_film_threshold": m.locator.hip_film_threshold,
                "head_threshold": m.locator.head_threshold,
                "installed": list(b.locator_installed())},
            "crop": None if m.input.crop is None else m.input.crop.to_dict(),
        }
        if json_out:
            typer.echo(json.dumps(summary, ensure_ascii=False))
            return
        from rich.console import Console
        from rich.table import Table

        con = Console(highlight=False)
        con.print(f"[bold]{m.model.name} {m.model.version}[/bold]  {b.root}")
        con.print(f"Trust: {b.trust.describe()}")
        con.print(f"Intended use: {m.intended_use}")
        con.print(f"Training data: {m.provenance.training_data}")
        tab = Table("variant", "file", "runtime", "weights", "MAE", "R²", "AUC", "size")
        for n, v in summary["variants"].items():
            met = v["metrics"]
            tab.add_row(n, v["file"], v["runtime"], v["precision"], _num(met.get("mae"), ".3f"),
                        _num(met.get("r2"), ".3f"), _num(met.get("auc"), ".3f"),
                        _num(None if met.get("size_bytes") is None
                             else met["size_bytes"] / 1e6, ".1f", " MB"))
        con.print(tab)
        if summary["not_installed"]:
            con.print(f"Listed but not installed (build locally with `bmd-edge export`): "
                      f"{', '.join(summary['not_installed'])}")
        iv = m.interval
        con.print(f"Interval: {iv.method} ±{iv.halfwidth_gcm2:.3f} g/cm² at "
                  f"{iv.coverage:g} coverage (n={iv.n_calibration})")
        con.print(f"Screening threshold: {m.references.screening_threshold_gcm2:g} g/cm²")
        con.print(f"T-score reference: {summary['t_reference']}")
        con.print(f"Z-score reference: {summary['z_reference']}")
        loc = m.locator
        con.print("Hip locator: " + (
            "none (a bundle from before issue #15: predict warns on every result)" if loc is None
            else f"{loc.name} {loc.version} (hip-film score ≥ {loc.hip_film_threshold:.2f}, "
                 f"head confidence ≥ {loc.head_threshold:.2f}; "
                 f"{', '.join(b.locator_installed()) or 'no files installed'})"))
    except BmdEdgeError as err:
        raise _fail(err) from None
    finally:
        sys.stdout.flush()


def refs_name(meta: Any, which: str) -> str:
    from bmd_edge import references as refs

    tables = meta.references.tables
    return refs.t_reference_name(tables) if which == "t" else refs.z_reference_name(tables)


def _num(x: object, fmt: str, unit: str = "") -> str:
    return "–" if not isinstance(x, (int, float)) else f"{x:{fmt}}{unit}"
