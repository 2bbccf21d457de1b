"""Runtime: a real tiny bundle through real OpenVINO and ONNX Runtime sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bmd_edge import references as R
from bmd_edge.errors import BundleError, InputError, MetadataError, QualityGateError
from bmd_edge.runtime import Predictor
from bmd_edge.runtime.tiny import tiny_reference, write_tiny_bundle
from bmd_edge.schema import encode, parse_record


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", size=32)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _image() -> np.ndarray:
    """A 40×48 toy hip (runtime/toy.py): the tiny locator finds it, no randomness."""
    from bmd_edge.runtime.toy import toy_hip_film

    return toy_hip_film(40, 48, side="left", seed=0)[0]


def test_api_round_trip_matches_hand_computation(bundle_dir: Path) -> None:
    from bmd_edge import Predictor as LazyPredictor  # PEP 562 export
    from bmd_edge.preprocess import preprocess

    assert LazyPredictor is Predictor
    p = Predictor.load(bundle_dir, backend="onnxruntime", threads=1)
    res = p.predict(_image(), age=72, sex="F", weight_kg=58, height_cm=160, smoking="current")
    # Expected: the closed-form graph on the same preprocessed image and encoded record.
    rec = parse_record({"age_xray": 72, "age_bmd": 72, "sex": "F", "weight_kg": 58,
                        "height_cm": 160, "smoking": "current"})
    v, pr = encode(rec)
    x = preprocess(_image(), p.spec)[None]
    bmd, att = tiny_reference(x, v[None], pr[None])
    assert res.bmd_gcm2 == pytest.approx(float(bmd[0]), abs=1e-5)
    assert res.interval == pytest.approx((res.bmd_gcm2 - 0.08, res.bmd_gcm2 + 0.08, 0.9))
    assert res.t_score == pytest.approx((res.bmd_gcm2 - 1.0386) / 0.1390, abs=1e-3)
    assert res.z_score == pytest.approx(R.z_score(res.bmd_gcm2, 72, "F"))
    assert res.who_category == R.who_category(res.t_score)
    assert res.screen_positive == (res.bmd_gcm2 < 0.899)
    # field attention: only the given fields, most-attended first, weights from the graph
    names = [n for n, _ in res.field_attention]
    assert set(names) == {"age_xray", "age_bmd", "sex", "height_cm", "weight_kg", "bmi",
                          "smoking"}
    weights = [w for _, w in res.field_attention]
    assert weights == sorted(weights, reverse=True)
    assert dict(res.field_attention)["smoking"] == pytest.approx(float(att[0, 9]), abs=1e-6)
    assert res.model_name == "bmd-edge-tiny" and res.backend == "onnxruntime"
    assert res.variant == "onnx-int8" and res.precision == "int8+f32"
    assert any("bmi derived" in w for w in res.warnings)
    d = res.to_dict()
    assert d["schema_version"] == 1 and "patient_ids" not in d


def test_openvino_and_onnxruntime_agree(bundle_dir: Path) -> None:
    ov = Predictor.load(bundle_dir, backend="openvino", threads=1)
    ort = Predictor.load(bundle_dir, backend="onnxruntime", threads=1, variant="fp32")
    assert ov.session.precision == "f32" and ov.session.threads == 1
    assert ort.variant == "onnx-fp32" and ov.variant == "openvino-int8"
    recs = [{"age": 65 + 5 * i, "sex": "MF"[i % 2], "weight_kg": 55 + 7 * i} for i in range(4)]
    imgs = [np.roll(_image(), 3 * i, axis=1) for i in range(4)]
    a = ov.predict_batch(imgs, recs)
    b = ort.predict_batch(imgs, recs, batch_size=3)
    assert len(a) == len(b) == 4
    for pa, pb in zip(a, b):
        assert pa.bmd_gcm2 == pytest.approx(pb.bmd_gcm2, abs=1e-5)
        for (na, wa), (nb, wb) in zip(pa.field_attention, pb.field_attention):
            assert na == nb and wa == pytest.approx(wb, abs=1e-5)
    # batch results equal one-by-one results (no cross-talk inside a batch)
    single = ort.predict(imgs[2], **recs[2])
    assert single.bmd_gcm2 == pytest.approx(b[2].bmd_gcm2, abs=1e-6)


def test_openvino_cache_dir_is_used(bundle_dir: Path, tmp_path: Path) -> None:
    Predictor.load(bundle_dir, backend="openvino", threads=1)
    cache = tmp_path / "cache" / "bmd-edge" / "openvino"
    assert cache.is_dir() and any(cache.iterdir())


def test_errors_are_package_errors(bundle_dir: Path, tmp_path: Path) -> None:
    p = Predictor.load(bundle_dir, backend="onnxruntime", threads=1)
    with pytest.raises(MetadataError, match="age is required"):
        p.predict(_image(), sex="F")
    with pytest.raises(MetadataError, match="sex"):
        p.predict(_image(), age=70, sex="X")
    with pytest.raises(InputError, match="side 'up'"):
        p.predict(_image(), age=70, sex="F", side="up")
    with pytest.raises(QualityGateError, match="blank"):
        p.predict(np.full((40, 40), 0.5, np.float32), age=70, sex="F")
    forced = p.predict(np.full((40, 40), 0.5, np.float32), age=70, sex="F", force=True)
    assert any("--force" in w for w in forced.warnings)
    with pytest.raises(BundleError, match="variant 'int4' is neither a variant of this bundle nor a precision"):
        Predictor.load(bundle_dir, backend="onnxruntime", variant="int4")
    with pytest.raises(InputError, match="backend 'tensorrt'"):
        Predictor.load(bundle_dir, backend="tensorrt")
    with pytest.raises(BundleError, match="does not exist"):
        Predictor.load(tmp_path / "nowhere")


def test_load_hashes_only_the_variant_it_runs(bundle_dir: Path, tmp_path: Path) -> None:
    """A changed byte in the variant that runs is refused; other variants' files are not read."""
    import shutil

    b = tmp_path / "b"
    shutil.copytree(bundle_dir, b)
    with open(b / "model_fp32.onnx", "ab") as fh:  # damage a variant that does not run
        fh.write(b"\0")
    assert Predictor.load(b, backend="onnxruntime", threads=1).variant == "onnx-int8"
    with pytest.raises(BundleError, match="checksum mismatch for file model_fp32.onnx"):
        Predictor.load(b, backend="onnxruntime", variant="fp32", threads=1)


def test_load_skips_absent_optional_variant(bundle_dir: Path, tmp_path: Path) -> None:
    """An optional variant whose files are absent (fp32 not shipped) is not installed, no error."""
    import shutil

    from bmd_edge.runtime.tiny import resign_tiny_bundle

    b = tmp_path / "b"
    shutil.copytree(bundle_dir, b)
    resign_tiny_bundle(b, lambda d: d["variants"]["onnx-fp32"].update(optional=True))
    (b / "model_fp32.onnx").unlink()
    p = Predictor.load(b, backend="onnxruntime", threads=1)
    assert p.variant == "onnx-int8" and "onnx-fp32" not in p.bundle.installed()
    with pytest.raises(BundleError, match="variant 'onnx-fp32' is listed but its files"):
        Predictor.load(b, backend="onnxruntime", variant="fp32", threads=1)


def test_gate_refuses_non_radiograph_modality(bundle_dir: Path) -> None:
    """A DICOM that says MR/CT is refused whatever its pixels; CR/DX/absent pass to the pixels."""
    from bmd_edge.image_io import ImageInfo, Radiograph

    p = Predictor.load(bundle_dir, backend="onnxruntime", threads=1)

    def rad(modality: str | None) -> Radiograph:
        info = ImageInfo(format="dicom", bits_stored=12, age_years=None, sex=None,
                         pixel_spacing_mm=None, laterality=None, view=None, modality=modality,
                         patient_ids={})
        return Radiograph(pixels=_image(), info=info, warnings=())

    with pytest.raises(QualityGateError, match="DICOM Modality is MR, not a radiograph"):
        p.predict(rad("MR"), age=70, sex="F")
    with pytest.raises(QualityGateError, match="Modality is CT"):
        p.predict(rad("ct "), age=70, sex="F")
    forced = p.predict(rad("MR"), age=70, sex="F", force=True)
    assert any("Modality is MR" in w for w in forced.warnings)
    for ok in ("DX", "CR", None):
        assert p.predict(rad(ok), age=70, sex="F").bmd_gcm2 > 0


@pytest.mark.realworld
def test_realworld_mr_dicom_is_refused(bundle_dir: Path) -> None:
    """The real MR file (shared/realworld/dicom) used to get a BMD; now it is refused."""
    mr = Path(__file__).resolve().parents[2] / "shared" / "realworld" / "dicom" / "MR_small.dcm"
    p = Predictor.load(bundle_dir, backend="onnxruntime", threads=1)
    with pytest.raises(QualityGateError, match="DICOM Modality is MR"):
        p.predict(mr, age=70, sex="F")
