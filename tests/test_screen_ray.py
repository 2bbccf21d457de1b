"""`bmd-edge screen` on a real local Ray cluster: killed mid-way, resumed, compared to predict.

One archive of 300 inputs (290 synthetic hips, 10 bad files). The screen runs as a subprocess
in its own session; once a few parts exist the whole process group gets SIGKILL (no cleanup
code runs). The rerun must finish the rest, and the union of parts must hold exactly one row
per input — none twice, none missing — whose BMD, interval, category and refusal agree with
`bmd-edge predict`'s batch results on the same bundle. A third run finds nothing to do and does
not start Ray. Ray's processes of the killed run are gone afterwards (killed in teardown if not).

Two Ray start-ups, each a few seconds on an idle machine (tens of seconds on a loaded one): no
timing assertions, generous timeouts.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from bmd_edge.cli import main
from bmd_edge.screen.keys import path_key
from bmd_edge.screen.store import open_folder
from screen_archive import BAD_FILES, build_archive

N_INPUTS = 300
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bmd_edge.synth import generate_cohort

    synth = tmp_path_factory.mktemp("synth")
    generate_cohort(58, synth, seed=11, size=128, workers=1)
    manifest = build_archive(synth, tmp_path_factory.mktemp("archive"), copies=5)
    assert sum(1 for _ in open(manifest)) - 1 == N_INPUTS
    return manifest


def _screen_cmd(manifest: Path, out: Path) -> list[str]:
    # One actor and small batches: many parts, so the kill lands mid-way on any machine.
    return [sys.executable, "-m", "bmd_edge.cli", "screen", str(manifest), "--out", str(out),
            "--batch-size", "4", "--actors", "1", "--num-cpus", "2", "--object-store-mb", "200",
            "--no-ray-progress"]


def _session_processes(sid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of a session: the driver and every Ray process it started."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def _kill_session(sid: int) -> None:
    """`ray stop` for the killed run: whatever of its session is still alive."""
    for p in _session_processes(sid):
        try:
            p.kill()
        except psutil.Error:
            pass


def _parts(out: Path) -> list[Path]:
    d = out / "parts"
    return sorted(d.glob("part-*.parquet")) if d.is_dir() else []


@pytest.mark.slow
def test_killed_screen_resumes_to_one_row_per_input_equal_to_predict(
        archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    # predict's batch mode on the same archive and bundle: the reference.
    with pytest.raises(SystemExit) as done:
        main(["predict", str(archive), "--out", str(tmp_path / "predict.csv")])
    assert done.value.code == 0
    with open(tmp_path / "predict.csv", newline="") as fh:
        ref = {row["source"]: row for row in csv.DictReader(fh)}
    with open(archive, newline="") as fh:
        side = {row["image"]: row["side"] for row in csv.DictReader(fh)}
    assert len(ref) == N_INPUTS

    # 1. Start, wait for complete parts, SIGKILL the whole process group.
    log = open(tmp_path / "run1.log", "wb")
    proc = subprocess.Popen(_screen_cmd(archive, out), start_new_session=True, stdout=log,
                            stderr=subprocess.STDOUT)
    sid = proc.pid
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(_parts(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, ("the first run ended before it could be killed: "
                                     + (tmp_path / "run1.log").read_text()[-2000:])
        os.killpg(sid, signal.SIGKILL)
        proc.wait(timeout=60)
        at_kill = len(_parts(out))
        assert 3 <= at_kill < N_INPUTS // 4, at_kill  # mid-way: some parts, not all
        # Ray's processes notice their raylet is gone and exit; give them time, then check.
        deadline = time.monotonic() + 60
        while _session_processes(sid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [p.name() for p in _session_processes(sid) if p.is_running()]
        assert left == [], f"Ray processes left after the kill: {left}"
    finally:
        _kill_session(sid)
        log.close()
    rows_at_kill = pq.read_table(out / "parts").num_rows
    assert rows_at_kill < N_INPUTS

    # 2. Resume: only the missing inputs run.
    run2 = subprocess.run(_screen_cmd(archive, out), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, start_new_session=True)
    assert run2.returncode == 0, run2.stderr[-3000:]
    assert f"{N_INPUTS} listed, {rows_at_kill} already done, {N_INPUTS - rows_at_kill} run" \
        in run2.stderr
    assert not list((out / "parts").glob(".tmp-*"))  # the killed run's half-part was removed

    # 3. The union: exactly one row per input, equal to predict's.
    t = pq.read_table(out / "parts").to_pylist()
    assert len(t) == N_INPUTS and len({r["key"] for r in t}) == N_INPUTS
    salt = open_folder(out, include_ids=False).salt
    root = archive.parent
    by_path_key = {path_key(salt, str(root / src)): src for src in ref}
    assert sorted(by_path_key[r["path_key"]] for r in t) == sorted(ref)  # none missing, none twice
    n_failed = 0
    for r in t:
        p = ref[by_path_key[r["path_key"]]]
        assert r["status"] == p["status"], (r, p)
        if r["status"] == "failed":
            n_failed += 1
            assert r["refusal_kind"] and r["refusal_reason"]
            continue
        assert f"{r['bmd_gcm2']:.4f}" == p["bmd_gcm2"]
        assert f"{r['interval_low']:.4f}" == p["interval_low"]
        assert f"{r['interval_high']:.4f}" == p["interval_high"]
        assert r["who_category"] == p["who_category"]
        assert int(r["screen_positive"]) == int(p["screen_positive"])
        assert f"{r['t_score']:.2f}" == p["t_score"]
        assert r["hip"] == side[p["source"]]  # one row per hip: the hip the image shows
    assert n_failed == BAD_FILES
    # No stored value names a file: neither paths nor file names appear in any row.
    assert not any("case_" in str(v) or str(root) in str(v) for r in t for v in r.values())

    # 4. The summary covers the whole folder; a third run has nothing to do and starts no Ray.
    summary = (out / "summary.md").read_text()
    assert f"from {N_INPUTS} inputs: {N_INPUTS - BAD_FILES} ok, {BAD_FILES} failed" in summary
    assert (out / "histogram.png").read_bytes()[:4] == b"\x89PNG"
    run3 = subprocess.run(_screen_cmd(archive, out), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert run3.returncode == 0, run3.stderr[-3000:]
    assert f"{N_INPUTS} listed, {N_INPUTS} already done, 0 run" in run3.stderr
    assert "ray" not in run3.stderr.lower().replace("array", "")
    assert pq.read_table(out / "parts").num_rows == N_INPUTS
