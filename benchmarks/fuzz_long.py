"""Long fuzzing run: tests/test_fuzz.py under the "long" hypothesis profile, with a report.

    .venv/bin/python benchmarks/fuzz_long.py [--examples 5000]

Runs pytest on tests/test_fuzz.py with HYPOTHESIS_PROFILE=long and FUZZ_LONG_EXAMPLES, parses
hypothesis' statistics (examples run per test) and the outcome, and writes
benchmarks/results/fuzz_long.md. Known bugs pinned in test_fuzz.KNOWN_BUGS are tolerated by the
fuzzers (and listed); anything new fails its test and is listed as a finding.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "fuzz_long.md"


def main() -> None:
    ap = argparse.ArgumentParser(description="long hypothesis run over tests/test_fuzz.py")
    ap.add_argument("--examples", type=int, default=5000)
    a = ap.parse_args()
    env = {**os.environ, "HYPOTHESIS_PROFILE": "long", "FUZZ_LONG_EXAMPLES": str(a.examples)}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-q", "-p",
                        "no:cacheprovider", "--hypothesis-show-statistics", "-rfEX"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    text = r.stdout + r.stderr
    rows = []
    for m in re.finditer(r"tests/test_fuzz\.py::(\w+):\n(.*?)(?=\ntests/test_fuzz\.py::|\n=|\Z)",
                         text, re.S):
        name, block = m.group(1), m.group(2)
        runs = sum(int(x) for x in re.findall(r"- (\d+) passing", block))
        fails = sum(int(x) for x in re.findall(r"(\d+) failing", block))
        stop = re.search(r"Stopped because (.*)", block)
        rows.append((name, runs, fails, stop.group(1) if stop else "?"))
    failed = re.findall(r"^FAILED (\S+)", text, re.M)
    summary = re.findall(r"(\d+ (?:passed|failed)[^\n=]*)", text) or ["?"]
    sys.path.insert(0, str(ROOT / "tests"))
    from test_fuzz import KNOWN_BUGS  # noqa: E402

    table = "\n".join(f"| {n} | {k} | {f} | {s} |" for n, k, f, s in rows)
    md = f"""# Long fuzzing run

`benchmarks/fuzz_long.py --examples {a.examples}` → `pytest tests/test_fuzz.py` with
HYPOTHESIS_PROFILE=long ({a.examples} examples per test; the DICOM tag test gets half). CI runs
the same tests with 200 (DICOM tags: 100). Wall time {seconds:.0f} s on 2 shared cores.

| test | passing examples (all phases) | failing | stopped because |
|---|---|---|---|
{table}

Outcome: {summary[-1]}. New findings (failed tests): {', '.join(failed) or 'none'}.

Known bugs the fuzzers tolerate (each pinned by a strict-xfail regression test in
tests/test_fuzz.py until its owner fixes it):
""" + "\n".join(f"- `{t}` escaping `{fn}`{(' (' + x + ')') if x else ''}" for t, fn, x in KNOWN_BUGS) + """
- dicom_io: frame-less pixel data holding several frames decodes to a 3-D array.
"""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(md)
    print(md)
    if r.returncode != 0:
        print(text[-4000:], file=sys.stderr)
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
