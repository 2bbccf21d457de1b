"""DDP scaling on this machine: training throughput of `bmd-edge train` under torchrun, 1 vs N processes.

Each process gets one intra-op thread (OMP_NUM_THREADS=1, --threads 1), so the comparison is
"one core" against "N cores" with gloo all-reducing the gradients every step. Throughput counts
training images per second of the *training loop only* (history.csv's train_seconds: no
validation, no start-up), from epoch 2 on (epoch 1 pays for first-touch allocations). The runs
alternate (1, N, 1, N, ...) so a change in background load hits both alike; the load average is
recorded beside the numbers because this machine may be shared.

Usage: python benchmarks/ddp_scaling.py [--nproc 2] [--cases 192] [--size 96] [--repeats 2]
Writes benchmarks/results/ddp_scaling.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "ddp_scaling.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(manifest: Path, out: Path, nproc: int, args: argparse.Namespace) -> dict[str, float]:
    """One torchrun job; images/s over epochs ≥ 2 from rank 0's history.csv."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "bmd_edge.cli", "train", "--manifest", str(manifest), "--out", str(out),
           "--preset", "tiny", "--image-size", str(args.size), "--batch-size", str(args.batch),
           "--epochs", str(args.epochs), "--patience", str(args.epochs), "--threads", "1",
           "--workers", "0", "--quiet"]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"torchrun failed ({nproc} proc):\n{proc.stderr[-2000:]}")
    with open(out / "history.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) >= 2]
    images = sum(float(r["train_images"]) for r in rows)
    seconds = sum(float(r["train_seconds"]) for r in rows)
    return {"nproc": nproc, "images_per_s": images / seconds, "wall_s": wall,
            "load_before": load0, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2, help="processes of the multi-process run")
    ap.add_argument("--cases", type=int, default=192, help="synthetic cases (15%% go to validation)")
    ap.add_argument("--size", type=int, default=96, help="model input px (multiple of 32)")
    ap.add_argument("--batch", type=int, default=16, help="global batch (divisible by --nproc)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (epoch 1 is not timed)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating 1/N pairs")
    args = ap.parse_args()
    from bmd_edge.synth import generate_cohort

    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as tmp:
        manifest = generate_cohort(args.cases, Path(tmp) / "cohort", seed=0, size=2 * args.size, workers=1)
        results = []
        for rep in range(args.repeats):
            for nproc in (1, args.nproc):
                r = run(manifest, Path(tmp) / f"run{rep}_{nproc}", nproc, args)
                print(f"{nproc} proc: {r['images_per_s']:.1f} images/s (load {r['load_before']:.2f})")
                results.append(r)
    best = {n: max(r["images_per_s"] for r in results if r["nproc"] == n) for n in (1, args.nproc)}
    speedup = best[args.nproc] / best[1]
    lines = [
        "# DDP scaling (torchrun, gloo, CPU)",
        "",
        f"Written by `benchmarks/ddp_scaling.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, Python "
        f"{platform.python_version()}. `bmd-edge train --preset tiny --image-size {args.size} "
        f"--batch-size {args.batch}` (global batch; {args.batch // args.nproc} per process at "
        f"{args.nproc} processes) on {args.cases} synthetic cases, {args.epochs} epochs, augmentation on, "
        "images cached in RAM, 1 thread per process (OMP_NUM_THREADS=1, --threads 1), DataLoader in "
        "the main process. Throughput = training images/s of the training loop, epochs ≥ 2.",
        "",
        "| run | processes | images/s | wall s (incl. start-up, validation) | load avg (1 min) before → after |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(results):
        lines.append(f"| {i + 1} | {r['nproc']} | {r['images_per_s']:.1f} | {r['wall_s']:.1f} | "
                     f"{r['load_before']:.2f} → {r['load_after']:.2f} |")
    lines += [
        "",
        f"Best of {args.repeats}: {best[1]:.1f} images/s with 1 process, {best[args.nproc]:.1f} with "
        f"{args.nproc} → speed-up {speedup:.2f}×, scaling efficiency "
        f"{100 * speedup / args.nproc:.0f} % (speed-up / processes).",
        "",
        "Caveat: the load average shows how much of the machine other jobs used during the runs; "
        f"with fewer than {args.nproc} idle cores the multi-process run cannot scale. Rerun on a quiet "
        "machine for a clean number.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print(f"speed-up {speedup:.2f}x, efficiency {100 * speedup / args.nproc:.0f} % → {RESULTS}")


if __name__ == "__main__":
    main()
