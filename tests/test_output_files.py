"""runtime/output_files.py: the pieces behind "outputs never destroy inputs or each other".

The CLI-level promises are in tests/test_hostile_batches.py; these pin the traps a hostile
folder can set for the writer itself (planted links, FIFOs, hard links), on real files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bmd_edge.errors import InputError
from bmd_edge.runtime import output_files as of

HEADER = "source,status,error"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweep_removes_only_dead_writers_own_temporaries(tmp_path: Path) -> None:
    dead = _dead_pid()
    ours = tmp_path / f".results.csv.tmp-{dead}"
    ours.write_text(HEADER + ",bmd_gcm2\nc1.png,ok,,0.8\n")
    empty = tmp_path / f".other.csv.tmp-{dead}"
    empty.write_bytes(b"")
    foreign = tmp_path / f".notes.txt.tmp-{dead}"
    foreign.write_text("not ours")
    live = tmp_path / f".results.csv.tmp-{os.getpid()}"
    live.write_text(HEADER + "\n")
    fifo = tmp_path / f".trap.csv.tmp-{dead}"
    os.mkfifo(fifo)  # opening it to read the header would block forever
    report = tmp_path / f".r.png.tmp-{dead}.png"
    report.write_text(HEADER + "\n")  # a .png temporary is only swept by the report writer
    removed = of.sweep_stale_temps(tmp_path, HEADER)
    assert sorted(p.name for p in removed) == sorted([ours.name, empty.name])
    assert foreign.exists() and live.exists() and fifo.exists() and report.exists()


def test_create_temp_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "manifest.csv"
    victim.write_text("image\na.png\n")
    tmp = of.temp_path(tmp_path / "results.csv")
    tmp.symlink_to(victim)
    with os.fdopen(of.create_temp(tmp), "w") as fh:
        fh.write("results")
    assert victim.read_text() == "image\na.png\n"
    assert not tmp.is_symlink() and tmp.read_text() == "results"


def test_lock_refuses_a_hard_linked_or_fifo_lock_file(tmp_path: Path) -> None:
    victim = tmp_path / "manifest.csv"
    victim.write_text("image\na.png\n")
    out = tmp_path / "results.csv"
    os.link(victim, tmp_path / ".results.csv.lock")
    with pytest.raises(InputError, match=r"\.results\.csv\.lock beside it is not bmd-edge's"), \
            of.output_lock(out):
        pass
    assert victim.read_text() == "image\na.png\n"
    (tmp_path / ".results.csv.lock").unlink()
    os.mkfifo(tmp_path / ".results.csv.lock")
    with pytest.raises(InputError, match="not a plain file"), of.output_lock(out):
        pass


def test_lock_is_exclusive_and_removed_after(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    with of.output_lock(out):
        assert (tmp_path / ".results.csv.lock").read_text().strip() == str(os.getpid())
        busy = rf"being written by another bmd-edge run \(pid {os.getpid()}\)"
        with pytest.raises(InputError, match=busy), of.output_lock(out):
            pass
    assert list(tmp_path.iterdir()) == []
    with of.output_lock(out):  # free again
        pass


def test_check_output_path(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(img)
    with pytest.raises(InputError, match="is the input"):
        of.check_output_path(tmp_path / "link.png", [img])
    with pytest.raises(InputError, match="is a folder"):
        of.check_output_path(tmp_path, [img])
    with pytest.raises(InputError, match="part of its folder path is a file"):
        of.check_output_path(img / "r.csv", [])
    assert of.check_output_path(tmp_path / "new" / "r.csv", [img]) == tmp_path / "new" / "r.csv"
    assert not (tmp_path / "new").exists(), "checking creates nothing"
