"""Batch mode: many images → one results CSV, pipelined over both cores, bounded in memory.

Why this shape: decoding and preprocessing (opencv, numpy — they release the GIL) run in a
small thread pool while the main thread runs batched inference, so a 2-core workstation keeps
both cores busy. At most `window` cases are in flight (a bounded queue), so memory stays flat
for 10 or 100 000 images. A bad image is a `failed` row with its one-line reason, never the end
of the run, whatever the exception; so is every folder entry that is not a readable file.
Results go to a temporary file beside the output and are renamed into place only when the run
completes: an interrupted run (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT) leaves no partial results.csv,
and the output is locked and checked first (`output_files`).
"""

from __future__ import annotations

import csv
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bmd_edge.errors import BmdEdgeError, InputError
from bmd_edge.file_checks import display_name, link_leaving, one_line, unreadable_reason
from bmd_edge.runtime import output_files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
RESULT_COLUMNS = (
    "source", "hip", "status", "error", "bmd_gcm2", "interval_low", "interval_high", "coverage",
    "t_score", "z_score", "who_category", "screen_positive", "top_fields", "age", "sex",
    "model", "backend", "precision", "warnings", "laterality_source", "hip_film_score",
)
ID_COLUMNS = ("patient_id", "dicom_patient_ids")


@dataclass(frozen=True)
class BatchItem:
    """One case to run: where the image is and the facts that go with it."""

    source: str                                   # name shown in results (relative path)
    path: Path                                    # the image file
    fields: Mapping[str, object] = field(default_factory=dict)  # age, sex, side, ...
    patient_id: str | None = field(default=None, repr=False)    # manifest id (--include-ids)
    problem: str | None = None                    # known before reading: why it is not read


@dataclass(frozen=True)
class BatchSummary:
    """What happened: counts, where the results went, how long it took."""

    n_ok: int
    n_failed: int
    out: Path
    seconds: float
    failures: tuple[tuple[str, str], ...]         # (source, reason) per failed case

    @property
    def images_per_second(self) -> float:
        return (self.n_ok + self.n_failed) / self.seconds if self.seconds > 0 else 0.0


def items_from_directory(folder: Path, defaults: Mapping[str, object]) -> list[BatchItem]:
    """Every entry directly in `folder` named like an image, sorted; content decides later.

    Entries that cannot be images become items with a `problem` (a failed row, never a silent
    skip): links that loop, dangle or leave the folder (not followed), FIFOs, sockets, devices,
    sub-folders. Names that are not UTF-8 are shown with `\\xNN` escapes.
    """
    try:
        root = folder.resolve()
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if Path(e.name).suffix.lower() in IMAGE_SUFFIXES),
                             key=lambda e: e.name)
    except (OSError, RuntimeError) as err:
        raise InputError(f"cannot list folder {display_name(folder)}: "
                         f"{one_line(getattr(err, 'strerror', None) or str(err))}") from None
    if not entries:
        raise InputError(f"folder {display_name(folder)} holds no image files; expected "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    items = []
    for e in entries:
        path = folder / e.name
        problem = link_leaving(path, root, names=False) or unreadable_reason(path, names=False)
        items.append(BatchItem(source=display_name(e.name), path=path, fields=dict(defaults),
                               problem=problem))
    return items


def items_from_manifest(path: Path, defaults: Mapping[str, object]
                        ) -> tuple[list[BatchItem], list[tuple[str, str]]]:
    """Cases from a manifest CSV (metadata from its rows, CLI values fill gaps) + bad rows."""
    from bmd_edge.manifest import read_manifest

    man = read_manifest(path)
    root = man.path.parent
    items: list[BatchItem] = []
    for case in man.cases:
        fields: dict[str, object] = dict(defaults)
        fields.update({k: v for k, v in case.record.values.items() if v is not None})
        # `derived` fields (BMI) are recomputed by the predictor; drop them to avoid a clash.
        for name in case.record.derived:
            fields.pop(name, None)
        if "age_xray" in fields:
            fields["age"] = fields.pop("age_xray")
        if case.side:
            fields["side"] = case.side
        if case.select:
            fields["select"] = case.select
        try:
            source = case.image.relative_to(root).as_posix()
        except ValueError:
            source = case.image.name
        items.append(BatchItem(source=display_name(source), path=case.image, fields=fields,
                               patient_id=case.patient_id))
    by_line: dict[int, list[str]] = {}
    for prob in man.problems:  # one failed row per manifest line, all its reasons joined
        by_line.setdefault(prob.line, []).append(str(prob))
    bad = [(f"{display_name(man.path.name)}:{line}", "; ".join(msgs))
           for line, msgs in by_line.items()]
    return items, bad


def _clean(row: dict[str, object]) -> dict[str, object]:
    """Every cell on one line and encodable as UTF-8 (file names may hold any bytes)."""
    return {k: one_line(v) if isinstance(v, str) else v for k, v in row.items()}


def _row(item: BatchItem, pred: Any = None, error: str | None = None,
         include_ids: bool = False) -> dict[str, object]:
    row: dict[str, object] = {c: "" for c in RESULT_COLUMNS}
    row["source"] = item.source
    if pred is None:
        row.update(status="failed", error=error or "unknown error")
    else:
        row.update(
            status="ok", bmd_gcm2=f"{pred.bmd_gcm2:.4f}", t_score=f"{pred.t_score:.2f}",
            z_score="" if pred.z_score is None else f"{pred.z_score:.2f}",
            who_category=pred.who_category, screen_positive=int(pred.screen_positive),
            top_fields=";".join(n for n, _ in pred.field_attention[:3]),
            age=pred.inputs.get("age_xray", ""), sex=pred.inputs.get("sex", ""),
            model=f"{pred.model_name} {pred.model_version}", backend=pred.backend,
            precision=pred.precision, warnings=" | ".join(pred.warnings),
            hip=pred.hip or "", laterality_source=pred.laterality_source,
            hip_film_score="" if pred.hip_film_score is None else f"{pred.hip_film_score:.3f}")
        if pred.interval is not None:
            row.update(interval_low=f"{pred.interval[0]:.4f}",
                       interval_high=f"{pred.interval[1]:.4f}", coverage=pred.interval[2])
    if include_ids:
        row["patient_id"] = item.patient_id or ""
        ids = pred.patient_ids if pred is not None else {}
        row["dicom_patient_ids"] = ";".join(f"{k}={v}" for k, v in sorted(ids.items()))
    return _clean(row)


def row_reason(err: BaseException) -> str:
    """One line saying why a case failed, whatever the exception: a row's failure, not the run's.

    bmd-edge's own errors carry their message; anything else is named for what it is (an
    unexpected exception type is a bmd-edge bug, and the line says so).
    """
    if isinstance(err, BmdEdgeError):
        return one_line(str(err)) or type(err).__name__
    if isinstance(err, MemoryError):
        return "not enough memory to read and prepare this image (MemoryError); it is skipped"
    if isinstance(err, OSError) and err.strerror:
        return f"cannot be read: {one_line(err.strerror)}"
    detail = one_line(str(err))
    return (f"unexpected {type(err).__name__} while processing this image"
            f"{': ' + detail if detail else ''} (a bmd-edge bug; please report it)")


def run_batch(predictor: Any, items: Sequence[BatchItem], out: Path, *, force: bool = False,
              workers: int | None = None, batch_size: int = 16, window: int = 64,
              include_ids: bool = False, pre_failed: Sequence[tuple[str, str]] = (),
              progress: Callable[[int], None] | None = None,
              inputs: Sequence[Path] = ()) -> BatchSummary:
    """Run every item, write `out` atomically, return the summary. Bad cases become rows.

    `out` is refused (InputError, nothing written) when it is a folder, not a regular file, one
    of the items' images or one of `inputs` (e.g. the manifest), or locked by another run.
    Any exception from one case is that case's failed row; only a failure of the run itself
    (the output cannot be written) ends it, and then no results file and no temporary remain.
    `progress(n)` is called after every n finished cases (the CLI feeds a rich progress bar).
    """
    out = output_files.check_output_path(
        Path(out), [*inputs, *(i.path for i in items if i.problem is None)])
    output_files.prepare_output_folder(out)
    columns = RESULT_COLUMNS + (ID_COLUMNS if include_ids else ())
    with output_files.interrupt_signals() as quiet, output_files.output_lock(out):
        output_files.sweep_stale_temps(out.parent, ",".join(columns[:3]))
        tmp = output_files.temp_path(out)
        try:
            summary = _run(predictor, items, out, tmp, columns, force=force, workers=workers,
                           batch_size=batch_size, window=window, include_ids=include_ids,
                           pre_failed=pre_failed, progress=progress)
        except BaseException:
            with quiet():
                try:
                    tmp.unlink()
                except OSError:
                    pass
            raise
    return summary


def _run(predictor: Any, items: Sequence[BatchItem], out: Path, tmp: Path,
         columns: tuple[str, ...], *, force: bool, workers: int | None, batch_size: int,
         window: int, include_ids: bool, pre_failed: Sequence[tuple[str, str]],
         progress: Callable[[int], None] | None) -> BatchSummary:
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    start = time.perf_counter()
    failures: list[tuple[str, str]] = []
    n_ok = 0
    fh = os.fdopen(output_files.create_temp(tmp), "w", newline="", encoding="utf-8")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bmd-prep")
    try:
        writer = csv.DictWriter(fh, fieldnames=columns)

        def write(row: dict[str, object]) -> None:
            try:
                writer.writerow(row)
            except OSError as err:  # disk full, quota, I/O error: the run fails, not a row
                raise InputError(f"cannot write --out {display_name(out)}: "
                                 f"{one_line(err.strerror or str(err))}") from None

        def fail(item: BatchItem, reason: str) -> None:
            # results.csv names an image only by its source, never by the path (folders and
            # archives are often named after patients)
            for full in {str(item.path), display_name(item.path)} - {"."}:
                reason = reason.replace(full, item.source)
            failures.append((item.source, one_line(reason)))
            write(_row(item, error=reason, include_ids=include_ids))

        try:
            writer.writeheader()
        except OSError as err:
            raise InputError(f"cannot write --out {display_name(out)}: "
                             f"{one_line(err.strerror or str(err))}") from None
        for source, reason in pre_failed:
            fail(BatchItem(display_name(source), Path(".")), reason)

        def prepare(item: BatchItem) -> Any:
            problem = item.problem or unreadable_reason(item.path, names=False)  # FIFO: no read
            if problem:
                raise InputError(f"{item.source} {problem}")
            return predictor.prepare(item.path, force=force, **dict(item.fields))

        pending: deque[tuple[BatchItem, Future[Any]]] = deque()
        it: Iterator[BatchItem] = iter(items)

        def fill() -> None:
            while len(pending) < window:
                nxt = next(it, None)
                if nxt is None:
                    return
                pending.append((nxt, pool.submit(prepare, nxt)))

        # (item, prepared or None, error or None): rows are written in input order.
        batch: list[tuple[BatchItem, Any, str | None]] = []

        def infer(ready: list[tuple[BatchItem, Any]]) -> dict[int, Any]:
            """id(item) → prediction or the reason it failed. One bad case fails only itself."""
            try:
                preds = predictor.infer([p for _, p in ready])
                return {id(i): pr for (i, _), pr in zip(ready, preds, strict=True)}
            except Exception as err:  # noqa: BLE001 - retried case by case below
                if len(ready) == 1:
                    return {id(ready[0][0]): row_reason(err)}
            out_: dict[int, Any] = {}
            for pair in ready:
                out_.update(infer([pair]))
            return out_

        def flush() -> None:
            nonlocal n_ok
            if not batch:
                return
            ready = [(i, p) for i, p, e in batch if e is None]
            preds = infer(ready) if ready else {}
            for item, _, error in batch:
                result = preds.get(id(item)) if error is None else error
                if isinstance(result, str) or result is None:
                    fail(item, result or "no result")
                    continue
                try:   # one row per hip: an AP pelvis gives two
                    rows = [_row(item, one, include_ids=include_ids) for one in result.per_hip()]
                except Exception as err:  # noqa: BLE001 - a result we cannot write is a row
                    fail(item, row_reason(err))
                    continue
                for row in rows:
                    write(row)
                n_ok += 1
            if progress:
                progress(len(batch))
            batch.clear()

        fill()
        while pending:
            item, fut = pending.popleft()
            try:
                batch.append((item, fut.result(), None))
            except Exception as err:  # noqa: BLE001 - one odd file must not end the run
                batch.append((item, None, row_reason(err)))
            fill()
            if len(batch) >= batch_size or not pending:
                flush()
        flush()
        try:
            fh.close()
            os.replace(tmp, out)
        except OSError as err:
            raise InputError(f"cannot write --out {display_name(out)}: "
                             f"{one_line(err.strerror or str(err))}") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        fh.close()
    return BatchSummary(n_ok=n_ok, n_failed=len(failures), out=out,
                        seconds=time.perf_counter() - start, failures=tuple(failures))
