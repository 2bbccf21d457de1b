"""The screening actor: one bundle load, then batches of paths → one Parquet part per batch.

Ray Data creates one `ScreenWorker` per actor in the pool and calls it on each batch of pending
inputs. Each call reads every file once (its bytes feed both the keyed digest and the decoder),
runs `Predictor.prepare` per image and `Predictor.infer` once for the batch — the same two calls
`predict`'s batch mode makes, so the numbers are the same — writes the batch's rows as one
atomic part, and returns a small (key, status) table that drives the progress bar.

Decoding happens here rather than in a separate Ray stage on purpose: on CPU nodes, moving
decoded pixels through the object store costs more than it saves; what travels is a path.
A bad file is a failed row with its reason; nothing in a batch ends the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bmd_edge.errors import BmdEdgeError, ImageReadError


@dataclass(frozen=True)
class WorkerConfig:
    """Everything an actor needs, picklable (it travels to every node)."""

    bundle: str | None          # bundle folder; None = the shipped default
    backend: str                # openvino | onnxruntime
    variant: str | None         # bundle variant or precision
    threads: int                # inference threads per actor (cores / actors)
    force: bool                 # run images the quality gate refuses (with a warning)
    include_ids: bool           # add path and patient identifiers to rows
    salt_hex: str               # the results folder's HMAC salt
    parts_dir: str              # where parts go (a shared file system on a cluster)
    run_id: str                 # names this run's parts and rows


class ScreenWorker:
    """Ray Data callable class (`map_batches(ScreenWorker, fn_constructor_args=(cfg,))`)."""

    def __init__(self, cfg: WorkerConfig) -> None:
        from bmd_edge.runtime.predictor import Predictor
        from bmd_edge.screen.rows import arrow_schema

        self.cfg = cfg
        self.salt = bytes.fromhex(cfg.salt_hex)
        self.predictor = Predictor.load(cfg.bundle, backend=cfg.backend, variant=cfg.variant,
                                        threads=cfg.threads)
        self.model = {"model_name": self.predictor.model_name,
                      "model_version": self.predictor.model_version,
                      "variant": self.predictor.variant}
        self.schema = arrow_schema(cfg.include_ids)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from bmd_edge.screen.store import write_part

        rows = self.run_rows(batch.to_pylist())
        write_part(Path(self.cfg.parts_dir), pa.Table.from_pylist(rows, schema=self.schema),
                   self.cfg.run_id)
        return pa.table({"key": [r["key"] for r in rows], "status": [r["status"] for r in rows],
                         "refusal_kind": [r["refusal_kind"] for r in rows]})

    def run_rows(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Pending inputs → result rows (one per hip), failures included."""
        from bmd_edge.screen import rows as R

        now = datetime.now(timezone.utc)
        out: list[dict[str, Any]] = []
        ready: list[tuple[dict[str, Any], Any]] = []
        for item in items:
            row = R.base_row(item, run_id=self.cfg.run_id, now=now, model=self.model,
                             include_ids=self.cfg.include_ids)
            facts = json.loads(item["facts"])
            out.append(row)
            try:
                radiograph, row["input_digest"] = self._read(item)
                ready.append((row, self.predictor.prepare(radiograph, force=self.cfg.force,
                                                          **facts)))
            except BmdEdgeError as err:
                R.fill_failed(row, type(err).__name__, str(err), facts)
            except Exception as err:  # noqa: BLE001 - one odd file must not end the run
                R.fill_failed(row, "InternalError", f"{type(err).__name__}: {err}", facts)
            row["backend"] = self.predictor.session.backend
        if ready:
            try:
                preds = self.predictor.infer_each([p for _, p in ready])
            except BmdEdgeError as err:  # a runtime failure fails this batch, not the run
                for row, p in ready:
                    R.fill_failed(row, type(err).__name__, str(err), p.inputs)
            else:
                for (row, p), pred in zip(ready, preds):
                    if isinstance(pred, BmdEdgeError):  # refused (shift limit): this row only
                        R.fill_failed(row, type(pred).__name__, str(pred), p.inputs)
                        continue
                    first, *more = pred.per_hip()     # an AP pelvis: one row per hip
                    for one in more:
                        extra = {**row, "flags": []}
                        R.fill_ok(extra, one, self.cfg.include_ids)
                        out.append(extra)
                    R.fill_ok(row, first, self.cfg.include_ids)
        return out

    def _read(self, item: dict[str, Any]) -> tuple[Any, str]:
        """Read the file once: its keyed digest and the decoded radiograph.

        Errors name the input by its path key, never by its path (paths hold names).
        """
        from bmd_edge.file_checks import special_kind
        from bmd_edge.image_io import decode_image_bytes
        from bmd_edge.screen.keys import content_digest

        label = f"input {item['path_key'][:12]}"
        kind = special_kind(Path(item["path"]))  # reading a FIFO would block the actor forever
        if kind:
            raise ImageReadError(f"{label} is {kind}, not a regular file; it is not read")
        try:
            data = Path(item["path"]).read_bytes()
        except FileNotFoundError:
            raise ImageReadError(f"{label}: image file not found") from None
        except IsADirectoryError:
            raise ImageReadError(f"{label} is a directory; expected an image file") from None
        except OSError as err:
            raise ImageReadError(f"{label}: cannot read ({err.strerror or err})") from None
        digest = content_digest(self.salt, data)
        return decode_image_bytes(data, name=label), digest
