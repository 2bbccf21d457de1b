"""Measure one variant: accuracy predictions, batch-1 latency percentiles, throughput, first
inference, load time and peak RSS. Runs inside a worker process (see `worker.py`).

Why a process per variant: peak RSS is only honest per process (runtimes never give memory back),
and one runtime's thread pool must not disturb the next. Every worker reads the SAME preprocessed
cases from one .npz written by the parent, so accuracy and latency are compared on equal inputs.

Latency = wall time of one `run(batch of 1)` call, after `warmup` untimed calls, `runs` timed
calls cycling over the cases. Throughput = images/s over a fixed time per (batch, streams) config,
best config named like "b8×2" (batch 8, 2 streams). OpenVINO and ONNX Runtime sessions come from
`bmd_edge.runtime.backends` (the code path `predict` uses); multi-stream OpenVINO throughput
needs its own compiled model (backends pin one stream).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Feeds = tuple[np.ndarray, np.ndarray, np.ndarray]   # image (B,1,S,S), values (B,F), present (B,F)


@dataclass(frozen=True)
class MeasureConfig:
    """How hard each variant is measured."""

    threads: int = 1                                    # intra-op threads for every runtime
    runs: int = 100                                     # timed batch-1 calls for percentiles
    warmup: int = 5                                     # untimed calls before timing
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16)        # throughput candidates
    streams: tuple[int, ...] = (1, 2)                   # OpenVINO stream candidates (≤ threads)
    throughput_seconds: float = 1.0                     # timed window per throughput config
    measure_torch_peak: bool = True                     # torch worker also times torch.matmul

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Measurement:
    """What a worker sends back (JSON-able)."""

    status: str = "ok"                          # "ok" | "failed"
    reason: str = ""                            # why it failed, one line
    predictions: list[float] = field(default_factory=list)   # bmd per case, batch 1, case order
    latency_ms: list[float] = field(default_factory=list)    # every timed batch-1 call
    first_inference_ms: float | None = None     # first call after load (kernels, allocation)
    load_ms: float | None = None                # read + compile / session creation
    throughput: list[dict] = field(default_factory=list)     # {label, batch, streams, img_s}
    rss_baseline_mib: float | None = None       # after imports + case data, before the model
    peak_rss_mib: float | None = None           # process peak after load + batch-1 inference
    peak_rss_all_mib: float | None = None       # process peak after throughput too
    precision_used: str = ""                    # what the runtime reports it computed in
    threads: int | None = None                  # threads the runtime reports
    notes: list[str] = field(default_factory=list)
    torch_peak: dict | None = None              # torch.matmul fp32 peak (torch worker only)


def _rss_now_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_peak_mib() -> float:
    """Peak RSS of THIS address space: /proc VmHWM. Not ru_maxrss, which a child started with
    fork+exec inherits from its (large) parent on Linux, so every worker would report the same."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def _batch(data: Feeds, b: int) -> Feeds:
    idx = np.arange(b) % data[0].shape[0]
    return tuple(np.ascontiguousarray(a[idx]) for a in data)  # type: ignore[return-value]


class _Runner:
    """A loaded model: batch call returning bmd, plus a throughput method."""

    precision_used = ""
    threads = 0

    def run(self, feeds: Feeds) -> np.ndarray:
        raise NotImplementedError

    def throughput(self, data: Feeds, batch: int, streams: int, seconds: float) -> float:
        """Images/s; the default runs the batch call back to back (one stream)."""
        if streams != 1:
            raise ValueError("this runtime has no streams")
        feeds = _batch(data, batch)
        self.run(feeds)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            self.run(feeds)
            n += 1
        return n * batch / (time.perf_counter() - t0)


class _BackendRunner(_Runner):
    """OpenVINO / ONNX Runtime through bmd_edge.runtime.backends."""

    def __init__(self, file: Path, runtime: str, hint: str | None, threads: int,
                 precision: str) -> None:
        from bmd_edge.runtime.backends import SessionConfig, open_session

        self.file, self.runtime, self.hint, self._threads = file, runtime, hint or "f32", threads
        self.session = open_session(file, SessionConfig(runtime, threads, self.hint))
        self.threads = int(getattr(self.session, "threads", threads))
        self.precision_used = (_precision_used(self.session) if runtime == "openvino"
                               else "int8 (QDQ)" if precision == "int8" else "fp32")

    def run(self, feeds: Feeds) -> np.ndarray:
        return self.session.run(*feeds)[0]

    def throughput(self, data: Feeds, batch: int, streams: int, seconds: float) -> float:
        if self.runtime != "openvino":
            return super().throughput(data, batch, streams, seconds)
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(self.file))
        model.reshape({p.get_any_name(): [batch, *p.get_partial_shape()[1:]] for p in model.inputs})
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": self.hint, "NUM_STREAMS": str(streams),
            "INFERENCE_NUM_THREADS": str(self._threads), "PERFORMANCE_HINT": "THROUGHPUT",
        })
        img, val, pre = _batch(data, batch)
        feeds = {"image": img, "values": val, "present": pre}
        queue = ov.AsyncInferQueue(compiled, streams)
        for _ in range(streams):
            queue.start_async(feeds)
        queue.wait_all()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            queue.start_async(feeds)   # blocks while every stream is busy
            n += 1
        queue.wait_all()
        return n * batch / (time.perf_counter() - t0)


def _precision_used(session: Any) -> str:
    """What OpenVINO actually ran: inference precision hint, execution device, and the runtime
    precision of its heavy layers (Convolution / FullyConnected / MatMul), e.g.
    "f32 on CPU, int8 71/71 conv+matmul"."""
    compiled = getattr(session, "_compiled", None)   # backends keep it private; read-only use
    base = str(getattr(session, "precision", "f32"))
    if compiled is None:
        return base
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    base = "bf16" if "bf16" in hint else "f32" if "32" in hint else hint
    try:
        devices = ",".join(compiled.get_property("EXECUTION_DEVICES"))
    except Exception:  # noqa: BLE001 - older OpenVINO: the device is CPU by construction
        devices = "CPU"
    heavy = int8 = bf16 = 0
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        layer = _any(rt["layerType"]) if "layerType" in rt else op.get_type_name()
        if layer in {"Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution"}:
            heavy += 1
            prec = (_any(rt["runtimePrecision"]) if "runtimePrecision" in rt else "").lower()
            int8 += prec in {"i8", "u8"}
            bf16 += prec == "bf16"
    parts = [f"{base} on {devices}"]
    if int8:
        parts.append(f"int8 {int8}/{heavy} conv+matmul")
    if bf16:
        parts.append(f"bf16 {bf16}/{heavy} conv+matmul")
    return ", ".join(parts)


def _any(v: Any) -> str:
    """An OVAny from rt_info as text (str() of it only gives '<OVAny class>')."""
    return str(v.astype(str)) if hasattr(v, "astype") else str(v)


class _TorchRunner(_Runner):
    """PyTorch eager fp32 from a bmd-edge checkpoint (torch imported here only)."""

    def __init__(self, file: Path, threads: int) -> None:
        import torch

        from bmd_edge.model import checkpoint as ckpt_mod

        torch.set_num_threads(threads)
        loaded = ckpt_mod.load_checkpoint(file)
        model = loaded[0] if isinstance(loaded, tuple) else getattr(loaded, "model", loaded)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"load_checkpoint returned {type(loaded).__name__}, expected a model")
        self.model = model.eval().float()
        self.torch = torch
        self.threads = torch.get_num_threads()
        self.precision_used = "fp32 (eager)"

    def run(self, feeds: Feeds) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(*(self.torch.from_numpy(a) for a in feeds))
        bmd = out[0] if isinstance(out, (tuple, list)) else out
        return bmd.numpy().reshape(-1)


def open_runner(runtime: str, file: Path, hint: str | None, threads: int,
                precision: str = "fp32") -> _Runner:
    if runtime == "torch":
        return _TorchRunner(file, threads)
    return _BackendRunner(file, runtime, hint, threads, precision)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def measure_variant(runtime: str, file: Path, hint: str | None, data: Feeds,
                    cfg: MeasureConfig, precision: str = "fp32") -> Measurement:
    """Load and measure one variant; failures become status "failed" with a one-line reason."""
    stage = "import"
    m = Measurement()
    try:
        import importlib

        importlib.import_module({"torch": "torch", "openvino": "openvino"}.get(runtime, "onnxruntime"))
        m.rss_baseline_mib = _rss_now_mib()   # runtime imported + cases loaded, model not yet
        stage = "load"
        runner, m.load_ms = _timed(lambda: open_runner(runtime, file, hint, cfg.threads, precision))
        m.precision_used, m.threads = runner.precision_used, runner.threads
        n = data[0].shape[0]
        stage = "first inference"
        one = lambda i: tuple(a[i:i + 1] for a in data)
        first, m.first_inference_ms = _timed(lambda: runner.run(one(0)))  # type: ignore[arg-type]
        stage = "accuracy pass"
        preds = [float(np.asarray(first).reshape(-1)[0])]
        preds += [float(np.asarray(runner.run(one(i))).reshape(-1)[0]) for i in range(1, n)]  # type: ignore[arg-type]
        m.predictions = preds
        stage = "latency"
        for i in range(cfg.warmup):
            runner.run(one(i % n))  # type: ignore[arg-type]
        for i in range(cfg.runs):
            feeds = one(i % n)
            t0 = time.perf_counter()
            runner.run(feeds)  # type: ignore[arg-type]
            m.latency_ms.append((time.perf_counter() - t0) * 1e3)
        m.peak_rss_mib = _rss_peak_mib()
        stage = "throughput"
        streams = [s for s in cfg.streams if s <= max(1, cfg.threads)] or [1]
        if runtime != "openvino":
            streams = [1]
        for s in streams:
            for b in cfg.batch_sizes:
                try:
                    img_s = runner.throughput(data, b, s, cfg.throughput_seconds)
                except Exception as err:  # noqa: BLE001 - e.g. a graph with a fixed batch of 1
                    m.notes.append(f"b{b}×{s} skipped: {_one_line(err)}")
                    continue
                m.throughput.append({"label": f"b{b}×{s}", "batch": b, "streams": s,
                                     "img_s": img_s})
        m.peak_rss_all_mib = _rss_peak_mib()
        if runtime == "torch" and cfg.measure_torch_peak:
            from bmd_edge.benchmark.peak import PeakConfig, measure_torch_peak

            m.torch_peak = measure_torch_peak(cfg.threads, PeakConfig()).to_dict()
    except Exception as err:  # noqa: BLE001 - the row keeps its reason, the table goes on
        m.status, m.reason = "failed", f"failed at {stage}: {_one_line(err)}"
    return m


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
