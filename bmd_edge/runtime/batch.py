"""Batch mode: many images → one results CSV, pipelined over both cores, bounded in memory.

Why this shape: decoding and preprocessing (opencv, numpy — they release the GIL) run in a
small thread pool while the main thread runs batched inference, so a 2-core workstation keeps
both cores busy. At most `window` cases are in flight (a bounded queue), so memory stays flat
for 10 or 100 000 images. A bad image is a `failed` row with its one-line reason, never the end
of the run. Results go to a temporary file beside the output and are renamed into place only
when the run completes: an interrupted run (Ctrl-C, SIGTERM) leaves no partial results.csv.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bmd_edge.errors import BmdEdgeError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
RESULT_COLUMNS = (
    "source", "status", "error", "bmd_gcm2", "interval_low", "interval_high", "coverage",
    "t_score", "z_score", "who_category", "screen_positive", "top_fields", "age", "sex",
    "model", "backend", "precision", "warnings",
)
ID_COLUMNS = ("patient_id", "dicom_patient_ids")


@dataclass(frozen=True)
class BatchItem:
    """One case to run: where the image is and the facts that go with it."""

    source: str                                   # name shown in results (relative path)
    path: Path                                    # the image file
    fields: Mapping[str, object] = field(default_factory=dict)  # age, sex, side, ...
    patient_id: str | None = field(default=None, repr=False)    # manifest id (--include-ids)


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
    """Every image file directly in `folder` (by suffix; content decides later), sorted."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"folder {folder} holds no image files; expected "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    return [BatchItem(source=p.name, path=p, fields=dict(defaults)) for p in files]


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
        items.append(BatchItem(source=source, path=case.image, fields=fields,
                               patient_id=case.patient_id))
    by_line: dict[int, list[str]] = {}
    for prob in man.problems:  # one failed row per manifest line, all its reasons joined
        by_line.setdefault(prob.line, []).append(str(prob))
    bad = [(f"{man.path.name}:{line}", "; ".join(msgs)) for line, msgs in by_line.items()]
    return items, bad


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
            precision=pred.precision, warnings=" | ".join(pred.warnings))
        if pred.interval is not None:
            row.update(interval_low=f"{pred.interval[0]:.4f}",
                       interval_high=f"{pred.interval[1]:.4f}", coverage=pred.interval[2])
    if include_ids:
        row["patient_id"] = item.patient_id or ""
        ids = pred.patient_ids if pred is not None else {}
        row["dicom_patient_ids"] = ";".join(f"{k}={v}" for k, v in sorted(ids.items()))
    return row


def run_batch(predictor: Any, items: Sequence[BatchItem], out: Path, *, force: bool = False,
              workers: int | None = None, batch_size: int = 16, window: int = 64,
              include_ids: bool = False, pre_failed: Sequence[tuple[str, str]] = (),
              progress: Callable[[int], None] | None = None) -> BatchSummary:
    """Run every item, write `out` atomically, return the summary. Bad cases become rows.

    `progress(n)` is called after every n finished cases (the CLI feeds a rich progress bar).
    """
    out = Path(out)
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as results.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    start = time.perf_counter()
    failures: list[tuple[str, str]] = list(pre_failed)
    n_ok = 0
    columns = RESULT_COLUMNS + (ID_COLUMNS if include_ids else ())
    restore = _install_sigterm()
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bmd-prep") as pool:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for source, reason in pre_failed:
                writer.writerow(_row(BatchItem(source, Path(source)), error=reason,
                                     include_ids=include_ids))

            def prepare(item: BatchItem) -> Any:
                fields = dict(item.fields)
                return predictor.prepare(item.path, force=force, **fields)

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

            def flush() -> None:
                nonlocal n_ok
                if not batch:
                    return
                ready = [(i, p) for i, p, e in batch if e is None]
                preds: dict[int, Any] = {}
                run_error: str | None = None
                try:
                    out_preds = predictor.infer([p for _, p in ready])
                    preds = {id(i): pr for (i, _), pr in zip(ready, out_preds)}
                except BmdEdgeError as err:  # a runtime failure fails this batch, not the run
                    run_error = str(err)
                for item, _, error in batch:
                    error = error or run_error
                    if error is not None:
                        failures.append((item.source, error))
                        writer.writerow(_row(item, error=error, include_ids=include_ids))
                    else:
                        n_ok += 1
                        writer.writerow(_row(item, preds[id(item)], include_ids=include_ids))
                if progress:
                    progress(len(batch))
                batch.clear()

            fill()
            while pending:
                item, fut = pending.popleft()
                try:
                    batch.append((item, fut.result(), None))
                except BmdEdgeError as err:
                    batch.append((item, None, str(err)))
                except Exception as err:  # noqa: BLE001 - one odd file must not end the run
                    batch.append((item, None, f"internal error: {type(err).__name__}: {err}"))
                fill()
                if len(batch) >= batch_size or not pending:
                    flush()
            flush()
        os.replace(tmp, out)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    finally:
        restore()
    return BatchSummary(n_ok=n_ok, n_failed=len(failures), out=out,
                        seconds=time.perf_counter() - start, failures=tuple(failures))


def _install_sigterm() -> Callable[[], None]:
    """SIGTERM → KeyboardInterrupt in the main thread, so cleanup runs; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)
