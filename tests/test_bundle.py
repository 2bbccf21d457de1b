"""Bundle format 2: typed schema, trust (pinned / signed / waived), tampering, atomic write.

Every tamper from issue #13 is a test here: edit bundle.json (or a model file), "re-hash" it with
the package's own functions, and expect one `BundleError` line — from the library and as exit 2
from the CLI. The shipped bundle is copied once per module (25 MB) and edited per test.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bmd_edge.bundle import (
    FORMAT_VERSION,
    META_FILE,
    Bundle,
    BundleMeta,
    default_bundle_path,
    render,
    sha256_file,
    staging_dir,
    write_bundle,
)
from bmd_edge.bundle_trust import PINNED_DIGESTS, TRUSTED_KEYS_ENV, sign, write_keypair
from bmd_edge.cli import app
from bmd_edge.errors import BundleError
from bmd_edge.runtime.predictor import Predictor
from bmd_edge.runtime.tiny import resign_tiny_bundle, write_tiny_bundle

SHIPPED = default_bundle_path()
SAMPLE = SHIPPED / "samples" / "synthetic_hip_f72.png"


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shipped") / "export"
    shutil.copytree(SHIPPED, out, ignore=shutil.ignore_patterns("samples", "*.py", "*.md"))
    return out


@pytest.fixture()
def shipped(shipped_copy: Path, tmp_path: Path) -> Path:
    """A fresh copy of the shipped bundle per test (bundle.json copied, model files hard-linked
    or copied), so a test may edit anything."""
    out = tmp_path / "export"
    out.mkdir()
    for p in shipped_copy.iterdir():
        try:
            (out / p.name).hardlink_to(p) if p.name != META_FILE else shutil.copy(p, out / p.name)
        except OSError:
            shutil.copy(p, out / p.name)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


def _copy_tiny(tiny: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "t"))


def _rehash(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """The attacker's path: edit bundle.json, then re-hash everything with the package's own
    functions (sha256_file for `files`, render for the exact text) — but no private key."""
    path = folder / META_FILE
    d = json.loads(path.read_text(encoding="utf-8"))
    edit(d)
    d["files"] = {f: sha256_file(folder / f) for f in d.get("files", {})
                  if (folder / f).is_file()} if isinstance(d.get("files"), dict) else d.get("files")
    try:
        text = render(BundleMeta.from_dict(d))
    except BundleError:
        text = json.dumps(d, indent=2)  # invalid on purpose: write it as is
    path.write_text(text, encoding="utf-8")


def _refused(folder: Path, match: str, **kw: Any) -> None:
    with pytest.raises(BundleError, match=match):
        b = Bundle.load(folder, **kw)
        b.verified_file(b.choose_variant("openvino").name)
    res = CliRunner().invoke(app, ["predict", str(SAMPLE), "--age", "70", "--sex", "F",
                                   "--model", str(folder)]
                             + (["--allow-unsigned"] if kw.get("allow_unsigned") else []))
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.output


# -- the shipped bundle is pinned ------------------------------------------------------------------
def test_shipped_bundle_is_pinned_and_round_trips() -> None:
    b = Bundle.load()
    assert b.trust.kind == "pinned" and b.meta.digest() in PINNED_DIGESTS
    text = (SHIPPED / META_FILE).read_text(encoding="utf-8")
    assert render(BundleMeta.from_dict(json.loads(text))) == text
    assert json.loads(text)["format_version"] == FORMAT_VERSION
    for name in b.installed():
        assert b.verified_file(name).is_file()


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["input"]["preprocess"].update(mean=0.3), "not signed"),
    (lambda d: d["interval"].update(halfwidth_gcm2=0.2), "not signed"),
    (lambda d: d["references"].update(screening_threshold_gcm2=0.95), "not signed"),
    (lambda d: d.update(intended_use="Diagnosis."), "not signed"),
], ids=["mean-0.3", "halfwidth", "threshold", "intended-use"])
def test_rehashed_semantic_edits_are_refused(shipped: Path, edit: Any, match: str) -> None:
    _rehash(shipped, edit)
    _refused(shipped, match)


def test_rehashed_edit_with_allow_unsigned_still_fails_the_embedded_copy(shipped: Path) -> None:
    """--allow-unsigned waives the signature, not the model files' own copy of the metadata."""
    _rehash(shipped, lambda d: d["input"]["preprocess"].update(mean=0.3))
    _refused(shipped, "metadata inside model_int8.xml differs", allow_unsigned=True)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["references"].update(screening_threshold_gcm2="abc"),
     r"references\.screening_threshold_gcm2: expected a number"),
    (lambda d: d["interval"].update(halfwidth_gcm2=-0.1), r"interval\.halfwidth_gcm2: .* > 0"),
    (lambda d: d["variants"]["openvino-int8"].update(file="../elsewhere/evil.xml"),
     r"variants\.openvino-int8\.file: '\.\./elsewhere/evil\.xml' must be a plain relative"),
    (lambda d: d["variants"]["openvino-int8"].update(file="/tmp/evil.xml"),
     r"must be a plain relative path"),
    (lambda d: d["variants"]["onnx-int8"].update(files=["model_int8.onnx", "extra.onnx"]),
     r"variants\.onnx-int8\.files\[1\]: 'extra\.onnx' is not listed"),
    (lambda d: d.update(variants=list(d["variants"].values())), r"variants: expected an object"),
    (lambda d: d["variants"]["onnx-int8"].pop("file"), r"variants\.onnx-int8\.file: missing"),
    (lambda d: d["interval"].update(coverage="abc"), r"interval\.coverage: expected a number"),
    (lambda d: d["input"]["preprocess"].update(size=64), r"input\.shapes: .* disagrees"),
    (lambda d: d["input"]["preprocess"].update(size=0), r"input\.preprocess: preprocess size"),
    (lambda d: d["references"]["who"].update(normal_min_t=-3.0), r"references\.who: "),
    (lambda d: d.update(format_version="bmd-edge-bundle/1"), "older bundle format"),
    (lambda d: d.update(format_version="bmd-edge-bundle/9"), r"'bmd-edge-bundle/9' is not supp"),
    (lambda d: d.update(extra=1), r"extra: unknown key"),
], ids=["threshold-abc", "negative-halfwidth", "dotdot-path", "absolute-path", "unlisted-file",
        "variants-list", "missing-file-key", "coverage-abc", "size-vs-graph", "size-0",
        "who-order", "v1", "v9", "unknown-key"])
def test_malformed_rehashed_metadata_names_the_key(shipped: Path, edit: Any, match: str) -> None:
    _rehash(shipped, edit)
    _refused(shipped, match)


def test_nan_and_deep_nesting_are_refused(shipped: Path) -> None:
    p = shipped / META_FILE
    p.write_text(p.read_text().replace('"screening_threshold_gcm2": 0.899',
                                       '"screening_threshold_gcm2": NaN'))
    _refused(shipped, "NaN is not a number JSON allows")
    p.write_text("[" * 200_000 + "]" * 200_000)
    _refused(shipped, "nested deeper than")


def test_any_byte_of_bundle_json_is_refused(shipped: Path) -> None:
    """Flip 400 sampled bytes of bundle.json (one at a time): each is refused, never run."""
    p = shipped / META_FILE
    orig = p.read_bytes()
    for i in random.Random(13).sample(range(len(orig)), 400):
        data = bytearray(orig)
        data[i] = data[i] ^ 0x01 if data[i] != 0x0A else 0x20
        p.write_bytes(bytes(data))
        with pytest.raises(BundleError):
            Bundle.load(shipped)
    p.write_bytes(orig)
    Bundle.load(shipped)


@pytest.mark.parametrize("name", ["model_int8.xml", "model_int8.bin", "model_int8.onnx"])
def test_any_byte_of_a_loaded_model_file_is_refused(shipped: Path, name: str) -> None:
    path = shipped / name
    orig = path.read_bytes()
    path.unlink()  # break the hard link: edit a private copy
    variant = "onnx-int8" if name.endswith(".onnx") else "openvino-int8"
    for i in random.Random(name).sample(range(len(orig)), 5):
        data = bytearray(orig)
        data[i] ^= 0x80
        path.write_bytes(bytes(data))
        with pytest.raises(BundleError, match=f"checksum mismatch for file {name}"):
            Bundle.load(shipped).verified_file(variant)
    path.write_bytes(orig)


def test_symlink_out_of_the_folder_is_refused(shipped: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    shutil.copy(shipped / "model_int8.onnx", outside)
    (shipped / "model_int8.onnx").unlink()
    (shipped / "model_int8.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="resolves outside the bundle folder"):
        Bundle.load(shipped).verified_file("onnx-int8")


def test_fp32_on_the_shipped_bundle_says_how_to_get_it() -> None:
    res = CliRunner().invoke(app, ["predict", str(SAMPLE), "--age", "70", "--sex", "F",
                                   "--variant", "openvino-fp32"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "installed variants: openvino-int8, onnx-int8" in res.stderr
    assert "fp32 files are not shipped" in res.stderr


# -- signed bundles --------------------------------------------------------------------------------
@pytest.fixture()
def own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A key this test generates; nothing trusts it until the test says so."""
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    write_keypair(priv, pub)
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return priv, pub


def _signed_with(tiny: Path, tmp_path: Path, key: Path) -> Path:
    b = _copy_tiny(tiny, tmp_path)
    meta = BundleMeta.from_dict(json.loads((b / META_FILE).read_text()))
    meta = replace(meta, signature=sign(replace(meta, signature=None), key))
    (b / META_FILE).write_text(render(meta))
    return b


def test_signed_bundle_needs_a_trusted_key(tiny: Path, tmp_path: Path, own_key: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    priv, pub = own_key
    b = _signed_with(tiny, tmp_path, priv)
    _refused(b, "signed by key .* which you do not trust")
    assert Bundle.load(b, trusted_keys=(pub,)).trust.kind == "signed"
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(pub))
    p = Predictor.load(b, backend="onnxruntime", threads=1)
    assert p.bundle.trust.kind == "signed" and p.bundle_warnings == ()
    (tmp_path / "config" / "bmd-edge" / "trusted_keys").mkdir(parents=True)
    shutil.copy(pub, tmp_path / "config" / "bmd-edge" / "trusted_keys" / "site.pub")
    monkeypatch.delenv(TRUSTED_KEYS_ENV)
    assert Bundle.load(b).trust.kind == "signed"


def test_edit_after_signing_is_refused_even_with_allow_unsigned(
        tiny: Path, tmp_path: Path, own_key: Any) -> None:
    priv, pub = own_key
    b = _signed_with(tiny, tmp_path, priv)
    p = b / META_FILE
    p.write_text(p.read_text().replace('"halfwidth_gcm2": 0.08', '"halfwidth_gcm2": 0.02'))
    _refused(b, "signature does not match its content", trusted_keys=(pub,))
    _refused(b, "signature does not match its content", allow_unsigned=True)


def test_unsigned_runs_only_with_allow_unsigned_and_warns_every_time(
        tiny: Path, tmp_path: Path, own_key: Any, toy_hip_png: Path) -> None:
    b = write_tiny_bundle(tmp_path / "unsigned", signed=False)
    _refused(b, "is not signed")
    runner = CliRunner()
    for _ in range(2):
        res = runner.invoke(app, ["predict", str(toy_hip_png), "--age", "70", "--sex", "F",
                                  "--model", str(b), "--allow-unsigned", "--json"])
        assert res.exit_code == 0, res.output
        assert any("--allow-unsigned" in w for w in json.loads(res.stdout)["warnings"])


def test_metadata_inside_the_model_must_equal_bundle_json(tiny: Path, tmp_path: Path) -> None:
    """A trusted signer signs an edited bundle.json but ships the old model files."""
    from bmd_edge.runtime.tiny import tiny_signing_key

    b = _copy_tiny(tiny, tmp_path)
    resign_tiny_bundle(b, lambda d: d.update(intended_use="Edited, re-stamped, re-signed."))
    Bundle.load(b).verified_file("onnx-int8")            # a proper re-export: accepted
    d = json.loads((b / META_FILE).read_text())
    d.pop("signature")
    d["intended_use"] = "Edited again, model files left as they were."
    meta = BundleMeta.from_dict(d)
    meta = replace(meta, signature=sign(meta, tiny_signing_key(tmp_path / "keys")[0]))
    (b / META_FILE).write_text(render(meta))
    assert Bundle.load(b).trust.kind == "signed"
    with pytest.raises(BundleError, match="metadata inside model_int8.onnx differs"):
        Bundle.load(b).verified_file("onnx-int8")


# -- writing ---------------------------------------------------------------------------------------
def test_write_is_atomic_and_needs_overwrite(tiny: Path, tmp_path: Path) -> None:
    meta = Bundle.load(tiny).meta
    out = tmp_path / "w"
    for attempt in range(2):
        stage = staging_dir(out)
        for f in meta.files:
            shutil.copy(tiny / f, stage / f)
        if attempt == 1:
            with pytest.raises(BundleError, match="already exists"):
                write_bundle(stage, meta, out)
        write_bundle(stage, meta, out, overwrite=True, sign_key=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
    assert Bundle.load(out, allow_unsigned=True).meta.files == meta.files
