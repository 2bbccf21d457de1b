"""Synthetic cohort: determinism, worker independence, files, tags, and BMD visible in the image."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from bmd_edge.cli import app
from bmd_edge.errors import InputError
from bmd_edge.synth import MANIFEST_COLUMNS, generate_cohort
from bmd_edge.synth.anatomy import sample_hip
from bmd_edge.synth.cohort import sample_subject
from bmd_edge.synth.physics import REFERENCE
from bmd_edge.synth.render import Pose, hip_maps, render, sample_body

SIZE = 96


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(12, out, seed=7, size=SIZE, dicom=True, workers=1)
    return out


def test_same_seed_same_bytes_for_any_worker_count(cohort: Path, tmp_path: Path) -> None:
    generate_cohort(12, tmp_path, seed=7, size=SIZE, dicom=True, workers=2)
    for rel in ["manifest.csv", "oracle.csv", *(f"images/case_{i:05d}.png" for i in range(12)),
                "dicom/case_00003.dcm"]:
        assert (cohort / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel
    other = tmp_path / "other"
    generate_cohort(3, other, seed=8, size=SIZE, workers=1)
    assert (other / "images/case_00000.png").read_bytes() != \
        (cohort / "images/case_00000.png").read_bytes()
    # A case depends on (seed, index) only: the first 3 of 12 equal a 3-case run.
    short = tmp_path / "short"
    generate_cohort(3, short, seed=7, size=SIZE, workers=1)
    assert (short / "images/case_00002.png").read_bytes() == \
        (cohort / "images/case_00002.png").read_bytes()


def test_manifest_columns_values_and_schema(cohort: Path) -> None:
    rows = _read_rows(cohort / "manifest.csv")
    assert len(rows) == 12 and tuple(rows[0]) == MANIFEST_COLUMNS
    from bmd_edge import schema

    for r in rows:
        rec = schema.parse_record({k: r[k] for k in schema.FIELD_NAMES})
        assert 60 <= float(rec["age_xray"]) <= 90
        assert 0 <= float(rec["age_bmd"]) - float(rec["age_xray"]) <= 1.0
        h, w = float(r["height_cm"]) / 100, float(r["weight_kg"])
        assert abs(w / h**2 - float(r["bmi"])) < 0.06
        assert 0.35 <= float(r["fn_bmd"]) <= 1.5
        assert r["side"] in ("left", "right") and r["patient_id"].startswith("SYNTH-")
        img = cv2.imread(str(cohort / r["image"]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and img.shape == (SIZE, SIZE) and img.max() > 30000
    assert {r["sex"] for r in rows} == {"F", "M"}


def test_oracle_has_truth_and_nuisance(cohort: Path) -> None:
    manifest = _read_rows(cohort / "manifest.csv")
    oracle = _read_rows(cohort / "oracle.csv")
    assert [o["patient_id"] for o in oracle] == [m["patient_id"] for m in manifest]
    for o, m in zip(oracle, manifest):
        true, label = float(o["true_bmd"]), float(m["fn_bmd"])
        assert abs(true + float(o["label_noise"]) - label) < 1e-4
        assert abs(label - true) / true < 0.08          # 1.5 % CV: 5 SD
        for key in ("soft_tissue_ap_mm", "exposure_quanta", "gamma", "rotation_deg",
                    "scale", "blur_mm", "cortex_neck_mm", "kvp", "visible_bmd",
                    "micro_component"):
            float(o[key])
    assert "true_bmd" not in manifest[0]


def test_dicom_tags(cohort: Path) -> None:
    rows = _read_rows(cohort / "manifest.csv")
    ds = pydicom.dcmread(cohort / "dicom/case_00004.dcm")
    r = rows[4]
    assert ds.Modality == "DX" and ds.ViewPosition == "AP"
    o = _read_rows(cohort / "oracle.csv")[4]
    assert ds.PhotometricInterpretation == o["photometric"] and ds.BitsStored == 16
    assert ds.PatientAge == f"{int(float(r['age_xray'])):03d}Y" and ds.PatientSex == r["sex"]
    assert ds.ImageLaterality == ("L" if r["side"] == "left" else "R")
    assert str(ds.PatientName) == "SYNTH^00004"
    assert float(ds.PixelSpacing[0]) == pytest.approx(220.0 / SIZE, abs=1e-3)
    png = cv2.imread(str(cohort / r["image"]), cv2.IMREAD_UNCHANGED)
    stored = 65535 - png if ds.PhotometricInterpretation == "MONOCHROME1" else png
    assert np.array_equal(ds.pixel_array, stored)


def _fixed_hip(bmd: float):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    subj = sample_subject(rng, 0)
    hip = sample_hip(rng, sex="F", height_cm=160.0, bmd=0.85)
    body = sample_body(rng, sex="F", bmi=27.0)
    assert subj.index == 0
    return dataclasses.replace(hip, bmd=bmd, leg_rot_deg=0.0, abduction_deg=0.0), body


def _fixed_case(bmd: float, view: str = "hip") -> np.ndarray:
    hip, body = _fixed_hip(bmd)
    return render((hip, hip), body, REFERENCE, size=128, view=view).astype(np.float64)


def test_higher_bmd_more_mineral_and_more_neck_contrast_at_fixed_nuisance() -> None:
    """BMD moves the mineral in the neck box; after auto-ranging the neck stands out more
    from the soft tissue beside it (contrast, not absolute grey level, carries BMD)."""
    contrasts, minerals = [], []
    for bmd in (0.6, 0.85, 1.1):
        hip, body = _fixed_hip(bmd)
        maps = hip_maps((hip, hip), body, Pose(), size=128, view="hip")
        lab = maps.labels["hips"][0]
        r, c = round(lab.roi_y), round(lab.roi_x)
        minerals.append(float(maps.bone_gcm2[r - 2:r + 3, c - 2:c + 3].mean()))
        img = render((hip, hip), body, REFERENCE, size=128).astype(np.float64) / 65535.0
        # Auto-ranging pins the image median (mostly soft tissue) at a fixed grey.
        contrasts.append(img[r - 2:r + 3, c - 2:c + 3].mean() - np.median(img))
    assert minerals[0] < minerals[1] < minerals[2]
    assert 0.5 < minerals[1] < 2.0                      # g/cm²: the FN range DXA reports
    assert contrasts[0] < contrasts[1] < contrasts[2], contrasts
    assert contrasts[2] - contrasts[0] > 0.03


def test_pelvis_view_shows_both_hips_mirrored() -> None:
    img = _fixed_case(0.85, view="pelvis")
    mirrored = img[:, ::-1]
    corr = np.corrcoef(img[20:-20].ravel(), mirrored[20:-20].ravel())[0, 1]
    assert corr > 0.8          # bowel gas and texture are not symmetric
    # Both femoral heads: bright bone at the same height on both sides of the midline.
    band = img[int(0.55 * 128):int(0.65 * 128)]
    base = np.median(img)
    left, right = band[:, :64].max(), band[:, 64:].max()
    assert left > base + 10000 and right > base + 10000
    assert abs(left - right) < 0.15 * (left - base)
    # A hip view is not symmetric.
    hip = _fixed_case(0.85)
    assert np.corrcoef(hip.ravel(), hip[:, ::-1].ravel())[0, 1] < corr


def test_pelvis_cohort_and_left_flip(tmp_path: Path) -> None:
    generate_cohort(4, tmp_path, seed=1, size=64, view="pelvis", workers=1)
    rows = _read_rows(tmp_path / "manifest.csv")
    assert len(rows) == 4 and all(r["side"] in ("left", "right") for r in rows)
    assert all(r["select"] == r["side"] for r in rows)     # what to crop, for the reader
    marks = _read_rows(tmp_path / "landmarks.csv")
    for r, m in zip(rows, marks):
        assert m["image"] == r["image"] and m["view"] == "pelvis"
        assert float(m["right_head_x"]) < float(m["left_head_x"])   # patient's right: image left
    with pytest.raises(InputError, match="view = 'knee'"):
        generate_cohort(1, tmp_path, view="knee")


def test_cli_synth_and_bad_n(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["synth", "--n", "3", "--out", str(tmp_path / "c"), "--seed", "2",
                              "--size", "64", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert len(_read_rows(tmp_path / "c" / "manifest.csv")) == 3
    bad = runner.invoke(app, ["synth", "--n", "0", "--out", str(tmp_path / "d")])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: n = 0") and bad.stderr.count("\n") == 1
    assert not (tmp_path / "d" / "manifest.csv").exists()


def test_synth_is_torch_free() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import bmd_edge.synth, bmd_edge.commands.synth\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_project_readers_understand_the_files(cohort: Path) -> None:
    """The package's own reader gets age, sex, side and spacing from our DICOM; the PNG matches."""
    from bmd_edge.image_io import read_image

    r = _read_rows(cohort / "manifest.csv")[2]
    dcm = read_image(cohort / "dicom/case_00002.dcm")
    png = read_image(cohort / r["image"])
    assert dcm.info.format == "dicom" and png.info.format == "png"
    assert dcm.info.age_years == int(float(r["age_xray"])) and dcm.info.sex == r["sex"]
    assert dcm.info.laterality == r["side"] and dcm.info.view == "AP"
    assert dcm.info.pixel_spacing_mm == pytest.approx((220.0 / SIZE,) * 2, abs=1e-3)
    assert png.info.bits_stored == 16
    assert np.allclose(dcm.pixels, png.pixels, atol=1e-4)
