"""How long `bmd-edge synth --n 2000` takes on this machine (target: under 5 minutes at 256 px).

Runs the real CLI in a subprocess, records wall time, per-case cost per core, the cores used and
the machine's load average (the CPUs may be shared), then a shorter run at 512 px for its rate,
and writes benchmarks/results/synth_speed.md. The 256-px cohort it writes is kept (default
/tmp/bmd_edge_cohort_2000) so benchmarks/cohort.py can read it instead of generating it again.

    .venv/bin/python benchmarks/synth_speed.py [--n 2000] [--out DIR] [--size 256] [--n512 200]
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

from bmd_edge.benchmark.machine import detect_machine

RESULTS = Path(__file__).resolve().parent / "results" / "synth_speed.md"


def timed_run(n: int, out: Path, size: int, seed: int) -> dict[str, float]:
    """Run the CLI once; wall time and the children's own CPU time for this run."""
    if out.exists():
        shutil.rmtree(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "bmd_edge.cli", "synth", "--n", str(n), "--out", str(out),
           "--seed", str(seed), "--size", str(size)]
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"n": n, "size": size, "wall": wall, "cpu_ms": cpu / n * 1000.0, "load": load,
            "files": len(list((out / "images").glob("*.png")))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bmd_edge_cohort_2000"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n512", type=int, default=200, help="cases for the 512-px rate (0: skip)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    runs = [timed_run(args.n, args.out, args.size, args.seed)]
    if args.n512:
        runs.append(timed_run(args.n512, Path("/tmp/bmd_edge_cohort_512"), 512, args.seed))
    load_after = os.getloadavg()
    lines = [
        "# Synthetic cohort generation speed (synthetic world v2: anatomy + shared physics)",
        "",
        f"Command: `bmd-edge synth --n N --out DIR --seed {args.seed} --size S` (hip view, all "
        "cores, default)",
        "",
        "| cases | size px | wall s | cases/s | wall ms per case per core | CPU ms per case | "
        "load at start | 2000 cases on idle cores (est.) | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        idle = r["cpu_ms"] * 2000 / 1000.0 / cores
        target = (f"< 300 s: {'met' if r['wall'] * 2000 / r['n'] < 300 else 'NOT met'} "
                  f"(measured{'' if r['n'] == 2000 else ', scaled to 2000'})"
                  if r["size"] == 256 else "report only")
        lines.append(f"| {r['n']} | {r['size']} | {r['wall']:.1f} | {r['n'] / r['wall']:.1f} | "
                     f"{r['wall'] * cores / r['n'] * 1000.0:.0f} | {r['cpu_ms']:.0f} | "
                     f"{r['load']:.1f} | {idle:.0f} s | {target} |")
    lines += [
        "",
        "CPU ms per case is the processes' own user+system time (includes start-up and "
        "the pool), so it does not depend on other jobs; the idle-core estimate is "
        f"CPU ms × 2000 / {cores} cores.",
        "",
        f"Machine: {detect_machine().cpu_model}, {cores} logical cores, Python {platform.python_version()}.",
        f"Load average (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f}; after: {load_after[0]:.1f}/{load_after[1]:.1f}/"
        f"{load_after[2]:.1f}. The CPUs were shared with other engineers' jobs (6 people on "
        f"{cores} cores), so a load above {cores} means this run got less than all cores and the "
        "wall times above are upper bounds.",
        f"Images written: {', '.join(str(r['files']) for r in runs)}.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
