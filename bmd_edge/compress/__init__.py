"""Compression and export: calibration-set selection, NNCF PTQ + QAT, ONNX/OpenVINO export.

Torch and NNCF are imported inside `quantize` and `export` only; `formats`, `conformal`,
`calibration` and `onnx_int8` are numpy/onnx code the tests and reports can use alone.
"""

import os as _os

# NNCF JIT-compiles its torch extension on first use (a minute or more on a busy 2-core CPU) and
# gives up after 60 s by default; a first `bmd-edge quantize` on a fresh machine must not fail.
_os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
