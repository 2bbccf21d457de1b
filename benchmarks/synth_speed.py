"""How long `bmd-edge synth --n 2000` takes on this machine (target: under 5 minutes).

Runs the real CLI in a subprocess, records wall time, per-case cost per core, the cores used and
the machine's load average (the CPUs may be shared), and writes benchmarks/results/synth_speed.md.
The cohort it writes is kept (default /tmp/bmd_edge_cohort_2000) so benchmarks/cohort.py can
read it instead of generating it again.

    .venv/bin/python benchmarks/synth_speed.py [--n 2000] [--out DIR] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "synth_speed.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bmd_edge_cohort_2000"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "bmd_edge.cli", "synth", "--n", str(args.n), "--out",
           str(args.out), "--seed", str(args.seed), "--size", str(args.size)]
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = (usage.ru_utime + usage.ru_stime) / args.n * 1000.0   # load-independent cost
    per_case_core = wall * cores / args.n * 1000.0
    n_files = len(list((args.out / "images").glob("*.png")))
    lines = [
        "# Synthetic cohort generation speed",
        "",
        f"Command: `bmd-edge synth --n {args.n} --out DIR --seed {args.seed} --size {args.size}`"
        " (all cores, default)",
        "",
        "| cases | size px | wall s | cases/s | wall ms per case per core | CPU ms per case | "
        "cores | target |",
        "|---|---|---|---|---|---|---|---|",
        f"| {args.n} | {args.size} | {wall:.1f} | {args.n / wall:.1f} | {per_case_core:.0f} | "
        f"{cpu_ms:.0f} | {cores} | < 300 s: {'met' if wall < 300 else 'NOT met'} |",
        "",
        f"CPU ms per case is the processes' own user+system time (includes start-up and "
        f"the pool), so it does not depend on other jobs: on {cores} idle cores the run "
        f"would take about {cpu_ms * args.n / 1000.0 / cores:.0f} s.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {cores} logical cores, "
        f"Python {platform.python_version()}.",
        f"Load average (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f}; after: {load_after[0]:.1f}/{load_after[1]:.1f}/"
        f"{load_after[2]:.1f}. The CPUs were shared with other jobs, so a load above {cores} "
        "means this run got less than all cores and the per-case cost above is an upper bound.",
        f"Images written: {n_files}.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
