"""Hostile batches through the real `bmd-edge predict` (issue #12, classes 4, 5 and 6).

The corpus comes from tests/corpus/make_hostile_batches.py (its docstring states the promises).
Row and output-path cases run through `bmd_edge.cli.main` in-process, or as real processes where
a FIFO, a memory limit or a signal is involved. Every good row's BMD is compared with what a
single-image run of the same picture gives, so a row that is processed wrongly (or under another
row's name) fails the test, not only a row that is missing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cli_run import run_main
from corpus.make_bad_inputs import hip_like
from corpus.make_hostile_batches import REFUSED, ROWS, SCENARIO, cases, write_corpus

from bmd_edge.runtime.tiny import write_tiny_bundle

CASES = {c.name: c for c in cases()}
N_BIG = 3000  # rows of the first writer: ~5 s unloaded, the second run meets it mid-way


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    write_corpus(root)
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", size=32)


@pytest.fixture(autouse=True)
def _env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))
    monkeypatch.delenv("BMD_EDGE_DEBUG", raising=False)


def _limit_memory() -> None:  # a 4 TB read must fail the same way whatever vm.overcommit says
    resource.setrlimit(resource.RLIMIT_AS, (32 << 30, 32 << 30))


def run_cli(argv: list[str], *, subprocess_: bool) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `bmd-edge <argv>`, as a user would see them."""
    if subprocess_:
        r = subprocess.run([sys.executable, "-m", "bmd_edge.cli", *argv], capture_output=True, check=False,
                           env={**os.environ, "COLUMNS": "100"}, timeout=120,
                           preexec_fn=_limit_memory)
        return (r.returncode, r.stdout.decode("utf-8", "replace"),
                r.stderr.decode("utf-8", "replace"))
    return run_main(argv)


@pytest.fixture(scope="module")
def reference(bundle: Path, corpus: Path) -> Callable[[str, str, str], float]:
    """The BMD a single-image run gives for (picture, age, sex): what a batch row must equal."""
    from bmd_edge.runtime.predictor import Predictor

    pred = Predictor.load(bundle)
    cache: dict[tuple[str, str, str], float] = {}

    def ref(image: str, age: str, sex: str) -> float:
        key = (image, age, sex)
        if key not in cache:
            cache[key] = pred.predict(corpus / image, age=float(age), sex=sex).bmd_gcm2
        return cache[key]

    return ref


def _listing(folder: Path) -> list[str]:
    return sorted(os.fsencode(p.name).hex() for p in folder.iterdir())


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected ONE stderr line, got {lines!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --- class 4: one bad row never ends the run --------------------------------------------------


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.kind == ROWS])
def test_bad_rows_are_reported_and_good_rows_processed(
        name: str, corpus: Path, bundle: Path, tmp_path: Path,
        reference: Callable[[str, str, str], float]) -> None:
    case = CASES[name]
    out = tmp_path / "results.csv"
    argv = ["predict", str(corpus / case.target), *case.args, "--model", str(bundle),
            "--out", str(out), *([] if case.human else ["--json"])]
    code, stdout, err = run_cli(argv, subprocess_=case.subprocess)
    assert "Traceback" not in err and "internal error" not in err, err[-800:]
    assert code == 0, (code, err[-800:])
    if case.human:  # one line per failure, the name as it is, then the summary line
        lines = err.splitlines()
        for source, pattern in case.bad:
            assert any(ln.startswith(f"failed: {source}: ") and re.search(pattern, ln)
                       for ln in lines), lines
        assert re.match(rf"{len(case.good)} ok, {len(case.bad)} failed in ", lines[-1]), lines
    else:
        summary = json.loads(stdout)
        assert (summary["n_ok"], summary["n_failed"]) == (len(case.good), len(case.bad))
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"], "no temp or lock may remain"
    text = out.read_bytes().decode("utf-8")  # strict UTF-8: must decode
    assert str(corpus) not in text, "results.csv names images by source, never by path"
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(case.good) + len(case.bad), [r["source"] for r in rows]
    by_source = {r["source"]: r for r in rows}
    assert len(by_source) == len(rows), "one row per source"
    for source, pattern in case.bad:
        r = by_source[source]
        assert r["status"] == "failed" and re.search(pattern, r["error"]), r
        assert "internal error" not in r["error"] and "\n" not in r["error"]
    for g in case.good:
        r = by_source[g.source]
        assert r["status"] == "ok", r
        want = reference(g.image, g.age, g.sex)
        assert abs(float(r["bmd_gcm2"]) - want) <= 5.1e-5, (g, r["bmd_gcm2"], want)
        assert (r["age"], r["sex"]) == (str(float(g.age)), g.sex)


def test_rows_fail_for_their_own_reason(corpus: Path) -> None:
    """Controls: the good pictures differ, so a row processed under another's name is caught."""
    from bmd_edge.image_io import read_image

    a, b, c = (read_image(corpus / "ref" / f"s{i}.png").pixels for i in range(3))
    assert np.abs(a - b).mean() > 1e-3 and np.abs(a - c).mean() > 1e-3
    huge = corpus / "folder_sparse_4tb" / "huge.png"
    assert huge.stat().st_size == 4 << 40 and huge.stat().st_blocks < 64  # a hole, no disk used


# --- class 5: outputs never destroy inputs or each other --------------------------------------


@pytest.fixture()
def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permission bits: use /sys)."""
    if os.geteuid() == 0:
        return Path("/sys")
    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o500)
    return d


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.kind == REFUSED])
def test_output_paths_that_would_destroy_or_cannot_work_are_refused(
        name: str, corpus: Path, bundle: Path, tmp_path: Path, unwritable: Path) -> None:
    case = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    args = [a.replace("{tmp}", str(work)).replace("{corpus}", str(corpus))
            .replace("{unwritable}", str(unwritable)) for a in case.args]
    protected = corpus / case.protect if case.protect else None
    before = protected.read_bytes() if protected else b""
    folder = corpus / case.name
    listing = _listing(folder)
    code, stdout, err = run_cli(["predict", str(corpus / case.target), *args,
                                 "--model", str(bundle), "--json"], subprocess_=case.subprocess)
    line = _one_error_line(err)
    assert code == 2 and re.search(case.pattern, line), (code, line)
    assert stdout.strip() == ""
    assert protected is None or protected.read_bytes() == before, "the input was changed"
    assert _listing(folder) == listing, "nothing may be written beside the input"
    assert list(work.iterdir()) == []


# --- scenarios: big manifest, real processes --------------------------------------------------


def _manifest_of(root: Path, n: int) -> Path:
    """A manifest of n distinct paths (hard links to one picture: no disk cost)."""
    img = root / "src.png"
    cv2.imwrite(str(img), np.round(hip_like(192, 160) * 65535).astype(np.uint16))
    rows = []
    for i in range(n):
        os.link(img, root / f"c{i:05d}.png")
        rows.append(f"c{i:05d}.png,{60 + i % 30},{'FM'[i % 2]},P{i:05d}\n")
    (root / "manifest.csv").write_text("image,age_xray,sex,patient_id\n" + "".join(rows))
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_BIG rows: a run the two-writer test lets finish."""
    return _manifest_of(tmp_path_factory.mktemp("big"), N_BIG)


@pytest.fixture(scope="module")
def endless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 rows (~20 s of work): a signalled run is always still running when hit."""
    return _manifest_of(tmp_path_factory.mktemp("endless"), 10_000)


def _start(manifest: Path, bundle: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bmd_edge.cli", "predict", str(manifest),
                             "--model", str(bundle), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))


def _wait_for_rows(out: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> Path:
    """The writer's temporary file, once it holds result rows (the batch is mid-run)."""
    tmp = out.with_name(f".{out.name}.tmp-{proc.pid}")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tmp.exists() and tmp.stat().st_size > 2000:
            return tmp
        assert proc.poll() is None, proc.communicate()[1][-800:]
        time.sleep(0.01)
    raise AssertionError("the batch never started writing")


def _results(out: Path) -> list[dict[str, str]]:
    with open(out, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_two_writers_on_one_out_second_is_refused(big: Path, bundle: Path, corpus: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    first = _start(big, bundle, out)
    try:
        _wait_for_rows(out, first)
        # the same file reached by another spelling (a link to the folder), from another
        # manifest: the lock is the output's. In-process: no start-up, so it meets `first`.
        (tmp_path / "alias").symlink_to(tmp_path)
        small = corpus / "man_symlink_loop" / "manifest.csv"
        code, _, err = run_cli(["predict", str(small), "--model", str(bundle), "--out",
                                str(tmp_path / "alias" / "results.csv")], subprocess_=False)
        line = _one_error_line(err)
        assert code == 2 and re.search(CASES["two_writers_same_out"].pattern, line), line
        assert f"(pid {first.pid})" in line
        _, err1 = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err1[-500:]
    rows = _results(out)
    assert len(rows) == N_BIG and all(r["status"] == "ok" for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias", "results.csv"]


def _file_size_limit() -> None:  # a disk that fills up after 64 KiB of results
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG


def test_output_failing_mid_run_aborts_in_one_line_leaving_nothing(big: Path, bundle: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out" / "results.csv"
    r = subprocess.run([sys.executable, "-m", "bmd_edge.cli", "predict", str(big), "--model",
                        str(bundle), "--out", str(out)], capture_output=True, text=True,
                       timeout=300, check=False, preexec_fn=_file_size_limit)
    line = _one_error_line(r.stderr)
    assert r.returncode == 2 and re.search(CASES["out_disk_full_mid_run"].pattern, line), line
    assert list(out.parent.iterdir()) == [], "no results.csv, temporary or lock may remain"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT],
                         ids=["SIGTERM", "SIGHUP", "SIGQUIT"])
def test_signal_mid_batch_leaves_no_temp_and_no_partial_results(
        endless: Path, bundle: Path, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "results.csv"
    proc = _start(endless, bundle, out, "--include-ids")
    try:
        _wait_for_rows(out, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err[-500:])  # not killed by the signal
    assert b"Traceback" not in err, err[-800:]
    assert list(tmp_path.iterdir()) == [], "no results.csv, temporary or lock may remain"


def test_stale_temp_of_killed_run_is_swept_live_ones_kept(endless: Path, bundle: Path,
                                                          tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "results.csv"
    proc = _start(endless, bundle, out, "--include-ids")
    try:
        stale = _wait_for_rows(out, proc)
        proc.kill()  # SIGKILL: nothing can clean up
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stale.exists() and b"P000" in stale.read_bytes(), "the scenario: a temp with ids"
    # A temporary of a process that is alive (another run) must survive the sweep.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = out.with_name(f".other.csv.tmp-{sleeper.pid}")
        live.write_text("source,status,error\n")
        foreign = out.with_name(f".notes.txt.tmp-{proc.pid}")  # dead pid, but not our file
        foreign.write_text("someone else's notes")
        man = corpus / "man_symlink_loop" / "manifest.csv"
        code, stdout, err = run_cli(["predict", str(man), "--model", str(bundle), "--out",
                                     str(out), "--json"], subprocess_=False)
        assert code == 0, err
        assert not stale.exists(), "the dead run's temporary must be swept"
        assert live.exists() and foreign.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert json.loads(stdout)["n_ok"] == 2 and len(_results(out)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, live.name, foreign.name]), "the stale lock file is gone too"


def test_corpus_table_and_script(tmp_path: Path) -> None:
    """≥ 14 cases across classes 4–6; the generator also runs as a script."""
    by_class = {k: sum(c.klass == k for c in CASES.values()) for k in (4, 5, 6)}
    assert sum(by_class.values()) >= 14 and all(n >= 4 for n in by_class.values()), by_class
    tested = {n for n, c in CASES.items() if c.kind in (ROWS, REFUSED)}
    scenarios = {n for n, c in CASES.items() if c.kind == SCENARIO}
    assert scenarios == {"two_writers_same_out", "out_disk_full_mid_run", "signal_sigterm", "signal_sighup",
                         "signal_sigquit", "sigkill_temp_swept", "live_pid_temp_kept",
                         "report_temp_swept_report_atomic"}
    assert len(tested) + len(scenarios) == len(CASES)
    script = Path(__file__).parent / "corpus" / "make_hostile_batches.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "c")], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert re.match(rf"{len(CASES)} cases written", r.stdout)
    table = json.loads((tmp_path / "c" / "expected.json").read_text(encoding="utf-8"))
    assert [t["name"] for t in table] == list(CASES)


def test_inference_failure_of_one_case_fails_only_that_row(corpus: Path, bundle: Path,
                                                           tmp_path: Path) -> None:
    """One case the runtime cannot take (a prepared image of the wrong shape, injected after
    the real `prepare`) made the whole stack of 16 fail: now the stack is retried case by case
    through the real runtime and only that case fails, with an 'unexpected' reason."""
    import dataclasses

    from bmd_edge.runtime.batch import items_from_directory, run_batch
    from bmd_edge.runtime.predictor import Predictor

    class OneBadShape(Predictor):
        def prepare(self, image: Any, **kw: Any) -> Any:
            p = super().prepare(image, **kw)
            return dataclasses.replace(p, images=p.images[..., :-3]) if "bad" in str(image) else p

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        (folder / f"{'bad' if i == 3 else 'ok'}{i}.png").write_bytes(
            (corpus / "ref" / f"s{i % 3}.png").read_bytes())
    pred = OneBadShape.load(bundle)
    summary = run_batch(pred, items_from_directory(folder, {"age": 70, "sex": "F"}),
                        tmp_path / "results.csv", batch_size=16)
    assert (summary.n_ok, summary.n_failed) == (5, 1)
    rows = {r["source"]: r for r in _results(tmp_path / "results.csv")}
    assert rows["bad3.png"]["status"] == "failed"
    assert re.search(r"^unexpected \w+ while processing this image.*a bmd-edge bug",
                     rows["bad3.png"]["error"]), rows["bad3.png"]["error"]
    plain = Predictor.load(bundle)
    for i in (0, 1, 2, 4, 5):
        want = plain.predict(corpus / "ref" / f"s{i % 3}.png", age=70, sex="F").bmd_gcm2
        assert abs(float(rows[f"ok{i}.png"]["bmd_gcm2"]) - want) <= 5.1e-5


def test_report_is_written_whole_and_stale_report_temps_are_swept(corpus: Path, bundle: Path,
                                                                  tmp_path: Path) -> None:
    from bmd_edge.runtime.output_files import PNG_MAGIC

    report = tmp_path / "report.png"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".report.png.tmp-{dead.pid}.png"
    stale.write_bytes(PNG_MAGIC + b"half a picture")
    csv_of_dead = tmp_path / f".results.csv.tmp-{dead.pid}"  # a batch's: not a report's to sweep
    csv_of_dead.write_text("source,status,error\n")
    code, stdout, err = run_cli(["predict", str(corpus / "ref" / "s0.png"), *BASE_ARGS,
                                 "--model", str(bundle), "--report", str(report), "--json"],
                                subprocess_=False)
    assert code == 0, err
    assert 0 < json.loads(stdout)["bmd_gcm2"] < 3
    assert report.read_bytes().startswith(PNG_MAGIC) and cv2.imread(str(report)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([report.name, csv_of_dead.name])


BASE_ARGS = ["--age", "70", "--sex", "F"]


def test_unexpected_exception_while_reading_one_file_fails_only_that_row(
        corpus: Path, bundle: Path, tmp_path: Path) -> None:
    """The real batch loop and reader; the one odd file's reading raises a KeyError (an
    exception type no reader is meant to raise), injected after the real `prepare` started."""
    from bmd_edge.runtime.batch import items_from_directory, run_batch
    from bmd_edge.runtime.predictor import Predictor

    class OddRead(Predictor):
        def prepare(self, image: Any, **kw: Any) -> Any:
            if "odd" in str(image):
                raise KeyError("PixelData")
            return super().prepare(image, **kw)

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"{'odd' if i == 1 else 'ok'}{i}.png").write_bytes(
            (corpus / "ref" / f"s{i % 3}.png").read_bytes())
    summary = run_batch(OddRead.load(bundle), items_from_directory(folder, {"age": 70,
                                                                             "sex": "F"}),
                        tmp_path / "results.csv")
    assert (summary.n_ok, summary.n_failed) == (3, 1)
    rows = {r["source"]: r for r in _results(tmp_path / "results.csv")}
    assert rows["odd1.png"]["error"] == ("unexpected KeyError while processing this image: "
                                         "'PixelData' (a bmd-edge bug; please report it)")
    plain = Predictor.load(bundle)
    for i in (0, 2, 3):
        want = plain.predict(corpus / "ref" / f"s{i % 3}.png", age=70, sex="F").bmd_gcm2
        assert abs(float(rows[f"ok{i}.png"]["bmd_gcm2"]) - want) <= 5.1e-5
