"""A tiny but real bundle (hand-built ONNX graph + bundle.json) for tests and smoke benchmarks.

Why: the runtime must be testable with real OpenVINO / ONNX Runtime sessions and a real,
checksummed bundle without training a network. The graph has the exact bmd-edge I/O contract
(inputs image (B,1,S,S), values (B,F), present (B,F); outputs bmd (B,), field_attention (B,F))
and a closed form a test can compute by hand:

    bmd             = 0.85 + 0.1 · mean(image) + Σ_f w_f · values_f · present_f
    field_attention = softmax_f(a_f · values_f · present_f)

Needs the `onnx` package (the [train] extra), imported inside the function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_W = np.linspace(-0.02, 0.03, 10).astype(np.float32)  # per-field weight on values·present
TINY_A = np.linspace(0.5, 1.5, 10).astype(np.float32)     # per-field attention logit scale
TINY_BIAS = 0.85
TINY_IMAGE_GAIN = 0.1


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
         helper.make_tensor_value_info("field_attention", f32, ["B", n_fields])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_tiny_bundle(out: str | Path, size: int = 32, halfwidth: float = 0.08) -> Path:
    """A complete, checksummed bundle at `out`: the tiny graph as OpenVINO IR and ONNX variants.

    (The tiny graph has no int8 ops; the variant labels only exercise variant selection.)
    """
    from bmd_edge import __version__
    from bmd_edge.bundle import staging_dir, write_bundle
    from bmd_edge.preprocess import PreprocessSpec
    from bmd_edge.references import default_references
    from bmd_edge.schema import schema_to_dict

    out = Path(out)
    stage = staging_dir(out)
    tiny_onnx(stage / "model_int8.onnx", size)
    tiny_onnx(stage / "model_fp32.onnx", size)
    import openvino as ov  # the IR variant exercises OpenVINO's own format, not only ONNX

    ov.save_model(ov.convert_model(str(stage / "model_int8.onnx")), str(stage / "model_int8.xml"),
                  compress_to_fp16=False)
    schema = schema_to_dict()
    meta = {
        "model": {"name": "bmd-edge-tiny", "version": "0.0.1"},
        "intended_use": "Test fixture only: not a trained model; not for diagnosis.",
        "training_data": "none (hand-built closed-form graph)",
        "input": {"preprocess": PreprocessSpec(size=size).to_dict(), "schema": schema,
                  "names": ["image", "values", "present"]},
        "output": {"name": "bmd", "unit": "g/cm2", "scale": "GE Lunar femoral neck"},
        "references": default_references(),
        "screening_threshold_gcm2": 0.899,
        "interval": {"method": "split-conformal", "coverage": 0.9,
                     "halfwidth_gcm2": halfwidth, "n_calibration": 0},
        "variants": {
            "openvino-int8": {"file": "model_int8.xml", "files": ["model_int8.xml",
                              "model_int8.bin"], "runtime": "openvino", "precision": "int8",
                              "metrics": {}},
            "onnx-int8": {"file": "model_int8.onnx", "runtime": "onnxruntime",
                          "precision": "int8", "metrics": {}},
            "onnx-fp32": {"file": "model_fp32.onnx", "runtime": "onnxruntime",
                          "precision": "fp32", "metrics": {}},
        },
        "calibration": {"description": "none"},
        "versions": {"bmd_edge": __version__},
    }
    return write_bundle(stage, meta, out, overwrite=True)
