"""Export a trained LocatorNet to ONNX + OpenVINO IR, each stamped with its LocatorSpec.

Reuses `compress.export` (same opset, dynamic batch, IR without fp16 weight compression); the
spec travels inside each file so `Locator` needs nothing else to letterbox and decode.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bmd_edge.compress.export import export_onnx, export_onnx_qdq, onnx_to_ir
from bmd_edge.locate.locator import SPEC_KEY
from bmd_edge.locate.spec import INPUT_NAME, OUTPUT_NAMES, LocatorSpec


def export_locator(model: Any, spec: LocatorSpec, out_dir: str | Path,
                   stem: str = "locator", flip_average: bool = False) -> tuple[Path, Path]:
    """(onnx, xml) fp32, written into out_dir; `flip_average` bakes test-time mirror averaging
    (model.FlipAveraged) into the graph: same contract, twice the compute."""
    import torch

    from bmd_edge.locate.model import FlipAveraged

    if flip_average:
        model = FlipAveraged(model, spec.stride).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, xml_path = out / f"{stem}.onnx", out / f"{stem}.xml"
    example = (torch.zeros(1, 1, spec.size, spec.size),)
    export_onnx(model, example, onnx_path, input_names=(INPUT_NAME,), output_names=OUTPUT_NAMES)
    _stamp(onnx_path, xml_path, spec)
    return onnx_path, xml_path


def export_locator_int8(model: Any, spec: LocatorSpec, calibration: Sequence[Any],
                        out_dir: str | Path, stem: str = "locator_int8",
                        flip_average: bool = False) -> tuple[Path, Path]:
    """(onnx, xml) int8: NNCF post-training quantisation (compress.quantize.ptq, CNN preset,
    hip-film Linear kept float) on `calibration` input batches (B,1,S,S), QDQ export with
    folded int8 weights; `flip_average` wraps the quantised net in model.FlipAveraged.
    Accuracy must be re-measured on the files (benchmarks/locator.py)."""
    import torch

    from bmd_edge.compress.quantize import QuantizeConfig, ptq
    from bmd_edge.locate.model import FlipAveraged

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    batches = [(torch.as_tensor(b),) for b in calibration]
    q = ptq(copy.deepcopy(model).eval(), batches, QuantizeConfig(model_type="default", subset_size=len(batches),
                                           qat_epochs=0))
    if flip_average:
        q = FlipAveraged(q, spec.stride).eval()
    onnx_path, xml_path = out / f"{stem}.onnx", out / f"{stem}.xml"
    export_onnx_qdq(q, (torch.zeros(1, 1, spec.size, spec.size),), onnx_path,
                    input_names=(INPUT_NAME,), output_names=OUTPUT_NAMES)
    _stamp(onnx_path, xml_path, spec)
    return onnx_path, xml_path


def _stamp(onnx_path: Path, xml_path: Path, spec: LocatorSpec) -> None:
    """Write the spec into the ONNX file, then convert it to a stamped IR beside it."""
    import onnx
    import openvino as ov

    proto = onnx.load(str(onnx_path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, json.dumps(spec.to_dict(), sort_keys=True)
    onnx.save(proto, str(onnx_path))
    with tempfile.TemporaryDirectory() as tmp:
        # read_model memory-maps the .bin: stamp a copy, never overwrite the mapped file
        raw = onnx_to_ir(onnx_path, Path(tmp) / "raw.xml", output_names=OUTPUT_NAMES)
        ir = ov.Core().read_model(str(raw))
        ir.set_rt_info(json.dumps(spec.to_dict(), sort_keys=True), [SPEC_KEY])
        ov.save_model(ir, str(xml_path), compress_to_fp16=False)
        del ir


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path,
                      flip_average: bool = False) -> tuple[Path, Path]:
    """A training checkpoint (best.pt / last.pt) → fp32 ONNX + IR in out_dir, plus its
    validation metrics as metrics.json (the hip-film threshold the benchmark applies; with
    `flip_average` re-measure it, the checkpoint's number is for the plain net)."""
    import torch

    from bmd_edge.locate.model import LocatorNet, LocatorNetConfig

    ck = torch.load(Path(checkpoint), weights_only=True)
    net = LocatorNet(LocatorNetConfig(**ck["net"]))
    net.load_state_dict(ck["model"])
    out = Path(out_dir)
    paths = export_locator(net.eval(), LocatorSpec.from_dict(ck["spec"]), out,
                           flip_average=flip_average)
    (out / "metrics.json").write_text(json.dumps(ck["metrics"], indent=2))
    return paths


if __name__ == "__main__":
    import sys

    args = [a for a in sys.argv[1:] if a != "--flip-average"]
    if len(args) != 2:
        raise SystemExit("usage: python -m bmd_edge.locate.export CHECKPOINT OUT_DIR [--flip-average]")
    print(*export_checkpoint(args[0], args[1], flip_average="--flip-average" in sys.argv))
