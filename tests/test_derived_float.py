"""The benchmark's float rows derived from the shipped int8 ONNX (benchmark/derived.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bmd_edge.benchmark.derived import DERIVED_KEY, LABEL, dequantized_ir
from bmd_edge.bundle import Bundle, default_bundle_path
from bmd_edge.runtime.backends import SessionConfig, open_session

SHIPPED = default_bundle_path()


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    b = Bundle.load(SHIPPED)
    onnx_file = b.verified_file("onnx-int8")
    cache = tmp_path_factory.mktemp("cache")
    return dequantized_ir(onnx_file, b.meta.files["model_int8.onnx"], cache), cache


def _feeds(n: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return (rng.normal(0, 1, (n, 1, 128, 128)).astype(np.float32),
            rng.normal(0, 1, (n, 10)).astype(np.float32), np.ones((n, 10), np.float32))


def test_derived_graph_is_float_and_tracks_int8(derived: tuple[Path, Path]) -> None:
    import openvino as ov

    xml, _ = derived
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    kinds = {op.get_rt_info()["runtimePrecision"].astype(str)
             for op in compiled.get_runtime_model().get_ops()
             if op.get_rt_info()["layerType"].astype(str) in ("Convolution", "FullyConnected")}
    assert kinds == {"f32"}, kinds  # no int8 kernels and no int8 weights left
    cfg = SessionConfig(backend="openvino", threads=1)
    f32, _ = open_session(xml, cfg).run(*_feeds())
    int8, _ = open_session(SHIPPED / "model_int8.xml", cfg).run(*_feeds())
    assert np.isfinite(f32).all() and np.abs(f32 - int8).max() < 0.05, (f32, int8)


def test_cache_is_reused_and_a_damaged_entry_rebuilt(derived: tuple[Path, Path]) -> None:
    xml, cache = derived
    b = Bundle.load(SHIPPED)
    digest = b.meta.files["model_int8.onnx"]
    before = xml.stat().st_mtime_ns
    assert dequantized_ir(SHIPPED / "model_int8.onnx", digest, cache) == xml
    assert xml.stat().st_mtime_ns == before
    with open(xml.with_suffix(".bin"), "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff\xff\xff\xff")
    dequantized_ir(SHIPPED / "model_int8.onnx", digest, cache)
    assert xml.stat().st_mtime_ns != before


def test_fresh_install_plans_four_measurable_rows(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """The shipped bundle alone: OpenVINO int8, ORT int8, OpenVINO f32 and bf16 have files."""
    from bmd_edge.benchmark.runner import BenchConfig, _explain, _load_inputs
    from bmd_edge.benchmark.variants import plan_variants

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _, _, variants, root, ckpt = _load_inputs(BenchConfig(bundle=SHIPPED))
    plans = {p.name: p for p in _explain(plan_variants(variants, root, checkpoint=ckpt,
                                                       has_bf16=True))}
    for name in ("ov-int8-qat", "ort-int8", "ov-f32", "ov-bf16"):
        assert plans[name].status == "pending", (name, plans[name].reason)
    assert plans["ov-f32"].bundle_variant == DERIVED_KEY and LABEL in plans["ov-f32"].reason
    assert "export/build_default.py" in plans["ort-fp32"].reason
