"""Bundle write/load: checksums, missing files, format versions, optional variants, atomic write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bmd_edge.bundle import (FORMAT_VERSION, META_FILE, Bundle, meta_digest, sha256_file,
                             staging_dir, write_bundle)
from bmd_edge.errors import BundleError


def _meta() -> dict:
    return {
        "model": {"name": "tiny", "version": "0"},
        "intended_use": "test only",
        "training_data": "none",
        "input": {"preprocess": {"size": 32}, "schema": {}, "names": ["image", "values", "present"]},
        "output": {"name": "bmd", "unit": "g/cm2", "scale": "GE Lunar"},
        "references": {},
        "screening_threshold_gcm2": 0.899,
        "interval": {"method": "split-conformal", "coverage": 0.9, "halfwidth_gcm2": 0.1,
                     "n_calibration": 20},
        "variants": {
            "onnx-int8": {"file": "model_int8.onnx", "files": ["model_int8.onnx"],
                          "runtime": "onnxruntime", "precision": "int8", "metrics": {}},
            "onnx-fp32": {"file": "model_fp32.onnx", "files": ["model_fp32.onnx"],
                          "runtime": "onnxruntime", "precision": "fp32", "metrics": {},
                          "optional": True},
        },
        "calibration": {},
        "versions": {},
    }


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    out = tmp_path / "b"
    stage = staging_dir(out)
    (stage / "model_int8.onnx").write_bytes(b"int8 model bytes")
    (stage / "model_fp32.onnx").write_bytes(b"fp32 model bytes, longer")
    return write_bundle(stage, _meta(), out)


def test_roundtrip_records_hashes_and_loads(bundle_dir: Path) -> None:
    b = Bundle.load(bundle_dir)
    assert b.meta["format_version"] == FORMAT_VERSION
    assert b.meta["files"]["model_int8.onnx"] == sha256_file(bundle_dir / "model_int8.onnx")
    # sha256 of b"int8 model bytes", computed independently with `printf ... | sha256sum`.
    assert b.meta["files"]["model_int8.onnx"].startswith("29dd724ed06a")
    assert b.model_file("onnx-int8") == bundle_dir / "model_int8.onnx"
    assert b.pick_variant("onnxruntime") == "onnx-int8"
    assert b.pick_variant("onnxruntime", "fp32") == "onnx-fp32"
    assert b.screening_threshold == 0.899
    assert not any(p.name.startswith(".b.tmp") for p in bundle_dir.parent.iterdir())


@pytest.mark.parametrize("name", ["model_int8.onnx", "model_fp32.onnx", META_FILE])
def test_one_changed_byte_is_refused_naming_the_file(bundle_dir: Path, name: str) -> None:
    p = bundle_dir / name
    data = bytearray(p.read_bytes())
    i = data.index(b"0.899") + 4 if name == META_FILE else 2  # keeps bundle.json valid JSON
    data[i] = ord("8") if data[i] != ord("8") else ord("7")
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"checksum mismatch for file {name}"):
        Bundle.load(bundle_dir)


def test_missing_required_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "model_int8.onnx").unlink()
    with pytest.raises(BundleError, match="missing file model_int8.onnx"):
        Bundle.load(bundle_dir)


def test_missing_optional_variant_is_dropped_not_fatal(bundle_dir: Path) -> None:
    (bundle_dir / "model_fp32.onnx").unlink()
    b = Bundle.load(bundle_dir)
    assert list(b.variants) == ["onnx-int8"]
    assert b.missing_optional == ("model_fp32.onnx",)
    with pytest.raises(BundleError, match="variant 'onnx-fp32' is not in bundle"):
        b.model_file("onnx-fp32")


def test_unknown_format_version_names_found_and_supported(bundle_dir: Path) -> None:
    p = bundle_dir / META_FILE
    meta = json.loads(p.read_text())
    meta["format_version"] = "bmd-edge-bundle/9"
    meta["meta_sha256"] = meta_digest(meta)
    p.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"'bmd-edge-bundle/9'.*reads bmd-edge-bundle/1"):
        Bundle.load(bundle_dir)


def test_not_json_and_no_bundle(tmp_path: Path, bundle_dir: Path) -> None:
    (bundle_dir / META_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="bundle.json .* not valid JSON"):
        Bundle.load(bundle_dir)
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.load(tmp_path / "nowhere")


def test_existing_output_needs_overwrite(bundle_dir: Path) -> None:
    stage = staging_dir(bundle_dir)
    (stage / "model_int8.onnx").write_bytes(b"new")
    (stage / "model_fp32.onnx").write_bytes(b"new fp32")
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(stage, _meta(), bundle_dir)
    write_bundle(stage, _meta(), bundle_dir, overwrite=True)
    assert (bundle_dir / "model_int8.onnx").read_bytes() == b"new"
    Bundle.load(bundle_dir)
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == ["b"]


def test_variant_naming_absent_file_is_refused_at_write(tmp_path: Path) -> None:
    stage = staging_dir(tmp_path / "c")
    (stage / "model_int8.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="'onnx-fp32' names file 'model_fp32.onnx'"):
        write_bundle(stage, _meta(), tmp_path / "c")
