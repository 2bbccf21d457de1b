"""A tiny but real bundle (hand-built ONNX graph + bundle.json) for tests and smoke benchmarks.

Why: the runtime must be testable with real OpenVINO / ONNX Runtime sessions and a real,
checksummed bundle without training a network. The graph has the exact bmd-edge I/O contract
(inputs image (B,1,S,S), values (B,F), present (B,F); outputs bmd (B,), field_attention (B,F),
embedding (B,F+1)) and a closed form a test can compute by hand:

    bmd             = 0.85 + 0.1 · mean(image) + Σ_f w_f · values_f · present_f
    field_attention = softmax_f(a_f · values_f · present_f)
    embedding       = [values_f · present_f for f] ‖ mean(image)

Needs the `onnx` package (the [train] extra), imported inside the function.

The tiny bundle also carries a tiny *trained* hip locator (`tiny_locator.onnx` beside this
module, made by `python -m bmd_edge.locate.tiny`, trained on the toy films of `runtime/toy.py`):
tests run the real locate → refuse / per-hip path on toy films.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TINY_W = np.linspace(-0.02, 0.03, 10).astype(np.float32)  # per-field weight on values·present
TINY_A = np.linspace(0.5, 1.5, 10).astype(np.float32)     # per-field attention logit scale
TINY_BIAS = 0.85
TINY_IMAGE_GAIN = 0.1
TINY_LOCATOR = Path(__file__).with_name("tiny_locator.onnx")
TINY_HIP_FILM_THRESHOLD = 0.5    # toy non-hips score < 0.05, toy hips > 0.95 (metrics file)
TINY_HEAD_THRESHOLD = 0.3


def tiny_reference(image: np.ndarray, values: np.ndarray,
                   present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tiny graph's outputs computed in numpy (the hand-computed expectation)."""
    vp = values * present                                          # (B, F)
    bmd = TINY_BIAS + TINY_IMAGE_GAIN * image.reshape(len(image), -1).mean(1) + vp @ TINY_W
    logits = vp * TINY_A
    e = np.exp(logits - logits.max(1, keepdims=True))
    return bmd.astype(np.float32), (e / e.sum(1, keepdims=True)).astype(np.float32)


def tiny_onnx(path: Path, size: int = 32, n_fields: int = 10) -> Path:
    """Write the tiny ONNX graph (opset 17, dynamic batch) to `path`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["im_mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["values", "present"], ["vp"]),
        helper.make_node("MatMul", ["vp", "w"], ["lin2"]),
        helper.make_node("Squeeze", ["lin2", "sq_axes"], ["lin"]),
        helper.make_node("Mul", ["im_mean", "k"], ["imk"]),
        helper.make_node("Add", ["lin", "imk"], ["s"]),
        helper.make_node("Add", ["s", "b"], ["bmd"]),
        helper.make_node("Mul", ["vp", "a"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["field_attention"], axis=1),
        helper.make_node("Unsqueeze", ["im_mean", "sq_axes"], ["im_mean2"]),
        helper.make_node("Concat", ["vp", "im_mean2"], ["embedding"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(TINY_W[:n_fields].reshape(n_fields, 1), "w"),
        numpy_helper.from_array(np.array([1], np.int64), "sq_axes"),
        numpy_helper.from_array(np.array(TINY_IMAGE_GAIN, np.float32), "k"),
        numpy_helper.from_array(np.array(TINY_BIAS, np.float32), "b"),
        numpy_helper.from_array(TINY_A[:n_fields], "a"),
    ]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "bmd_edge_tiny",
        [helper.make_tensor_value_info("image", f32, ["B", 1, size, size]),
         helper.make_tensor_value_info("values", f32, ["B", n_fields]),
         helper.make_tensor_value_info("present", f32, ["B", n_fields])],
        [helper.make_tensor_value_info("bmd", f32, ["B"]),
         helper.make_tensor_value_info("field_attention", f32, ["B", n_fields]),
         helper.make_tensor_value_info("embedding", f32, ["B", n_fields + 1])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_signing_key(folder: str | Path) -> tuple[Path, Path]:
    """The tiny bundle's Ed25519 key pair as PEM files in `folder`: (private, public).

    A fixed, published key: it proves nothing to anyone and is trusted only where a test
    suite puts its public key into $BMD_EDGE_TRUSTED_KEYS (tests/conftest.py does).
    """
    import hashlib

    from bmd_edge.bundle_trust import write_keypair

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    priv, pub = folder / "tiny_test_key.pem", folder / "tiny_test_key.pub"
    if not (priv.is_file() and pub.is_file()):
        write_keypair(priv, pub, hashlib.sha256(b"bmd-edge tiny test bundle key").digest())
    return priv, pub


def test_meta(name: str, size: int, variants: dict[str, tuple[str, str, str]], *,
              halfwidth: float = 0.08, training_data: str = "none") -> Any:
    """A `bundle.BundleMeta` for a test bundle: variants as name → (file, runtime, precision);
    an .xml variant uses its .bin too."""
    from bmd_edge import __version__
    from bmd_edge.bundle import (BundleMeta, ClinicalSchema, InputSpec, Interval, ModelInfo,
                                 OutputSpec, Provenance, References, Variant)
    from bmd_edge.preprocess import PreprocessSpec
    from bmd_edge.references import SCREENING_THRESHOLD_GCM2, default_references
    from bmd_edge.schema import schema_to_dict

    def files(f: str) -> tuple[str, ...]:
        return (f, str(Path(f).with_suffix(".bin"))) if f.endswith(".xml") else (f,)

    return BundleMeta(
        model=ModelInfo(name, "0.0.1", {}, None),
        intended_use="Test fixture only: not a trained model; not for diagnosis.",
        input=InputSpec(PreprocessSpec(size=size),
                        ClinicalSchema.from_dict(schema_to_dict(), "input.schema")),
        output=OutputSpec("bmd", "g/cm2", "GE Lunar femoral neck"),
        references=References(default_references(), SCREENING_THRESHOLD_GCM2),
        interval=Interval("split-conformal", 0.9, halfwidth, 0),
        variants={n: Variant(n, f, files(f), rt, prec) for n, (f, rt, prec) in variants.items()},
        provenance=Provenance(training_data, {}, {"bmd-edge": __version__}))


def finish_test_bundle(stage: Path, meta: Any, out: str | Path, signed: bool = True) -> Path:
    """Stamp the model files in `stage` with `meta`, hash, sign with the tiny test key (unless
    `signed=False`) and move the folder to `out` — what `bmd-edge export` does, minus training."""
    import tempfile

    from bmd_edge.bundle import write_bundle
    from bmd_edge.bundle_embed import stamp

    for v in meta.variants.values():
        stamp(stage / v.file, meta.embedded())
    if not signed:
        return write_bundle(stage, meta, out, overwrite=True)
    with tempfile.TemporaryDirectory() as keys:
        return write_bundle(stage, meta, out, overwrite=True,
                            sign_key=tiny_signing_key(keys)[0])


def add_tiny_locator(stage: Path, meta: Any) -> Any:
    """Copy the tiny trained locator into `stage` as ONNX and OpenVINO IR (torch-free: OpenVINO
    reads the ONNX) and return `meta` with its `locator` section."""
    import json
    import shutil
    from dataclasses import replace

    import openvino as ov

    from bmd_edge.bundle import LocatorSection, Variant
    from bmd_edge.locate.locator import SPEC_KEY, read_spec

    shutil.copyfile(TINY_LOCATOR, stage / "locator.onnx")
    spec = read_spec(stage / "locator.onnx")
    ir = ov.Core().read_model(str(stage / "locator.onnx"))
    ir.set_rt_info(json.dumps(spec.to_dict(), sort_keys=True), [SPEC_KEY])
    ov.save_model(ir, str(stage / "locator.xml"), compress_to_fp16=False)
    del ir
    metrics_file = TINY_LOCATOR.with_name("tiny_locator_metrics.json")
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    section = LocatorSection(
        name="bmd-edge-tiny-locator", version="0.0.1", spec=spec,
        variants={"openvino": Variant("openvino", "locator.xml",
                                      ("locator.xml", "locator.bin"), "openvino", "fp32"),
                  "onnx": Variant("onnx", "locator.onnx", ("locator.onnx",),
                                  "onnxruntime", "fp32")},
        hip_film_threshold=TINY_HIP_FILM_THRESHOLD, head_threshold=TINY_HEAD_THRESHOLD,
        metrics=metrics,
        provenance={"training_data": "toy films (runtime/toy.py): 240 hips, 80 pelvises, "
                                     "200 other shapes; python -m bmd_edge.locate.tiny"})
    return replace(meta, locator=section)


def write_tiny_bundle(out: str | Path, size: int = 32, halfwidth: float = 0.08,
                      signed: bool = True, locator: bool = True, crop: bool = False) -> Path:
    """A complete, checksummed bundle at `out`: the tiny graph as OpenVINO IR and ONNX variants,
    and (unless `locator=False`: a bundle from before issue #15) the tiny trained locator.
    `crop=True`: the model reads canonical neck crops (`locate.crop.CropSpec(size=size)` in the
    input section) instead of whole films.

    Signed with `tiny_signing_key` unless `signed=False`. (The tiny graph has no int8 ops; the
    variant labels only exercise variant selection.)
    """
    from bmd_edge.bundle import staging_dir

    out = Path(out)
    stage = staging_dir(out)
    tiny_onnx(stage / "model_int8.onnx", size)
    tiny_onnx(stage / "model_fp32.onnx", size)
    import openvino as ov  # the IR variant exercises OpenVINO's own format, not only ONNX

    ov.save_model(ov.convert_model(str(stage / "model_int8.onnx")), str(stage / "model_int8.xml"),
                  compress_to_fp16=False)
    meta = test_meta("bmd-edge-tiny", size, {
        "openvino-int8": ("model_int8.xml", "openvino", "int8"),
        "onnx-int8": ("model_int8.onnx", "onnxruntime", "int8"),
        "onnx-fp32": ("model_fp32.onnx", "onnxruntime", "fp32")},
        halfwidth=halfwidth, training_data="none (hand-built closed-form graph)")
    if crop:
        from dataclasses import replace

        from bmd_edge.locate.crop import CropSpec

        meta = replace(meta, input=replace(meta.input, crop=CropSpec(size=size)))
    if locator:
        meta = add_tiny_locator(stage, meta)
    return finish_test_bundle(stage, meta, out, signed)


def resign_tiny_bundle(folder: str | Path, edit: Any) -> None:
    """Edit a tiny bundle's bundle.json as a dict (`edit(d)`), re-stamp its model files, re-hash
    and sign again with the tiny key: a legitimate re-export, for tests needing an edited bundle
    that is still trusted."""
    import json
    import tempfile
    from dataclasses import replace

    from bmd_edge.bundle import BundleMeta, render, sha256_file
    from bmd_edge.bundle_embed import stamp
    from bmd_edge.bundle_trust import sign

    folder = Path(folder)
    path = folder / "bundle.json"
    d = json.loads(path.read_text(encoding="utf-8"))
    d.pop("signature", None)
    edit(d)
    meta = BundleMeta.from_dict(d)
    for v in meta.variants.values():
        if (folder / v.file).is_file():
            stamp(folder / v.file, meta.embedded())
    files = {f: sha256_file(folder / f) if (folder / f).is_file() else h
             for f, h in meta.files.items()}
    meta = replace(meta, files=files)
    with tempfile.TemporaryDirectory() as keys:
        meta = replace(meta, signature=sign(meta, tiny_signing_key(keys)[0]))
    path.write_text(render(meta), encoding="utf-8")
