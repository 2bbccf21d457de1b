"""Float rows for the benchmark without shipping float files: derive them from the int8 ONNX.

Why: the shipped bundle carries only int8 files (the `export/` size budget), so a fresh install
could measure one OpenVINO row. OpenVINO reads the int8 QDQ ONNX as FakeQuantize ops on the
activations and a dequantizing Convert→Subtract→Multiply chain on each int8 weight. Bypassing the
FakeQuantize ops leaves the same network with its int8 weights in float: an honest f32 (or bf16)
run of the shipped model's weights — labelled as such, and *not* the fp32 training weights,
whose rows need a local rebuild (`export/build_default.py`).

The derived IR is cached under the user cache folder, keyed by the source file's sha256, with its
own sha256 beside it; a cached file whose digest differs is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bmd_edge.bundle import sha256_file


def _dequantize_end(fq: Any) -> Any:
    """The Multiply that ends a FakeQuantize's dequantization (FQ → Convert… → Subtract? →
    Multiply, how OpenVINO reads an ONNX QuantizeLinear→DequantizeLinear pair)."""
    node = fq
    for _ in range(5):
        targets = list(node.output(0).get_target_inputs())
        if len(targets) != 1:
            break
        node = targets[0].get_node()
        if node.get_type_name() == "Multiply":
            return node
        if node.get_type_name() not in ("Convert", "Subtract"):
            break
    raise ValueError(f"{fq.get_friendly_name()} is not followed by a dequantizing Multiply")


def _const(node: Any) -> Any:
    """A node's value when it is a Constant, or a Reshape/Unsqueeze of one; else None."""
    if node.get_type_name() == "Constant":
        return node.get_data()
    if node.get_type_name() in ("Reshape", "Unsqueeze", "Squeeze"):
        inner = node.input_value(0).get_node()
        if inner.get_type_name() == "Constant" and node.get_output_partial_shape(0).is_static:
            return inner.get_data().reshape(tuple(node.get_output_shape(0)))
    return None


def _fold_weights(model: Any, ov: Any) -> int:
    """Replace every int8 weight's Convert → Subtract? → Multiply chain by one float32
    Constant, so the runtime sees float weights (not int8 weights decompressed on the fly)."""
    import numpy as np

    folded = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Multiply":
            continue
        a, b = (op.input_value(i).get_node() for i in range(2))
        scale, chain = (_const(b), a) if _const(b) is not None else (_const(a), b)
        if scale is None:
            continue
        zero = None
        if chain.get_type_name() == "Subtract":
            zero = _const(chain.input_value(1).get_node())
            chain = chain.input_value(0).get_node()
        if chain.get_type_name() != "Convert":
            continue
        raw = _const(chain.input_value(0).get_node())
        if raw is None or raw.dtype not in (np.int8, np.uint8):
            continue
        w = raw.astype(np.float32)
        if zero is not None:
            w = w - zero.astype(np.float32)
        w = (w * scale.astype(np.float32)).astype(np.float32)
        new = ov.op.Constant(w)
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(new.output(0))
        folded += 1
    return folded


DERIVED_KEY = "int8-weights-as-float"
LABEL = ("int8 QAT weights dequantized to float (derived from model_int8.onnx at benchmark "
         "time; not the fp32 training weights)")


def dequantized_ir(onnx_file: Path, source_sha256: str, cache: Path) -> Path:
    """An OpenVINO IR of `onnx_file` without its activation FakeQuantize ops (cached)."""
    folder = cache / "derived" / source_sha256[:16]
    xml, record = folder / "model_dequantized.xml", folder / "derived.json"
    if xml.is_file() and record.is_file():
        try:
            want = json.loads(record.read_text(encoding="utf-8"))
            if want == {"source_sha256": source_sha256, "xml": sha256_file(xml),
                        "bin": sha256_file(xml.with_suffix(".bin"))}:
                return xml
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    from bmd_edge.runtime.backends import import_openvino

    ov = import_openvino()
    model = ov.Core().read_model(str(onnx_file))
    bypassed = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            end = _dequantize_end(op)
            for target in list(end.output(0).get_target_inputs()):
                target.replace_source_output(op.input_value(0))
            bypassed += 1
    if bypassed == 0:
        raise ValueError(f"{onnx_file.name} has no FakeQuantize ops: not an int8 QDQ model")
    _fold_weights(model, ov)
    model.validate_nodes_and_infer_types()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}.xml"
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp.replace(xml)
    record.write_text(json.dumps({"source_sha256": source_sha256, "xml": sha256_file(xml),
                                  "bin": sha256_file(xml.with_suffix(".bin"))}), encoding="utf-8")
    return xml
