"""What bundle verification costs `bmd-edge predict` (issue #13: at most 20 ms per process).

    .venv/bin/python benchmarks/bundle_verify.py [--repeats 15]

1. In process, warm page cache: `Bundle.load` (parse, validate, canonical form, trust) and
   `verified_file` (sha256 of the chosen variant's files + the embedded-metadata comparison),
   for the pinned shipped bundle (OpenVINO int8 and ONNX int8) and for a signed copy (Ed25519,
   which also imports `cryptography`).
2. Whole process: `predict` on the shipped sample, once as shipped and once with verification
   switched off inside the same script (trust and hashing replaced by no-ops), alternated,
   median of each; the difference is what verification adds to a user's run.
Writes benchmarks/results/bundle_verify.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bmd_edge.benchmark.machine import detect_machine  # noqa: E402
from bmd_edge.bundle import Bundle, default_bundle_path  # noqa: E402

SAMPLE = ROOT / "export" / "samples" / "synthetic_hip_f72.png"
RUN = """
import sys, time
t0 = time.perf_counter()
if sys.argv[1] == "off":
    import bmd_edge.bundle as B, bmd_edge.bundle_trust as T
    T.check_trust = lambda meta, **kw: T.Trust("pinned")
    B.Bundle.verified_file = lambda self, v: self.root / self.meta.variants[v].file
from bmd_edge.runtime.predictor import Predictor
p = Predictor.load(sys.argv[2], threads=2)
p.predict(sys.argv[3], age=70, sex="F")
print(time.perf_counter() - t0)
"""


def in_process(bundle: Path, variant: str, repeats: int, **kw: object) -> list[float]:
    """Median ms (wall, CPU) of Bundle.load and of verified_file (a fresh Bundle each time).

    CPU time is reported beside wall time because the machine is shared: under load the wall
    time mostly measures waiting for a core."""
    rows: list[list[float]] = []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        b = Bundle.load(bundle, **kw)  # type: ignore[arg-type]
        w1, c1 = time.perf_counter(), time.process_time()
        b.verified_file(variant)
        w2, c2 = time.perf_counter(), time.process_time()
        rows.append([w1 - w, c1 - c, w2 - w1, c2 - c1])
    return [statistics.median(col) * 1e3 for col in zip(*rows)]


def whole_process(bundle: Path, repeats: int) -> dict[str, float]:
    """Median wall and CPU (user + sys of the child) ms of one `predict` process, on and off."""
    times: dict[str, list[float]] = {"on": [], "off": [], "on_cpu": [], "off_cpu": []}
    env = {**os.environ, "XDG_CACHE_HOME": str(Path(tempfile.mkdtemp()) / "cache")}
    for _ in range(repeats + 1):  # the first round fills the OpenVINO cache; dropped
        for mode in ("on", "off"):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", RUN, mode, str(bundle), str(SAMPLE)],
                           check=True, capture_output=True, env=env)
            times[mode].append(time.perf_counter() - t)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            times[f"{mode}_cpu"].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    return {m: statistics.median(v[1:]) * 1e3 for m, v in times.items()}


def _row(trust: str, variant: str, t: list[float]) -> str:
    return (f"| {trust} | {variant} | {t[0]:.1f} / {t[1]:.1f} | {t[2]:.1f} / {t[3]:.1f} | "
            f"{t[0] + t[2]:.1f} / {t[1] + t[3]:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                    "bundle_verify.md")
    a = ap.parse_args()
    shipped = default_bundle_path()
    rows = []
    for variant in ("openvino-int8", "onnx-int8"):
        rows.append(_row("pinned (shipped)", variant, in_process(shipped, variant, a.repeats)))
    with tempfile.TemporaryDirectory() as tmp:
        from dataclasses import replace

        from bmd_edge.bundle import render
        from bmd_edge.bundle_trust import sign, write_keypair

        signed = Path(tmp) / "signed"
        shutil.copytree(shipped, signed, ignore=shutil.ignore_patterns("samples", "*.py", "*.md"))
        write_keypair(Path(tmp) / "k.pem", Path(tmp) / "k.pub")
        meta = Bundle.load(signed).meta
        meta = replace(meta, signature=sign(meta, Path(tmp) / "k.pem"))
        (signed / "bundle.json").write_text(render(meta), encoding="utf-8")
        rows.append(_row("Ed25519-signed copy", "openvino-int8",
                         in_process(signed, "openvino-int8", a.repeats,
                                    trusted_keys=(Path(tmp) / "k.pub",))))
    proc = whole_process(shipped, a.repeats)
    m = detect_machine()
    lines = [
        "# Bundle verification cost", "",
        f"Script: `benchmarks/bundle_verify.py --repeats {a.repeats}` (this file is its output). "
        f"Machine: {m.cpu_model}, {m.available_cores} usable cores; load average "
        f"{os.getloadavg()[0]:.2f} at the end (the machine is shared).", "",
        "In process, warm page cache, median of each step:", "",
        "| trust | variant | Bundle.load ms wall / CPU | verified_file ms wall / CPU | "
        "total ms wall / CPU |",
        "|---|---|---:|---:|---:|", *rows, "",
        f"Whole process (`Predictor.load` + one `predict` on {SAMPLE.name}, OpenVINO cache warm, "
        f"median of {a.repeats}): verification on {proc['on']:.0f} ms wall / "
        f"{proc['on_cpu']:.0f} ms CPU, off {proc['off']:.0f} / {proc['off_cpu']:.0f} ms; "
        f"difference **{proc['on'] - proc['off']:+.0f} ms wall, "
        f"{proc['on_cpu'] - proc['off_cpu']:+.0f} ms CPU** (target ≤ 20 ms).", "",
        "Verification = parse and validate bundle.json, require its exact canonical text, check "
        "the pinned digest (or the signature), sha256 of the chosen variant's files only, and "
        "compare the metadata embedded in the model file with bundle.json.", ""]
    a.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
