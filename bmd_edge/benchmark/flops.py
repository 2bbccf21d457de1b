"""Model cost in GFLOPs per inference, COUNTED from the ONNX graph (not guessed from the arch).

We run ONNX shape inference with every dynamic dimension pinned (batch 1, the bundle's image
size), then sum multiply-accumulates of the ops that dominate a CNN + attention model:

* Conv / ConvInteger / QLinearConv: N · C_out · Π(out spatial) · (C_in / groups) · Π(kernel)
* MatMul / MatMulInteger / QLinearMatMul: Π(broadcast batch dims) · M · K · N
* Gemm: M · K · N (transA/transB respected)

Shapes static inference cannot resolve (attention reshapes computed from Shape ops) are taken
from one ONNX Runtime run on zeros at the same pinned input shapes. FLOPs = 2 · MACs. Everything else (adds, norms, softmax, pooling) is left out on purpose: it is
memory-bound, and the matmul-peak comparison in `peak.py` is about MAC throughput. An int8 QDQ
graph counts the same MACs as its fp32 source because the Conv/MatMul nodes are the same.
`onnx` is only needed here and is imported lazily (it is in the `train` extra).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.errors import BundleError, DependencyError

CONV_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv"})
MATMUL_OPS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul"})


@dataclass(frozen=True)
class FlopCount:
    """MACs of one inference at the pinned input shapes, broken down by op type."""

    macs: int                               # total multiply-accumulates
    by_op: dict[str, int] = field(default_factory=dict)   # op type -> MACs
    n_nodes: int = 0                        # Conv/MatMul/Gemm nodes counted
    uncounted: tuple[str, ...] = ()         # heavy nodes whose shapes stayed unknown (named)

    @property
    def gflops(self) -> float:
        return 2.0 * self.macs / 1e9


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - onnx is in the dev/train extras
        raise DependencyError("counting FLOPs needs the 'onnx' package: pip install onnx") from err
    return onnx


def _dims(vi: Any) -> list[int] | None:
    """Concrete dims of a ValueInfo, or None if any dim is unknown."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return None if any(d <= 0 for d in dims) else dims


def _pin_inputs(model: Any, shapes: Mapping[str, tuple[int, ...]], batch: int) -> None:
    """Replace symbolic input dims: explicit shapes win, else a symbolic dim 0 becomes `batch`."""
    init_names = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes:
            want = shapes[inp.name]
            if len(want) != len(dims):
                raise BundleError(
                    f"FLOP count: input {inp.name!r} has rank {len(dims)}, got shape {want}"
                )
            for d, v in zip(dims, want):
                d.dim_value = int(v)
        elif dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch


def count_onnx_flops(
    model_or_path: Any, input_shapes: Mapping[str, tuple[int, ...]] | None = None, batch: int = 1
) -> FlopCount:
    """Count Conv/MatMul/Gemm MACs of an ONNX model (path or ModelProto) for one inference."""
    onnx = _onnx()
    if isinstance(model_or_path, (str, Path)):
        try:   # weights are not needed for shapes: skip external data, keep the file small in RAM
            model = onnx.load(str(model_or_path), load_external_data=False)
        except Exception as err:
            raise BundleError(f"cannot read ONNX model {model_or_path}: {err}") from err
    else:
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
    _pin_inputs(model, input_shapes or {}, batch)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    shapes: dict[str, list[int] | None] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _dims(vi)
    for init in g.initializer:
        shapes[init.name] = list(init.dims)

    heavy = [nd for nd in g.node if nd.op_type in CONV_OPS | MATMUL_OPS | {"Gemm"}]
    unknown = sorted({t for nd in heavy for t in (*nd.input, *nd.output) if t and not shapes.get(t)})
    if unknown:   # e.g. attention reshapes built from Shape ops: ask ONNX Runtime once
        shapes.update(_runtime_shapes(model_or_path, model, unknown))
    by_op: dict[str, int] = {}
    uncounted: list[str] = []
    n = 0
    for node in heavy:
        macs = _node_macs(node, shapes)
        if macs is None:
            uncounted.append(f"{node.op_type}:{node.name or node.output[0]}")
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
        n += 1
    return FlopCount(sum(by_op.values()), by_op, n, tuple(uncounted))


def _runtime_shapes(source: Any, pinned: Any, names: list[str]) -> dict[str, list[int]]:
    """Actual tensor shapes of `names` from one ONNX Runtime run on zeros at the pinned inputs.

    Static shape inference cannot follow shapes computed at run time (Shape → Gather → Concat →
    Reshape, as in attention heads); one real run gives the exact sizes. Empty dict if ORT fails.
    """
    onnx = _onnx()
    try:
        import onnxruntime as ort
        from onnx import helper

        full = onnx.load(str(source)) if isinstance(source, (str, Path)) else onnx.ModelProto()
        if not isinstance(source, (str, Path)):
            full.CopyFrom(source)
        pinned_inputs = {i.name: i for i in pinned.graph.input}
        for inp in full.graph.input:
            if inp.name in pinned_inputs:
                inp.CopyFrom(pinned_inputs[inp.name])
        have = {o.name for o in full.graph.output}
        full.graph.output.extend(onnx.ValueInfoProto(name=t) for t in names if t not in have)
        sess = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
        init = {i.name for i in full.graph.initializer}
        feeds = {}
        for inp in full.graph.input:
            if inp.name in init:
                continue
            dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
            feeds[inp.name] = np.zeros(dims, dtype=dtype)
        outs = [o.name for o in sess.get_outputs()]
        values = sess.run(outs, feeds)
    except Exception:  # noqa: BLE001 - fall back to "uncounted", named in the result
        return {}
    return {n: list(v.shape) for n, v in zip(outs, values) if n in set(names)}


def _node_macs(node: Any, shapes: Mapping[str, list[int] | None]) -> int | None:
    """MACs of one heavy node, or None when a needed shape is unknown."""
    op = node.op_type
    if op in CONV_OPS:
        w_idx = 3 if op == "QLinearConv" else 1
        w, out = shapes.get(node.input[w_idx]), shapes.get(node.output[0])
        if not w or not out:
            return None
        # W: (C_out, C_in/group, k...) already holds the per-group input channels; Y: (N, C_out, ...)
        return out[0] * out[1] * math.prod(out[2:]) * w[1] * math.prod(w[2:])
    if op in MATMUL_OPS:
        a_idx, b_idx = (0, 3) if op == "QLinearMatMul" else (0, 1)
        a, b, out = shapes.get(node.input[a_idx]), shapes.get(node.input[b_idx]), shapes.get(node.output[0])
        if not a or not b or not out:
            return None
        k = a[-1]
        # output (..., M, N) already includes broadcast batch dims; 1-D operands squeeze a dim
        return math.prod(out) * k
    # Gemm: Y = A' B' with A' (M, K)
    a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
    if not a or not out:
        return None
    trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
    k = a[0] if trans_a else a[-1]
    return math.prod(out) * k
