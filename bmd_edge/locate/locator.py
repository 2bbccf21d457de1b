"""`Locator`: find every hip in a film and say whether it is a hip/pelvis radiograph, torch-free.

Runs the exported locator network (OpenVINO IR or ONNX) through the same pinned session settings
as the BMD model (`runtime.backends.SessionConfig`); OpenVINO calls borrow an infer request from a
`RequestPool`, ONNX Runtime sessions are re-entrant, so one Locator serves many threads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.errors import BundleError, DependencyError, InputError
from bmd_edge.locate.decode import LocateResult, decode
from bmd_edge.locate.letterbox import letterbox
from bmd_edge.locate.spec import GEOMETRY, INPUT_NAME, OUTPUT_NAMES, SIDES, LocatorSpec
from bmd_edge.runtime.backends import (
    RequestPool,
    SessionConfig,
    compile_openvino,
    import_openvino,
    ort_session,
)

SPEC_KEY = "bmd_edge_locator_spec"  # ONNX metadata_props / OpenVINO rt_info key holding the spec


class _OvLocatorSession:
    def __init__(self, path: Path, cfg: SessionConfig) -> None:
        self._compiled = compile_openvino(path, cfg, label="locator ")
        try:
            self._out = [self._compiled.output(n) for n in OUTPUT_NAMES]
        except RuntimeError:
            raise BundleError(f"locator {path.name} lacks outputs {list(OUTPUT_NAMES)}") from None
        self._pool = RequestPool(
            self._compiled, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        with self._pool.request() as req:
            res = req.infer({INPUT_NAME: image}, share_inputs=True, share_outputs=True)
            out = [np.array(res[o], dtype=np.float32) for o in self._out]  # copied while held
            del res
        return out


class _OrtLocatorSession:
    def __init__(self, path: Path, cfg: SessionConfig) -> None:
        self._sess = ort_session(path, cfg, label="locator ")
        names = {o.name for o in self._sess.get_outputs()}
        if not set(OUTPUT_NAMES) <= names:
            raise BundleError(f"locator {path.name} has outputs {sorted(names)}; expected "
                              f"{list(OUTPUT_NAMES)}")

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(a, np.float32) for a in
                self._sess.run(list(OUTPUT_NAMES), {INPUT_NAME: image})]


def read_spec(path: Path) -> LocatorSpec:
    """The LocatorSpec stamped into a .onnx (metadata_props) or .xml (rt_info) by the exporter."""
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover
            raise DependencyError("ONNX Runtime is not installed") from None
        so = ort.SessionOptions()
        so.log_severity_level = 3
        meta = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]) \
            .get_modelmeta().custom_metadata_map
        raw = meta.get(SPEC_KEY)
    else:
        model = import_openvino().Core().read_model(str(path))
        raw = model.get_rt_info([SPEC_KEY]).astype(str) if model.has_rt_info([SPEC_KEY]) else None
    if not raw:
        raise BundleError(f"locator {path.name} carries no {SPEC_KEY}; export it with "
                          f"bmd_edge.locate.export")
    return LocatorSpec.from_dict(json.loads(raw))


class Locator:
    """Thread-safe hip finder over one exported locator file (.xml → OpenVINO, .onnx → ORT)."""

    def __init__(self, model_file: str | Path, cfg: SessionConfig | None = None, *,
                 spec: LocatorSpec | None = None, threshold: float = 0.3) -> None:
        path = Path(model_file)
        if not path.is_file():
            raise BundleError(f"locator model file {path} does not exist")
        cfg = cfg or SessionConfig(backend="openvino" if path.suffix == ".xml" else "onnxruntime")
        if cfg.backend == "onnxruntime" and path.suffix != ".onnx":
            raise BundleError(f"ONNX Runtime needs an .onnx locator, got {path.name}")
        if not 0.0 < threshold < 1.0:
            raise InputError(f"locator threshold {threshold!r} must lie strictly between 0 and 1")
        self.spec = spec or read_spec(path)
        self.threshold = threshold
        self.backend = cfg.backend
        self._session: Any = (_OvLocatorSession(path, cfg) if cfg.backend == "openvino"
                              else _OrtLocatorSession(path, cfg))

    def raw(self, pixels: np.ndarray) -> tuple[list[np.ndarray], Any]:
        """Network outputs for one film and its letterbox (for tests and metrics)."""
        x, box = letterbox(pixels, self.spec)
        out = self._session.run(x)
        g = self.spec.grid
        expected = [(1, len(SIDES), g, g), (1, len(GEOMETRY), g, g)]
        if [o.shape for o in out[:2]] != expected:
            raise BundleError(f"locator outputs have shapes {[o.shape for o in out[:2]]}; the "
                              f"spec expects {expected}")
        return out, box

    def locate(self, pixels: np.ndarray) -> LocateResult:
        """Every hip in a grey film (H×W float, bone bright) plus the hip/pelvis-film score."""
        (heat, geom, is_hip), box = self.raw(pixels)
        return decode(heat[0], geom[0], is_hip, box, self.spec, self.threshold)
