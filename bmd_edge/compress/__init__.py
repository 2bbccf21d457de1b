"""Compression and export: calibration-set selection, NNCF PTQ + QAT, ONNX/OpenVINO export.

Torch and NNCF are imported inside `quantize` and `export` only; `formats`, `conformal`,
`calibration` and `onnx_int8` are numpy/onnx code the tests and reports can use alone.
"""
