"""Latency, start-up, memory and batch throughput of torch-free inference (`bmd-edge predict`).

    .venv/bin/python benchmarks/predict_latency.py [--bundle DIR] [--batch-n 1000] [--repeats 50]

Measures, on the synthetic cohort's images (16-bit PNG at 512/1024/2048 px, JPEG, DICOM):
  1. decode (read_image) p50/p95 per format and size;
  2. warm preprocess + encode + infer p50/p95 for one image (the Predictor path minus decode);
  3. whole-process `bmd-edge predict --json` wall time and peak RSS, cold (empty OpenVINO
     cache dir) and warm (cache filled, files in page cache);
  4. batch mode throughput over N 512² PNGs (folder → results.csv), images/s.
Writes benchmarks/results/predict_latency.md. Targets (issue 4): preprocess+infer p50 ≤ 8 ms;
whole process ≤ 0.5 s warm and ≤ 250 MiB; batch ≥ 150 img/s on 512² PNGs.
Without a bundle (none shipped yet) it falls back to the tiny test bundle and says so: then the
inference numbers measure the pipeline, not the real network.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bmd_edge.image_io import read_image
from bmd_edge.preprocess import preprocess
from bmd_edge.schema import encode, parse_record


def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def make_images(work: Path) -> dict[str, Path]:
    """Synthetic hip films in every benchmarked format; returns label → path."""
    from bmd_edge.synth import generate_cohort

    man = generate_cohort(20, work / "cohort", seed=7, size=512, dicom=True, view="hip",
                          workers=1)
    cohort = Path(man).parent
    base = min((cohort / "images").glob("*.png"))
    img16 = cv2.imread(str(base), cv2.IMREAD_UNCHANGED)
    out: dict[str, Path] = {"png16 512²": base}
    for s in (1024, 2048):
        p = work / f"hip_{s}.png"
        cv2.imwrite(str(p), cv2.resize(img16, (s, s), interpolation=cv2.INTER_CUBIC))
        out[f"png16 {s}²"] = p
    jpg = work / "hip_1024.jpg"
    cv2.imwrite(str(jpg), cv2.resize((img16 >> 8).astype(np.uint8), (1024, 1024)),
                [cv2.IMWRITE_JPEG_QUALITY, 92])
    out["jpeg 1024²"] = jpg
    out["dicom 512² (16-bit)"] = min((cohort / "dicom").glob("*.dcm"))
    out["_cohort"] = cohort
    return out


def bench_decode(images: dict[str, Path], repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    for label, path in images.items():
        if label.startswith("_"):
            continue
        read_image(path)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            read_image(path)
            ts.append(time.perf_counter() - t)
        rows.append((label, *pct(ts)))
    return rows


def bench_infer(bundle: Path, path: Path, repeats: int, threads: int) -> dict[str, object]:
    from bmd_edge.runtime.predictor import Predictor

    out: dict[str, object] = {}
    px = read_image(path).pixels
    for backend in ("openvino", "onnxruntime"):
        p = Predictor.load(bundle, backend=backend, threads=threads)
        rec = parse_record({"age_xray": 72, "age_bmd": 72, "sex": "F", "weight_kg": 64})
        tp, ti = [], []
        for i in range(repeats + 5):
            t0 = time.perf_counter()
            x = preprocess(px, p.spec)
            v, m = encode(rec, p.schema)
            t1 = time.perf_counter()
            p.session.run(x[None], v[None], m[None])
            t2 = time.perf_counter()
            if i >= 5:
                tp.append(t1 - t0)
                ti.append(t2 - t1)
        tot = [a + b for a, b in zip(tp, ti)]
        out[backend] = {"variant": p.variant, "precision": p.precision, "threads": p.session.threads,
                        "pre": pct(tp), "infer": pct(ti), "total": pct(tot)}
    return out


def bench_process(bundle: Path, image: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Wall time and peak RSS of `bmd-edge predict --json`, cold and warm OpenVINO cache."""
    cache = Path(tempfile.mkdtemp(prefix="bmd-cache-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    cmd = [sys.executable, "-m", "bmd_edge.cli", "predict", str(image), "--age", "72", "--sex",
           "F", "--model", str(bundle), "--json"]
    results: dict[str, tuple[float, float]] = {}
    for label in ("cold", "warm"):
        walls, rss = [], []
        for _ in range(1 if label == "cold" else runs):
            code = ("import resource,subprocess,sys,time;t=time.perf_counter();"
                    "r=subprocess.run(sys.argv[1:],capture_output=True);"
                    "w=time.perf_counter()-t;"
                    "m=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
                    "print(r.returncode,w,m)")
            o = subprocess.run([sys.executable, "-c", code, *cmd], env=env, check=False,
                               capture_output=True, text=True, cwd=ROOT).stdout.split()
            if o[0] != "0":
                raise SystemExit(f"predict failed in benchmark: {o}")
            walls.append(float(o[1]))
            rss.append(float(o[2]) / 1024)
        results[label] = (float(np.median(walls)), float(max(rss)))
    shutil.rmtree(cache, ignore_errors=True)
    return results


def bench_batch(bundle: Path, cohort: Path, n: int, work: Path) -> tuple[float, int, int]:
    from bmd_edge.runtime.batch import items_from_directory, run_batch
    from bmd_edge.runtime.predictor import Predictor

    folder = work / "batch"
    folder.mkdir()
    src = sorted((cohort / "images").glob("*.png"))
    for i in range(n):  # distinct files (same decode work as distinct images)
        os.link(src[i % len(src)], folder / f"img_{i:05d}.png")
    p = Predictor.load(bundle, backend="openvino", threads=1)
    items = items_from_directory(folder, {"age": 72, "sex": "F"})
    s = run_batch(p, items, work / "results.csv", batch_size=16, workers=2)
    return s.images_per_second, s.n_ok, s.n_failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--batch-n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                    "predict_latency.md")
    args = ap.parse_args()
    from bmd_edge.bundle import default_bundle_path
    from bmd_edge.runtime.backends import default_threads

    work = Path(tempfile.mkdtemp(prefix="bmd-bench-"))
    bundle = args.bundle or default_bundle_path()
    note = ""
    if not (bundle / "bundle.json").is_file():
        from bmd_edge.runtime.tiny import write_tiny_bundle

        bundle = write_tiny_bundle(work / "tiny_bundle", size=224)
        note = ("**No real bundle was available: the tiny closed-form test bundle (224 px input) "
                "was used, so inference times measure the pipeline, not the network.**")
    threads = args.threads or default_threads()
    images = make_images(work)
    dec = bench_decode(images, args.repeats)
    inf = bench_infer(bundle, images["png16 512²"], args.repeats, threads)
    proc = bench_process(bundle, images["png16 512²"], runs=5)
    ips, n_ok, n_failed = bench_batch(bundle, images["_cohort"], args.batch_n, work)
    load = os.getloadavg()

    L = ["# predict latency (torch-free runtime)", "",
         f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
         f"load average at end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
         "(a shared machine: other jobs inflate wall times). "
         f"Bundle: `{bundle.name}`. Threads: {threads}. Python {platform.python_version()}.", ""]
    if note:
        L += [note, ""]
    L += ["## Decode (read_image), warm", "", "| input | p50 ms | p95 ms |", "|---|---:|---:|"]
    L += [f"| {lbl} | {a:.1f} | {b:.1f} |" for lbl, a, b in dec]
    L += ["", "## Preprocess + encode + infer, one image, warm (target p50 ≤ 8 ms)", "",
          "| backend | variant | precision | threads | preprocess p50/p95 ms | infer p50/p95 ms "
          "| total p50/p95 ms |", "|---|---|---|---:|---:|---:|---:|"]
    for be, d in inf.items():
        L.append(f"| {be} | {d['variant']} | {d['precision']} | {d['threads']} | "
                 f"{d['pre'][0]:.2f} / {d['pre'][1]:.2f} | {d['infer'][0]:.2f} / {d['infer'][1]:.2f}"
                 f" | {d['total'][0]:.2f} / {d['total'][1]:.2f} |")
    L += ["", "## Whole process `bmd-edge predict --json` (targets: warm ≤ 0.5 s, ≤ 250 MiB)", "",
          "| start | wall s (median) | peak RSS MiB |", "|---|---:|---:|"]
    L += [f"| {k} | {w:.2f} | {r:.0f} |" for k, (w, r) in proc.items()]
    L += ["", f"## Batch mode, {args.batch_n} × 512² 16-bit PNG (target ≥ 150 img/s)", "",
          f"{ips:.0f} images/s ({n_ok} ok, {n_failed} failed; 2 prepare threads, "
          "OpenVINO 1 thread, batch 16).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(L), encoding="utf-8")
    print("\n".join(L))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
