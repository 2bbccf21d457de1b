"""Export a trained (and optionally QAT-compressed) model into a verified bundle directory.

Writers per row of `formats.FORMATS`:
- onnx-fp32:      torch.onnx.export (TorchScript exporter, opset 17, dynamic batch).
- onnx-int8:      NNCF quantizers switched to ONNX QuantizeLinear/DequantizeLinear pairs, exported,
                  weight quantizers folded into int8 initializers (onnx_int8.py), then rearranged
                  so ONNX Runtime fuses every convolution into QLinearConv (ort_layout.py; output
                  quantizers sized on the held-out interval half's images).
- openvino-*:     openvino.convert_model of the fp32 ONNX or of NNCF's own QDQ file (not the ORT
                  layout: OpenVINO's CPU plugin wants NNCF's), saved uncompressed
                  (compress_to_fp16=False) — the int8 IR keeps int8 weights.
Every file is then run by its own runtime on held-out cases (OpenVINO pinned to f32, because this
CPU otherwise silently runs "fp32" in bf16), scored, and stamped with the bundle metadata
(ONNX metadata_props, OpenVINO rt_info) before bundle.py hashes it and renames the folder into
place.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bmd_edge.compress.formats import ExportFormat
from bmd_edge.errors import BundleError

INPUT_NAMES = ("image", "values", "present")
OUTPUT_NAMES = ("bmd", "field_attention")
OPSET = 17


def _dynamic_axes(names: Sequence[str]) -> dict[str, dict[int, str]]:
    return {name: {0: "batch"} for name in names}


def export_onnx(model: Any, example: Sequence[Any], path: str | Path, *,
                input_names: Sequence[str] = INPUT_NAMES,
                output_names: Sequence[str] = OUTPUT_NAMES) -> Path:
    """torch.onnx.export with the contract's names (or another model's, e.g. the hip locator's)
    and a dynamic batch dimension."""
    import torch

    path = Path(path)
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, tuple(example[:len(input_names)]), str(path),
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=_dynamic_axes((*input_names, *output_names)),
                          opset_version=OPSET, dynamo=False)
    return path


def export_onnx_qdq(qmodel: Any, example: Sequence[Any], path: str | Path, *,
                    input_names: Sequence[str] = INPUT_NAMES,
                    output_names: Sequence[str] = OUTPUT_NAMES) -> Path:
    """A QDQ ONNX that ONNX Runtime runs, with int8 weight initializers."""
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    from bmd_edge.compress.onnx_int8 import fold_weight_quantizers

    quantizers = [h for _, h in get_hook_storage(qmodel).named_hooks() if isinstance(h, BaseQuantizer)]
    if not quantizers:
        raise BundleError("the quantized model has no NNCF quantizers; pass a model from `quantize`")
    for h in quantizers:  # default FAKE_QUANTIZE exports OpenVINO-only ops ORT cannot load
        h.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "qdq_fp32_weights.onnx"
        export_onnx(qmodel, example, raw, input_names=input_names, output_names=output_names)
        fold_weight_quantizers(raw, path)
    for h in quantizers:
        h.set_export_mode(QuantizerExportMode.FAKE_QUANTIZE)
    return path


def onnx_to_ir(onnx_path: str | Path, xml_path: str | Path, *,
               output_names: Sequence[str] = OUTPUT_NAMES) -> Path:
    """OpenVINO IR from an ONNX file, outputs named like the contract, weights not fp16."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    for out, name in zip(model.outputs, output_names):
        out.get_tensor().set_names({name})
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)


def run_model_file(path: str | Path, batches: Sequence[Sequence[np.ndarray]],
                   threads: int | None = None) -> tuple[np.ndarray, str]:
    """Run a .onnx (ONNX Runtime) or .xml (OpenVINO, f32 pinned) over batches: (bmd, precision)."""
    path = Path(path)
    feeds = [{n: np.asarray(a, dtype=np.float32) for n, a in zip(INPUT_NAMES, b)} for b in batches]
    if path.suffix == ".onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out = [sess.run(["bmd"], f)[0] for f in feeds]
        return np.concatenate(out).astype(np.float64), "f32"
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = hint.to_string() if hasattr(hint, "to_string") else str(hint).lower()
    req = compiled.create_infer_request()
    out = [np.array(req.infer(f)[compiled.output("bmd")]) for f in feeds]
    return np.concatenate(out).astype(np.float64), precision


def write_variant(fmt: ExportFormat, stage: Path, fp32_model: Any, qmodel: Any | None,
                  example: Sequence[Any], *, scratch: Path | None = None,
                  calibration: Sequence[Mapping[str, np.ndarray]] = (),
                  log: Callable[[str], None] = print) -> None:
    """Write one format row's files into the staging folder.

    Every BMD graph also gets an `embedding` output (the regression head's input; see
    `embedding_output.py`) for the runtime's shift score; the IR inherits it from its ONNX.
    `scratch` keeps NNCF's QDQ ONNX between the onnx-int8 and openvino-int8 rows (it is exported
    once); `calibration` sizes the output quantizers ORT's layout adds (onnx-int8 only).
    """
    from bmd_edge.compress.embedding_output import add_embedding_output

    dst = stage / fmt.file
    if fmt.name == "onnx-fp32":
        add_embedding_output(export_onnx(fp32_model, example, dst))
    elif fmt.name == "onnx-int8":
        from bmd_edge.compress.ort_layout import ort_layout

        if not calibration:  # a caller without calibration images: size on the example batch
            calibration = [{n: np.asarray(a, np.float32) for n, a in zip(INPUT_NAMES, example)}]
            log("onnx-int8 ORT layout: no calibration batches given; output quantizers sized "
                "on the export example batch")
        with tempfile.TemporaryDirectory() as tmp:
            rep = ort_layout(_nncf_int8(qmodel, example, Path(scratch or tmp)), dst, calibration)
        log(f"onnx-int8 ORT layout: {rep.fused.get('QLinearConv', 0)} of {rep.convs} convolutions "
            f"fuse into QLinearConv ({rep.output_quantizers_added} output quantizers added, "
            f"{rep.calibrated} sized on {len(calibration)} calibration batches; "
            f"{rep.weights_folded} unfused weights stored fp32)")
    elif fmt.name in ("openvino-fp32", "openvino-int8"):
        with tempfile.TemporaryDirectory() as tmp:
            if fmt.precision == "fp32":
                src = stage / "model_fp32.onnx"
                if not src.exists():  # IR requested without its ONNX sibling: make it aside
                    src = add_embedding_output(export_onnx(fp32_model, example,
                                                             Path(tmp) / src.name))
            else:
                src = _nncf_int8(qmodel, example, Path(scratch or tmp))
            onnx_to_ir(src, dst)
    else:  # a row in formats.py without a writer here is a programming error
        raise BundleError(f"no writer for export format {fmt.name!r}")


def _nncf_int8(qmodel: Any, example: Sequence[Any], folder: Path) -> Path:
    """NNCF's QDQ ONNX (int8 weights folded) in `folder`, exported on first use."""
    from bmd_edge.compress.embedding_output import add_embedding_output

    path = folder / "model_int8_nncf.onnx"
    if not path.exists():
        add_embedding_output(export_onnx_qdq(qmodel, example, path))
    return path
