"""End to end on a tiny model: quantize (PTQ → QAT 1 epoch) → export → load each file torch-free.

Real NNCF, real torch.onnx export, real ONNX Runtime and OpenVINO sessions; the runtime checks run
in a subprocess whose import system refuses torch, as on an edge install.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the train extra; CI installs it
from typer.testing import CliRunner  # noqa: E402

from bmd_edge.bundle import META_FILE, Bundle  # noqa: E402
from bmd_edge.cli import app  # noqa: E402
from bmd_edge.errors import BundleError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cohort(root: Path, n: int = 45, seed: int = 0) -> Path:
    """Tiny labelled cohort: 64 px 16-bit PNGs whose blob brightness follows the label."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[0:64, 0:64]
    rows = []
    for i in range(n):
        sex = "F" if i % 2 else "M"
        age = float(rng.uniform(60, 85))
        bmd = float(np.clip(0.95 - 0.006 * (age - 60) - 0.08 * (sex == "F")
                            + rng.normal(0, 0.08), 0.45, 1.3))
        img = 0.2 + 0.6 * bmd * np.exp(-((xx - 32) ** 2 + (yy - 30) ** 2) / 288.0)
        img = img + rng.normal(0, 0.02, img.shape)
        cv2.imwrite(str(root / "images" / f"c{i:03d}.png"),
                    (np.clip(img, 0, 1) * 65535).astype(np.uint16))
        rows.append({"image": f"images/c{i:03d}.png", "age_xray": f"{age:.1f}", "sex": sex,
                     "weight_kg": f"{rng.uniform(50, 95):.0f}", "fn_bmd": f"{bmd:.3f}",
                     "patient_id": f"p{i:03d}", "split": "val" if i % 3 == 0 else "train"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from bmd_edge.model import build_model
    from bmd_edge.model.checkpoint import save_checkpoint
    from bmd_edge.preprocess import PreprocessSpec
    from bmd_edge.training.config import resolve_config

    root = tmp_path_factory.mktemp("e2e")
    manifest = _cohort(root / "cohort")
    tc = resolve_config("tiny")
    cfg = tc.model_config()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.set_label_scale(0.8, 0.12)
    save_checkpoint(root / "best.pt", model, cfg,
                    {"preprocess": PreprocessSpec(size=cfg.image_size).to_dict(),
                     "train_config": tc.to_dict()})
    runner = CliRunner()
    r = runner.invoke(app, ["quantize", "--checkpoint", str(root / "best.pt"), "--manifest",
                            str(manifest), "--out", str(root / "q"), "--subset-size", "12",
                            "--qat-epochs", "1", "--batch-size", "8"])
    assert r.exit_code == 0, r.output
    from bmd_edge.bundle_trust import write_keypair

    write_keypair(root / "key.pem", root / "key.pub")  # this test's own signing key
    r = runner.invoke(app, ["export", "--checkpoint", str(root / "best.pt"), "--quantized",
                            str(root / "q"), "--out", str(root / "bundle"), "--coverage", "0.8",
                            "--sign-key", str(root / "key.pem")])
    assert r.exit_code == 0, r.output
    # Reference outputs from PyTorch on inputs with an odd batch size (dynamic batch check).
    from bmd_edge.compress.pipeline import _build
    from bmd_edge.compress.quantize import load_quantized

    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 1, 64, 64, generator=g), torch.randn(3, 10, generator=g),
         (torch.rand(3, 10, generator=g) > 0.3).float())
    qmodel, _ = load_quantized(root / "q" / "quantized.pt", _build, x)
    seen: list[torch.Tensor] = []  # the regression head's input: what `embedding` must equal
    hook = model.head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        ref = {"fp32": model(*x)[0].numpy(), "int8": qmodel(*x)[0].numpy()}
    hook.remove()
    np.savez(root / "ref.npz", image=x[0].numpy(), values=x[1].numpy(), present=x[2].numpy(),
             emb_fp32=seen[0].numpy(), **ref)
    return {"root": root, "bundle": root / "bundle", "ref": root / "ref.npz", "out": r.output,
            "pub": root / "key.pub"}


BLOCK_TORCH = """
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name == "nncf" or name.startswith("nncf."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
"""

RUN_VARIANTS = BLOCK_TORCH + """
import json, numpy as np
from bmd_edge.bundle import Bundle
from bmd_edge.compress.export import run_model_file
b = Bundle.load(sys.argv[1], trusted_keys=(sys.argv[3],))
ref = np.load(sys.argv[2])
batch = [(ref["image"], ref["values"], ref["present"])]
out = {}
for name, var in b.variants.items():
    pred, prec = run_model_file(b.verified_file(name), batch)
    out[name] = {"diff": float(np.abs(pred - ref[var.precision]).max()), "prec": prec,
                 "n": int(pred.shape[0])}
assert "torch" not in sys.modules
print(json.dumps(out))
"""


def test_every_variant_runs_torch_free_and_matches_torch(built: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", RUN_VARIANTS, str(built["bundle"]),
                           str(built["ref"]), str(built["pub"])], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(res) == {"openvino-int8", "onnx-int8", "openvino-fp32", "onnx-fp32"}
    for name, r in res.items():
        assert r["n"] == 3  # exported with batch 8, run with batch 3: dynamic batch works
        assert r["prec"] == "f32"  # OpenVINO pinned to f32, not silently bf16
        # int8 compared with the torch QAT model; ORT's layout adds output quantizers sized on
        # the calibration cases (ort_layout.py), one more rounding that torch does not model.
        limit = 1e-4 if name.endswith("fp32") else 2e-2 if name == "onnx-int8" else 5e-3
        assert r["diff"] <= limit, (name, r)


def test_every_variant_has_the_embedding_output_of_the_head_input(built: dict) -> None:
    """Both fp32 and NNCF-int8 graphs (ONNX and IR) carry `embedding` = the head's input."""
    from bmd_edge.runtime.backends import SessionConfig, open_session

    ref = np.load(built["ref"])
    b = Bundle.load(built["bundle"], trusted_keys=(built["pub"],))
    for name, var in b.variants.items():
        s = open_session(b.verified_file(name),
                         SessionConfig("onnxruntime" if var.file.endswith(".onnx") else "openvino"))
        assert s.has_embedding, name
        bmd, _, emb = s.run_full(ref["image"], ref["values"], ref["present"])
        assert emb is not None and emb.shape == ref["emb_fp32"].shape, name
        tol = 1e-4 if var.precision == "fp32" else 0.25 * float(np.abs(ref["emb_fp32"]).mean())
        assert float(np.abs(emb - ref["emb_fp32"]).mean()) <= tol, name


def test_bundle_json_content(built: dict) -> None:
    b = Bundle.load(built["bundle"], trusted_keys=(built["pub"],))
    assert b.trust.kind == "signed"
    m = b.meta
    assert m.references.screening_threshold_gcm2 == 0.899
    assert m.output.unit == "g/cm2"
    assert m.references.tables["t_score"]["mean_gcm2"] == pytest.approx(1.0386, abs=1e-4)
    assert m.interval.method == "split-conformal" and m.interval.coverage == 0.8
    # 15 held-out cases, interleaved by label rank: 8 set the interval, 7 are scored.
    assert m.interval.n_calibration == 8 and m.provenance.test_cases() == 7
    for name, var in m.variants.items():
        assert {"mae", "rmse", "r2", "auc"} <= set(var.metrics), name
    assert set(m.files) == {"model_int8.xml", "model_int8.bin", "model_int8.onnx",
                            "model_fp32.xml", "model_fp32.bin", "model_fp32.onnx"}
    assert "not for diagnosis" in m.intended_use
    # int8 weights really are int8: the folded ONNX is smaller than the fp32 one.
    sizes = {n: v.metrics["size_bytes"] for n, v in m.variants.items()}
    assert sizes["onnx-int8"] < 0.7 * sizes["onnx-fp32"]  # type: ignore[operator]


def test_metadata_is_inside_the_model_files(built: dict) -> None:
    import onnx
    import openvino as ov

    meta = Bundle.load(built["bundle"], trusted_keys=(built["pub"],)).meta
    props = {p.key: p.value for p in onnx.load(str(built["bundle"] / "model_int8.onnx")).metadata_props}
    inner = json.loads(props["bmd_edge.metadata"])
    assert inner == meta.embedded() and "files" not in inner and "signature" not in inner
    model = ov.Core().read_model(str(built["bundle"] / "model_int8.xml"))
    assert model.get_rt_info(["bmd_edge", "format_version"]).astype(str) == "bmd-edge-bundle/2"
    assert json.loads(model.get_rt_info(["bmd_edge", "metadata"]).astype(str)) == inner
    assert {o.get_any_name() for o in model.outputs} >= {"field_attention"}


def test_openvino_runs_every_quantized_conv_and_linear_in_int8(built: dict) -> None:
    """An explicit zero weight zero point made OpenVINO run half the layers in f32 (see onnx_int8)."""
    import onnx
    import openvino as ov

    model = onnx.load(str(built["bundle"] / "model_int8.onnx"))
    inits = {t.name for t in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weight_dq and all(len(n.input) == 2 for n in weight_dq)
    compiled = ov.Core().compile_model(str(built["bundle"] / "model_int8.xml"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    precisions: dict[str, list[str]] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Convolution", "FullyConnected"):
            precisions.setdefault(kind, []).append(info["runtimePrecision"].astype(str))
    convs = precisions["Convolution"]
    assert convs and all(p in ("u8", "i8") for p in convs), precisions


def test_quantize_wrote_case_list_and_recipe(built: dict) -> None:
    q = built["root"] / "q"
    with open(q / "calibration_cases.csv") as fh:
        rows = list(csv.DictReader(fh))
    roles = [r["role"] for r in rows]
    assert roles.count("int8-ranges") == 12 and roles.count("interval") == 8
    assert {r["sex"] for r in rows if r["role"] == "int8-ranges"} == {"F", "M"}
    assert "stratified by FN-BMD quantile bin" in (q / "calibration.md").read_text()


@pytest.mark.parametrize("name", ["model_int8.bin", "model_int8.xml", "model_int8.onnx",
                                  "model_fp32.onnx", "model_fp32.bin", META_FILE])
def test_tampered_byte_fails_naming_the_file(built: dict, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "b"
    shutil.copytree(built["bundle"], copy)
    data = bytearray((copy / name).read_bytes())
    i = data.index(b"0.899") + 4 if name == META_FILE else len(data) // 2
    data[i] = (data[i] + 1) % 256 if name != META_FILE else ord("7")
    (copy / name).write_bytes(bytes(data))
    variant = {"model_int8.bin": "openvino-int8", "model_int8.xml": "openvino-int8",
               "model_int8.onnx": "onnx-int8", "model_fp32.onnx": "onnx-fp32",
               "model_fp32.bin": "openvino-fp32", META_FILE: "onnx-int8"}[name]
    message = ("signature does not match its content" if name == META_FILE
               else f"checksum mismatch for file {name}")
    with pytest.raises(BundleError, match=message):
        Bundle.load(copy, trusted_keys=(built["pub"],)).verified_file(variant)


def test_export_rejects_unknown_format_and_needs_quantized_for_int8(built: dict) -> None:
    from bmd_edge.cli import main

    root = built["root"]
    for args, msg in (
        (["--format", "tflite"], "unknown export format 'tflite'"),
        (["--format", "onnx-int8", "--manifest", str(root / "cohort" / "manifest.csv")],
         "need --quantized"),
    ):
        proc = subprocess.run([sys.executable, "-c", "from bmd_edge.cli import main; main()",
                               "export", "--checkpoint", str(root / "best.pt"), "--out",
                               str(root / "never"), *args], capture_output=True, text=True,
                              cwd=REPO, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert msg in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "never").exists()
    del main


def test_onnx_runtime_fuses_every_int8_convolution(built: dict) -> None:
    """NNCF's layout left 13 of 21 convs in fp32 under ORT, dequantizing weights per call."""
    import onnx

    from bmd_edge.compress.ort_layout import fused_op_counts, optimized_graph

    path = built["bundle"] / "model_int8.onnx"
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node)
    counts = fused_op_counts(path)
    assert convs >= 2 and counts.get("QLinearConv", 0) == convs, counts
    opt = optimized_graph(path.read_bytes())
    inits = {t.name for t in opt.graph.initializer}
    weight_dq = [n.name for n in opt.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weight_dq == [], weight_dq  # no weight is dequantized at run time


def test_relayout_tool_refuses_a_bundle_already_in_ort_layout(built: dict, tmp_path: Path) -> None:
    """export writes ORT's layout itself; the post-hoc tool (for older bundles) must say so."""
    from bmd_edge.compress.ort_layout_bundle import is_ort_layout, relayout_bundle
    from bmd_edge.errors import InputError

    assert is_ort_layout(built["bundle"] / "model_int8.onnx")
    assert not is_ort_layout(built["bundle"] / "model_fp32.onnx")
    with pytest.raises(InputError, match="already in ONNX Runtime's layout"):
        relayout_bundle(built["bundle"], tmp_path / "out", [])
    assert not (tmp_path / "out").exists()
