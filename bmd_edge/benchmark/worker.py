"""Run `measure_variant` in a fresh Python process, one per variant.

The parent writes the preprocessed cases once (`save_cases`), then starts
`python -m bmd_edge.benchmark.worker JOB.json`; the worker loads the cases, measures, and writes
its Measurement as JSON next to the job. A crash, a hang (timeout) or a runtime that aborts the
process becomes a "failed" row with the reason instead of taking the benchmark down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bmd_edge.benchmark.measure import Feeds, MeasureConfig, Measurement, measure_variant


def save_cases(path: Path, data: Feeds) -> Path:
    """Write the case arrays once; every worker reads exactly these."""
    np.savez(path, image=data[0], values=data[1], present=data[2])
    return path


def load_cases(path: Path) -> Feeds:
    with np.load(path) as z:
        return (np.ascontiguousarray(z["image"], np.float32),
                np.ascontiguousarray(z["values"], np.float32),
                np.ascontiguousarray(z["present"], np.float32))


def run_isolated(runtime: str, file: Path, hint: str | None, cases: Path, cfg: MeasureConfig,
                 workdir: Path, name: str, timeout_s: float = 1800.0,
                 precision: str = "fp32") -> Measurement:
    """Measure one variant in a subprocess; never raises."""
    job = workdir / f"job_{name}.json"
    out = workdir / f"result_{name}.json"
    job.write_text(json.dumps({"runtime": runtime, "file": str(file), "hint": hint,
                               "precision": precision, "cases": str(cases), "cfg": cfg.to_dict(), "out": str(out)}))
    try:
        proc = subprocess.run([sys.executable, "-m", "bmd_edge.benchmark.worker", str(job)],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return Measurement(status="failed", reason=f"failed: worker timed out after {timeout_s:.0f} s")
    if not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        why = tail[-1][:200] if tail else f"exit code {proc.returncode}"
        return Measurement(status="failed", reason=f"failed: worker died ({why})")
    return Measurement(**json.loads(out.read_text()))


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    cfg_d = job["cfg"]
    cfg = MeasureConfig(**{k: tuple(v) if isinstance(v, list) else v  # type: ignore[arg-type]
                           for k, v in cfg_d.items()})
    data = load_cases(Path(job["cases"]))
    m = measure_variant(job["runtime"], Path(job["file"]), job["hint"], data, cfg,
                        job.get("precision", "fp32"))
    Path(job["out"]).write_text(json.dumps(asdict(m)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
