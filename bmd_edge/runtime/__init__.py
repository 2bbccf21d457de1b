"""Torch-free inference: bundle → session (OpenVINO / ONNX Runtime) → Prediction.

`Predictor.load(bundle=None, backend="openvino", variant=None, threads=None)` then
`.predict(path_or_array, age=70, sex="F", ...)`. Runtimes are imported when a session opens.
"""

from __future__ import annotations

from bmd_edge.runtime.predictor import Prediction, Predictor, Prepared
from bmd_edge.runtime.quality_gate import QualityReport, check_quality

__all__ = ["Prediction", "Predictor", "Prepared", "QualityReport", "check_quality"]
