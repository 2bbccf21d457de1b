"""`bmd-edge screen` (Ray Data) vs `predict`'s batch mode on the same archive and the same cores.

    .venv/bin/python benchmarks/screen_throughput.py [--n 20000] [--unique 1000] [--size 256]

Builds (once, into git-ignored `local/screen_bench/`) an archive of N synthetic 16-bit PNG hips:
`--unique` renders by `bmd-edge synth`, hard-linked under N distinct names with N distinct
manifest rows (a different age per copy), so every input is its own key and its own decode.
Then runs, as separate processes on this machine, `bmd-edge predict MANIFEST --out CSV` and
`bmd-edge screen MANIFEST --out DIR --num-cpus C`, and records for each: wall time, images/s,
CPU seconds (user + system of the process tree), CPU ms per image, and the peak of the summed
RSS of the process tree (Ray's raylet, GCS and workers included; the object store is shared
memory and counted once per process that maps it, so this overstates Ray's real footprint).
For screen it also records steady-state images/s: rows between the first and the last part
written, i.e. without Ray's start-up. The machine is shared: the load average before and after
each run is written beside it, and CPU ms/image (which contention barely moves) is the fair
comparison. Writes benchmarks/results/screen_throughput.md and .png.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bmd_edge.benchmark.machine import detect_machine

RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent / "bmd-edge"


@dataclass(frozen=True)
class Run:
    """One measured command."""

    name: str
    n: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float                 # summed RSS of the tree (shared pages counted often)
    peak_pss_mib: float                 # summed PSS of the tree (shared pages split)
    load_before: float
    load_after: float
    steady_ips: float | None = None     # screen only: images/s between first and last part
    startup_s: float | None = None      # screen only: launch → first part on disk
    n_processes: int = 1                # processes seen in the tree
    steady_cpu_ms: float | None = None  # screen only: CPU ms/image between first and last part

    @property
    def ips(self) -> float:
        return self.n / self.wall_s

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_s / self.n


def build_archive(data: Path, n: int, unique: int, size: int) -> Path:
    """N inputs from `unique` synthetic renders (hard links), one manifest row each."""
    from bmd_edge.synth import generate_cohort

    manifest = data / f"manifest_{n}.csv"
    if manifest.is_file():
        return manifest
    synth = data / f"synth_{unique}_{size}"
    if not (synth / "manifest.csv").is_file():
        generate_cohort(unique, synth, seed=18, size=size)
    with open(synth / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = data / "images"
    images.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = rows[i % len(rows)]
        copy = i // len(rows)
        name = f"images/c{copy:03d}_{Path(src['image']).name}"
        if not (data / name).exists():
            os.link(synth / src["image"], data / name)
        age = min(float(src["age_xray"]) + 0.1 * copy, 109.0)
        out.append(dict(src, image=name, age_xray=f"{age:.1f}", age_bmd=f"{age:.1f}"))
    tmp = manifest.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(out)
    tmp.replace(manifest)
    return manifest


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def measure(name: str, cmd: list[str], n: int, parts: Path | None = None) -> tuple[Run, str]:
    """Run `cmd`, sampling its process tree: summed RSS and PSS, CPU time per process.

    CPU = the sum over every process seen of its last sampled user+system time (Ray's workers
    are not reaped by the driver, so RUSAGE_CHILDREN would miss them); the larger of that and
    RUSAGE_CHILDREN is kept. PSS splits shared pages (the object store) between the processes
    that map them, so its sum is the tree's real footprint; summed RSS counts them many times.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    t0_wall = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0
    cpu_by_pid: dict[int, float] = {}
    series: list[tuple[float, float]] = []   # (time.time(), tree CPU seconds so far)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        tick = 0
        while not stop.is_set():
            rss = pss = 0
            for p in _tree(ps):
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        cpu_by_pid[p.pid] = t.user + t.system
                        if tick % 5 == 0:
                            pss += p.memory_full_info().pss
                        rss += p.memory_info().rss
                except psutil.Error:
                    pass
            peak_rss = max(peak_rss, rss)
            peak_pss = max(peak_pss, pss)
            series.append((time.time(), sum(cpu_by_pid.values())))
            tick += 1
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {err[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu = max(reaped, sum(cpu_by_pid.values()))
    steady = startup = steady_cpu = None
    if parts is not None:
        import pyarrow.parquet as pq

        files = sorted(parts.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
        if len(files) >= 2:
            first, last = files[0].stat().st_mtime, files[-1].stat().st_mtime
            rows_after_first = sum(pq.read_metadata(f).num_rows for f in files[1:])
            steady = rows_after_first / max(last - first, 1e-9)
            startup = first - t0_wall
            c0 = next((c for t, c in series if t >= first), None)
            c1 = next((c for t, c in reversed(series) if t <= last), None)
            if c0 is not None and c1 is not None and c1 > c0:
                steady_cpu = 1000 * (c1 - c0) / rows_after_first
    return Run(name, n, wall, cpu, peak_rss / 2**20, peak_pss / 2**20, load0,
               os.getloadavg()[0], steady, startup, len(cpu_by_pid), steady_cpu), err


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    labels = [r.name for r in runs]
    a.bar(labels, [r.ips for r in runs], color="tab:blue", label="end to end")
    steady = [r.steady_ips or 0 for r in runs]
    a.bar(labels, steady, color="tab:orange", alpha=0.6, width=0.4, label="steady (screen)")
    a.set_ylabel("images/s (wall, shared machine)")
    a.legend(fontsize=8)
    b.bar(labels, [r.cpu_ms_per_image for r in runs], color="tab:green")
    b.set_ylabel("CPU ms per image (all processes)")
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--unique", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--data", type=Path, default=ROOT / "local" / "screen_bench")
    ap.add_argument("--out", type=Path, default=RESULTS / "screen_throughput.md")
    ap.add_argument("--from-json", action="store_true",
                    help="Rewrite the report from the last run's JSON (no measuring).")
    args = ap.parse_args()
    raw = args.out.with_suffix(".json")
    png = args.out.with_suffix(".png")
    if args.from_json:
        d = json.loads(raw.read_text())
        runs = [Run(**r) for r in d["runs"]]
        for k in ("n", "unique", "size", "cores"):
            setattr(args, k, d["args"][k])
        write_report(args, runs, d["ray_part_s"], png, d["machine"])
        print(f"rewrote {args.out}")
        return

    t = time.perf_counter()
    manifest = build_archive(args.data, args.n, args.unique, args.size)
    print(f"archive ready in {time.perf_counter() - t:.0f} s: {manifest}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="screen_bench_", dir=args.data))
    try:
        predict, _ = measure("predict (batch)", [str(BIN), "predict", str(manifest), "--out",
                                                 str(work / "predict.csv")], args.n)
        print(predict, flush=True)
        screen, err = measure(
            "screen (Ray Data)",
            [str(BIN), "screen", str(manifest), "--out", str(work / "screen"), "--num-cpus",
             str(args.cores), "--no-ray-progress", "--object-store-mb", "512"],
            args.n, parts=work / "screen" / "parts")
        print(screen, flush=True)
        m = re.search(r"(\d+) ok, (\d+) failed in ([\d.]+) s", err)
        ray_part_s = float(m.group(3)) if m else float("nan")
        import pyarrow.parquet as pq

        n_rows = pq.read_table(work / "screen" / "parts", columns=["key"]).num_rows
        assert n_rows == args.n, f"screen wrote {n_rows} rows for {args.n} inputs"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = [predict, screen]
    plot(runs, png)
    machine = f"{detect_machine().line()}; ray {_version('ray')}, pyarrow {_version('pyarrow')}"
    raw.write_text(json.dumps({"runs": [asdict(r) for r in runs], "ray_part_s": ray_part_s,
                               "machine": machine,
                               "args": {k: getattr(args, k) for k in ("n", "unique", "size",
                                                                      "cores")}}, indent=2))
    write_report(args, runs, ray_part_s, png, machine)
    print(f"wrote {args.out} and {png}")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def write_report(args: argparse.Namespace, runs: list[Run], ray_part_s: float, png: Path,
                 machine: str) -> None:
    predict, screen = runs
    lines = [
        "# screen (Ray Data) vs predict's batch mode",
        "",
        f"Machine: {machine}. "
        f"Shared with other engineers' jobs: see the load columns (2 = both cores busy).",
        "",
        f"Archive: {args.n} synthetic 16-bit PNG hips, {args.size} px, from {args.unique} "
        f"renders hard-linked under {args.n} names (one manifest row each, its own age). "
        f"Both commands on the same manifest, bundle (shipped, OpenVINO int8) and "
        f"{args.cores} cores; screen = a local Ray cluster with {args.cores} CPUs, "
        f"{args.cores} actors × 1 inference thread, batch 64, object store 512 MiB.",
        "",
        "| command | images | wall s | images/s | steady images/s | start-up s | CPU s | "
        "CPU ms/image | steady CPU ms/image | peak PSS MiB (tree) | peak RSS MiB (tree) | "
        "processes | load before/after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.name} | {r.n} | {r.wall_s:.1f} | {r.ips:.1f} | "
            f"{'' if r.steady_ips is None else f'{r.steady_ips:.1f}'} | "
            f"{'' if r.startup_s is None else f'{r.startup_s:.1f}'} | {r.cpu_s:.1f} | "
            f"{r.cpu_ms_per_image:.2f} | "
            f"{'' if r.steady_cpu_ms is None else f'{r.steady_cpu_ms:.2f}'} | {r.peak_pss_mib:.0f} | {r.peak_rss_mib:.0f} | "
            f"{r.n_processes} | {r.load_before:.1f}/{r.load_after:.1f} |")
    ratio = screen.ips / predict.ips
    steady_ratio = (screen.steady_ips or 0) / predict.ips
    cpu_ratio = screen.cpu_ms_per_image / predict.cpu_ms_per_image
    steady_cpu = screen.steady_cpu_ms or screen.cpu_ms_per_image
    idle_ratio = predict.cpu_ms_per_image / steady_cpu
    fixed_cpu = screen.cpu_s - steady_cpu * screen.n / 1000
    lines += [
        "",
        "**On idle cores.** Wall-clock numbers on this shared machine follow the scheduler more "
        "than the code (Ray's many processes get more time slices than one predict process), so "
        "the comparison is made on CPU time: both runs are CPU-bound, so on idle cores "
        "throughput ∝ 1 / CPU ms per image. Steady-state screen costs "
        f"{steady_cpu:.2f} CPU ms/image vs predict's {predict.cpu_ms_per_image:.2f}: on 2 idle "
        f"cores screen would run at **{idle_ratio:.2f}× predict's speed "
        f"({100 * (1 - idle_ratio):.0f} % slower; target ≤ 35 %)** once started, plus a fixed "
        f"start-up of ~{fixed_cpu:.0f} CPU s (Ray's ~{screen.n_processes} processes importing "
        f"Ray), i.e. ~{fixed_cpu / 2:.0f} s on 2 idle cores — {100 * fixed_cpu / screen.cpu_s:.0f} "
        f"% of this run's CPU at n = {screen.n}. With more cores Ray's share shrinks (its "
        "raylet/GCS cost is per node, not per core) and screen scales with actors, while "
        "predict's batch mode is one process with at most 4 prepare threads and one inference "
        "loop, so screen overtakes it beyond a few cores.",
        "",
        f"End to end on 2 idle cores (CPU-bound, total CPU ÷ 2): predict "
        f"{predict.cpu_s / 2:.0f} s, screen {screen.cpu_s / 2:.0f} s → screen at "
        f"**{predict.cpu_s / screen.cpu_s:.2f}×** predict's speed "
        f"({100 * (1 - predict.cpu_s / screen.cpu_s):.0f} % slower, start-up included; "
        "target ≤ 35 %).",
        "",
        "Estimated steady throughput with more cores (256 px images, from the CPU costs above; "
        "not measured — this machine has 2 cores; predict capped at 4 busy cores):",
        "",
        "| cores | predict batch images/s | screen images/s | screen / predict |",
        "|---:|---:|---:|---:|",
        *[f"| {c} | {min(c, 4) * 1000 / predict.cpu_ms_per_image:.0f} | "
          f"{c * 1000 / steady_cpu:.0f} | {c / min(c, 4) * predict.cpu_ms_per_image / steady_cpu:.2f}× |"
          for c in (2, 4, 8, 16, 32)],
        "",
        f"Wall clock on this loaded machine (for the record, not the verdict): screen / predict "
        f"images/s = **{ratio:.2f}×** end to end and **{steady_ratio:.2f}×** after Ray's start-up; "
        f"CPU per image **{cpu_ratio:.2f}×** all-in. Screen's Ray part (start-up included) took "
        f"{ray_part_s:.1f} s of its {screen.wall_s:.1f} s wall. Memory: screen's process tree "
        f"peaked at {screen.peak_pss_mib:.0f} MiB PSS ({screen.n_processes} processes: driver, "
        f"GCS, raylet, agents, 2 actors, Ray Data's helper actors; object store capped at 512 "
        f"MiB) against predict's {predict.peak_pss_mib:.0f} MiB; what is in flight is bounded by "
        f"predict's window and by Ray Data's object-store budget, not by n.",
        "",
        f"![throughput]({png.name})",
        "",
        *plan_section(predict, screen),
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


# Measured elsewhere on this machine (benchmarks/results/predict_latency.md): decoding real-size
# films costs far more than our 256 px PNGs. 2048² 16-bit PNG read_image p50 = 56.6 ms; a 512²
# 16-bit DICOM 1.8 ms, i.e. about 7 ns/pixel, so a 2500×3000 uncompressed DICOM is ~50 ms.
REAL_FILM_DECODE_MS = 55.0
REAL_FILM_MB = 12.0            # 2500×3000 × 16 bit uncompressed (compressed archives: 3–6 MB)
NODE_CORES = 32                # a common 32-vCPU CPU node
NODE_NIC_GBPS = 10.0           # its network, for reading the archive from shared storage
TARGET = 10_000_000


def plan_section(predict: Run, screen: Run) -> list[str]:
    """The 10-million-image plan, from this run's CPU cost per image and the decode numbers."""
    small_ms = screen.steady_cpu_ms or screen.cpu_ms_per_image  # 256 px: Ray + predictor
    film_ms = small_ms + REAL_FILM_DECODE_MS                    # per real film, one core
    actors = NODE_CORES - 2                                     # 2 cores for raylet/plasma/OS
    cpu_ips = actors * 1000 / film_ms                           # per node, CPU-bound
    io_ips = NODE_NIC_GBPS * 1000 / 8 / REAL_FILM_MB            # per node, network-bound
    node_ips = min(cpu_ips, io_ips)
    hours = {k: TARGET / (k * node_ips) / 3600 for k in (1, 4, 10, 20)}
    small_node = actors * 1000 / small_ms
    listing_gb = TARGET * 400 / 1e9                             # path+keys+facts per pending row
    return [
        "## Plan: 10 million images on a cluster",
        "",
        f"Inputs to the arithmetic: screen spent **{small_ms:.1f} CPU ms per 256 px image** here "
        f"in steady state, Ray's processes included "
        f"(predict's batch mode {predict.cpu_ms_per_image:.1f}); a real film adds the decode, "
        f"**~{REAL_FILM_DECODE_MS:.0f} ms** (2048² PNG 56.6 ms in predict_latency.md; a "
        f"2500×3000 uncompressed DICOM scales from 1.8 ms at 512² to ~50 ms), so **~{film_ms:.0f}"
        f" CPU ms per film**. Inference itself (~2 ms int8) is not what limits an archive run.",
        "",
        "| quantity | value | from |",
        "|---|---:|---|",
        f"| actors per {NODE_CORES}-vCPU node | {actors} | one per core, 2 cores left to Ray + OS |",
        f"| films/s per node, CPU-bound | {cpu_ips:.0f} | {actors} × 1000 / {film_ms:.0f} ms |",
        f"| films/s per node, {NODE_NIC_GBPS:.0f} GbE-bound | {io_ips:.0f} | "
        f"{NODE_NIC_GBPS:.0f} Gb/s ÷ {REAL_FILM_MB:.0f} MB per film |",
        f"| films/s per node (the smaller) | {node_ips:.0f} | |",
        f"| 256 px synthetic images/s per node (CPU-bound) | {small_node:.0f} | "
        f"{actors} × 1000 / {small_ms:.1f} ms |",
        *[f"| 10 M films on {k} node{'s' if k > 1 else ''} | {h:.1f} h | |"
          for k, h in hours.items()],
        f"| pending listing in the head's object store | ~{listing_gb:.0f} GB | 10 M × ~400 B |",
        f"| nightly increment (~10 M over 10 years ≈ 2,700/night) | "
        f"{2700 / node_ips / 60:.1f} min on 1 node | |",
        "",
        "- **Nodes.** A one-off backfill in about a working day: 4 nodes of 32 vCPU if the archive "
        "is read over 10 GbE "
        f"({hours[4]:.1f} h); 10 nodes bring it to {hours[10]:.1f} h only if storage delivers "
        f"{10 * node_ips * REAL_FILM_MB / 1000:.1f} GB/s in aggregate. Nightly runs need one "
        "node, or the workstation itself.",
        "- **Where the bottleneck moves.** On 256 px PNGs the CPU is the limit and Ray's share "
        "is its start-up (seconds, paid once per run) plus raylet/GCS polling. On real films "
        f"the per-node CPU ceiling ({cpu_ips:.0f} films/s) is "
        f"{'above' if cpu_ips > io_ips else 'below'} what one 10 GbE link can feed "
        f"({io_ips:.0f} films/s at {REAL_FILM_MB:.0f} MB): **the archive's read bandwidth, not "
        "inference, sets the pace** — place nodes near the storage, read from several storage "
        "servers, and prefer the compressed copies if the decode (JPEG 2000: several × more "
        "CPU, not measured here) still fits under the I/O ceiling. Next comes the driver: "
        "listing and stat-ing 10 M files (16 threads; ~0.5 ms per NFS stat → ~5 min), HMAC "
        "keys (~3 µs each) and the done-key set (pyarrow `is_in`, ~1 GB for 10 M keys).",
        "- **Object store.** Only paths and small result tables travel through it (decoding "
        "happens inside the actors), so worker nodes need ~1–2 GB (`--object-store-mb`); the "
        f"head holds the pending listing as blocks (~{listing_gb:.0f} GB for 10 M), so give it "
        "8 GB or split the backfill into 1 M-row listings run one after another into the same "
        "`--out` (each run resumes the folder).",
        "- **Parts.** `--batch-size 512` for the backfill: ~20,000 parts of ~512 rows instead "
        "of 156,000 small files at the default 64; compacting nightly parts is not built yet.",
        "- **Failure.** A lost node loses only its unfinished batches (their parts were never "
        "renamed); rerunning the same command finishes the rest.",
    ]


if __name__ == "__main__":
    main()
