"""Regenerate benchmarks/results/latency.{md,json,png} for the shipped bundle (export/).

    .venv/bin/python benchmarks/latency.py [--checkpoint CKPT.pt] [--file ov-int8-ptq=PTQ.xml]
        [--manifest M.csv | --synth 64] [--threads 2] [--repeats 3] [--benchmark-app]

Runs the full `bmd-edge benchmark` `--repeats` times (3 by default) on the same cases, writes the
quietest run's table with every p50 replaced by its median over the runs, and appends the spread of the per-run p50 medians (min / median / max) plus the
headline targets (met or not, with numbers). With --benchmark-app it also cross-checks our p50 of
each OpenVINO IR row against OpenVINO's own benchmark_app (same IR, same -nthreads, one stream)
and writes benchmarks/results/benchmark_app.md with the commands and both numbers.
Run it on a quiet machine: every other process steals cores from the timings.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bmd_edge.benchmark.measure import MeasureConfig
from bmd_edge.benchmark.runner import (
    BenchConfig,
    BenchResult,
    VariantResult,
    _with_speedups,
    run_benchmark,
)
from bmd_edge.benchmark.table import write_outputs


def _ok(res: BenchResult, *names: str) -> VariantResult | None:
    for n in names:
        r = next((v for v in res.variants if v.name == n and v.status == "ok"), None)
        if r is not None:
            return r
    return None


def with_median_p50(runs: list[BenchResult]) -> BenchResult:
    """The quietest run (smallest summed p50) with each row's p50, p95 and p99 replaced by their
    medians over all runs: one disturbed run on a shared machine must not decide a headline."""
    from dataclasses import replace

    def total(r: BenchResult) -> float:
        return sum(v.latency_ms["p50"] for v in r.variants if v.latency_ms)

    quiet = min(runs, key=total)
    rows = []
    for v in quiet.variants:
        p50s = [r.row(v.name).latency_ms["p50"] for r in runs if r.row(v.name).latency_ms]
        if not (v.latency_ms and p50s):
            rows.append(v)
            continue
        mid, k = statistics.median(p50s), v.latency_ms["p50"] / statistics.median(p50s)
        tails = {q: statistics.median(r.row(v.name).latency_ms[q] for r in runs
                                      if r.row(v.name).latency_ms)
                 for q in ("p95", "p99") if q in v.latency_ms}
        rows.append(replace(
            v, latency_ms={**v.latency_ms, "p50": mid, **tails},
            achieved_gflops_b1=v.achieved_gflops_b1 * k if v.achieved_gflops_b1 else None,
            peak_fraction_b1=v.peak_fraction_b1 * k if v.peak_fraction_b1 else None))
    return replace(quiet, variants=_with_speedups(rows))


def headline(res: BenchResult) -> list[str]:
    """The three targets of issue #5, each 'met' / 'NOT met' / 'not measurable' with numbers."""
    out = []
    int8 = _ok(res, "ov-int8-qat") or next((v for v in res.variants if v.runtime == "openvino"
                                            and v.precision == "int8" and v.status == "ok"), None)
    pt, f32 = _ok(res, "pytorch-fp32"), _ok(res, "ov-f32")
    fp32_ref = pt or _ok(res, "ort-fp32") or f32
    if int8 and pt and fp32_ref:
        sp = pt.latency_ms["p50"] / int8.latency_ms["p50"]
        dm = (int8.metrics["mae"] - fp32_ref.metrics["mae"]) / fp32_ref.metrics["mae"]
        ok = sp >= 5 and dm <= 0.02
        out.append(f"{int8.name} vs PyTorch eager fp32 at batch 1: {sp:.2f}× faster (target ≥ 5×), "
                   f"MAE {int8.metrics['mae']:.4f} vs {fp32_ref.metrics['mae']:.4f} ({100 * dm:+.1f} %, "
                   f"target within 2 %) — {'met' if ok else 'NOT met'}")
    else:
        out.append("int8 QAT vs PyTorch fp32: not measurable (row missing: "
                   + ", ".join(n for n, r in (("int8", int8), ("pytorch-fp32", pt)) if r is None) + ")")
    if int8 and f32:
        sp = f32.latency_ms["p50"] / int8.latency_ms["p50"]
        out.append(f"{int8.name} vs ov-f32: {sp:.2f}× faster (target ≥ 1.5×) — {'met' if sp >= 1.5 else 'NOT met'}")
    else:
        out.append("int8 vs OpenVINO f32: not measurable (ov-f32 or the int8 row missing)")
    int8_peaks = {p["runtime"]: p["gflops"] for p in res.peaks if p["precision"] == "int8" and p.get("gflops")}
    best = max((r for r in res.variants if r.achieved_gflops_thr and r.runtime in int8_peaks),
               key=lambda r: r.achieved_gflops_thr / int8_peaks[r.runtime], default=None)
    if best:
        frac = best.achieved_gflops_thr / int8_peaks[best.runtime]
        out.append(f"best variant {best.name}: {best.achieved_gflops_thr:.1f} GFLOP/s at "
                   f"{best.best_throughput['label']} = {100 * frac:.0f} % of the {best.runtime} int8 "
                   f"matmul peak {int8_peaks[best.runtime]:.0f} GOP/s (target ≥ 40 %) — "
                   f"{'met' if frac >= 0.4 else 'NOT met'}")
    return out


def spread(runs: list[BenchResult]) -> list[str]:
    lines = ["| variant | p50 ms per run | min | median | max | spread % |", "|---|---|---|---|---|---|"]
    for name in [v.name for v in runs[-1].variants]:
        p50s = [r.row(name).latency_ms["p50"] for r in runs if r.row(name).latency_ms]
        if not p50s:
            continue
        lo, mid, hi = min(p50s), statistics.median(p50s), max(p50s)
        lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in p50s)} | {lo:.2f} | {mid:.2f} | "
                     f"{hi:.2f} | {100 * (hi - lo) / mid:.1f} |")
    return lines


def _app_median(exe: str, ir: str, threads: int, seconds: int, shape_flag: str, shape: str) -> tuple[float | None, list[str], str]:
    """One benchmark_app run: (median ms or None, the command, the last output line on failure)."""
    # benchmark_app refuses -nthreads/-nstreams together with -hint latency ("fine tune options
    # ... set -hint none"); -hint none + 1 stream + T threads is what our LATENCY sessions resolve
    # to (backends pin NUM_STREAMS 1 and INFERENCE_NUM_THREADS T).
    cmd = [exe, "-m", ir, "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", str(threads),
           "-t", str(seconds), shape_flag, shape, "-infer_precision", "f32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    m = re.search(r"Median:\s*([\d.]+)\s*ms", proc.stdout)
    tail = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1][:120]
    return (float(m.group(1)) if m else None), cmd, tail


def benchmark_app(res: BenchResult, threads: int, seconds: int, out: Path, rounds: int = 9) -> None:
    """Cross-check our batch-1 p50 against benchmark_app's median on every OpenVINO IR row.

    Apples to apples: the shipped IR has a dynamic batch axis, and `-shape` would reshape it to a
    static batch of 1 before compiling (a different, faster kernel selection: 25 % here), so the
    comparison uses `-data_shape` (dynamic model, batch-1 data) like our sessions; the static
    figure is reported beside it. On a shared 2-vCPU machine fresh processes running the same
    thing differ by up to 2× from one second to the next, so ours runs for as long as
    benchmark_app's window, the two alternate `rounds` times, and both the medians over rounds
    and each tool's best round (its least-disturbed window) are compared.
    """
    import tempfile

    import numpy as np

    from bmd_edge.benchmark.measure import MeasureConfig
    from bmd_edge.benchmark.worker import run_isolated, save_cases

    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    size = res.dataset["image_size"]
    rng = np.random.default_rng(0)
    data = (rng.random((8, 1, size, size), dtype=np.float32),
            rng.standard_normal((8, 10)).astype(np.float32), np.ones((8, 10), np.float32))
    work = Path(tempfile.mkdtemp(prefix="bmd-app-"))
    cases = save_cases(work / "cases.npz", data)
    shape = f"image[1,1,{size},{size}],values[1,10],present[1,10]"
    lines = ["# Cross-check with OpenVINO benchmark_app", "",
             f"Machine: {res.machine.line()}", "",
             "Same IR, same thread count, one stream (`-hint none -nstreams 1 -nthreads T`: this "
             "benchmark_app refuses -nthreads with -hint latency; our sessions use the LATENCY hint "
             "with NUM_STREAMS 1 and T threads, the same configuration), random batch-1 inputs fed "
             "to the dynamic-batch IR (`-data_shape`, as our sessions do). "
             f"{rounds} alternating rounds: ours = `measure_variant` in a fresh worker process (as many timed calls as fill "
             f"{seconds} s), then one benchmark_app run of {seconds} s. The per-round values are bimodal (this shared machine "
             "alternates between fast and slow phases of several seconds, up to 2× apart, for both "
             "tools alike), so the median over rounds depends on how many rounds each tool spent in "
             "slow phases. Two verdicts: our median p50 within 15 % of benchmark_app's median (the "
             "issue's criterion), and our best round within 15 % of its best round (each tool's "
             "least-disturbed window). The last column is benchmark_app with `-shape` (the IR "
             "reshaped to a static batch of 1 before compiling), for reference only. "
             "Generated by `benchmarks/latency.py --benchmark-app` (this file: `"
             + " ".join(["benchmarks/latency.py", *sys.argv[1:]]).replace(str(ROOT) + "/", "")
             + "`).", "",
             "| variant | command | benchmark_app median ms per round | our p50 ms per round | "
             "difference of medians | within 15 % (medians) | difference of best rounds | "
             "within 15 % (best rounds) | static `-shape` median ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res.variants:
        if r.status != "ok" or r.runtime != "openvino" or not (r.file or "").endswith(".xml") or r.precision == "bf16":
            continue
        ours, theirs, cmd, failure = [], [], [], ""
        # as many calls as fill benchmark_app's window: a 0.5 s burst lands wholly in one of the
        # shared machine's fast or slow phases (up to 2× apart here), a 10 s window averages them
        runs = int(min(20000, max(300, seconds * 1000 / r.latency_ms["p50"])))
        ours_cfg = MeasureConfig(threads=threads, runs=runs, warmup=10, batch_sizes=(), streams=(1,))
        for _ in range(rounds):
            # in a fresh worker process, like the main table's rows and benchmark_app itself
            m = run_isolated("openvino", Path(r.file), "f32", cases, ours_cfg, work, r.name,
                             precision=r.precision)
            if m.latency_ms:
                ours.append(statistics.median(m.latency_ms))
            med, cmd, tail = _app_median(exe, r.file, threads, seconds, "-data_shape", shape)
            if med is None:
                failure = tail
            else:
                theirs.append(med)
        static, _, static_tail = _app_median(exe, r.file, threads, seconds, "-shape", shape)
        shown = " ".join(["benchmark_app", *cmd[1:]]).replace(str(ROOT) + "/", "")
        fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs) or "failed"  # noqa: E731
        static_txt = f"{static:.2f}" if static is not None else f"failed: {static_tail}"
        if not ours or not theirs:
            lines.append(f"| {r.name} | `{shown}` | {fmt(theirs)} {failure} | {fmt(ours)} | – | – | – | – | {static_txt} |")
            continue
        mt, mo = statistics.median(theirs), statistics.median(ours)
        diff = (mo - mt) / mt
        best = (min(ours) - min(theirs)) / min(theirs)
        ok = lambda d: "yes" if abs(d) <= 0.15 else "NO"  # noqa: E731
        lines.append(f"| {r.name} | `{shown}` | {fmt(theirs)} (median {mt:.2f}, best {min(theirs):.2f}) "
                     f"| {fmt(ours)} (median {mo:.2f}, best {min(ours):.2f}) | {100 * diff:+.1f} % "
                     f"| {ok(diff)} | {100 * best:+.1f} % | {ok(best)} | {static_txt} |")
    (out / "benchmark_app.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_ptq_ir(q_dir: Path, checkpoint: Path, work: Path) -> Path:
    """An OpenVINO int8 IR of the PTQ-only model (quantize's ptq.pt) for the ov-int8-ptq row.

    `bmd-edge export` builds int8 files from Q_DIR/quantized.pt (the QAT model); a copy of Q_DIR
    whose quantized.pt is ptq.pt makes the same exporter write the PTQ IR.
    """
    tmp_q = work / "q_ptq"
    if tmp_q.exists():
        shutil.rmtree(tmp_q)
    shutil.copytree(q_dir, tmp_q)
    shutil.copy2(q_dir / "ptq.pt", tmp_q / "quantized.pt")
    out = work / "bundle_ptq"
    subprocess.run([sys.executable, "-m", "bmd_edge.cli", "export", "--checkpoint", str(checkpoint),
                    "--quantized", str(tmp_q), "--format", "openvino-int8", "--out", str(out),
                    "--overwrite"], check=True, cwd=ROOT)
    return out / "model_int8.xml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "export")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--synth", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1000,
                    help="timed batch-1 calls per variant and run (1000 × 2.5 ms spans seconds, "
                         "longer than the machine's slow/fast phases)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--file", action="append", default=[], help="ROW=PATH (e.g. ov-int8-ptq=x.xml)")
    ap.add_argument("--variants", default=None, help="comma-separated rows (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--benchmark-app", action="store_true")
    ap.add_argument("--app-seconds", type=int, default=5, help="benchmark_app -t per round")
    ap.add_argument("--app-rounds", type=int, default=9,
                    help="alternating ours/benchmark_app rounds: short, many rounds put both tools "
                         "in the same fast and slow phases of a shared machine")
    ap.add_argument("--ptq-from", type=Path, default=None,
                    help="quantize output folder (holds ptq.pt): export its PTQ IR for ov-int8-ptq")
    a = ap.parse_args()
    files = tuple((k, Path(v)) for k, _, v in (f.partition("=") for f in a.file))
    if a.ptq_from is not None:
        if a.checkpoint is None:
            ap.error("--ptq-from needs --checkpoint (the fp32 best.pt the PTQ model came from)")
        work = ROOT / "runs" / "bench"
        work.mkdir(parents=True, exist_ok=True)
        files += (("ov-int8-ptq", make_ptq_ir(a.ptq_from, a.checkpoint, work)),)
    cfg = BenchConfig(bundle=a.bundle, checkpoint=a.checkpoint, manifest=a.manifest, synth_n=a.synth,
                      measure=MeasureConfig(threads=a.threads, runs=a.runs,
                                            streams=tuple(sorted({1, a.threads}))), files=files,
                      only=tuple(a.variants.split(",")) if a.variants else None)
    runs = []
    for i in range(a.repeats):
        print(f"run {i + 1}/{a.repeats} ...", flush=True)
        runs.append(run_benchmark(cfg))
    res = with_median_p50(runs)
    paths = write_outputs(res, a.out)
    extra = ["", f"## Spread of p50 over {len(runs)} full runs", "",
             "The table above is the quietest of the runs (smallest summed p50) with each p50, "
             "p95 and p99 replaced by its median over all runs; speed-ups and headline use those "
             "medians.", "",
             *spread(runs), "",
             "## Headline targets", "", *[f"- {h}" for h in headline(res)]]
    with paths["md"].open("a", encoding="utf-8") as fh:
        fh.write("\n".join(extra) + "\n")
    data = json.loads(paths["json"].read_text())
    data["repeats"] = [{v.name: (v.latency_ms or {}).get("p50") for v in r.variants} for r in runs]
    data["headline"] = headline(res)
    paths["json"].write_text(json.dumps(data, indent=2, default=str) + "\n")
    if a.benchmark_app:
        benchmark_app(res, a.threads, a.app_seconds, a.out, a.app_rounds)
    print("\n".join(extra))


if __name__ == "__main__":
    main()
