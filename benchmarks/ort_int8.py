"""ONNX Runtime int8 vs fp32 at batch 1: NNCF's QDQ layout, the ORT layout, and fp32 (#16 item 5).

    .venv/bin/python benchmarks/ort_int8.py [--bundle DIR] [--fp32 F.onnx] [--nncf-int8 F.onnx]
        [--manifest M.csv | --synth 200] [--rounds 3] [--runs 500]

For each graph: which convolutions ORT's optimized graph (session option
optimized_model_filepath) runs as QLinearConv, how many DequantizeLinear nodes are left, the
batch-1 p50 wall time with the bundle's threads (2) and the median CPU time of one call on one
thread (contention inflates wall time far more than CPU time), and MAE/AUC on labelled cases.

Inputs: the bundle's onnx-int8 file. When that file is still in NNCF's layout (the pre-#16
bundle), the ORT layout is made from it here with `compress.ort_layout` (ranges from the first
quarter of the cases, scored on the rest). fp32: --fp32, else the bundle's model_fp32.onnx, else
the int8 graph dequantized back to float (same architecture and op count as the fp32 export, the
QAT weights in float: equal timing; its accuracy is that of the dequantized weights, not of the
original fp32 model, and the table says so).
Writes benchmarks/results/ort_int8.md and ort_int8.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bmd_edge.benchmark.machine import detect_machine  # noqa: E402
from bmd_edge.compress.ort_layout import fused_op_counts  # noqa: E402


def dequantized_fp32(src: Path, dst: Path) -> Path:
    """`src` (QDQ) with weight DQs folded to fp32 and activation Q/DQ pairs bypassed."""
    import onnx
    from onnx import numpy_helper

    from bmd_edge.compress.ort_layout import _constants

    m = onnx.load(str(src))
    consts = _constants(m)
    rename: dict[str, str] = {}
    keep, inits = [], []
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in consts:
            q = consts[n.input[0]].astype(np.float32)
            s = np.asarray(consts[n.input[1]], np.float32)
            z = (np.asarray(consts[n.input[2]], np.float32) if len(n.input) > 2 and n.input[2]
                 else np.zeros_like(s))
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if s.ndim == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[axis % q.ndim] = -1
                s, z = s.reshape(shape), z.reshape(shape)
            inits.append(numpy_helper.from_array(((q - z) * s).astype(np.float32), n.output[0]))
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            rename[n.output[0]] = n.input[0]
        else:
            keep.append(n)

    def root(x: str) -> str:
        while x in rename:
            x = rename[x]
        return x

    for n in keep:
        for i, x in enumerate(n.input):
            n.input[i] = root(x)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    m.graph.initializer.extend(inits)
    onnx.save(m, str(dst))
    return dst


def is_ort_layout(path: Path) -> bool:
    import onnx

    return any(n.name.startswith("ort_layout/") for n in onnx.load(str(path)).graph.node)


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def feeds_of(image: np.ndarray, values: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    return {"image": image, "values": values, "present": present}


def wall_p50(path: Path, feed: dict[str, np.ndarray], runs: int, threads: int) -> float:
    s = session(path, threads)
    for _ in range(20):
        s.run(["bmd"], feed)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(["bmd"], feed)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def cpu_1thread(path: Path, feed: dict[str, np.ndarray], runs: int) -> float:
    s = session(path, 1)  # one intra-op thread: ORT runs the graph on the calling thread
    for _ in range(10):
        s.run(["bmd"], feed)
    ts = []
    for _ in range(runs):
        t = time.thread_time()
        s.run(["bmd"], feed)
        ts.append(time.thread_time() - t)
    return float(np.median(ts) * 1e3)


def predict(path: Path, arrays: Any, idx: np.ndarray) -> np.ndarray:
    s = session(path, 2)
    return np.concatenate([s.run(["bmd"], feeds_of(*b))[0].reshape(-1)
                           for b in arrays.batches(16, idx)]).astype(np.float64)


def load_cases(bundle: Path, manifest: Path | None, n_synth: int, work: Path) -> Any:
    from bmd_edge.compress.pipeline import load_arrays, read_cases, synth_manifest
    from bmd_edge.preprocess import PreprocessSpec

    meta = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    spec = PreprocessSpec.from_dict(meta["input"]["preprocess"])
    if manifest is None:
        manifest = synth_manifest(n_synth, work / "cohort", seed=2027, size=256)
    return load_arrays(read_cases(manifest), spec), str(manifest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "export")
    ap.add_argument("--fp32", type=Path, default=None)
    ap.add_argument("--nncf-int8", type=Path, default=None,
                    help="the same model's int8 ONNX in NNCF's layout (the 'before' row)")
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--synth", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timing-only", action="store_true",
                    help="no MAE/AUC (e.g. a canonical-crop model fed whole films here)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ort_int8.md")
    a = ap.parse_args()
    from bmd_edge.compress.ort_layout import ort_layout
    from bmd_edge.compress.pipeline import metrics_of

    work = Path(tempfile.mkdtemp(prefix="bmd-ort-int8-"))
    load0 = os.getloadavg()
    arrays, source = load_cases(a.bundle, a.manifest, a.synth, work)
    n = len(arrays.label)
    calib_idx, test_idx = np.arange(n // 4), np.arange(n // 4, n)
    shipped = a.bundle / "model_int8.onnx"
    rows: dict[str, Path] = {}
    notes = []
    if is_ort_layout(shipped):
        if a.nncf_int8 is not None:
            rows["int8, NNCF layout (before)"] = a.nncf_int8
        rows["int8, ORT layout (after, shipped)"] = shipped
    else:
        rows["int8, NNCF layout (before, shipped)"] = shipped
        made = work / "model_int8_ort.onnx"
        ort_layout(shipped, made, [feeds_of(*b) for b in arrays.batches(16, calib_idx)])
        rows["int8, ORT layout (after)"] = made
        notes.append(f"ORT layout made here from the shipped file, output ranges from "
                     f"{len(calib_idx)} cases not scored.")
    fp32 = a.fp32 or (a.bundle / "model_fp32.onnx")
    if fp32.is_file():
        rows = {"fp32": fp32, **rows}
    else:
        nncf = a.nncf_int8 or (shipped if not is_ort_layout(shipped) else None)
        if nncf is None:
            raise SystemExit("no fp32 file: pass --fp32 or --nncf-int8")
        rows = {"fp32 (int8 weights dequantized)": dequantized_fp32(nncf, work / "fp32.onnx"),
                **rows}
        notes.append("fp32 row: the int8 graph dequantized to float (the shipped bundle has no "
                     "fp32 file); same ops as the fp32 export, so the timing is the fp32 timing; "
                     "its accuracy is that of the QAT weights in float.")

    feed = feeds_of(*arrays.batches(1, [int(test_idx[0])])[0])
    res: dict[str, dict[str, Any]] = {}
    for name, path in rows.items():
        import onnx

        c = fused_op_counts(path)
        convs = sum(nd.op_type == "Conv" for nd in onnx.load(str(path)).graph.node)
        pred = (np.zeros(len(test_idx)) if a.timing_only else predict(path, arrays, test_idx))
        res[name] = {"file": path.name, "convs": convs, "qlinearconv": c.get("QLinearConv", 0),
                     "dq": c.get("DequantizeLinear", 0), "q": c.get("QuantizeLinear", 0),
                     "metrics": ({"mae": float("nan"), "auc": float("nan")} if a.timing_only
                                 else metrics_of(arrays.label[test_idx], pred)), "pred": pred,
                     "wall": [], "cpu": []}
    for _ in range(a.rounds):  # interleaved: every row sees the same machine state
        for name, path in rows.items():
            res[name]["wall"].append(wall_p50(path, feed, a.runs, a.threads))
            res[name]["cpu"].append(cpu_1thread(path, feed, a.runs // 2))
    load1 = os.getloadavg()
    ref_name = next(iter(rows))
    ref = res[ref_name]
    L = ["# ONNX Runtime int8 vs fp32, batch 1", "",
         f"Machine: {detect_machine().cpu_model}, {os.cpu_count()} CPUs, shared: load "
         f"{load0[0]:.1f} at start, {load1[0]:.1f} at end (2 cores: above 2 every process waits, "
         "so wall times are inflated; the one-thread CPU time is the steadier comparison). "
         f"onnxruntime {__import__('onnxruntime').__version__}; bundle `{a.bundle}`; cases: "
         f"{source} ({len(test_idx)} scored). {a.rounds} interleaved rounds; p50 of {a.runs} "
         f"calls each, {a.threads} threads.", ""]
    L += [f"- {x}" for x in notes] + [""]
    L += ["| graph | Conv → QLinearConv in ORT's optimized graph | DequantizeLinear / "
          "QuantizeLinear left | p50 ms (rounds) | 1-thread CPU ms (rounds) | × fp32 (wall, "
          "median) | × fp32 (CPU) | MAE | AUC | max abs Δ vs first row g/cm² |",
          "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for name, r in res.items():
        w, c = np.median(r["wall"]), np.median(r["cpu"])
        L.append(f"| {name} | {r['qlinearconv']} of {r['convs']} | {r['dq']} / {r['q']} | "
                 f"{', '.join(f'{x:.2f}' for x in r['wall'])} | "
                 f"{', '.join(f'{x:.2f}' for x in r['cpu'])} | "
                 f"{np.median(ref['wall']) / w:.2f} | {np.median(ref['cpu']) / c:.2f} | "
                 f"{r['metrics']['mae']:.4f} | {r['metrics']['auc']:.3f} | "
                 f"{float(np.abs(r['pred'] - ref['pred']).max()):.4f} |")
    L.append("")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(L), encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = list(res)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [np.median(res[k]["wall"]) for k in names], 0.4,
           label=f"p50 wall, {a.threads} threads")
    ax.bar(x + 0.2, [np.median(res[k]["cpu"]) for k in names], 0.4, label="CPU, 1 thread")
    ax.set_xticks(x, [k.replace(", ", "\n", 1) for k in names], fontsize=8)
    ax.set_ylabel("ms per batch-1 call")
    ax.set_title(f"ONNX Runtime, batch 1 (load {load0[0]:.0f}→{load1[0]:.0f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out.with_suffix(".png"), dpi=110)
    print("\n".join(L))


if __name__ == "__main__":
    main()
