"""The cohort manifest: one CSV row per radiograph, the format both synthetic and real cohorts use.

Columns (header required, names case-insensitive, surrounding spaces ignored):
- `image`: path relative to the manifest's folder (required). Absolute paths, `..` leaving the
  folder and symlinks resolving outside it are refused, so a manifest can only read its own tree.
  Backslashes are read as separators (manifests travel between Windows and POSIX).
- the ten clinical schema columns (`bmd_edge.schema.FIELD_NAMES`), any subset, empty = unknown.
- `fn_bmd`: femoral-neck BMD, g/cm² (GE Lunar), 0.2–2.0; required with `require_label=True`.
- optional `patient_id` (several images per patient allowed), `split` (train/val/test/calib and
  their long spellings), `side` (left/right: the hip shown), `select` (left/right: crop from a
  pelvis view).

Every bad row is reported with its line number (the header is line 1) and column; good rows go
on. Problems that make the whole file unusable (unreadable, empty, not UTF-8, a required column
missing) raise ManifestError at once.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from bmd_edge.errors import ManifestError, MetadataError
from bmd_edge.file_checks import display_name, one_line, os_error_reason, unreadable_reason
from bmd_edge.schema import FIELD_NAMES, ClinicalRecord, parse_record

INFO_COLUMNS = ("patient_id", "split", "side", "select")
MANIFEST_COLUMNS: tuple[str, ...] = ("image", *INFO_COLUMNS, *FIELD_NAMES, "fn_bmd")
SPLITS = ("train", "val", "valid", "validation", "test", "calib", "calibration")
SIDES = ("left", "right")
MAX_MANIFEST_BYTES = 1 << 30  # 1 GiB: ~5 million rows; beyond that it is not a manifest
FN_BMD_RANGE = (0.2, 2.0)  # g/cm²: outside this no femoral neck was measured (or a unit slipped)


@dataclass(frozen=True)
class Case:
    """One usable manifest row."""

    line: int                    # line in the CSV where the row starts (header = 1), for messages
    image: Path                  # absolute, resolved, inside the manifest's folder
    record: ClinicalRecord       # validated clinical facts
    fn_bmd: float | None         # label, g/cm²; None when the row has none
    patient_id: str | None       # groups images of one person (CV folds never split a patient)
    split: str | None            # lower-case split name from SPLITS, or None
    side: str | None             # which hip the image shows: "left" | "right"
    select: str | None           # crop this hip out of a pelvis view: "left" | "right"


@dataclass(frozen=True)
class RowProblem:
    """Why one row (or one header column) was not used."""

    line: int                    # CSV line (header = 1)
    column: str | None           # the offending column; None when the row as a whole is bad
    message: str                 # one line: what is wrong and what would be accepted

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Manifest:
    """A read manifest: the usable cases and every problem found."""

    path: Path                   # the CSV file (absolute)
    cases: tuple[Case, ...]      # good rows, in file order
    problems: tuple[RowProblem, ...]  # bad rows/columns, in file order

    def raise_on_problems(self, limit: int = 5) -> None:
        """ManifestError listing the first `limit` problems, for callers that need a clean file."""
        if self.problems:
            shown = "; ".join(str(p) for p in self.problems[:limit])
            more = f" (and {len(self.problems) - limit} more)" if len(self.problems) > limit else ""
            raise ManifestError(f"{self.path}: {len(self.problems)} problem(s): {shown}{more}")


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text (a BOM is allowed) or a ManifestError naming the line with the bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ManifestError(f"{path}: line {line} is not valid UTF-8 (byte 0x{data[err.start]:02x});"
                            f" save the manifest as UTF-8") from None


def _resolve_image(root: Path, text: str, check_files: bool) -> Path:
    """The image path inside `root`, or ValueError saying why not (one line, any file name)."""
    shown = repr(display_name(text.strip()))
    rel = text.strip().replace("\\", "/")
    if not rel:
        raise ValueError("image is empty; give a path relative to the manifest's folder")
    if "\x00" in rel:
        raise ValueError(f"image {shown} has a NUL character in its name; it is not read")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(text.strip()).drive:
        raise ValueError(f"image {shown} is an absolute path; give a path relative to "
                         f"the manifest's folder")
    given = root / rel
    try:
        path = given.resolve()
    except (RuntimeError, OSError) as err:  # 3.11 raises RuntimeError on a loop, 3.13 OSError
        reason = (os_error_reason(given, err, names=False) if isinstance(err, OSError) else
                  "is a symbolic link loop (links that point at each other); it is not read")
        raise ValueError(f"image {shown} {reason}") from None
    if not path.is_relative_to(root):
        raise ValueError(f"image {shown} resolves outside the manifest's folder; only files "
                         f"under it are read")
    if check_files:
        reason = unreadable_reason(given, names=False)  # rows name no folder, no link target
        if reason == "was not found":
            raise ValueError(f"image {shown} not found in the manifest's folder")
        if reason:
            raise ValueError(f"image {shown} {reason}")
    return path


def _parse_fn_bmd(text: str, required: bool) -> float | None:
    text = text.strip()
    if not text:
        if required:
            raise ValueError("fn_bmd is empty; training and evaluation need a BMD in g/cm2")
        return None
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"fn_bmd {text!r} is not a number; give g/cm2, e.g. 0.85") from None
    lo, hi = FN_BMD_RANGE
    if not math.isfinite(x) or not lo <= x <= hi:
        hint = (" (looks like a T- or Z-score; give BMD in g/cm2)" if -6 <= x < 0 else
                " (looks like mg/cm2; give g/cm2)" if 200 <= x <= 2000 else "")
        raise ValueError(f"fn_bmd = {text} is outside {lo} to {hi} g/cm2{hint}")
    return x


def _parse_choice(column: str, text: str, choices: tuple[str, ...]) -> str | None:
    value = text.strip().lower()
    if not value:
        return None
    if value not in choices:
        raise ValueError(f"{column} {text.strip()!r} is not accepted; give one of "
                         f"{', '.join(choices)} or leave it empty")
    return value


def _error_column(err: MetadataError) -> str | None:
    """The column a schema error is about (the error names it; its text is not parsed)."""
    return err.field if err.field in FIELD_NAMES else None


def read_manifest(path: str | Path, *, require_label: bool = False,
                  check_files: bool = True) -> Manifest:
    """Read and validate a manifest; every bad row is a RowProblem, good rows become Cases.

    `check_files=False` skips the image-exists check (validating a manifest before its images).
    """
    path = Path(path).absolute()
    problem = unreadable_reason(path)  # a FIFO would block the read forever
    if problem:
        raise ManifestError(f"cannot read manifest {display_name(path)}: it {problem}")
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest {display_name(path)} is {size:,} bytes; a manifest over "
                                f"{MAX_MANIFEST_BYTES >> 20} MiB (millions of rows) is not read "
                                f"- split it")
        data = path.read_bytes()
    except OSError as err:
        raise ManifestError(f"cannot read manifest {display_name(path)}: "
                            f"{one_line(err.strerror or str(err))}") from None
    text = _decode(path, data)
    if not text.strip():
        raise ManifestError(f"{path} is empty; expected a header line with at least: image"
                            + (", fn_bmd" if require_label else ""))
    root = path.parent.resolve()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as err:
        raise ManifestError(f"{path}: line 1 (header) is not valid CSV ({err})") from None

    problems: list[RowProblem] = []
    accepted = ", ".join(MANIFEST_COLUMNS)
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise ManifestError(f"{path}: line 1 repeats column(s) {', '.join(dupes)}; "
                            f"give each column once")
    for required in ("image", "fn_bmd") if require_label else ("image",):
        if required not in header:
            raise ManifestError(f"{path}: required column {required!r} is missing from the header "
                                f"(line 1); accepted columns: {accepted}")
    for h in header:
        if h not in MANIFEST_COLUMNS:
            problems.append(RowProblem(1, h or None, f"unknown column {h!r} is ignored; "
                                                     f"accepted columns: {accepted}"))
    known = [(i, h) for i, h in enumerate(header) if h in MANIFEST_COLUMNS]

    cases: list[Case] = []
    first_line_of: dict[Path, int] = {}
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # this row only: the reader goes on at the next line
            problems.append(RowProblem(line, None, f"not valid CSV ({one_line(str(err))})"))
            line = reader.line_num + 1
            continue
        row_line, line = line, reader.line_num + 1
        try:
            case, row_problems = _read_row(root, header, known, cells, row_line, first_line_of,
                                           require_label, check_files)
        except Exception as err:  # noqa: BLE001 - one odd row must not end the manifest
            detail = one_line(str(err))
            case, row_problems = None, [RowProblem(
                row_line, None, f"unexpected {type(err).__name__} reading this row"
                f"{': ' + detail if detail else ''} (a bmd-edge bug; please report it)")]
        problems += row_problems
        if case is not None:
            cases.append(case)
    return Manifest(path=path, cases=tuple(cases), problems=tuple(problems))


def _read_row(root: Path, header: list[str], known: list[tuple[int, str]], cells: list[str],
              row_line: int, first_line_of: dict[Path, int], require_label: bool,
              check_files: bool) -> tuple[Case | None, list[RowProblem]]:
    """One data row → (the Case or None, its problems). Blank rows give (None, [])."""
    if not any(c.strip() for c in cells):
        return None, []  # blank lines are not rows
    if len(cells) != len(header):
        return None, [RowProblem(row_line, None, f"row has {len(cells)} cells but the header "
                                                 f"has {len(header)}; check commas/quotes")]
    row = {h: cells[i] for i, h in known}
    row_problems: list[RowProblem] = []
    image = fn_bmd = None
    info: dict[str, str | None] = {}
    try:
        image = _resolve_image(root, row["image"], check_files)
        if image in first_line_of:
            raise ValueError(f"image {display_name(row['image'].strip())!r} is listed twice "
                             f"(first on line {first_line_of[image]}); one row per image")
        first_line_of[image] = row_line
    except ValueError as err:
        row_problems.append(RowProblem(row_line, "image", str(err)))
    try:
        fn_bmd = _parse_fn_bmd(row.get("fn_bmd", ""), require_label)
    except ValueError as err:
        row_problems.append(RowProblem(row_line, "fn_bmd", str(err)))
    for column, choices in (("split", SPLITS), ("side", SIDES), ("select", SIDES)):
        try:
            info[column] = _parse_choice(column, row.get(column, ""), choices)
        except ValueError as err:
            row_problems.append(RowProblem(row_line, column, str(err)))
    clinical = {n: row[n] for n in FIELD_NAMES if n in row}
    field_errors = []
    for name, value in clinical.items():  # one problem per bad column, not just the first
        try:
            parse_record({name: value})
        except MetadataError as err:
            field_errors.append(RowProblem(row_line, name, str(err)))
    record = None
    if not field_errors:
        try:
            record = parse_record(clinical)
        except MetadataError as err:  # cross-field: BMI vs height/weight, age gap
            field_errors.append(RowProblem(row_line, _error_column(err), str(err)))
    row_problems += field_errors
    if row_problems or image is None or record is None:
        return None, row_problems
    pid = row.get("patient_id", "").strip() or None
    return Case(row_line, image, record, fn_bmd, pid, info["split"], info["side"],
                info["select"]), []


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, ".10g")
    return str(value)


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, object]],
                   columns: Iterable[str] | None = None) -> Path:
    """Write rows (column → value; None = empty) as a manifest CSV, atomically; returns the path.

    Columns follow MANIFEST_COLUMNS order; by default those used by any row. Absolute image
    paths inside the manifest's folder are written relative to it.
    """
    path = Path(path).absolute()
    rows = [dict(r) for r in rows]
    used = set(columns) if columns is not None else {k for r in rows for k in r}
    unknown = sorted(used - set(MANIFEST_COLUMNS))
    if unknown:
        raise ManifestError(f"cannot write unknown manifest column(s) {', '.join(unknown)}; "
                            f"accepted columns: {', '.join(MANIFEST_COLUMNS)}")
    header = [c for c in MANIFEST_COLUMNS if c in used or c == "image"]
    root = path.parent.resolve()
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        image = r.get("image")
        if isinstance(image, Path) and image.is_absolute() and image.resolve().is_relative_to(root):
            r["image"] = image.resolve().relative_to(root).as_posix()
        elif isinstance(image, Path):
            r["image"] = image.as_posix()
        writer.writerow([_cell(r.get(c)) for c in header])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path
