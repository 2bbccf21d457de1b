"""`bmd-edge screen` parts that need no Ray: listing, keys, results folder, worker, report, CLI.

The Ray end-to-end runs (parity with `predict`, kill and resume) are in test_screen_ray.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bmd_edge.cli import main
from bmd_edge.errors import InputError, ManifestError
from bmd_edge.runtime.predictor import Predictor
from bmd_edge.screen import keys as K
from bmd_edge.screen.engine import ScreenOptions, model_identity, plan
from bmd_edge.screen.listing import iter_inputs
from bmd_edge.screen.report import age_band, summarise
from bmd_edge.screen.rows import arrow_schema
from bmd_edge.screen.store import FolderLock, open_folder, write_part
from bmd_edge.screen.worker import ScreenWorker, WorkerConfig

SYNTH_ROW = {"age_xray": "71.5", "sex": "F", "height_cm": "160", "weight_kg": "60"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bmd_edge.synth import generate_cohort

    out = tmp_path_factory.mktemp("synth")
    generate_cohort(4, out, seed=5, size=128, workers=1)
    return out


def _all(source: Path, defaults: dict | None = None) -> list:
    return [i for chunk in iter_inputs(source, defaults or {}) for i in chunk]


# -- listing ---------------------------------------------------------------------------------
def test_folder_is_walked_recursively_and_hidden_entries_skipped(tmp_path: Path) -> None:
    (tmp_path / "2024" / "p1").mkdir(parents=True)
    (tmp_path / ".trash").mkdir()
    for rel in ("a.png", "2024/p1/b.DCM", "2024/notes.txt", ".hidden.png", ".trash/c.png"):
        (tmp_path / rel).write_bytes(b"x")
    got = [Path(i.path).relative_to(tmp_path).as_posix() for i in _all(tmp_path, {"age": 70})]
    assert got == ["a.png", "2024/p1/b.DCM"]
    assert all(i.facts == {"age": 70} for i in _all(tmp_path, {"age": 70}))


def test_csv_listing_cells_win_over_defaults_and_paths_resolve(tmp_path: Path) -> None:
    listing = tmp_path / "sub" / "list.csv"
    listing.parent.mkdir()
    listing.write_text("Path,age_xray,sex,side,patient_id,fn_bmd\n"
                       "img/a.png,81,M,left,MRN1,0.8\n"
                       f"{tmp_path}/b.png,,,,,\n"
                       ",70,F,,,\n")  # a blank path is not an input
    a, b = _all(listing, {"age": 65, "sex": "F"})
    assert a.path == str(tmp_path / "sub" / "img" / "a.png")
    assert a.facts == {"age": "81", "sex": "M", "side": "left"}
    assert a.patient_id == "MRN1"
    assert b.path == str(tmp_path / "b.png") and b.facts == {"age": 65, "sex": "F"}


def test_parquet_listing_and_bad_sources(tmp_path: Path) -> None:
    pq.write_table(pa.table({"image": ["x.png", "y.dcm"], "age": [70.0, float("nan")],
                             "sex": ["F", None], "other": [1, 2]}), tmp_path / "l.parquet")
    x, y = _all(tmp_path / "l.parquet", {"sex": "M"})
    assert x.facts == {"age": 70.0, "sex": "F"} and y.facts == {"sex": "M"}
    (tmp_path / "nopath.csv").write_text("file,age\nx.png,70\n")
    with pytest.raises(ManifestError, match="no image or path column"):
        _all(tmp_path / "nopath.csv")
    (tmp_path / "l.txt").write_text("x")
    with pytest.raises(InputError, match="not a folder, .csv or .parquet"):
        _all(tmp_path / "l.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="lists no images"):
        _all(tmp_path / "empty")
    (tmp_path / "latin.csv").write_bytes(b"path,sex\nm\xe9.png,F\n")
    with pytest.raises(ManifestError, match="not valid UTF-8"):
        _all(tmp_path / "latin.csv")


# -- keys --------------------------------------------------------------------------------------
def test_keys_depend_on_salt_stat_model_and_facts_not_on_fact_order() -> None:
    s1, s2 = b"a" * 32, b"b" * 32
    k = K.input_key(s1, "/pacs/SMITH_JOHN/1.dcm", 10, 5, "m 1 int8", {"age": 70, "sex": "F"})
    assert k == K.input_key(s1, "/pacs/SMITH_JOHN/1.dcm", 10, 5, "m 1 int8",
                            {"sex": "F", "age": 70})
    others = [K.input_key(s2, "/pacs/SMITH_JOHN/1.dcm", 10, 5, "m 1 int8", {"age": 70}),
              K.input_key(s1, "/pacs/SMITH_JOHN/1.dcm", 11, 5, "m 1 int8", {"age": 70}),
              K.input_key(s1, "/pacs/SMITH_JOHN/1.dcm", 10, 6, "m 1 int8", {"age": 70}),
              K.input_key(s1, "/pacs/SMITH_JOHN/1.dcm", 10, 5, "m 2 int8", {"age": 70}),
              K.input_key(s1, "/pacs/SMITH_JOHN/1.dcm", 10, 5, "m 1 int8", {"age": 71}),
              K.input_key(s1, "/pacs/SMITH_JOHN/1.dcm", 10, 5, "m 1 int8", {"age": 70}, True)]
    assert len({k, *others}) == 7
    assert "SMITH" not in k and len(k) == 64


# -- results folder ----------------------------------------------------------------------------
def test_results_folder_salt_settings_lock_and_atomic_parts(tmp_path: Path) -> None:
    out = tmp_path / "res"
    f = open_folder(out, include_ids=False)
    assert stat.S_IMODE(os.stat(out / ".salt").st_mode) == 0o600
    assert "salt" not in (out / "screen.json").read_text()
    assert open_folder(out, include_ids=False).salt == f.salt  # reopened, same salt
    with pytest.raises(InputError, match="without --include-ids"):
        open_folder(out, include_ids=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.csv").write_text("x")
    with pytest.raises(InputError, match="not a screen results folder"):
        open_folder(tmp_path / "other", include_ids=False)
    with FolderLock(out), pytest.raises(InputError, match="another bmd-edge screen"):
        FolderLock(out).__enter__()
    with FolderLock(out):  # released on exit
        pass
    schema = arrow_schema(False)
    row = {n: None for n in schema.names} | {"key": "k1", "status": "ok", "flags": []}
    part = write_part(f.parts_dir, pa.Table.from_pylist([row], schema=schema), "run1")
    (f.parts_dir / ".tmp-part-dead.parquet").write_bytes(b"PAR1 half")  # a killed write
    assert f.part_files() == [part]
    assert f.done_keys().to_pylist() == ["k1"]
    assert f.remove_temporaries() == 1 and sorted(os.listdir(f.parts_dir)) == [part.name]


# -- worker (no Ray: the actor class called directly) ------------------------------------------
@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> ScreenWorker:
    parts = tmp_path_factory.mktemp("parts")
    cfg = WorkerConfig(bundle=None, backend="openvino", variant=None, threads=1, force=False,
                       include_ids=False, salt_hex=("ab" * 32), parts_dir=str(parts),
                       run_id="t")
    return ScreenWorker(cfg)


def _item(path: Path, facts: dict) -> dict:
    salt = bytes.fromhex("ab" * 32)
    return {"key": K.path_key(salt, str(path)) + "-k", "path_key": K.path_key(salt, str(path)),
            "path": str(path), "facts": json.dumps(facts), "patient_id": None}


def test_worker_rows_match_predict_and_refusals_name_no_path(worker: ScreenWorker, synth: Path,
                                                             tmp_path: Path) -> None:
    img = synth / "images" / "case_00000.png"
    secret = tmp_path / "SMITH_JOHN_MRN123"
    secret.mkdir()
    bad = secret / "scan.png"
    bad.write_bytes(b"not an image")
    rows = worker.run_rows([
        _item(img, {"age": "71.5", "sex": "F", "side": "left"}),
        _item(img, {"age": "abc", "sex": "F"}),
        _item(bad, {"age": 70, "sex": "F"}),
        _item(secret / "gone.png", {"age": 70, "sex": "M"}),
    ])
    ok, bad_age, bad_file, missing = rows
    ref = Predictor.load().predict(img, age=71.5, sex="F", side="left")
    assert ok["status"] == "ok" and ok["hip"] == "left"
    assert ok["bmd_gcm2"] == pytest.approx(ref.bmd_gcm2, abs=1e-6)
    assert (ok["interval_low"], ok["interval_high"]) == pytest.approx(ref.interval[:2], abs=1e-6)
    assert ok["who_category"] == ref.who_category and ok["t_score"] == pytest.approx(ref.t_score)
    assert ok["model_version"] == ref.model_version and len(ok["input_digest"]) == 64
    assert (bad_age["status"], bad_age["refusal_kind"]) == ("failed", "MetadataError")
    assert "age" in bad_age["refusal_reason"] and bad_age["input_digest"] is not None
    assert bad_file["refusal_kind"] == "UnsupportedImageError"
    assert missing["refusal_kind"] == "ImageReadError" and missing["input_digest"] is None
    assert (missing["sex"], missing["age"], missing["hip"]) == ("M", 70.0, "unspecified")
    for r in rows:
        assert "SMITH" not in json.dumps(r, default=str) and "scan.png" not in str(r)
        assert "source_path" not in r


def test_worker_fails_fifos_and_link_loops_as_rows_without_blocking(
        worker: ScreenWorker, synth: Path, tmp_path: Path) -> None:
    """An archive can hold a FIFO named like an image: reading it would block the actor
    forever. It and a link loop are failed rows (naming no path); the good row is processed."""
    secret = tmp_path / "SMITH_JOHN"
    secret.mkdir()
    os.mkfifo(secret / "pipe.png")
    os.symlink("loop.png", secret / "loop.png")
    img = synth / "images" / "case_00000.png"
    rows = worker.run_rows([_item(secret / "pipe.png", {"age": 70, "sex": "F"}),
                            _item(secret / "loop.png", {"age": 70, "sex": "F"}),
                            _item(img, {"age": 70, "sex": "F"})])
    pipe, loop, ok = rows
    assert pipe["refusal_kind"] == "ImageReadError" and "is a FIFO" in pipe["refusal_reason"]
    assert loop["refusal_kind"] == "ImageReadError" and "symbolic links" in loop["refusal_reason"]
    assert ok["status"] == "ok"
    for r in rows:
        assert "SMITH" not in json.dumps(r, default=str) and ".png" not in str(r)


def test_worker_writes_one_part_per_batch(worker: ScreenWorker, synth: Path) -> None:
    items = [_item(p, {"age": 70, "sex": "M"}) for p in sorted((synth / "images").glob("*.png"))]
    before = set(Path(worker.cfg.parts_dir).iterdir())
    summary = worker(pa.Table.from_pylist(items))
    new = set(Path(worker.cfg.parts_dir).iterdir()) - before
    assert len(new) == 1 and summary.column("status").to_pylist() == ["ok"] * len(items)
    t = pq.read_table(new.pop())
    assert t.schema.equals(arrow_schema(False), check_metadata=False)
    assert t.column("key").to_pylist() == [i["key"] for i in items]


# -- plan: what a rerun skips --------------------------------------------------------------
def test_plan_skips_done_keys_and_redoes_changed_files(tmp_path: Path, synth: Path) -> None:
    archive = tmp_path / "a"
    archive.mkdir()
    for p in sorted((synth / "images").glob("*.png"))[:3]:
        (archive / p.name).write_bytes(p.read_bytes())
    f = open_folder(tmp_path / "res", include_ids=False)
    model = {"model_name": "m", "model_version": "1", "variant": "v"}
    first = plan(archive, f, {"age": 70, "sex": "F"}, model, force=False)
    assert (first.n_listed, first.n_done, first.pending.num_rows) == (3, 0, 3)
    assert not any(str(archive) in v for v in first.pending.column("facts").to_pylist())
    done = first.pending.slice(0, 2)
    schema = arrow_schema(False)
    rows = [{n: None for n in schema.names} | {"key": k, "status": "ok", "flags": []}
            for k in done.column("key").to_pylist()]
    write_part(f.parts_dir, pa.Table.from_pylist(rows, schema=schema), "r")
    again = plan(archive, f, {"age": 70, "sex": "F"}, model, force=False)
    assert (again.n_done, again.pending.num_rows) == (2, 1)
    touched = Path(done.column("path").to_pylist()[0])
    os.utime(touched, ns=(1, 1))  # a changed file is a new input
    after = plan(archive, f, {"age": 70, "sex": "F"}, model, force=False)
    assert sorted(after.pending.column("path").to_pylist()) == sorted(
        [str(touched), again.pending.column("path").to_pylist()[0]])
    other_model = plan(archive, f, {"age": 70, "sex": "F"}, dict(model, model_version="2"),
                       force=False)
    assert other_model.pending.num_rows == 3


def test_model_identity_comes_from_the_predictor() -> None:
    p = Predictor.load()
    assert model_identity(ScreenOptions()) == {
        "model_name": p.model_name, "model_version": p.model_version, "variant": p.variant}


# -- report --------------------------------------------------------------------------------
def test_summary_counts_strata_and_histogram(tmp_path: Path) -> None:
    f = open_folder(tmp_path / "res", include_ids=False)
    schema = arrow_schema(False)
    model = {"model_name": "m", "model_version": "1", "variant": "v"}

    def row(i: int, **kw: object) -> dict:
        return {n: None for n in schema.names} | model | {"key": f"k{i}", "flags": []} | kw

    rows = [row(0, status="ok", bmd_gcm2=0.7, screen_positive=True, sex="F", age=72.0,
                who_category="osteoporosis", threshold_gcm2=0.899),
            row(1, status="ok", bmd_gcm2=1.0, screen_positive=False, sex="F", age=75.0,
                who_category="normal", threshold_gcm2=0.899),
            row(2, status="ok", bmd_gcm2=0.85, screen_positive=True, sex="M", age=55.0,
                who_category="osteopenia", threshold_gcm2=0.899),
            row(3, status="failed", refusal_kind="QualityGateError",
                refusal_reason="not a hip/pelvis radiograph: blank"),
            row(4, status="failed", refusal_kind="ImageReadError",
                refusal_reason="input 0123456789ab: file is empty (0 bytes)"),
            row(5, status="ok", bmd_gcm2=0.5, screen_positive=True, sex="F", age=70.0,
                model_version="0")]  # another model's row: not counted
    write_part(f.parts_dir, pa.Table.from_pylist(rows, schema=schema), "r")
    s = summarise(f, model, run={"run_id": "r", "listed": 5, "duplicates": 0,
                                 "already_done": 0, "pending": 5, "ok": 3, "failed": 2,
                                 "seconds": 1.0})
    assert (s.n_rows, s.n_ok, s.n_failed, s.n_positive) == (5, 3, 2, 2)
    assert s.refusals_by_kind == {"QualityGateError": 1, "ImageReadError": 1}
    assert ("input: file is empty (0 bytes)", 1) in s.top_reasons
    cells = {(c.sex, c.age_band): (c.n, c.n_positive) for c in s.strata}
    assert cells == {("F", "70-79"): (2, 1), ("M", "50-59"): (1, 1)}
    assert json.loads((f.root / "summary.json").read_text())["n_failed"] == 2
    assert "| F | 70-79 | 2 | 1 | 50.0 % |" in (f.root / "summary.md").read_text()
    assert (f.root / "histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [age_band(a) for a in (None, 49.9, 50, 80, 104)] == [
        "unknown", "<50", "50-59", "80+", "80+"]


# -- CLI and the edge install --------------------------------------------------------------
def test_cli_refuses_bad_sources_with_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    for args, msg in ((["screen", str(tmp_path / "nope"), "--out", str(tmp_path / "r")],
                       "does not exist"),
                      (["screen", str(tmp_path), "--out", str(tmp_path / "file")], "is a file"),
                      (["screen", str(tmp_path), "--out", str(tmp_path / "r2"), "--address",
                        "127.0.0.1:1"], "cannot reach the Ray cluster")):
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and msg in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r2").exists()  # refused before anything was written


def test_edge_import_does_not_load_ray_or_pyarrow() -> None:
    code = ("import sys, bmd_edge.cli, bmd_edge.commands.screen, bmd_edge.screen.engine;"
            "print(sorted(m for m in ('ray', 'pyarrow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_identifiers_only_with_include_ids(tmp_path: Path) -> None:
    """DICOM tags and the listing's patient_id reach a row only when --include-ids is set."""
    dcm = Path(__file__).resolve().parents[1] / "export" / "samples" / "synthetic_hip_left.dcm"
    listing = tmp_path / "l.csv"
    listing.write_text(f"path,patient_id\n{dcm},MRN-77\n")
    model = {"model_name": "m", "model_version": "1", "variant": "v"}
    got = {}
    for ids in (False, True):
        f = open_folder(tmp_path / f"res{ids}", include_ids=ids)
        pending = plan(listing, f, {}, model, force=False).pending.to_pylist()
        cfg = WorkerConfig(bundle=None, backend="openvino", variant=None, threads=1,
                           force=False, include_ids=ids, salt_hex=f.salt.hex(),
                           parts_dir=str(f.parts_dir), run_id="t")
        got[ids] = ScreenWorker(cfg).run_rows(pending)[0]
        assert (pending[0]["patient_id"] == "MRN-77") is ids
    plain, with_ids = got[False], got[True]
    assert plain["status"] == with_ids["status"] == "ok"
    assert (plain["age"], plain["sex"], plain["hip"]) == (74.0, "F", "left")  # from DICOM tags
    assert "source_path" not in plain and "SYNTH" not in json.dumps(plain, default=str)
    assert with_ids["source_path"] == str(dcm) and with_ids["patient_id"] == "MRN-77"
    assert "PatientID=SYNTH-00004" in with_ids["dicom_patient_ids"]
    assert plain["bmd_gcm2"] == with_ids["bmd_gcm2"]
