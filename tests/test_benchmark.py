"""bmd-edge benchmark: the machinery (rows, JSON schema, floors, FLOP count, failed rows).

Real runtimes on the tiny hand-built bundle; timings are never asserted, only that they exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from bmd_edge.benchmark.flops import count_onnx_flops
from bmd_edge.benchmark.gate import check_floors
from bmd_edge.benchmark.machine import parse_cpuinfo
from bmd_edge.benchmark.measure import MeasureConfig
from bmd_edge.benchmark.peak import matmul_model
from bmd_edge.benchmark.runner import BenchConfig, run_benchmark
from bmd_edge.benchmark.table import SCHEMA_VERSION, pareto_front, to_json, write_outputs
from bmd_edge.benchmark.variants import CANONICAL_NAMES, plan_variants
from bmd_edge.cli import app
from bmd_edge.manifest import write_manifest
from bmd_edge.preprocess import PreprocessSpec, preprocess
from bmd_edge.runtime.tiny import tiny_reference, write_tiny_bundle
from bmd_edge.schema import encode

FAST = MeasureConfig(threads=1, runs=4, warmup=1, batch_sizes=(1, 2), streams=(1,),
                     throughput_seconds=0.02, measure_torch_peak=False)
LABELS = (0.80, 0.84, 0.88, 0.92, 0.96, 1.00)   # three below 0.899, three above: AUC defined


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny bundle, 6-case manifest of 40×48 16-bit PNGs)."""
    root = tmp_path_factory.mktemp("bench")
    bundle = write_tiny_bundle(root / "bundle", size=32)
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, y in enumerate(LABELS):
        cv2.imwrite(str(root / "images" / f"c{i}.png"), (rng.random((40, 48)) * 65535).astype(np.uint16))
        rows.append({"image": f"images/c{i}.png", "age_xray": 60 + 3 * i,
                     "sex": "F" if i % 2 else "M", "fn_bmd": y})
    return bundle, write_manifest(root / "manifest.csv", rows)


def _expected_mae(manifest: Path, bundle_schema: dict) -> float:
    """MAE of the tiny graph's closed form on the same preprocessed cases, in numpy."""
    from bmd_edge.image_io import read_image
    from bmd_edge.manifest import read_manifest

    errs = []
    for case in read_manifest(manifest, require_label=True).cases:
        img = preprocess(read_image(case.image).pixels, PreprocessSpec(size=32))[None]
        v, p = encode(case.record, bundle_schema)
        bmd, _ = tiny_reference(img, v[None], p[None])
        errs.append(abs(float(bmd[0]) - case.fn_bmd))
    return float(np.mean(errs))


def test_two_rows_in_subprocesses_json_markdown_png(cohort, tmp_path: Path) -> None:
    bundle, manifest = cohort
    cfg = BenchConfig(bundle=bundle, manifest=manifest, measure=FAST, only=("ort-fp32", "ov-f32"),
                      peak_size=64, decode_sizes=(64,))
    res = run_benchmark(cfg)
    assert [r.name for r in res.variants] == ["ort-fp32", "ov-f32"]
    from bmd_edge.bundle import Bundle

    want = _expected_mae(manifest, Bundle.load(bundle).meta.input.schema.data)
    for r in res.variants:
        assert r.status == "ok", r.reason
        assert r.metrics["mae"] == pytest.approx(want, abs=1e-5)   # same cases in both processes
        assert r.latency_ms["n"] == FAST.runs
        assert r.latency_ms["p50"] <= r.latency_ms["p99"]
        assert r.peak_rss_mib and r.peak_rss_mib > 0
        assert {t["label"] for t in r.throughput} == {"b1×1", "b2×1"}
        assert r.gflops == pytest.approx(2 * 10 / 1e9)   # one (1,10)·(10,1) MatMul
    assert res.row("ov-f32").precision_used.startswith("f32")
    assert {(p["runtime"], p["precision"]) for p in res.peaks} >= {("openvino", "int8"), ("onnxruntime", "fp32")}
    assert [d["format"] for d in res.decode] == ["png8", "png16", "jpeg", "dicom"]

    paths = write_outputs(res, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert {"machine", "config", "dataset", "peaks", "flops", "variants", "decode", "created"} <= set(data)
    assert {"name", "status", "reason", "metrics", "latency_ms", "best_throughput", "peak_rss_mib",
            "precision_used", "speedup_vs_pytorch", "gflops", "peak_fraction_b1", "pareto"} <= set(data["variants"][0])
    assert data["dataset"]["n"] == 6 and data["dataset"]["n_low_bmd"] == 3
    md = paths["md"].read_text()
    assert md.count("\n| ort-fp32") == 1 and md.count("\n| ov-f32") == 1
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_and_absent_rows_keep_their_reason(cohort, tmp_path: Path) -> None:
    bundle, manifest = cohort
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx file")
    cfg = BenchConfig(bundle=bundle, manifest=manifest, measure=FAST, files=(("ort-int8", broken),),
                      only=("pytorch-fp32", "ort-int8", "ov-int8-qat"), isolate=False, peaks=False,
                      decode_sizes=())
    res = run_benchmark(cfg)
    rows = {r.name: r for r in res.variants}
    assert rows["ort-int8"].status == "failed" and "load" in rows["ort-int8"].reason
    assert rows["ov-int8-qat"].status == "absent" and "QAT" in rows["ov-int8-qat"].reason
    assert rows["pytorch-fp32"].status == "absent" and "checkpoint" in rows["pytorch-fp32"].reason
    assert all(r.latency_ms is None for r in res.variants)
    md = write_outputs(res, tmp_path)["md"].read_text()
    assert "failed at load" in md


def test_plan_maps_bundle_variants_and_bf16(tmp_path: Path) -> None:
    variants = {
        "openvino-int8": {"file": "model_int8.xml", "runtime": "openvino", "precision": "int8", "method": "qat"},
        "ptq": {"file": "model_int8_ptq.xml", "runtime": "openvino", "precision": "int8"},
        "onnx-fp32": {"file": "model_fp32.onnx", "runtime": "onnxruntime", "precision": "fp32"},
        "extra": {"file": "other_int8.onnx", "runtime": "onnxruntime", "precision": "int8"},
    }
    plans = {p.name: p for p in plan_variants(variants, tmp_path, has_bf16=False)}
    assert set(CANONICAL_NAMES) <= set(plans)
    assert plans["ov-int8-qat"].bundle_variant == "openvino-int8"
    assert plans["ov-int8-ptq"].bundle_variant == "ptq"
    assert plans["ov-f32"].file == tmp_path / "model_fp32.onnx"          # IR missing: OV reads ONNX
    assert plans["ov-bf16"].status == "unsupported" and "BF16" in plans["ov-bf16"].reason
    assert plans["ort-int8"].bundle_variant == "extra"
    with_bf16 = {p.name: p for p in plan_variants(variants, tmp_path, has_bf16=True)}
    assert with_bf16["ov-bf16"].status == "pending"


def test_flops_hand_count_conv_matmul_gemm() -> None:
    # Conv 1→4, 3×3, pad 1 on 8×8: 4·8·8 outputs × 1·3·3 = 2304 MACs; MatMul (1,256)·(256,5) = 1280;
    # Gemm (1,5)·(3,5)ᵀ with transB = 15. Total 3599 MACs = 7198 FLOPs.
    inits = [numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.float32), "W"),
             numpy_helper.from_array(np.zeros((256, 5), np.float32), "B"),
             numpy_helper.from_array(np.zeros((3, 5), np.float32), "G"),
             numpy_helper.from_array(np.array([-1, 256], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "B"], ["m"]),
             helper.make_node("Gemm", ["m", "G"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fc = count_onnx_flops(model)
    assert fc.by_op == {"Conv": 2304, "MatMul": 1280, "Gemm": 15}
    assert fc.gflops == pytest.approx(2 * 3599 / 1e9)
    assert count_onnx_flops(model, batch=4).macs == 4 * 3599
    assert count_onnx_flops(model, {"x": (1, 1, 16, 16)}).by_op["Conv"] == 4 * 256 * 9


def test_peak_matmul_graphs_compute_the_product() -> None:
    import onnxruntime as ort

    model = matmul_model(8, "fp32")
    b = numpy_helper.to_array(model.graph.initializer[0])
    a = np.random.default_rng(3).standard_normal((8, 8)).astype(np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"A": a})
    np.testing.assert_allclose(y, a @ b, rtol=1e-5, atol=1e-5)
    q = matmul_model(8, "matmulinteger")
    bq = numpy_helper.to_array(q.graph.initializer[0]).astype(np.int32)
    aq = np.arange(64, dtype=np.uint8).reshape(8, 8)
    (yq,) = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"A": aq})
    np.testing.assert_array_equal(yq, aq.astype(np.int32) @ bq)
    assert onnx.checker.check_model(matmul_model(8, "qdq")) is None


def test_cli_floor_gate_exit_codes(cohort, tmp_path: Path) -> None:
    bundle, manifest = cohort
    base = ["benchmark", "--model", str(bundle), "--manifest", str(manifest), "--variants", "ort-fp32",
            "--runs", "3", "--seconds", "0.02", "--threads", "1", "--no-decode", "--no-peaks",
            "--in-process", "--out", str(tmp_path)]
    runner = CliRunner()
    failed = runner.invoke(app, [*base, "--max-mae", "0.0001"])
    assert failed.exit_code == 1
    assert "ort-fp32: MAE" in failed.output and "--max-mae 0.0001" in failed.output
    passed = runner.invoke(app, [*base, "--max-mae", "5", "--min-auc", "0.0"])
    assert passed.exit_code == 0, passed.output
    assert (tmp_path / "latency.json").is_file()
    bad = runner.invoke(app, [*base, "--min-auc", "1.5"])
    assert bad.exit_code != 0


def test_gate_and_pareto_on_hand_made_rows(cohort) -> None:
    from dataclasses import replace

    bundle, manifest = cohort
    res = run_benchmark(BenchConfig(bundle=bundle, manifest=manifest, measure=FAST, only=("ort-fp32",),
                                    isolate=False, peaks=False, decode_sizes=()))
    r = res.variants[0]
    fast_bad = replace(r, name="a", metrics={**r.metrics, "mae": 0.2}, latency_ms={**r.latency_ms, "p50": 1.0})
    slow_good = replace(r, name="b", metrics={**r.metrics, "mae": 0.1}, latency_ms={**r.latency_ms, "p50": 5.0})
    slow_bad = replace(r, name="c", metrics={**r.metrics, "mae": 0.3, "auc": None}, latency_ms={**r.latency_ms, "p50": 6.0})
    assert pareto_front([fast_bad, slow_good, slow_bad]) == {"a", "b"}
    v = check_floors([fast_bad, slow_good, slow_bad], min_auc=0.5, max_mae=0.15)
    assert [(x.variant, x.metric) for x in v if x.metric == "mae"] == [("a", "mae"), ("c", "mae")]
    assert ("c", "auc") in [(x.variant, x.metric) for x in v]       # undefined AUC fails a floor
    assert to_json(res)["variants"][0]["pareto"] is True


def test_parse_cpuinfo_flags_and_cores() -> None:
    text = ("processor\t: 0\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: 0\n"
            "flags\t\t: fpu avx2 avx512f avx512_vnni amx_bf16\n\n"
            "processor\t: 1\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: 0\nflags\t\t: fpu\n\n")
    model, physical, flags = parse_cpuinfo(text)
    assert model == "Test CPU" and physical == 1
    assert flags == frozenset({"avx2", "avx512f", "avx512_vnni", "amx_bf16"})


def test_pytorch_row_from_checkpoint_gives_speedups(cohort, tmp_path: Path) -> None:
    """A real (tiny) XAttn-BMD checkpoint runs in its own torch worker; speed-ups refer to it."""
    import torch

    from bmd_edge.model import build_model
    from bmd_edge.model.checkpoint import save_checkpoint
    from bmd_edge.model.config import ModelConfig
    from bmd_edge.runtime.backends import INPUT_NAMES, OUTPUT_NAMES

    bundle, manifest = cohort
    cfg = ModelConfig(arch="resnet10t", d_model=16, n_heads=2, n_layers=1, image_size=32, width=8)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, cfg, {})
    onnx_path = tmp_path / "tiny_fp32.onnx"
    x = (torch.zeros(1, 1, 32, 32), torch.zeros(1, 10), torch.ones(1, 10))
    torch.onnx.export(model, x, str(onnx_path), input_names=list(INPUT_NAMES),
                      output_names=list(OUTPUT_NAMES), dynamo=False,
                      dynamic_axes={n: {0: "B"} for n in (*INPUT_NAMES, *OUTPUT_NAMES)})
    res = run_benchmark(BenchConfig(
        bundle=bundle, checkpoint=ckpt, manifest=manifest, measure=FAST, peaks=False,
        decode_sizes=(), only=("pytorch-fp32", "ort-fp32"), files=(("ort-fp32", onnx_path),)))
    pt, ort_row = res.row("pytorch-fp32"), res.row("ort-fp32")
    assert pt.status == "ok", pt.reason
    assert ort_row.status == "ok", ort_row.reason
    assert pt.metrics["mae"] == pytest.approx(ort_row.metrics["mae"], abs=1e-4)  # same net, same cases
    assert pt.speedup_vs_pytorch == pytest.approx(1.0)
    assert ort_row.speedup_vs_pytorch is not None and ort_row.speedup_vs_pytorch > 0
    assert res.flops["by_op"]["Conv"] > 0 and not res.flops["uncounted"]


def test_benchmark_runs_with_torch_blocked(cohort, tmp_path: Path) -> None:
    """The edge install has no torch: the command still runs, and the PyTorch row says why."""
    import subprocess
    import sys

    bundle, manifest = cohort
    code = ("import sys; sys.modules['torch'] = None\n"
            "from bmd_edge.cli import main\n"
            f"main(['benchmark', '--model', {str(bundle)!r}, '--manifest', {str(manifest)!r}, "
            "'--variants', 'pytorch-fp32,ort-fp32', '--runs', '2', '--seconds', '0.02', "
            f"'--threads', '1', '--no-decode', '--no-peaks', '--in-process', '--out', {str(tmp_path)!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {v["name"]: v for v in json.loads((tmp_path / "latency.json").read_text())["variants"]}
    assert rows["ort-fp32"]["status"] == "ok"
    assert rows["pytorch-fp32"]["status"] == "absent" and "torch" in rows["pytorch-fp32"]["reason"]


def test_accuracy_matches_scikit_learn() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score, roc_auc_score

    from bmd_edge.benchmark.runner import accuracy

    rng = np.random.default_rng(5)
    y = rng.normal(0.9, 0.12, 200)
    p = np.round(y + rng.normal(0, 0.08, 200), 2)          # rounding makes tied scores
    m = accuracy(y, list(p), 0.899)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert m["r2"] == pytest.approx(r2_score(y, p))
    assert m["auc"] == pytest.approx(roc_auc_score(y < 0.899, -p))
    assert accuracy(np.array([1.0, 1.1]), [1.0, 1.0], 0.899)["auc"] is None   # one class only


def test_int8_method_implied_by_calibration_record() -> None:
    from dataclasses import replace

    from bmd_edge.bundle import Provenance
    from bmd_edge.benchmark.runner import _tag_methods
    from bmd_edge.runtime.tiny import test_meta

    meta = test_meta("m", 32, {"openvino-int8": ("m.xml", "openvino", "int8"),
                               "openvino-fp32": ("f.xml", "openvino", "fp32"),
                               "x": ("x.xml", "openvino", "int8")})
    meta = replace(meta, variants={**meta.variants,
                                   "x": replace(meta.variants["x"], method="ptq")},
                   provenance=Provenance("none", {"torch_metrics_test": {
                       "fp32": {}, "ptq": {}, "qat": {}}}, {}))
    tagged = _tag_methods(meta, tuple(meta.variants))
    assert tagged["openvino-int8"]["method"] == "qat"
    assert "method" not in tagged["openvino-fp32"] and tagged["x"]["method"] == "ptq"
    plans = {p.name: p for p in plan_variants(tagged, Path("/b"))}
    assert plans["ov-int8-qat"].bundle_variant == "openvino-int8"
    assert plans["ov-int8-ptq"].bundle_variant == "x"


def test_synthetic_cases_when_no_manifest(cohort) -> None:
    bundle, _ = cohort
    res = run_benchmark(BenchConfig(bundle=bundle, synth_n=4, measure=FAST, only=("ort-fp32",),
                                    isolate=False, peaks=False, decode_sizes=()))
    assert res.dataset["n"] == 4 and res.dataset["source"].startswith("synthetic cohort n=4")
    assert res.variants[0].status == "ok" and res.variants[0].metrics["mae"] is not None
