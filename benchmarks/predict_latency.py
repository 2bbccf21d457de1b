"""#15 latency acceptance: locate + BMD per image, whole-process `predict` vs PyTorch eager, batch.

    .venv/bin/python benchmarks/predict_latency.py [--bundle DIR] [--allow-unsigned]
        [--locator-checkpoint RUN/best.pt] [--batch-n 1000] [--repeats 100] [--rounds 3]

Measures, on synthetic 512² hip films from the current `synth` world:
  1. decode (read_image) p50/p95 per format and size;
  2. warm, batch 1, per backend with the int8 files: locate (letterbox + locator network +
     peak decoding) + canonical crop + encode + BMD network — p50/p95 of each stage and the
     total (target: total p50 ≤ 8 ms);
  3. whole-process `bmd-edge predict --json` (cold: empty OpenVINO cache; warm: median of 5)
     against `benchmarks/torch_eager_predict.py` — the same job (read → locate → crop → BMD) as
     one plain PyTorch-eager script — in the same round (targets: warm ≤ 0.5 s, ≥ 3× faster);
  4. where the warm whole-process time goes (each start-up stage timed in a fresh process);
  5. batch mode over N 512² PNGs (`run_batch`: folder → results.csv), images/s (target ≥ 250).
Every number carries the 1-minute load average: the machine is shared. Writes
benchmarks/results/predict_latency.md and predict_latency.png.

The bundle must carry a locator (#15's front end); the PyTorch-eager baseline needs the
locator's torch checkpoint (--locator-checkpoint) and runs the bundle's BMD architecture.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bmd_edge.benchmark.machine import detect_machine  # noqa: E402
from bmd_edge.image_io import read_image  # noqa: E402

RUN1 = Path("/work/wt/locate/local/runs/run1")  # this session's locator training run (not in git)


def load1() -> float:
    """1-minute load average now: the machine is shared, so every number carries it."""
    return os.getloadavg()[0]


def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def make_images(work: Path) -> dict[str, Path]:
    """Synthetic hip films in every benchmarked format; returns label → path."""
    from bmd_edge.synth import generate_cohort

    man = generate_cohort(24, work / "cohort", seed=7, size=512, dicom=True, view="hip",
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


def bench_decode(images: dict[str, Path], repeats: int) -> list[tuple[str, float, float, float]]:
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
        rows.append((label, *pct(ts), load1()))
    return rows


def crop_spec_note(bundle: Any) -> str:
    crop = bundle.meta.input.crop
    return ("the bundle's canonical crop (input.crop)" if crop is not None else
            "no input.crop in this bundle: the located hip's whole-film preprocessing "
            "(oriented by the pixels), as the front end does for such bundles")


STAGES_1 = ("prepare: gate + locate + crop + encode", "infer: BMD network + readout")
PARTS = ("locator alone", "crop alone", "BMD network alone")


def bench_locate_bmd(bundle: Any, films: list[Path], repeats: int,
                     threads: int) -> dict[str, dict[str, Any]]:
    """Warm batch 1 through the real predict path (Predictor.prepare on a decoded film, then
    Predictor.infer) per backend, plus the locator, the crop and the BMD network timed alone."""
    from bmd_edge.runtime.front_end import hip_input
    from bmd_edge.runtime.predictor import Predictor

    rads = [read_image(f) for f in films]
    out: dict[str, dict[str, Any]] = {}
    for backend in ("openvino", "onnxruntime"):
        p = Predictor.load(bundle, backend=backend, threads=threads)
        if p.locator is None:
            raise SystemExit(f"bundle {bundle.root} has no locator: #15's front end is not in it")
        times: dict[str, list[float]] = {s: [] for s in (*STAGES_1, "total", *PARTS)}
        cpu, n_hips = [], 0
        for i in range(repeats + 5):
            rad = rads[i % len(rads)]
            c0 = time.process_time()
            t0 = time.perf_counter()
            prep = p.prepare(rad, age=72, sex="F")
            t1 = time.perf_counter()
            p.infer([prep])
            t2 = time.perf_counter()
            c1 = time.process_time()
            found = p.locator.locate(rad.pixels)
            t3 = time.perf_counter()
            hip = found.hips[0]
            x, _ = hip_input(rad.pixels, hip, len(found.hips), p.spec, p.crop_spec)
            t4 = time.perf_counter()
            p.session.run(prep.images[:1], prep.values[None], prep.present[None])
            t5 = time.perf_counter()
            if i >= 5:
                n_hips += len(prep.hips)
                for s, dt in zip((*STAGES_1, "total", *PARTS),
                                 (t1 - t0, t2 - t1, t2 - t0, t3 - t2, t4 - t3, t5 - t4)):
                    times[s].append(dt)
                cpu.append(c1 - c0)
        loc_file = next((v.file for v in bundle.meta.locator.variants.values()
                         if v.runtime == backend and v.precision == "int8"), "?")
        out[backend] = {"variant": p.variant, "locator": loc_file, "threads": threads,
                        **{s: pct(ts) for s, ts in times.items()}, "cpu": pct(cpu)[0],
                        "hips": n_hips / repeats, "load": load1()}
    return out


def _timed_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, peak RSS MiB, CPU s, stdout) of one child process, measured from outside."""
    code = ("import resource,subprocess,sys,time;t=time.perf_counter();"
            "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
            "w=time.perf_counter()-t;"
            "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
            "print(repr((r.returncode,w,u.ru_maxrss,u.ru_utime+u.ru_stime,r.stdout[-2000:],"
            "r.stderr[-2000:])))")
    o = subprocess.run([sys.executable, "-c", code, *cmd], env=env, check=False,
                       capture_output=True, text=True, cwd=ROOT).stdout
    rc, wall, rss, cpu, out, err = eval(o)  # noqa: S307 - our own repr of a tuple
    if rc != 0:
        raise SystemExit(f"benchmark child failed ({' '.join(cmd[:4])} …): {err.strip()[-500:]}")
    return float(wall), float(rss) / 1024, float(cpu), out


def bench_process(bundle: Path, image: Path, runs: int, torch_cmd: list[str] | None,
                  extra: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """`bmd-edge predict --json` cold and warm, and the PyTorch-eager script, same round."""
    cache = Path(tempfile.mkdtemp(prefix="bmd-cache-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    cmd = [sys.executable, "-m", "bmd_edge.cli", "predict", str(image), "--age", "72", "--sex",
           "F", "--model", str(bundle), "--json", *extra]
    results: dict[str, tuple[float, float, float, float]] = {}
    jobs = [("predict cold", cmd, 1), ("predict warm", cmd, runs)]
    if torch_cmd:
        jobs.append(("PyTorch eager", torch_cmd, max(3, runs // 2)))
    for label, c, n in jobs:
        walls, rss, cpu = [], [], []
        for _ in range(n):
            w, r, cp, _ = _timed_process(c, env)
            walls.append(w)
            rss.append(r)
            cpu.append(cp)
        results[label] = (float(np.median(walls)), float(max(rss)), float(np.median(cpu)),
                          load1())
    shutil.rmtree(cache, ignore_errors=True)
    return results


def predict_json(bundle: Path, image: Path, extra: list[str]) -> dict[str, Any]:
    """One `predict --json` result: says whether the CLI really located the hip."""
    out = subprocess.run([sys.executable, "-m", "bmd_edge.cli", "predict", str(image), "--age",
                          "72", "--sex", "F", "--model", str(bundle), "--json", *extra], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out)


def bench_batch(bundle: Any, cohort: Path, n: int, work: Path,
                threads: int = 1) -> tuple[float, int, int, float, float]:
    from bmd_edge.runtime.batch import items_from_directory, run_batch
    from bmd_edge.runtime.predictor import Predictor

    folder = work / "batch"
    if not folder.is_dir():
        folder.mkdir()
        src = sorted((cohort / "images").glob("*.png"))
        for i in range(n):  # distinct files (same decode work as distinct images)
            os.link(src[i % len(src)], folder / f"img_{i:05d}.png")
    p = Predictor.load(bundle, backend="openvino", threads=threads)
    items = items_from_directory(folder, {"age": 72, "sex": "F"})
    c0 = time.process_time()
    s = run_batch(p, items, work / "results.csv", batch_size=16, workers=2)
    cpu_ms = (time.process_time() - c0) * 1000 / max(1, n)
    return s.images_per_second, s.n_ok, s.n_failed, cpu_ms, load1()


STAGES = r"""
import sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
import bmd_edge.cli
t2 = time.perf_counter()
from bmd_edge.runtime.predictor import Predictor
from bmd_edge.bundle import Bundle
from bmd_edge.runtime.backends import import_openvino
t3 = time.perf_counter()
import_openvino()
t4 = time.perf_counter()
from pathlib import Path
b = Bundle.load(Path(sys.argv[1]), allow_unsigned=len(sys.argv) > 3)
t5 = time.perf_counter()
p = Predictor.load(b, backend="openvino")
t6 = time.perf_counter()
prep = p.prepare(sys.argv[2], age=72, sex="F")
t7 = time.perf_counter()
p.infer([prep])
t8 = time.perf_counter()
p.infer([prep])
t9 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7, t9 - t8)
"""
STAGE_NAMES = ("import numpy", "import bmd_edge.cli", "import runtime.predictor, bundle",
               "import openvino (no converter)", "Bundle.load (bundle.json + sha256)",
               "Predictor.load (compile from cache)", "prepare (read + gate + locate + crop)",
               "first inference", "second inference")


def bench_stages(bundle: Path, image: Path, extra: list[str],
                 runs: int = 3) -> list[tuple[str, float, float]]:
    """Where the whole-process time goes: each start-up stage timed in a fresh process."""
    got = []
    for _ in range(runs):
        o = subprocess.run([sys.executable, "-c", STAGES, str(bundle), str(image), *extra],
                           check=True,
                           capture_output=True, text=True, cwd=ROOT).stdout.split()
        got.append([float(x) * 1000 for x in o])
    a = np.asarray(got)
    return [(n, float(np.median(a[:, i])), float(a[:, i].max()))
            for i, n in enumerate(STAGE_NAMES)]


def plot(rounds: list[tuple[Any, ...]], out: Path) -> None:
    """Left: per-image stage p50 per backend (round medians); right: whole-process wall times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    backends = list(rounds[0][0])
    bottom = np.zeros(len(backends))
    for s in STAGES_1:
        v = np.array([np.median([r[0][b][s][0] for r in rounds]) for b in backends])
        a1.bar(backends, v, bottom=bottom, label=s)
        bottom += v
    a1.axhline(8, color="k", ls="--", lw=1, label="target 8 ms")
    a1.set_ylabel("ms, p50 (median over rounds)")
    a1.set_title("prepare (locate + crop) + infer, batch 1, int8")
    a1.legend(fontsize=8)
    labels = list(rounds[0][1])
    w = [np.median([r[1][k][0] for r in rounds]) for k in labels]
    a2.bar(labels, w, color=["#999", "#2a7", "#c44"][:len(labels)])
    a2.axhline(0.5, color="k", ls="--", lw=1, label="target 0.5 s (warm)")
    a2.set_ylabel("wall s (median over rounds)")
    a2.set_title("whole process, one 512² film")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--allow-unsigned", action="store_true",
                    help="benchmark a local, unsigned bundle (e.g. one with a locator attached)")
    ap.add_argument("--locator-checkpoint", type=Path,
                    default=RUN1 / "best.pt" if (RUN1 / "best.pt").is_file() else None,
                    help="torch checkpoint of the locator, for the PyTorch-eager baseline")
    ap.add_argument("--batch-n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                    "predict_latency.md")
    args = ap.parse_args()
    from bmd_edge.bundle import default_bundle_path
    from bmd_edge.runtime.backends import default_threads

    work = Path(tempfile.mkdtemp(prefix="bmd-bench-"))
    from bmd_edge.bundle import Bundle

    bundle_dir = (args.bundle or default_bundle_path()).resolve()
    bundle = Bundle.load(bundle_dir, allow_unsigned=args.allow_unsigned)
    unsigned = ["--allow-unsigned"] if args.allow_unsigned else []
    threads = args.threads or default_threads()
    load_start = os.getloadavg()
    images = make_images(work)
    film = images["png16 512²"]
    films = sorted((images["_cohort"] / "images").glob("*.png"))[:16]
    torch_cmd = None
    if args.locator_checkpoint is not None:
        torch_cmd = [sys.executable, str(ROOT / "benchmarks" / "torch_eager_predict.py"),
                     str(film), "--locator", str(args.locator_checkpoint), "--bundle",
                     str(bundle_dir),
                     "--threads", str(threads)]
    cli = predict_json(bundle_dir, film, unsigned)
    dec = bench_decode(images, 30)
    rounds = []
    for r in range(args.rounds):  # the key numbers, repeated for the spread on a shared machine
        inf = bench_locate_bmd(bundle, films, args.repeats, threads)
        proc = bench_process(bundle_dir, film, 5, torch_cmd, unsigned)
        b1 = (None if args.skip_batch else
              bench_batch(bundle, images["_cohort"], args.batch_n, work, threads=1))
        rounds.append((inf, proc, b1))
        print(f"round {r + 1}: locate+BMD {inf['openvino']['total'][0]:.1f} ms (OV), "
              f"{inf['onnxruntime']['total'][0]:.1f} ms (ORT); warm predict "
              f"{proc['predict warm'][0]:.2f} s"
              + (f", torch {proc['PyTorch eager'][0]:.2f} s" if torch_cmd else "")
              + (f", batch {b1[0]:.0f} img/s" if b1 else ""), flush=True)
    stages = bench_stages(bundle_dir, film, unsigned)
    load = os.getloadavg()
    crop_note = crop_spec_note(bundle)
    located = "hips" in cli or "hip_film_score" in cli

    L = ["# predict latency: locate + BMD, torch-free (#15 acceptance)", "", (
         f"Machine: {detect_machine().cpu_model}, {os.cpu_count()} CPUs, shared with other "
         f"engineers' jobs: load average {load_start[0]:.1f}/{load_start[1]:.1f}/"
         f"{load_start[2]:.1f} at start, {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at end (with 2 "
         "cores, load 2 = fully busy; above that every process waits). The `load` columns are "
         "the 1-minute load right after each measurement, this benchmark's own threads "
         f"included. Bundle `{bundle_dir}`; threads {threads}; Python {platform.python_version()}; "
         f"{args.rounds} rounds; compare only numbers from this file (one run)."), "",
         f"Crop spec: {crop_note}. `bmd-edge predict` "
         + ("**ran the learned locator** (its JSON has located hips)." if located else
            "**did not run a locator** in this build (no front end on main yet): the "
            "whole-process and batch numbers are BMD-only."), ""]
    L += ["## Decode (read_image), warm", "", "| input | p50 ms | p95 ms | load |",
          "|---|---:|---:|---:|"]
    L += [f"| {lbl} | {a:.1f} | {b:.1f} | {ld:.1f} |" for lbl, a, b, ld in dec]
    L += ["", "## Locate + crop + BMD, batch 1, int8, warm (target: preprocess + infer p50 ≤ 8 ms)",
          "", f"{args.repeats} calls per round over {len(films)} different decoded 512² films "
          "(decode is in the table above). The real path: `Predictor.prepare` (quality gate, "
          "locator, crop, encode, image-quality estimate) then `Predictor.infer` (BMD network, "
          "interval, shift score, readout); then the locator, the crop and the BMD network alone. "
          "CPU ms: process CPU time of prepare + infer, all threads.", "",
          "| round | backend | BMD variant | locator file | prepare p50 | infer p50 "
          "| **total p50** / p95 ms | locator alone | crop alone | BMD net alone | CPU ms "
          "| hips/film | load |",
          "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r, (inf, _, _) in enumerate(rounds, 1):
        for be, d in inf.items():
            L.append(f"| {r} | {be} | {d['variant']} | {d['locator']} | {d[STAGES_1[0]][0]:.2f} | "
                     f"{d[STAGES_1[1]][0]:.2f} | **{d['total'][0]:.2f}** / {d['total'][1]:.2f} | "
                     f"{d[PARTS[0]][0]:.2f} | {d[PARTS[1]][0]:.2f} | {d[PARTS[2]][0]:.2f} | "
                     f"{d['cpu']:.1f} | {d['hips']:.2f} | {d['load']:.1f} |")
    L += ["", "## Whole process, one 512² film (targets: predict warm ≤ 0.5 s and ≥ 3× faster "
          "than PyTorch eager)", "",
          "`predict cold`: empty OpenVINO cache (`XDG_CACHE_HOME`), one run; `predict warm`: "
          "median of 5 with the cache filled; `PyTorch eager`: `benchmarks/torch_eager_predict.py` "
          "(read → locate → crop → BMD, torch eager, same threads; median of 3) — "
          "the BMD architecture of this bundle with untrained weights when no torch checkpoint "
          "ships (time does not depend on the weight values). CPU s = user + system.", "",
          "| round | process | wall s | CPU s | peak RSS MiB | load | eager ÷ predict warm |",
          "|---:|---|---:|---:|---:|---:|---:|"]
    for r, (_, proc, _) in enumerate(rounds, 1):
        warm = proc["predict warm"][0]
        for k, (w, m, c, ld) in proc.items():
            ratio = f"{w / warm:.1f}×" if k == "PyTorch eager" else ""
            L.append(f"| {r} | {k} | {w:.2f} | {c:.2f} | {m:.0f} | {ld:.1f} | {ratio} |")
    L += ["", "### Where the warm whole-process time goes (stage medians of 3 fresh processes)",
          "", "| stage | median ms | max ms |", "|---|---:|---:|"]
    L += [f"| {n} | {a:.0f} | {b:.0f} |" for n, a, b in stages]
    L += [f"| (sum; plus ~20-40 ms interpreter start) | {sum(a for _, a, _ in stages):.0f} | |"]
    if not args.skip_batch:
        L += ["", f"## Batch mode, {args.batch_n} × 512² 16-bit PNG (target ≥ 250 img/s)", "",
              "`run_batch`: 2 prepare threads (read + gate + locate + crop), OpenVINO batch 16, "
              "1 inference thread. CPU ms/image: process CPU time (all threads) per image.", "",
              "| round | images/s | CPU ms/image | ok | failed | load |",
              "|---:|---:|---:|---:|---:|---:|"]
        for r, (_, _, b1) in enumerate(rounds, 1):
            ips, ok, bad, cms, ld = b1
            L.append(f"| {r} | {ips:.0f} | {cms:.1f} | {ok} | {bad} | {ld:.1f} |")
    L.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(L), encoding="utf-8")
    plot(rounds, args.out.with_suffix(".png"))
    print("\n".join(L))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
