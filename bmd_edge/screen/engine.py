"""Run a screen: plan what is missing, run it on Ray Data, summarise the folder.

1. Plan (driver, no image opened): list SOURCE, stat every file in a thread pool, compute each
   input's key, drop the keys already in OUT/parts. A rerun of a finished run starts no Ray.
2. Run: `ray.init` (a local cluster with this machine's cores, or `--address` to join one),
   the pending inputs become blocks of `batch_size` rows, `map_batches(ScreenWorker)` runs them
   in an actor pool (one bundle load per actor) and every batch lands as one atomic part.
3. Summarise every row of this model in OUT (this run's and earlier runs') into the report.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmd_edge.errors import InputError
from bmd_edge.screen import keys as K
from bmd_edge.screen.listing import Input, iter_inputs
from bmd_edge.screen.store import FolderLock, ResultsFolder, open_folder
from bmd_edge.screen.worker import WorkerConfig

STAT_THREADS = 16  # stat calls wait on the file system (NFS), not the CPU


@dataclass(frozen=True)
class ScreenOptions:
    """How to run; every field has a CLI option of the same name."""

    bundle: Path | None = None       # bundle folder; None = the shipped default
    backend: str = "openvino"        # inference runtime in every actor
    variant: str | None = None       # bundle variant or precision
    force: bool = False              # run quality-gate refusals (with a warning)
    include_ids: bool = False        # store paths and patient identifiers (off: keys only)
    address: str | None = None       # join this Ray cluster; None = a local one
    num_cpus: int | None = None      # local cluster size; None = this machine's cores
    actors: int | None = None        # actor pool size; None = one per CPU of the cluster
    threads: int = 1                 # inference threads per actor
    batch_size: int = 64             # inputs per batch = per part file
    object_store_mb: int = 512       # local object store cap (and Ray Data's budget)
    ray_progress: bool = True        # Ray Data's own progress bars on stderr


@dataclass(frozen=True)
class Plan:
    """What the listing holds and what is left to do."""

    pending: Any                     # pyarrow Table: key, path_key, path, facts, patient_id
    n_listed: int                    # inputs in SOURCE
    n_duplicates: int                # listed more than once (same key): run once
    n_done: int                      # already in OUT from earlier runs: skipped


@dataclass(frozen=True)
class ScreenResult:
    """What this run did and where the report is."""

    out: Path
    run_id: str
    plan_counts: Mapping[str, int]   # listed, duplicates, already_done, pending
    n_ok: int                        # rows written by this run
    n_failed: int
    seconds: float                   # Ray part (start-up included)
    report: Any                      # report.Summary of the whole folder


def model_identity(opts: ScreenOptions) -> dict[str, str]:
    """Model name, version and variant through the Predictor (also checks the bundle early)."""
    from bmd_edge.runtime.predictor import Predictor

    p = Predictor.load(opts.bundle, backend=opts.backend, variant=opts.variant, threads=1)
    return {"model_name": p.model_name, "model_version": p.model_version,
            "variant": p.variant}


def _stat(path: str) -> tuple[int, int]:
    """(size, mtime_ns); (-1, -1) when the file cannot be stat'ed (it becomes a failed row)."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def plan(source: Path, folder: ResultsFolder, defaults: Mapping[str, object],
         model: Mapping[str, str], force: bool) -> Plan:
    """The pending inputs: listed, stat'ed, keyed, minus what OUT already holds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    done = folder.done_keys()
    model_id = "\x1f".join((model["model_name"], model["model_version"], model["variant"]))
    tables, seen = [], set()
    n_listed = n_dup = n_done = 0
    with ThreadPoolExecutor(STAT_THREADS, thread_name_prefix="bmd-stat") as pool:
        for chunk in iter_inputs(source, defaults):
            stats = list(pool.map(_stat, (i.path for i in chunk)))
            cols: dict[str, list[Any]] = {"key": [], "path_key": [], "path": [], "facts": [],
                                          "patient_id": []}
            for item, (size, mtime) in zip(chunk, stats):
                key = K.input_key(folder.salt, item.path, size, mtime, model_id, item.facts,
                                  force)
                n_listed += 1
                if key in seen:
                    n_dup += 1
                    continue
                seen.add(key)
                _append(cols, key, item, folder)
            t = pa.table(cols, schema=pending_schema())
            fresh = pc.invert(pc.is_in(t.column("key"), value_set=done))
            n_done += t.num_rows - pc.sum(fresh.cast("int64")).as_py()
            tables.append(t.filter(fresh))
    pending = pa.concat_tables(tables) if tables else pending_schema().empty_table()
    return Plan(pending=pending, n_listed=n_listed, n_duplicates=n_dup, n_done=n_done)


def pending_schema() -> Any:
    """Columns of the pending-inputs table the driver hands to Ray (pyarrow, imported lazily)."""
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("path_key", pa.string()), ("path", pa.string()),
                      ("facts", pa.string()), ("patient_id", pa.string())])


def _append(cols: dict[str, list[Any]], key: str, item: Input, folder: ResultsFolder) -> None:
    cols["key"].append(key)
    cols["path_key"].append(K.path_key(folder.salt, item.path))
    cols["path"].append(item.path)
    cols["facts"].append(json.dumps(dict(item.facts), sort_keys=True, default=str))
    # Identifiers travel to the workers only when they will be stored.
    cols["patient_id"].append(item.patient_id if folder.include_ids else None)


def screen(source: Path, out: Path, defaults: Mapping[str, object], opts: ScreenOptions,
           progress: Callable[[int, int], None] | None = None,
           on_plan: Callable[[Plan], None] | None = None) -> ScreenResult:
    """Screen SOURCE into OUT (resuming), then write OUT's summary report."""
    from bmd_edge.screen.deps import require_pyarrow
    from bmd_edge.screen.report import summarise

    require_pyarrow()
    if opts.address:
        _check_reachable(opts.address)  # before any work: a typo fails in seconds
    model = model_identity(opts)
    out = Path(out)
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    with FolderLock(out):
        folder = open_folder(out, opts.include_ids)
        folder.remove_temporaries()
        p = plan(source, folder, defaults, model, opts.force)
        if on_plan is not None:
            on_plan(p)
        n_ok = n_failed = 0
        t0 = time.perf_counter()
        if p.pending.num_rows:
            n_ok, n_failed = _run_ray(p.pending, folder, opts, run_id, progress)
        seconds = time.perf_counter() - t0
        counts = {"listed": p.n_listed, "duplicates": p.n_duplicates,
                  "already_done": p.n_done, "pending": p.pending.num_rows}
        report = summarise(folder, model, run={"run_id": run_id, **counts, "ok": n_ok,
                                               "failed": n_failed, "seconds": seconds})
    return ScreenResult(out=out, run_id=run_id, plan_counts=counts, n_ok=n_ok,
                        n_failed=n_failed, seconds=seconds, report=report)


def _run_ray(pending: Any, folder: ResultsFolder, opts: ScreenOptions, run_id: str,
             progress: Callable[[int, int], None] | None) -> tuple[int, int]:
    """Start or join Ray, stream the pending inputs through the actor pool; (ok, failed)."""
    import pyarrow.compute as pc

    from bmd_edge.screen.deps import require_ray

    require_ray()
    import ray
    import ray.data

    _init_ray(opts)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(opts.actors or max(1, cpus // max(1, opts.threads)),
                            -(-pending.num_rows // opts.batch_size)))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = opts.ray_progress
        _bound_object_store(ctx, opts)
        cfg = WorkerConfig(bundle=None if opts.bundle is None else str(Path(opts.bundle).absolute()),
                           backend=opts.backend, variant=opts.variant, threads=opts.threads,
                           force=opts.force, include_ids=folder.include_ids,
                           salt_hex=folder.salt.hex(),
                           parts_dir=str(folder.parts_dir.absolute()), run_id=run_id)
        from bmd_edge.screen.worker import ScreenWorker

        # One block per batch: the pool hands blocks to idle actors, so blocks must be many.
        blocks = [pending.slice(i, opts.batch_size)
                  for i in range(0, pending.num_rows, opts.batch_size)]
        ds = ray.data.from_arrow(blocks).map_batches(
            ScreenWorker, fn_constructor_args=(cfg,), batch_size=opts.batch_size,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=opts.threads)
        n_ok = n_failed = 0
        for b in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            ok = int(pc.sum(pc.equal(b.column("status"), "ok").cast("int64")).as_py() or 0)
            n_ok += ok
            n_failed += b.num_rows - ok
            if progress is not None:
                progress(ok, b.num_rows - ok)
        return n_ok, n_failed
    finally:
        ray.shutdown()


def _init_ray(opts: ScreenOptions) -> None:
    import logging

    import ray

    common: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": True}
    if opts.address:
        try:
            ray.init(address=opts.address, **common)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise InputError(f"cannot join the Ray cluster at {opts.address!r} "
                             f"({type(err).__name__}: {' '.join(str(err).split())[:200]}); "
                             "start it with `ray start --head` or drop --address; a cluster "
                             "with token auth (Ray's default) also needs RAY_AUTH_MODE=token "
                             "and its token here") from None
        return
    ray.init(address="local", num_cpus=opts.num_cpus or os.cpu_count() or 1,
             object_store_memory=opts.object_store_mb * 2**20, **common)


def _check_reachable(address: str) -> None:
    """Fail in seconds, not Ray's minutes of retries, when a host:port cannot be reached."""
    import socket

    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise InputError(f"cannot reach the Ray cluster at {address!r} ({err.strerror or err}); "
                         "start it with `ray start --head` or drop --address") from None


def _bound_object_store(ctx: Any, opts: ScreenOptions) -> None:
    """Ray Data's own budget: at most the object store we asked for, so memory stays flat."""
    from ray.data import ExecutionResources

    limit = opts.object_store_mb * 2**20
    ctx.execution_options.resource_limits = ExecutionResources.for_limits(
        object_store_memory=limit)
