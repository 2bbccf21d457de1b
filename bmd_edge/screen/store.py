"""The results folder: settings, a lock, atomic Parquet parts, and the keys already done.

Layout of OUT/:
    screen.json        format and settings (include_ids); no secret in it
    .salt              the HMAC salt (hex, mode 0600): keep it, do not share it
    .lock              held (flock) by the running screen; the kernel drops it if we are killed
    parts/part-*.parquet   complete parts, each written as parts/.tmp-* then renamed
    summary.md/.json, histogram.png   the report of the last run

Why parts: a killed run leaves only whole files (rename is atomic on POSIX file systems and on
the NFS/Lustre mounts a cluster shares), so the resume reads every part's `key` column and
knows exactly which inputs are done — without opening a single image again.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bmd_edge.errors import InputError
from bmd_edge.screen.keys import SALT_BYTES

FOLDER_FORMAT = "bmd-edge-screen/1"
SETTINGS = "screen.json"
SALT = ".salt"
LOCK = ".lock"
PARTS = "parts"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class ResultsFolder:
    """An opened results folder (settings checked, salt read)."""

    root: Path
    salt: bytes
    include_ids: bool

    @property
    def parts_dir(self) -> Path:
        return self.root / PARTS

    def part_files(self) -> list[Path]:
        """Complete parts, sorted (temporary files are not parts)."""
        if not self.parts_dir.is_dir():
            return []
        return sorted(p for p in self.parts_dir.iterdir()
                      if p.suffix == ".parquet" and not p.name.startswith("."))

    def remove_temporaries(self) -> int:
        """Delete half-written parts of a killed run (call only while holding the lock)."""
        n = 0
        if self.parts_dir.is_dir():
            for p in self.parts_dir.iterdir():
                if p.name.startswith(TMP_PREFIX):
                    p.unlink(missing_ok=True)
                    n += 1
        return n

    def read(self, columns: list[str] | None = None) -> Any:
        """All complete parts as one pyarrow Table (only `columns`, when given)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from bmd_edge.screen.rows import arrow_schema

        schema = arrow_schema(self.include_ids)
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        tables = []
        for p in self.part_files():
            try:
                tables.append(pq.read_table(p, columns=columns, schema=schema))
            except Exception as err:  # noqa: BLE001 - a foreign or damaged file in parts/
                raise InputError(f"results part {p} cannot be read ({type(err).__name__}); "
                                 "move it out of the folder and rerun") from None
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def done_keys(self) -> Any:
        """The distinct `key`s of every complete part (a pyarrow array)."""
        import pyarrow.compute as pc

        return pc.unique(self.read(["key"]).column("key").combine_chunks())


def open_folder(out: Path, include_ids: bool) -> ResultsFolder:
    """Create OUT/ on first use, or check it matches this run's settings."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; screen writes a folder of Parquet parts")
    settings_path = out / SETTINGS
    if settings_path.is_file():
        try:
            settings = json.loads(settings_path.read_text(encoding="utf-8"))
            salt = bytes.fromhex((out / SALT).read_text(encoding="ascii").strip())
        except (OSError, ValueError) as err:
            raise InputError(f"{out} holds a screen.json but its settings or salt cannot be "
                             f"read ({err}); use a new --out folder") from None
        if settings.get("format") != FOLDER_FORMAT:
            raise InputError(f"{out} was written as {settings.get('format')!r}; this bmd-edge "
                             f"writes {FOLDER_FORMAT}; use a new --out folder")
        if bool(settings.get("include_ids")) != include_ids:
            was = "with" if settings.get("include_ids") else "without"
            raise InputError(f"{out} was written {was} --include-ids; rerun the same way or "
                             "use a new --out folder")
        if len(salt) != SALT_BYTES:
            raise InputError(f"{out / SALT} does not hold a {SALT_BYTES}-byte salt; use a new "
                             "--out folder")
        return ResultsFolder(out, salt, include_ids)
    if out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
        raise InputError(f"--out {out} is a non-empty folder that is not a screen results "
                         "folder; give an empty or new folder")
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(SALT_BYTES)
    fd = os.open(out / SALT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(salt.hex() + "\n")
    _atomic_write_text(settings_path, json.dumps(
        {"format": FOLDER_FORMAT, "include_ids": include_ids,
         "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=2) + "\n")
    return ResultsFolder(out, salt, include_ids)


class FolderLock:
    """One writer per results folder: an flock on OUT/.lock, released by the kernel on death."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> FolderLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise InputError(f"another bmd-edge screen is writing to {self.path.parent}; wait "
                             "for it or use another --out folder") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def write_part(parts_dir: Path, table: Any, run_id: str) -> Path:
    """Write one part atomically: a temporary name, fsync, rename. Returns the part's path."""
    import pyarrow.parquet as pq

    parts_dir = Path(parts_dir)
    name = f"part-{run_id}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = parts_dir / f"{TMP_PREFIX}{name}"
    pq.write_table(table, tmp, compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)  # the bytes are on disk before the name says the part is complete
    finally:
        os.close(fd)
    final = parts_dir / name
    os.replace(tmp, final)
    return final


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file (report, JSON) so a reader never sees half of it."""
    _atomic_write_text(Path(path), text)
