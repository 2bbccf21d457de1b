"""The learned front end of `predict` (issue #15) on the tiny bundle's trained locator.

Toy films (bmd_edge/runtime/toy.py) stand in for radiographs: the tiny locator was trained on
them, so every test runs the real path — bundle locator section, hashed locator file, real
OpenVINO/ONNX Runtime session, decoder, refusal, laterality, per-hip inputs, every output.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import write_toy_png
from typer.testing import CliRunner

from bmd_edge.bundle import Bundle
from bmd_edge.cli import app
from bmd_edge.errors import BundleError, InputError, QualityGateError
from bmd_edge.runtime import Predictor
from bmd_edge.runtime.tiny import resign_tiny_bundle, write_tiny_bundle
from bmd_edge.runtime.toy import OTHER_KINDS, toy_hip_film, toy_pelvis_film


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", size=32)


@pytest.fixture(scope="module")
def old_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle from before the locator: no `locator` section."""
    return write_tiny_bundle(tmp_path_factory.mktemp("old") / "bundle", size=32, locator=False)


@pytest.fixture(scope="module")
def predictor(bundle: Path) -> Predictor:
    return Predictor.load(bundle, backend="onnxruntime", threads=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def _dicom(path: Path, pixels: np.ndarray, **tags: str) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    px = np.round(pixels * 255).astype(np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientAge, ds.PatientSex = "DX", "070Y", "F"
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# -- the bundle section ----------------------------------------------------------------------------
def test_bundle_carries_a_verified_locator_section(bundle: Path, tmp_path: Path) -> None:
    b = Bundle.load(bundle)
    loc = b.meta.locator
    assert loc is not None and loc.spec.size == 64 and 0 < loc.hip_film_threshold < 1
    assert {v.file for v in loc.variants.values()} == {"locator.xml", "locator.onnx"}
    assert all(f in b.meta.files for v in loc.variants.values() for f in v.files)
    assert loc.metrics["head_found"] >= 0.99 and loc.metrics["other_films_refused"] >= 0.99
    # a changed byte of the locator file is caught when it is opened
    copy = shutil.copytree(bundle, tmp_path / "copy")
    data = bytearray((copy / "locator.onnx").read_bytes())
    data[-20] ^= 1
    (copy / "locator.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch for file locator.onnx"):
        Predictor.load(copy, backend="onnxruntime", threads=1)
    # bundle.json must list every locator file with its digest
    resign = shutil.copytree(bundle, tmp_path / "resign")
    with pytest.raises(BundleError, match=r"locator\.variants\.onnx\.files\[0\]"):
        resign_tiny_bundle(resign, lambda d: d["files"].pop("locator.onnx"))
    # a spec that disagrees with the one inside the locator file is refused
    resign_tiny_bundle(resign, lambda d: d["locator"]["spec"].update(stride=16))
    with pytest.raises(BundleError, match="was exported with"):
        Predictor.load(resign, backend="onnxruntime", threads=1)


def test_old_bundle_without_locator_runs_and_says_so_in_every_output(
        old_bundle: Path, tmp_path: Path) -> None:
    assert Bundle.load(old_bundle).meta.locator is None
    film = write_toy_png(tmp_path / "hip.png")
    code, out, _ = _cli("predict", str(film), "--age", "70", "--sex", "F", "--model",
                        str(old_bundle), "--json")
    d = json.loads(out)
    assert code == 0 and any("no hip locator" in w for w in d["warnings"])
    assert d["hip_film_score"] is None and d["hips"][0]["located"] is None
    code, out, _ = _cli("predict", str(film), "--age", "70", "--sex", "F", "--model",
                        str(old_bundle))
    assert code == 0 and "no hip locator" in out.replace("\n", " ")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(film, folder / "a.png")
    code, _, _ = _cli("predict", str(folder), "--age", "70", "--sex", "F", "--model",
                      str(old_bundle), "--out", str(tmp_path / "r.csv"))
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert code == 0 and "no hip locator" in rows[0]["warnings"]


# -- refusal -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_films_without_a_hip_are_refused_with_one_line(predictor: Predictor, kind: str) -> None:
    from bmd_edge.runtime.toy import toy_other_film

    with pytest.raises(QualityGateError,
                       match=r"^no hip found \(hip score 0\.\d\d < 0\.50\); use --force"):
        predictor.predict(toy_other_film(kind, 64, 72, seed=77), age=70, sex="F")


def test_force_runs_anyway_with_a_warning_in_every_output(bundle: Path, tmp_path: Path) -> None:
    knee = write_toy_png(tmp_path / "knee.png", "knee", seed=5)
    base = ("predict", str(knee), "--age", "70", "--sex", "F", "--model", str(bundle))
    code, _, err = _cli(*base)
    assert code == 2 and err.startswith("error: no hip found") and err.count("\n") == 1
    code, out, _ = _cli(*base, "--force", "--json")
    assert code == 0 and any("--force" in w and "no hip found" in w
                             for w in json.loads(out)["warnings"])
    code, out, _ = _cli(*base, "--force", "--report", str(tmp_path / "r.png"))
    assert code == 0 and "--force" in out and (tmp_path / "r.png").stat().st_size > 1000
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(knee, folder / "knee.png")
    code, _, _ = _cli("predict", str(folder), "--age", "70", "--sex", "F", "--model",
                      str(bundle), "--out", str(tmp_path / "r.csv"), "--force")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert code == 0 and rows[0]["status"] == "ok" and "--force" in rows[0]["warnings"]
    code, _, _ = _cli("predict", str(folder), "--age", "70", "--sex", "F", "--model",
                      str(bundle), "--out", str(tmp_path / "r2.csv"))
    rows = list(csv.DictReader((tmp_path / "r2.csv").open()))
    assert rows[0]["status"] == "failed" and rows[0]["error"].startswith("no hip found")


@pytest.mark.parametrize("tags, named", [
    ({"BodyPartExamined": "KNEE"}, "BodyPartExamined names KNEE"),
    ({"StudyDescription": "XR KNEE 2 VIEWS RIGHT"}, "StudyDescription names KNEE"),
])
def test_dicom_that_says_knee_is_refused_whatever_its_pixels(
        predictor: Predictor, tmp_path: Path, tags: dict[str, str], named: str) -> None:
    hip = toy_hip_film(64, 56, seed=2)[0]
    with pytest.raises(QualityGateError, match=named):
        predictor.predict(_dicom(tmp_path / "knee.dcm", hip, **tags))
    # the same pixels tagged as a hip (or a pelvis study naming the knee too) are accepted
    ok = predictor.predict(_dicom(tmp_path / "hip.dcm", hip, BodyPartExamined="HIP",
                                  StudyDescription="PELVIS AND KNEE"))
    assert ok.hip_film_score is not None and ok.hip_film_score > 0.5


# -- laterality and orientation ------------------------------------------------------------------
def test_mirrored_film_gives_the_same_bmd_and_the_other_side(predictor: Predictor) -> None:
    for seed in range(4):
        img = toy_hip_film(64, 56, side=("left", "right")[seed % 2], seed=seed)[0]
        a = predictor.predict(img, age=70, sex="F")
        b = predictor.predict(np.ascontiguousarray(img[:, ::-1]), age=70, sex="F")
        assert abs(a.bmd_gcm2 - b.bmd_gcm2) < 2e-3
        assert {a.hips[0].side_in_image, b.hips[0].side_in_image} == {"left", "right"}
        assert {a.hip, b.hip} == {"left", "right"}
        assert a.laterality_source == b.laterality_source == "display-convention"
        # --side never changes the crop: same BMD whatever it says
        c = predictor.predict(img, age=70, sex="F", side="left")
        assert c.bmd_gcm2 == pytest.approx(a.bmd_gcm2, abs=1e-6)


def test_laterality_from_the_dicom_tag_and_side_conflicts(predictor: Predictor,
                                                           tmp_path: Path) -> None:
    img = toy_hip_film(64, 56, side="left", seed=4)[0]   # shaft image-left: a right hip shown
    plain = predictor.predict(img, age=70, sex="F")
    assert (plain.hip, plain.laterality_source) == ("right", "display-convention")
    assert not any(getattr(w, "code", "") == "side-conflict" for w in plain.warnings)
    conflict = predictor.predict(img, age=70, sex="F", side="left")
    assert conflict.hip == "right"
    assert any(getattr(w, "code", "") == "side-conflict" and "--side left" in w
               for w in conflict.warnings)
    tagged = predictor.predict(_dicom(tmp_path / "l.dcm", img, ImageLaterality="L"))
    assert (tagged.hip, tagged.laterality_source) == ("left", "dicom")
    assert any(getattr(w, "code", "") == "mirrored-film" for w in tagged.warnings)
    agree = predictor.predict(_dicom(tmp_path / "r.dcm", img, ImageLaterality="R"), side="right")
    assert (agree.hip, agree.laterality_source) == ("right", "dicom")
    assert not any(getattr(w, "code", "") in ("mirrored-film", "side-conflict")
                   for w in agree.warnings)
    assert agree.bmd_gcm2 == pytest.approx(plain.bmd_gcm2, abs=5e-3)  # 8-bit DICOM copy


# -- an AP pelvis: both hips -----------------------------------------------------------------------
def test_pelvis_gives_both_hips_in_every_format(bundle: Path, predictor: Predictor,
                                                tmp_path: Path) -> None:
    img, truth = toy_pelvis_film(60, 110, seed=3)
    p = predictor.predict(img, age=70, sex="F")
    assert [h.hip for h in p.hips] == ["right", "left"]            # image-left first
    assert [h.side_in_image for h in p.hips] == ["left", "right"]
    for h, t in zip(p.hips, truth):
        assert np.hypot(*np.subtract(h.found.head_xy, t.head)) < 0.1 * img.shape[1]
    low = min(p.hips, key=lambda h: h.bmd_gcm2)
    assert (p.hip, p.bmd_gcm2) == (low.hip, low.bmd_gcm2)
    assert [q.hip for q in p.per_hip()] == ["right", "left"]

    film = tmp_path / "pelvis.png"
    cv2.imwrite(str(film), np.round(img * 65535).astype(np.uint16))
    base = ("predict", str(film), "--age", "70", "--sex", "F", "--model", str(bundle))
    code, out, _ = _cli(*base, "--json")
    d = json.loads(out)
    assert code == 0 and [h["hip"] for h in d["hips"]] == ["right", "left"]
    assert d["hip"] == low.hip and d["bmd_gcm2"] == min(h["bmd_gcm2"] for h in d["hips"])
    assert set(d["hips"][0]) >= {"hip", "laterality_source", "side_in_image", "bmd_gcm2",
                                 "interval", "t_score", "z_score", "who_category",
                                 "screen_positive", "located"}
    assert set(d["hips"][0]["located"]) == {"confidence", "head_xy", "head_r", "neck_angle_deg",
                                            "roi"}
    code, out, _ = _cli(*base)
    assert code == 0 and re.search(r"right hip\s+\d\.\d{3} g/cm²", out)
    assert re.search(r"left hip\s+\d\.\d{3} g/cm²", out) and "lower of 2 hips" in out
    report = tmp_path / "report.png"
    code, _, _ = _cli(*base, "--report", str(report))
    assert code == 0 and cv2.imread(str(report)) is not None
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(film, folder / "pelvis.png")
    write_toy_png(folder / "hip.png", seed=1)
    write_toy_png(folder / "knee.png", "knee", seed=1)
    code, _, _ = _cli("predict", str(folder), "--age", "70", "--sex", "F", "--model",
                      str(bundle), "--out", str(tmp_path / "r.csv"))
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert code == 0 and [(r["source"], r["hip"], r["status"]) for r in rows] == [
        ("hip.png", "right", "ok"), ("knee.png", "", "failed"),
        ("pelvis.png", "right", "ok"), ("pelvis.png", "left", "ok")]
    assert rows[2]["laterality_source"] == "display-convention"


def test_select_reports_one_hip_of_a_pelvis(predictor: Predictor) -> None:
    img, _ = toy_pelvis_film(60, 110, seed=8)
    both = predictor.predict(img, age=70, sex="F")
    one = predictor.predict(img, age=70, sex="F", select="left")
    assert len(one.hips) == 1 and one.hip == "left"
    assert one.bmd_gcm2 == pytest.approx(next(h for h in both.hips if h.hip == "left").bmd_gcm2,
                                         abs=1e-6)
    single = toy_hip_film(64, 56, side="left", seed=1)[0]   # a right hip
    with pytest.raises(InputError, match="--select left: no left hip found"):
        predictor.predict(single, age=70, sex="F", select="left")


def test_tiny_locator_finds_toy_heads_on_fresh_seeds(predictor: Predictor) -> None:
    """The committed tiny locator generalises on toy films it never saw (seeds ≥ 10 000)."""
    errors = []
    for seed in range(10_000, 10_020):
        side = ("left", "right")[seed % 2]
        img, (truth,) = toy_hip_film(int(50 + seed % 40), int(44 + seed % 37), side=side,
                                     seed=seed)
        found = predictor.locator.locate(img)
        assert [h.side_in_image for h in found.hips] == [side]
        errors.append(np.hypot(*np.subtract(found.hips[0].head_xy, truth.head)) / img.shape[1])
    assert float(np.median(errors)) < 0.03


# -- the canonical crop ----------------------------------------------------------------------------
def test_canonical_crop_bundle_reads_one_neck_crop_per_hip(tmp_path: Path) -> None:
    """A bundle whose model reads canonical crops (input.crop): each hip's input is exactly
    locate.crop's model_input of that hip's crop, mirrored films match, a pelvis gives two."""
    from bmd_edge.locate.crop import canonical_crop, model_input
    from bmd_edge.runtime.tiny import tiny_reference

    b = write_tiny_bundle(tmp_path / "crop", size=32, crop=True)
    assert Bundle.load(b).meta.input.crop.size == 32
    p = Predictor.load(b, backend="onnxruntime", threads=1)
    img = toy_hip_film(64, 56, side="right", seed=6)[0]
    prep = p.prepare(img, age=70, sex="F")
    h = prep.hips[0]
    want = model_input(canonical_crop(img, h.found, p.crop_spec), p.crop_spec)
    np.testing.assert_array_equal(prep.images[0], want)
    res = p.infer([prep])[0]
    bmd, _ = tiny_reference(want[None], prep.values[None], prep.present[None])
    assert res.bmd_gcm2 == pytest.approx(float(bmd[0]), abs=1e-5)
    assert h.crop.mirrored                                # shaft image-right → mirrored
    # The mirrored film is located afresh (head radius, neck point jitter by a few %), so its
    # crop differs a little; the tiny graph's BMD moves 0.1 g/cm² per unit of mean input.
    flipped = p.predict(np.ascontiguousarray(img[:, ::-1]), age=70, sex="F")
    assert abs(flipped.bmd_gcm2 - res.bmd_gcm2) < 0.02
    assert flipped.hips[0].side_in_image == "left" and not flipped.hips[0].crop.mirrored
    pelvis = p.predict(toy_pelvis_film(60, 110, seed=3)[0], age=70, sex="F")
    assert [x.hip for x in pelvis.hips] == ["right", "left"]
    assert all(x.crop is not None and x.crop.outside_fraction < 0.25 for x in pelvis.hips)


# -- screen and the DICOM node: one row / one SR per hip ----------------------------------------
def test_screen_gives_one_row_per_hip(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from bmd_edge.screen import keys as K
    from bmd_edge.screen.worker import ScreenWorker, WorkerConfig

    cfg = WorkerConfig(bundle=str(bundle), backend="onnxruntime", variant=None, threads=1,
                       force=False, include_ids=False, salt_hex="ab" * 32,
                       parts_dir=str(tmp_path / "parts"), run_id="t")
    pelvis = write_toy_png(tmp_path / "pelvis.png", "pelvis", seed=3, h=60, w=110)
    knee = write_toy_png(tmp_path / "knee.png", "knee", seed=3)
    salt = bytes.fromhex("ab" * 32)
    items = [{"key": K.path_key(salt, str(f)) + "-k", "path_key": K.path_key(salt, str(f)),
              "path": str(f), "facts": json.dumps({"age": 70, "sex": "F"}), "patient_id": None}
             for f in (pelvis, knee)]
    rows = ScreenWorker(cfg).run_rows(items)
    ok = sorted((r["key"], r["hip"]) for r in rows if r["status"] == "ok")
    assert ok == [(items[0]["key"], "left"), (items[0]["key"], "right")]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["refusal_reason"].startswith("no hip found")


def test_dicom_out_writes_one_sr_per_hip_with_its_laterality(bundle: Path,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("highdicom")
    import pydicom

    img, _ = toy_pelvis_film(60, 110, seed=3)
    src = _dicom(tmp_path / "pelvis.dcm", img, StudyInstanceUID="1.2.3.4",
                 SeriesInstanceUID="1.2.3.4.5", BodyPartExamined="PELVIS")
    code, _, err = _cli("predict", str(src), "--model", str(bundle), "--dicom-out",
                        str(tmp_path / "out"), "--json")
    assert code == 0, err
    srs = sorted((tmp_path / "out").glob("SR_*.dcm"))
    assert len(srs) == 2
    def lateralities(ds: Any) -> set[str]:
        out = set()
        for item in getattr(ds, "ContentSequence", []):
            name = getattr(item, "ConceptNameCodeSequence", None)
            if name and name[0].CodeValue == "272741003":                # SCT Laterality
                out.add(item.ConceptCodeSequence[0].CodeMeaning)
            out |= lateralities(item)
        return out

    assert sorted(lateralities(pydicom.dcmread(f)).pop() for f in srs) == ["Left", "Right"]
