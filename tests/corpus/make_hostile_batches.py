"""Generate the hostile-batch corpus: what a disk, a manifest or an output path can do to a batch.

Usage:  python tests/corpus/make_hostile_batches.py OUT_DIR
writes every case under OUT_DIR/<case>/ and OUT_DIR/expected.json. Nothing is checked in: links,
FIFOs, names that are not UTF-8, a 4 TB sparse file are made here by a few lines of Python, so
a reader sees what each case is. `tests/test_hostile_batches.py` runs them through the real
`bmd-edge predict` and checks the promise of each issue #12 class:

- class 4, `rows`: one bad row never ends the run. Each bad row is a failed row whose reason
  matches its pattern; every good row is `ok` with the BMD a single-image run gives for it.
- class 5, `refused`: an output that would destroy an input, or cannot be written, gives exit 2
  and one `error:` line matching the pattern; the input is unchanged and nothing is written.
- class 6 and the two-writer case are scenarios (signals, a concurrent run); their processes
  are driven by the test, and they are listed here so the table is complete.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    from corpus.make_bad_inputs import hip_like, png, u8
except ImportError:  # run as a script: tests/corpus is on sys.path, not tests/
    from make_bad_inputs import hip_like, png, u8  # type: ignore[no-redef]

ROWS, REFUSED, SCENARIO = "rows", "refused", "scenario"
BASE = ("--age", "70", "--sex", "F")
NON_UTF8 = os.fsdecode(b"caf\xe9.png")        # Latin-1 "café.png": not UTF-8
NON_UTF8_BAD = os.fsdecode(b"bad\xff\xfe.png")
LONG = "x" * 296 + ".png"                        # 300 characters: over the 255-byte name limit
LEAVES = r"is a link to a file outside the folder; links leaving the folder are not followed"


@dataclass(frozen=True)
class Good:
    """A row that must be processed: its source name and the facts a single run is given."""

    source: str                 # as shown in results.csv (escaped when not UTF-8)
    image: str                  # the same picture at a plain path, for the single-image reference
    age: str = "70"
    sex: str = "F"


@dataclass(frozen=True)
class HostileCase:
    """One hostile batch (or output path) and the outcome bmd-edge promises for it."""

    name: str
    klass: int                  # issue #12 class: 4 rows, 5 outputs, 6 signals
    kind: str                   # rows | refused | scenario
    target: str = ""            # IMAGE argument, relative to the corpus folder
    args: tuple[str, ...] = ()  # options; "{tmp}" = the test's empty work folder
    pattern: str = ""           # refused: regex for the one error line
    bad: tuple[tuple[str, str], ...] = ()   # rows: (source, regex for its reason)
    good: tuple[Good, ...] = ()  # rows: every row that must be ok
    protect: str = ""           # refused: the input that must stay byte-identical
    subprocess: bool = False    # run as a real process (FIFOs, C-level behaviour, rlimits)
    human: bool = False         # rows: the human read-out on stderr, not --json
    before: str = ""            # what happened before this was fixed
    files: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


# --- entries: files, links, FIFOs ---------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Fifo:
    pass


@dataclass(frozen=True)
class Folder:
    pass


@dataclass(frozen=True)
class Sparse:
    size: int


@dataclass(frozen=True)
class HardLink:
    to: str


def _img(seed: int) -> bytes:
    return png(u8(hip_like(seed=seed)))


def _manifest(rows: list[tuple[str, str, str]]) -> bytes:
    text = "image,age_xray,sex\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)
    return text.encode("utf-8")


def cases() -> list[HostileCase]:
    out: list[HostileCase] = []
    ref = {"ref/s0.png": _img(0), "ref/s1.png": _img(1), "ref/s2.png": _img(2)}

    def add(case: HostileCase) -> None:
        out.append(case)

    good2 = (Good("a.png", "ref/s0.png"), Good("b.png", "ref/s1.png"))
    folder2 = {"a.png": _img(0), "b.png": _img(1)}

    # --- class 4: one bad row kills the batch ---------------------------------------------------
    add(HostileCase("folder_symlink_loop", 4, ROWS, "folder_symlink_loop", BASE,
                    bad=(("loop.png", r"loop\.png is a symbolic link loop"),),
                    good=good2, files={**folder2, "loop.png": Link("loop.png")},
                    before="skipped silently (is_file() is False for a loop)"))
    add(HostileCase("folder_dangling_link", 4, ROWS, "folder_dangling_link", BASE,
                    bad=(("gone.png", r"is a link to a missing file; it is not read"),),
                    good=good2, files={**folder2, "gone.png": Link("deleted.png")},
                    before="skipped silently"))
    add(HostileCase("folder_fifo", 4, ROWS, "folder_fifo", BASE,
                    bad=(("pipe.png", r"is a FIFO \(named pipe\), not a regular file"),),
                    good=good2, files={**folder2, "pipe.png": Fifo()}, subprocess=True,
                    before="skipped silently"))
    add(HostileCase("folder_link_leaves", 4, ROWS, "folder_link_leaves/in", BASE,
                    bad=(("out.png", LEAVES),),
                    good=(Good("a.png", "ref/s0.png"),),
                    files={"in/a.png": _img(0), "outside.png": _img(2),
                           "in/out.png": Link("../outside.png")},
                    before="followed: the file outside the folder was read and got a BMD"))
    add(HostileCase("folder_subfolder_named_png", 4, ROWS, "folder_subfolder_named_png", BASE,
                    bad=(("scans.png", r"is a folder, not a regular file"),),
                    good=good2, files={**folder2, "scans.png": Folder()},
                    before="skipped silently"))
    add(HostileCase("folder_non_utf8_names", 4, ROWS, "folder_non_utf8_names", BASE,
                    bad=((r"bad\xff\xfe.png", r"empty \(0 bytes\)"),),
                    good=(*good2, Good(r"caf\xe9.png", "ref/s2.png")),
                    files={**folder2, NON_UTF8: _img(2), NON_UTF8_BAD: b""},
                    before="internal error: UnicodeEncodeError, no results at all"))
    add(HostileCase("folder_newline_and_markup_names", 4, ROWS,
                    "folder_newline_and_markup_names", BASE,
                    bad=(("[bold]bad.png", r"empty \(0 bytes\)"),),
                    good=(Good("a.png", "ref/s0.png"), Good(r"two\x0alines.png", "ref/s1.png")),
                    files={"a.png": _img(0), "two\nlines.png": _img(1), "[bold]bad.png": b""},
                    human=True,
                    before="a newline split the row's source over two lines; '[bold]' was "
                           "taken as rich markup and the name printed as 'bad.png'"))
    add(HostileCase("folder_sparse_4tb", 4, ROWS, "folder_sparse_4tb", BASE,
                    bad=(("huge.png", r"memory|too large|larger than"),),
                    good=good2, files={**folder2, "huge.png": Sparse(4 << 40)}, subprocess=True,
                    before="the row said 'internal error: MemoryError: ' (no reason given)"))
    rows = [("a.png", "70", "F"), ("b.png", "66", "M")]
    good_m = (Good("a.png", "ref/s0.png", "70", "F"), Good("b.png", "ref/s1.png", "66", "M"))
    add(HostileCase("man_symlink_loop", 4, ROWS, "man_symlink_loop/manifest.csv",
                    bad=(("manifest.csv:3", r"image 'loop\.png' is a symbolic link loop"),),
                    good=good_m, files={**folder2, "loop.png": Link("loop.png"), "manifest.csv":
                                        _manifest([rows[0], ("loop.png", "70", "F"), rows[1]])},
                    before="internal error: RuntimeError: Symlink loop, no results at all"))
    add(HostileCase("man_300_char_name", 4, ROWS, "man_300_char_name/manifest.csv",
                    bad=(("manifest.csv:3",
                          r"has a name longer than the file system allows \(300 bytes"),),
                    good=good_m, files={**folder2, "manifest.csv":
                                        _manifest([rows[0], (LONG, "70", "F"), rows[1]])},
                    before="internal error: OSError: File name too long, no results at all"))
    add(HostileCase("man_dangling_link", 4, ROWS, "man_dangling_link/manifest.csv",
                    bad=(("manifest.csv:3", r"image 'gone\.png' .*not found|link to a missing"),),
                    good=good_m, files={**folder2, "gone.png": Link("deleted.png"),
                                        "manifest.csv": _manifest([rows[0], ("gone.png", "70", "F"),
                                                                   rows[1]])},
                    before="reported as not found (kept)"))
    add(HostileCase("man_fifo_row", 4, ROWS, "man_fifo_row/manifest.csv",
                    bad=(("manifest.csv:3", r"image 'pipe\.png' is a FIFO"),),
                    good=good_m, files={**folder2, "pipe.png": Fifo(), "manifest.csv":
                                        _manifest([rows[0], ("pipe.png", "70", "F"), rows[1]])},
                    subprocess=True, before="reported as 'not found' (misleading)"))
    add(HostileCase("man_nul_in_name", 4, ROWS, "man_nul_in_name/manifest.csv",
                    bad=(("manifest.csv:3", r"has a NUL character in its name"),),
                    good=good_m, files={**folder2, "manifest.csv":
                                        _manifest([rows[0], ("a\0.png", "70", "F"), rows[1]])},
                    before="reported as 'embedded null byte'"))
    add(HostileCase("man_markup_name", 4, ROWS, "man_markup_name/manifest.csv",
                    bad=(("[/b]bad.png", r"empty \(0 bytes\)"),),
                    good=good_m, human=True,
                    files={**folder2, "[/b]bad.png": b"", "manifest.csv":
                           _manifest([rows[0], ("[/b]bad.png", "70", "F"), rows[1]])},
                    before="the failure line '[/b]bad.png: ...' made rich raise MarkupError "
                           "after the run: 'internal error', exit 1"))
    big = "y" * 140_000  # over csv's 131072-character field limit
    add(HostileCase("man_huge_cell_mid_file", 4, ROWS, "man_huge_cell_mid_file/manifest.csv",
                    bad=(("manifest.csv:3", r"not valid CSV \(field larger than field limit"),),
                    good=good_m, files={**folder2, "manifest.csv":
                                        _manifest([rows[0], (big, "70", "F"), rows[1]])},
                    before="reading stopped at the bad row: every later row silently dropped"))

    add(HostileCase("man_is_fifo", 4, REFUSED, "man_is_fifo/manifest.csv",
                    ("--out", "{tmp}/results.csv"),
                    r"cannot read manifest .*manifest\.csv: it is a FIFO \(named pipe\)",
                    files={**folder2, "manifest.csv": Fifo()}, subprocess=True,
                    before="the read blocked forever"))
    add(HostileCase("man_sparse_4tb", 4, REFUSED, "man_sparse_4tb/manifest.csv",
                    ("--out", "{tmp}/results.csv"),
                    r"manifest .*manifest\.csv is 4,398,046,511,104 bytes; a manifest "
                            r"over 1024 MiB .* is not read",
                    files={**folder2, "manifest.csv": Sparse(4 << 40)}, subprocess=True,
                    before="internal error: MemoryError"))

    # --- class 5: outputs that destroy inputs or each other -------------------------------------
    man = {**folder2, "manifest.csv": _manifest(rows)}
    add(HostileCase("out_is_manifest", 5, REFUSED, "out_is_manifest/manifest.csv",
                    ("--out", "{corpus}/out_is_manifest/manifest.csv"),
                    r"--out .*manifest\.csv is the input .*manifest\.csv; writing it would "
                    r"destroy the input", protect="out_is_manifest/manifest.csv", files=man,
                    before="the manifest (with its labels) was replaced by results"))
    add(HostileCase("out_is_manifest_hardlink", 5, REFUSED,
                    "out_is_manifest_hardlink/manifest.csv",
                    ("--out", "{corpus}/out_is_manifest_hardlink/copy.csv"),
                    r"--out .*copy\.csv is the input .*manifest\.csv; writing it would destroy",
                    protect="out_is_manifest_hardlink/manifest.csv",
                    files={**man, "copy.csv": HardLink("manifest.csv")},
                    before="replaced the hard link (the manifest itself survived by luck of "
                           "os.replace); now refused like any other path to the input"))
    add(HostileCase("out_is_manifest_symlink", 5, REFUSED,
                    "out_is_manifest_symlink/manifest.csv",
                    ("--out", "{corpus}/out_is_manifest_symlink/alias.csv"),
                    r"--out .*alias\.csv is the input .*manifest\.csv; writing it would destroy",
                    protect="out_is_manifest_symlink/manifest.csv",
                    files={**man, "alias.csv": Link("manifest.csv")},
                    before="the link was replaced by the results (the manifest survived only "
                           "because os.replace swaps the link itself); now refused"))
    add(HostileCase("out_is_input_image", 5, REFUSED, "out_is_input_image/manifest.csv",
                    ("--out", "{corpus}/out_is_input_image/b.png"),
                    r"--out .*b\.png is the input .*b\.png; writing it would destroy the input",
                    protect="out_is_input_image/b.png", files=man,
                    before="the radiograph b.png was replaced by a CSV"))
    add(HostileCase("out_is_folder_image", 5, REFUSED, "out_is_folder_image",
                    (*BASE, "--out", "{corpus}/out_is_folder_image/a.png"),
                    r"--out .*a\.png is the input .*a\.png; writing it would destroy the input",
                    protect="out_is_folder_image/a.png", files=folder2,
                    before="the radiograph a.png was replaced by a CSV"))
    add(HostileCase("report_is_input_image", 5, REFUSED, "report_is_input_image/a.png",
                    (*BASE, "--report", "{corpus}/report_is_input_image/a.png"),
                    r"--report .*a\.png is the input .*a\.png; writing it would destroy",
                    protect="report_is_input_image/a.png", files={"a.png": _img(0)},
                    before="the radiograph was overwritten by the report picture"))
    add(HostileCase("report_is_folder", 5, REFUSED, "report_is_folder/a.png",
                    (*BASE, "--report", "{tmp}"), r"--report .* is a folder; give a file name",
                    protect="report_is_folder/a.png", files={"a.png": _img(0)},
                    before="internal error: IsADirectoryError"))
    add(HostileCase("out_parent_is_file", 5, REFUSED, "out_parent_is_file/manifest.csv",
                    ("--out", "{corpus}/out_parent_is_file/a.png/results.csv"),
                    r"--out .*results\.csv: part of its folder path is a file, not a folder",
                    protect="out_parent_is_file/a.png", files=man,
                    before="internal error: FileExistsError"))
    add(HostileCase("out_is_fifo", 5, REFUSED, "out_is_fifo/manifest.csv",
                    ("--out", "{corpus}/out_is_fifo/results.csv"),
                    r"--out .*results\.csv is not a regular file", subprocess=True,
                    protect="out_is_fifo/manifest.csv",
                    files={**man, "results.csv": Fifo()},
                    before="the FIFO was silently replaced by a regular file"))
    add(HostileCase("out_unwritable", 5, REFUSED, "out_unwritable/manifest.csv",
                    ("--out", "{unwritable}/results.csv"),
                    r"cannot write --out .*results\.csv: (Permission denied|Read-only file "
                    r"system)", protect="out_unwritable/manifest.csv", files=man,
                    before="internal error: PermissionError"))
    add(HostileCase("out_lock_planted_link", 5, REFUSED, "out_lock_planted_link/manifest.csv",
                    ("--out", "{corpus}/out_lock_planted_link/results.csv"),
                    r"cannot write --out .*results\.csv: \.results\.csv\.lock beside it is a "
                    r"symbolic link; remove it", protect="out_lock_planted_link/manifest.csv",
                    files={**man, ".results.csv.lock": Link("manifest.csv")},
                    before="(no lock existed; a lock opened through the link would have "
                           "truncated the manifest)"))
    add(HostileCase("out_disk_full_mid_run", 5, SCENARIO,
                    pattern=r"cannot write --out .*results\.csv: File too large",
                    before="internal error: OSError: [Errno 27] File too large, exit 1"))
    add(HostileCase("two_writers_same_out", 5, SCENARIO,
                    pattern=r"--out .*results\.csv is being written by another bmd-edge run "
                            r"\(pid \d+\)",
                    before="both runs said success; one result set was silently lost"))

    # --- class 6: signals -------------------------------------------------------------------
    for sig in ("SIGTERM", "SIGHUP", "SIGQUIT"):
        add(HostileCase(f"signal_{sig.lower()}", 6, SCENARIO,
                        before="SIGTERM: handled; SIGHUP/SIGQUIT: process died, .tmp-<pid> "
                               "left behind forever" if sig != "SIGTERM" else "handled (kept)"))
    add(HostileCase("sigkill_temp_swept", 6, SCENARIO,
                    before="kill -9 left .results.csv.tmp-<pid> (patient names with "
                           "--include-ids) that nothing removed"))
    add(HostileCase("report_temp_swept_report_atomic", 6, SCENARIO,
                    before="--report was drawn straight onto its final name (a signal mid-write "
                           "left half a PNG); now a .NAME.tmp-PID.png renamed when complete"))
    add(HostileCase("live_pid_temp_kept", 6, SCENARIO,
                    before="(no sweeping existed; now only dead writers' temporaries go)"))
    for c in out:
        c.files.update({f"../{k}": v for k, v in ref.items()} if c.kind == ROWS else {})
    return out


def write_entry(path: Path, entry: object) -> None:
    """Create one corpus entry: bytes, a link, a FIFO, a folder, a sparse file, a hard link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        return
    if isinstance(entry, bytes):
        path.write_bytes(entry)
    elif isinstance(entry, Link):
        os.symlink(entry.target, path)
    elif isinstance(entry, Fifo):
        os.mkfifo(path)
    elif isinstance(entry, Folder):
        path.mkdir()
    elif isinstance(entry, Sparse):
        with open(path, "wb") as fh:
            fh.truncate(entry.size)  # no blocks used: a hole the size of a small disk array
    elif isinstance(entry, HardLink):
        os.link(path.parent / entry.to, path)
    else:
        raise TypeError(f"unknown corpus entry {entry!r}")


def write_corpus(out: str | Path, which: list[HostileCase] | None = None) -> list[HostileCase]:
    """Write every case under `out/<name>/` and `out/expected.json`; return the cases."""
    out = Path(out)
    todo = which if which is not None else cases()
    names = [c.name for c in todo]
    assert len(names) == len(set(names)), "case names must be unique"
    for c in todo:
        (out / c.name).mkdir(parents=True, exist_ok=True)
        for rel, entry in sorted(c.files.items(), key=lambda kv: isinstance(kv[1], HardLink)):
            write_entry(out / c.name / rel, entry)
    table = [{k: v for k, v in asdict(c).items() if k != "files"} for c in todo]
    (out / "expected.json").write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return todo


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_hostile_batches.py OUT_DIR")
    done = write_corpus(sys.argv[1])
    print(f"{len(done)} cases written to {sys.argv[1]}")
