"""Fold weight QuantizeLinear nodes of a QDQ ONNX graph into int8 initializers.

Why: NNCF's QDQ export keeps every weight in fp32 followed by a QuantizeLinear →
DequantizeLinear pair, so an "int8" ONNX file is as large as the fp32 one (92 MB for ResNet34).
Quantizing those constant weights offline — exactly what the QuantizeLinear node would compute
at run time (round half to even, add the zero point, saturate) — and feeding the int8 tensor
straight into the DequantizeLinear node gives the same numbers in a quarter of the bytes.
ONNX Runtime and OpenVINO both read the result. Only onnx + numpy are used (torch-free).

The weight DequantizeLinear nodes then lose their explicit all-zero zero-point input (ONNX's
default zero point is 0, so the numbers do not change). Why: OpenVINO turns an explicit zero
point into a `Subtract` on the weights, and where that constant was shared and reshaped it is not
folded away; its CPU plugin then treats the weights as asymmetric and runs the layer in f32. On
the shipped model that left 11 of 21 convolutions and 44 of 44 fully-connected layers in f32;
without the zero points 21/21 and 43/44 run int8, and a quick batch-1 check went from 4.2 to
2.1 ms (benchmarks/results/latency.md has the measured numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmd_edge.errors import BundleError


@dataclass(frozen=True)
class FoldReport:
    """What folding did, for the export log and the tests."""

    folded: int  # weight QuantizeLinear nodes replaced by int8 initializers
    kept: int  # QuantizeLinear nodes left alone (activations: their input is not constant)
    zero_points_dropped: int  # all-zero weight zero points removed from DequantizeLinear nodes
    bytes_before: int  # serialized model size before folding
    bytes_after: int  # serialized model size after folding


def _constants(model: "onnx.ModelProto") -> dict[str, np.ndarray]:  # noqa: F821
    """Initializers plus the outputs of Constant nodes, by tensor name."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def quantize_linear(w: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """numpy QuantizeLinear (ONNX semantics): saturate(round_half_even(w / scale) + zero_point)."""
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.asarray(zero_point)
    if scale.ndim == 1 and w.ndim > 1:  # per-axis: broadcast along `axis`
        shape = [1] * w.ndim
        shape[axis % w.ndim] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    info = np.iinfo(zp.dtype)
    q = np.rint(w.astype(np.float32) / scale) + zp.astype(np.float32)
    return np.clip(q, info.min, info.max).astype(zp.dtype)


def fold_weight_quantizers(src: str | Path, dst: str | Path) -> FoldReport:
    """Rewrite `src` (QDQ ONNX) into `dst` with constant weights stored as int8/uint8."""
    import onnx
    from onnx import numpy_helper

    src, dst = Path(src), Path(dst)
    try:
        model = onnx.load(str(src))
    except Exception as err:  # noqa: BLE001 - onnx raises several unrelated types
        raise BundleError(f"cannot read ONNX model {src}: {err}; expected a QDQ ONNX export") from None
    consts = _constants(model)
    init_names = {t.name for t in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1

    folded, kept, drop_nodes, drop_inits, new_inits = 0, 0, [], set(), []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        x, scale_name = node.input[0], node.input[1]
        zp_name = node.input[2] if len(node.input) > 2 else ""
        if x not in init_names or scale_name not in consts or (zp_name and zp_name not in consts):
            kept += 1
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        zp = consts[zp_name] if zp_name else np.zeros((), dtype=np.uint8)
        q = quantize_linear(consts[x], consts[scale_name], zp, axis)
        # The int8 tensor takes the QuantizeLinear's output name, so the DequantizeLinear that
        # reads it needs no rewiring.
        new_inits.append(numpy_helper.from_array(q, name=node.output[0]))
        drop_nodes.append(node)
        if consumers.get(x, 0) == 1:
            drop_inits.add(x)
        folded += 1

    for node in drop_nodes:
        model.graph.node.remove(node)
    keep = [t for t in model.graph.initializer if t.name not in drop_inits]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + new_inits)
    dropped = _drop_zero_weight_zero_points(model)
    _remove_unused_constants(model)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return FoldReport(folded, kept, dropped, src.stat().st_size, dst.stat().st_size)


def _drop_zero_weight_zero_points(model: "onnx.ModelProto") -> int:  # noqa: F821
    """Remove the zero-point input of weight DequantizeLinear nodes where it is all zeros."""
    consts = _constants(model)
    init_names = {t.name for t in model.graph.initializer}
    dropped = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[0] not in init_names:
            continue
        zp = consts.get(node.input[2])
        if zp is not None and not np.any(zp):
            del node.input[2]
            dropped += 1
    return dropped


def _remove_unused_constants(model: "onnx.ModelProto") -> None:  # noqa: F821
    """Drop initializers and Constant nodes nothing reads any more (ORT warns about each)."""
    from onnx import AttributeProto

    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
           for node in model.graph.node for a in node.attribute):
        return  # subgraphs may read outer-scope names: leave everything in place
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    dead = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]
    for node in dead:
        model.graph.node.remove(node)
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
