"""Give an exported BMD graph a third output, `embedding`: the features its regression head reads.

Why: the runtime's shift score (`bmd_edge/reliability`) compares a case's own model features with
the training crops' statistics, so the shipped graph must expose them. The head of every bmd-edge
model (`model.encoders.RegressionHead`) begins with a LayerNorm over the fused representation
(XAttn: the layer-mixed (image ‖ metadata) pool, 2·d_model wide); its input tensor is the
embedding. Adding it as a graph output after export, rather than changing `forward`, leaves the
fp32 and the NNCF int8 (QDQ) graphs' computation untouched and works the same for both, and for
a bundle exported before this existed. Output name: `EMBEDDING` ("embedding"), shape (batch, D).
"""

from __future__ import annotations

from pathlib import Path

from bmd_edge.errors import BundleError
from bmd_edge.reliability.section import EMBEDDING_OUTPUT

HEAD_PREFIX = "/head/"


def head_input_name(graph: object) -> str:
    """The tensor entering the head's first LayerNormalization (BundleError if there is none)."""
    for node in graph.node:  # type: ignore[attr-defined]
        if node.op_type == "LayerNormalization" and node.name.startswith(HEAD_PREFIX):
            return str(node.input[0])
    raise BundleError("no regression-head LayerNormalization (a node named /head/...) in the "
                      "graph; cannot expose the embedding output")


def add_embedding_output(src: str | Path, dst: str | Path | None = None) -> Path:
    """Rewrite `src` (to `dst`, default in place) with an `embedding` (batch, D) output."""
    import onnx
    from onnx import TensorProto, helper

    src = Path(src)
    dst = Path(dst) if dst is not None else src
    model = onnx.load(str(src))
    g = model.graph
    if any(o.name == EMBEDDING_OUTPUT for o in g.output):
        if dst != src:
            onnx.save(model, str(dst))
        return dst
    name = head_input_name(g)
    g.node.append(helper.make_node("Identity", [name], [EMBEDDING_OUTPUT],
                                   name="/embedding_output/Identity"))
    g.output.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT,
                                                  ["batch", None]))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst
