"""This CPU's sustained matmul peak, measured IN THE SAME RUNTIME as the model.

"The model reaches X % of peak" only means something against a peak the same runtime, thread
count and precision can actually reach here, not a datasheet number. So we build a one-node
graph (a large M×K·K×N MatMul), run it in OpenVINO and ONNX Runtime (and torch.matmul in the
torch worker), and report GFLOP/s of the fastest call of a timed loop:

* fp32: MatMul(A fp32 input, B fp32 constant)
* int8: A → QuantizeLinear(u8) → DequantizeLinear, B int8 constant → DequantizeLinear, MatMul —
  the QDQ pattern both runtimes fuse into an int8 kernel (VNNI where present). For ORT we also
  try a plain MatMulInteger(u8 input, i8 constant) and keep the faster of the two, named.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bmd_edge.errors import DependencyError


@dataclass(frozen=True)
class PeakConfig:
    """How the peak is measured."""

    size: int = 1024          # M = K = N: large enough that the kernel, not overhead, dominates
    seconds: float = 1.0      # timed loop length per measurement (median of its iterations)
    warmup: int = 3           # untimed calls first (allocation, JIT, caches)


@dataclass(frozen=True)
class Peak:
    """One measured peak."""

    runtime: str              # "openvino" | "onnxruntime" | "torch"
    precision: str            # "fp32" | "int8"
    gflops: float             # 2·M·K·N / fastest call seconds / 1e9 (GOP/s for int8)
    graph: str                # which graph gave it, e.g. "QDQ MatMul" or "MatMulInteger"
    size: int                 # M = K = N
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as err:  # pragma: no cover
        raise DependencyError("building the peak matmul graph needs 'onnx': pip install onnx") from err
    return onnx


def matmul_model(size: int, kind: str) -> Any:
    """A single-MatMul ONNX model: kind = "fp32" | "qdq" | "matmulinteger"."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    k = n = size
    inits = []
    if kind == "fp32":
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B"))
        nodes = [helper.make_node("MatMul", ["A", "B"], ["Y"])]
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    elif kind == "qdq":
        inits += [
            numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "Bq"),
            numpy_helper.from_array(np.array(0.02, np.float32), "sa"),
            numpy_helper.from_array(np.array(128, np.uint8), "za"),
            numpy_helper.from_array(np.array(0.01, np.float32), "sb"),
            numpy_helper.from_array(np.array(0, np.int8), "zb"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["A", "sa", "za"], ["Aq"]),
            helper.make_node("DequantizeLinear", ["Aq", "sa", "za"], ["Ad"]),
            helper.make_node("DequantizeLinear", ["Bq", "sb", "zb"], ["Bd"]),
            helper.make_node("MatMul", ["Ad", "Bd"], ["Y"]),
        ]
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    elif kind == "matmulinteger":
        inits.append(numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "Bq"))
        nodes = [helper.make_node("MatMulInteger", ["A", "Bq"], ["Y"])]
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        raise ValueError(f"unknown peak graph kind {kind!r}; expected fp32, qdq or matmulinteger")
    graph = helper.make_graph(
        nodes, f"peak_{kind}",
        [helper.make_tensor_value_info("A", a_type, [size, k])],
        [helper.make_tensor_value_info("Y", y_type, [size, n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model


def _time(fn: Callable[[], Any], cfg: PeakConfig) -> float:
    """Fastest seconds per call over a `cfg.seconds` loop.

    The fastest call, not the median: on a shared machine other processes only ever slow a call
    down, so the minimum is the best estimate of what this CPU can sustain through one kernel.
    """
    for _ in range(cfg.warmup):
        fn()
    times: list[float] = []
    end = time.perf_counter() + cfg.seconds
    while time.perf_counter() < end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def _input(size: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if kind == "matmulinteger":
        return rng.integers(0, 256, (size, size), dtype=np.uint8)
    return rng.standard_normal((size, size)).astype(np.float32)


def _ort_run(model: Any, kind: str, threads: int, cfg: PeakConfig) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"A": _input(cfg.size, kind)}
    return _time(lambda: sess.run(None, feed), cfg)


def _ov_run(model: Any, kind: str, threads: int, cfg: PeakConfig) -> float:
    import openvino as ov

    core = ov.Core()
    ov_model = core.read_model(model.SerializeToString(), b"")
    compiled = core.compile_model(ov_model, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    })
    req = compiled.create_infer_request()
    x = _input(cfg.size, kind)
    return _time(lambda: req.infer({0: x}), cfg)


def _gflops(size: int, seconds: float) -> float:
    return 2.0 * size**3 / seconds / 1e9


def measure_runtime_peaks(runtime: str, threads: int, cfg: PeakConfig = PeakConfig()) -> list[Peak]:
    """fp32 and int8 matmul peaks of `runtime` ("openvino" | "onnxruntime") at `threads`."""
    run = {"openvino": _ov_run, "onnxruntime": _ort_run}[runtime]
    out = [Peak(runtime, "fp32", _gflops(cfg.size, run(matmul_model(cfg.size, "fp32"), "fp32", threads, cfg)),
                "MatMul fp32", cfg.size, threads)]
    int8 = [("QDQ MatMul", "qdq")] + ([("MatMulInteger", "matmulinteger")] if runtime == "onnxruntime" else [])
    best: Peak | None = None
    for label, kind in int8:
        g = _gflops(cfg.size, run(matmul_model(cfg.size, kind), kind, threads, cfg))
        if best is None or g > best.gflops:
            best = Peak(runtime, "int8", g, label, cfg.size, threads)
    assert best is not None
    return out + [best]


def measure_torch_peak(threads: int, cfg: PeakConfig = PeakConfig()) -> Peak:
    """torch.matmul fp32 peak; only called inside the torch worker process."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(cfg.size, cfg.size)
    b = torch.randn(cfg.size, cfg.size)
    with torch.inference_mode():
        sec = _time(lambda: torch.matmul(a, b), cfg)
    return Peak("torch", "fp32", _gflops(cfg.size, sec), "torch.matmul fp32", cfg.size, threads)
