"""Inference sessions: OpenVINO and ONNX Runtime behind one tiny interface, torch-free.

Why explicit settings: OpenVINO silently runs an "fp32" model in bf16 on CPUs that support it,
and both runtimes default to using every core. A clinic workstation must get the same numbers on
every machine and not starve other programs, so precision, threads and streams are pinned here
and reported back in every Prediction. OpenVINO's compiled-model cache (CACHE_DIR under the
user's cache folder) makes the second start of `bmd-edge predict` fast.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bmd_edge.errors import BundleError, DependencyError, InputError, native_reason

BACKENDS = ("openvino", "onnxruntime")
PRECISIONS = ("f32", "bf16")
INPUT_NAMES = ("image", "values", "present")
OUTPUT_NAMES = ("bmd", "field_attention")
EMBEDDING = "embedding"   # optional third output: the features the regression head reads


@dataclass(frozen=True)
class SessionConfig:
    backend: str = "openvino"          # which runtime executes the graph
    threads: int = 1                   # intra-op threads: explicit, so results and load are stable
    precision: str = "f32"             # float math precision; f32 keeps parity with training
    cache_dir: Path | None = None      # OpenVINO compiled-model cache; None disables caching

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"backend {self.backend!r} is not supported; use one of {BACKENDS}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision {self.precision!r} is not supported; use {PRECISIONS}")
        if not (isinstance(self.threads, int) and 1 <= self.threads <= 256):
            raise InputError(f"threads {self.threads!r} is not valid; use an integer 1-256")


class Session(Protocol):
    """What the Predictor needs from a runtime: one batched call and a description of itself.

    `run` must be safe to call from many threads at once and return arrays that no later call
    can overwrite: a Predictor is shared by the threads of the device software that embeds it.
    """

    backend: str
    precision: str
    threads: int

    def run(self, image: np.ndarray, values: np.ndarray,
            present: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def default_threads() -> int:
    """Physical-ish core count, capped at 4: beyond that a single small CNN gains little."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, n))


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/bmd-edge (default ~/.cache/bmd-edge): where compiled models are cached."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bmd-edge"


def _feeds(image: np.ndarray, values: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "image": np.ascontiguousarray(image, dtype=np.float32),
        "values": np.ascontiguousarray(values, dtype=np.float32),
        "present": np.ascontiguousarray(present, dtype=np.float32),
    }


def _check_io(kind: str, path: Path, inputs: list[set[str]], outputs: list[set[str]]) -> None:
    """Each port as the set of its tensor names: the expected name must be one of them.

    A port can carry several names (OpenVINO keeps the exporter's intermediate names beside
    `bmd`, e.g. {'/Mul_3_output_0', 'bmd'}), so "the" name of a port is not well defined.
    """
    def has(ports: list[set[str]], name: str) -> bool:
        return sum(name in names for names in ports) == 1

    if (len(inputs) != len(INPUT_NAMES) or not all(has(inputs, n) for n in INPUT_NAMES)
            or not all(has(outputs, n) for n in OUTPUT_NAMES)):
        def shown(ports: list[set[str]], wanted: tuple[str, ...]) -> list[str]:
            return [next((n for n in wanted if n in names), min(names, default="?"))
                    for names in ports]

        raise BundleError(
            f"{kind} model {path.name} has inputs {shown(inputs, INPUT_NAMES)} and outputs "
            f"{shown(outputs, OUTPUT_NAMES)}; expected inputs {list(INPUT_NAMES)} and outputs "
            f"{list(OUTPUT_NAMES)}"
        )


_OV_IMPORT_LOCK = threading.Lock()


def import_openvino() -> Any:
    """`import openvino` without its model converter: ~half the import time, never needed here.

    openvino/__init__ imports `openvino.tools.ovc` (and pydantic) inside try/except ImportError;
    refusing that one module during the import keeps `bmd-edge predict` start-up short. A lazy
    `openvino.convert_model` is put back so code that converts models in the same process works.
    Locked: two threads loading Predictors at once must not see a half-imported module or
    each other's blocker in sys.meta_path.
    """
    with _OV_IMPORT_LOCK:
        return _import_openvino_unlocked()


def _import_openvino_unlocked() -> Any:
    if "openvino" in sys.modules and hasattr(sys.modules["openvino"], "Core"):
        return sys.modules["openvino"]

    class _SkipConverter:
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "openvino.tools.ovc":
                raise ImportError("model converter not needed for inference")

    blocker = _SkipConverter()
    sys.meta_path.insert(0, blocker)
    try:
        import openvino as ov
    finally:
        sys.meta_path.remove(blocker)
    if not hasattr(ov, "convert_model"):
        def convert_model(*args: Any, **kwargs: Any) -> Any:
            from openvino.tools.ovc import convert_model as real

            return real(*args, **kwargs)

        ov.convert_model = convert_model
    return ov


class RequestPool:
    """A fixed set of OpenVINO infer requests, lent to one caller at a time (blocking acquire).

    Why: an infer request is single-caller state. Sharing one between threads raised `Infer
    Request is busy` and, with shared output memory, handed one caller another caller's BMD.
    The pool holds the compiled model's optimal number of requests (one per stream); a caller
    waits for a free one. LIFO keeps a lone caller on the same, cache-warm request.
    """

    def __init__(self, compiled: Any, size: int) -> None:
        self.size = max(1, int(size))
        self._free: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(self.size):
            self._free.put(compiled.create_infer_request())

    @contextmanager
    def request(self) -> Iterator[Any]:
        """An infer request that is the caller's alone until the `with` block ends."""
        req = self._free.get()
        try:
            yield req
        finally:
            self._free.put(req)


def compile_openvino(model_file: Path, cfg: SessionConfig, label: str = "") -> Any:
    """`model_file` compiled for the CPU with pinned precision, one stream and explicit threads.

    The one place OpenVINO settings live, for the BMD model and the hip locator alike:
    "fp32" silently runs as bf16 on BF16/AMX CPUs unless INFERENCE_PRECISION_HINT is pinned.
    """
    try:
        ov = import_openvino()
    except ImportError:  # pragma: no cover - openvino is a core dependency
        raise DependencyError("OpenVINO is not installed; run `pip install openvino`") from None
    core = ov.Core()
    if cfg.cache_dir is not None:
        try:
            cfg.cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cfg.cache_dir)})
        except OSError:
            pass  # a read-only home only costs start-up time, never correctness
    props = {
        "INFERENCE_PRECISION_HINT": cfg.precision,
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(cfg.threads),
        "PERFORMANCE_HINT": "LATENCY",
    }
    if model_file.suffix == ".onnx":
        # An unreadable .onnx makes OpenVINO try every frontend, and TensorFlow's prints
        # absl errors on fd 2; ask the ONNX frontend alone first.
        from openvino.frontend import FrontEndManager

        onnx_frontend = FrontEndManager().load_by_framework("onnx")
        if not onnx_frontend.supported(str(model_file)):
            raise BundleError(f"OpenVINO cannot load {label}{model_file.name}: it is not a valid "
                              "ONNX model (protobuf parsing failed); the bundle is damaged")
    try:
        # Compiling from the path (not a read Model) lets OpenVINO use its cache on restart.
        return core.compile_model(str(model_file), "CPU", props)
    except RuntimeError as err:
        raise BundleError(f"OpenVINO cannot load {label}{model_file.name}: "
                          f"{native_reason(err)}") from None


def ort_session(model_file: Path, cfg: SessionConfig, label: str = "") -> Any:
    """An ONNX Runtime CPU session with explicit intra-op threads (inter-op 1, sequential)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        raise DependencyError(
            "ONNX Runtime is not installed; run `pip install onnxruntime`") from None

    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_file), so, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises its own untyped errors
        raise BundleError(f"ONNX Runtime cannot load {label}{model_file.name}: "
                          f"{native_reason(err)}") from None


class OpenVinoSession:
    """An OpenVINO CPU compiled model with pinned precision, one stream and explicit threads.

    Thread-safe: each `run` borrows an infer request from a `RequestPool` and copies the
    outputs before returning the request, so concurrent callers never share request memory.
    """

    backend = "openvino"

    def __init__(self, model_file: Path, cfg: SessionConfig) -> None:
        self._compiled = compile_openvino(model_file, cfg)
        _check_io("OpenVINO", model_file,
                  [set(i.get_names()) for i in self._compiled.inputs],
                  [set(o.get_names()) for o in self._compiled.outputs])
        self._pool = RequestPool(
            self._compiled, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._out = {n: self._compiled.output(n) for n in OUTPUT_NAMES}  # by any of its names
        self.has_embedding = any(EMBEDDING in o.get_names() for o in self._compiled.outputs)
        if self.has_embedding:
            self._out[EMBEDDING] = self._compiled.output(EMBEDDING)
        got = str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.precision = "bf16" if "bf16" in got else "f32"
        self.threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))

    def run(self, image: np.ndarray, values: np.ndarray,
            present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bmd, att, _ = self.run_full(image, values, present)
        return bmd, att

    def run_full(self, image: np.ndarray, values: np.ndarray,
                 present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(bmd, field_attention, embedding or None when the graph has no such output)."""
        # Shared memory both ways: no copy of the inputs into the request and none of the outputs
        # into intermediate arrays (0.15 ms of a 1.7 ms int8 call here). The inputs are this
        # call's own arrays; the outputs are the request's memory, so they are copied (np.array)
        # while this caller still holds the request, before any other call can reuse it.
        feeds = _feeds(image, values, present)
        with self._pool.request() as req:
            res = req.infer(feeds, share_inputs=True, share_outputs=True)
            bmd = np.array(res[self._out["bmd"]], dtype=np.float32).reshape(-1)
            att = np.array(res[self._out["field_attention"]], dtype=np.float32)
            emb = (np.array(res[self._out[EMBEDDING]], dtype=np.float32).reshape(len(bmd), -1)
                   if self.has_embedding else None)
            del res  # no view of the request's output memory outlives the borrow
        return bmd, att, emb


class OrtSession:
    """An ONNX Runtime CPU session with explicit intra-op threads (inter-op 1, sequential).

    Thread-safe: `InferenceSession.run` may be called concurrently (documented by ONNX Runtime)
    and returns fresh arrays per call; this wrapper keeps no per-call state.
    """

    backend = "onnxruntime"

    def __init__(self, model_file: Path, cfg: SessionConfig) -> None:
        if model_file.suffix != ".onnx":
            raise BundleError(f"ONNX Runtime needs an .onnx file, got {model_file.name}")
        self._sess = ort_session(model_file, cfg)
        _check_io("ONNX", model_file, [{i.name} for i in self._sess.get_inputs()],
                  [{o.name} for o in self._sess.get_outputs()])
        self.precision = "f32"  # ORT CPU computes float ops in f32; int8 ops stay int8
        self.threads = cfg.threads
        self.has_embedding = any(o.name == EMBEDDING for o in self._sess.get_outputs())
        self._names = [*OUTPUT_NAMES, *([EMBEDDING] if self.has_embedding else [])]

    def run(self, image: np.ndarray, values: np.ndarray,
            present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bmd, att, _ = self.run_full(image, values, present)
        return bmd, att

    def run_full(self, image: np.ndarray, values: np.ndarray,
                 present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(bmd, field_attention, embedding or None when the graph has no such output)."""
        out = self._sess.run(self._names, _feeds(image, values, present))
        bmd = np.asarray(out[0], dtype=np.float32).reshape(-1)
        emb = np.asarray(out[2], dtype=np.float32).reshape(len(bmd), -1) \
            if self.has_embedding else None
        return bmd, np.asarray(out[1], dtype=np.float32), emb


def open_session(model_file: Path, cfg: SessionConfig) -> Session:
    """Open `model_file` with the configured runtime; BundleError if it cannot be loaded."""
    if not model_file.is_file():
        raise BundleError(f"model file {model_file} does not exist")
    if cfg.backend == "openvino":
        return OpenVinoSession(model_file, cfg)
    return OrtSession(model_file, cfg)
