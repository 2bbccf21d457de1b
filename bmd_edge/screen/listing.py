"""What to screen: SOURCE (a folder, a manifest CSV, or a Parquet/CSV listing) → inputs.

An input is one image path plus the clinical facts that go with it. Facts come from the
listing's columns (the schema names, short aliases, `side`, `select`); the command line's
`--age/--sex/...` fill the gaps, as in `predict`'s batch mode. Cells are passed on raw: the
worker validates them with the same `parse_record` as `predict`, so a bad cell becomes a failed
row with its reason rather than the end of the run.

Paths in a listing may be absolute (an archive export) or relative to the listing's folder. A
folder is walked recursively (archives nest by year/patient/study); hidden entries are skipped.
Sources are read in chunks so a 10-million-row listing never sits in memory as Python objects.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bmd_edge.errors import InputError, ManifestError
from bmd_edge.schema import FIELD_NAMES, KEY_ALIASES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
PATH_COLUMNS = ("image", "path")              # bmd-edge manifests say `image`; listings `path`
FACT_COLUMNS = (*FIELD_NAMES, *KEY_ALIASES, "side", "select")
CHUNK = 50_000                                # inputs per chunk handed to the key/stat step


@dataclass(frozen=True)
class Input:
    """One image to screen and its facts (raw cells; validated later, per row)."""

    path: str                                                   # absolute, as the OS spells it
    facts: Mapping[str, object] = field(default_factory=dict)   # age, sex, side, select, ...
    patient_id: str | None = field(default=None, repr=False)    # listing id (--include-ids)


def _clean(value: object) -> object | None:
    """A listing cell as a fact: None for empty/NaN, stripped strings, numbers as they are."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _facts(row: Mapping[str, object], defaults: Mapping[str, object]) -> dict[str, object]:
    """Listing cells win over command-line defaults (as in predict's batch mode)."""
    facts = {k: v for k, v in defaults.items() if v is not None}
    for col in FACT_COLUMNS:
        v = _clean(row.get(col))
        if v is not None:
            facts[KEY_ALIASES.get(col, col)] = v
    if "age_xray" in facts:  # the predictor takes the X-ray age as `age`
        facts["age"] = facts.pop("age_xray")
    return facts


def iter_inputs(source: Path, defaults: Mapping[str, object],
                chunk: int = CHUNK) -> Iterator[list[Input]]:
    """Chunks of inputs from SOURCE; InputError when SOURCE is unusable as a whole."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"source {source} does not exist; give a folder, a manifest .csv or a "
                         ".parquet/.csv listing of image paths")
    if source.is_dir():
        rows: Iterator[Input] = _from_folder(source, defaults)
    elif source.suffix.lower() == ".csv":
        rows = _from_csv(source, defaults)
    elif source.suffix.lower() == ".parquet":
        rows = _from_parquet(source, defaults)
    else:
        raise InputError(f"source {source.name} is not a folder, .csv or .parquet; give one of "
                         "those (a single image is `bmd-edge predict`'s job)")
    buf: list[Input] = []
    n = 0
    for item in rows:
        buf.append(item)
        n += 1
        if len(buf) >= chunk:
            yield buf
            buf = []
    if buf:
        yield buf
    if n == 0:
        raise InputError(f"source {source} lists no images; expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES)} or a listing with an image/path column")


def _from_folder(folder: Path, defaults: Mapping[str, object]) -> Iterator[Input]:
    facts = _facts({}, defaults)
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Input(path=os.path.abspath(os.path.join(root, name)), facts=facts)


def _path_column(names: list[str], source: Path) -> str:
    lower = {n.strip().lower(): n for n in names}
    for col in PATH_COLUMNS:
        if col in lower:
            return lower[col]
    raise ManifestError(f"{source}: no image or path column (header: {', '.join(names)}); "
                        "a listing needs one column of image paths named image or path")


def _resolve(base: Path, text: object) -> str | None:
    cell = _clean(text)
    if cell is None:
        return None
    p = Path(str(cell).replace("\\", "/"))
    return os.path.abspath(p if p.is_absolute() else base / p)


def _input_from_row(row: Mapping[str, object], path_col: str, base: Path,
                    defaults: Mapping[str, object]) -> Input | None:
    lowered = {k.strip().lower(): v for k, v in row.items() if k is not None}
    path = _resolve(base, row.get(path_col))
    if path is None:
        return None  # a blank path cell is not an input
    pid = _clean(lowered.get("patient_id"))
    return Input(path=path, facts=_facts(lowered, defaults),
                 patient_id=None if pid is None else str(pid))


def _from_csv(path: Path, defaults: Mapping[str, object]) -> Iterator[Input]:
    base = path.parent.absolute()
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise ManifestError(f"cannot read listing {path}: {err.strerror or err}") from None
    with fh:
        try:
            reader = csv.DictReader(fh)
            names = list(reader.fieldnames or [])
            if not names:
                raise ManifestError(f"{path} is empty; expected a header with an image or "
                                    "path column")
            col = _path_column(names, path)
            for row in reader:
                item = _input_from_row(row, col, base, defaults)
                if item is not None:
                    yield item
        except UnicodeDecodeError as err:
            raise ManifestError(f"{path} is not valid UTF-8 (byte 0x{err.object[err.start]:02x}); "
                                "save the listing as UTF-8") from None
        except csv.Error as err:
            raise ManifestError(f"{path}: not valid CSV ({err})") from None


def _from_parquet(path: Path, defaults: Mapping[str, object]) -> Iterator[Input]:
    from bmd_edge.screen.deps import require_pyarrow

    require_pyarrow()
    import pyarrow.parquet as pq

    base = path.parent.absolute()
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise ManifestError(f"{path} is not a readable Parquet file ({type(err).__name__}: "
                            f"{err})") from None
    names = pf.schema_arrow.names
    col = _path_column(names, path)
    keep = [n for n in names if n == col or n.strip().lower() in (*FACT_COLUMNS, "patient_id")]
    for batch in pf.iter_batches(batch_size=CHUNK, columns=keep):
        for row in batch.to_pylist():
            item = _input_from_row(row, col, base, defaults)
            if item is not None:
                yield item
