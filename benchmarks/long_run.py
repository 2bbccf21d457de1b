"""Long run: 10,000 images through `bmd-edge predict` batch mode, watching memory and files.

Why: a clinic runs the batch mode over a whole archive; a leak of a few kB per image (an unclosed
file, a cached array, a growing list) only shows after thousands. This makes ~200 distinct
synthetic radiographs, a manifest of 10,000 rows pointing at hard links of them (distinct paths,
so no row is a duplicate), runs the real CLI in a subprocess and samples its RSS and open file
descriptors with psutil every 0.2 s. Pass: RSS growth after warm-up < 10 %, no fd growth.

    .venv/bin/python benchmarks/long_run.py [--n 10000] [--bundle DIR]

Writes benchmarks/results/long_run.md and long_run.png. Without --bundle it uses the shipped
bundle (export/) when present, else the tiny test bundle — the report says which.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def synthetic(seed: int, h: int = 160, w: int = 144) -> np.ndarray:
    """A smooth hip-like 16-bit image (ramp + bright head + texture); passes the quality gate."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h - 1, w - 1])[:, None, None]
    cx, cy = 0.3 + 0.2 * rng.random(), 0.3 + 0.3 * rng.random()
    img = 0.15 + 0.45 * x + 0.35 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)
    img += 0.02 * np.sin(20 * y + seed) + 0.01 * rng.standard_normal((h, w))
    return np.round(np.clip(img, 0, 1) * 65535).astype(np.uint16)


def make_data(root: Path, n: int, distinct: int) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    for k in range(distinct):
        cv2.imwrite(str(src / f"s{k:03d}.png"), synthetic(k))
    rows = []
    for i in range(n):
        os.link(src / f"s{i % distinct:03d}.png", root / f"c{i:05d}.png")
        rows.append(f"c{i:05d}.png,{60 + i % 30},{'FM'[i % 2]},{55 + i % 40}\n")
    (root / "manifest.csv").write_text("image,age_xray,sex,weight_kg\n" + "".join(rows))
    return root / "manifest.csv"


def bundle_path(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), f"given: {arg}"
    shipped = ROOT / "export" / "bundle.json"
    if shipped.is_file():
        return shipped.parent, "shipped bundle (export/)"
    from bmd_edge.runtime.tiny import write_tiny_bundle

    return write_tiny_bundle(tmp / "tiny", size=32), "tiny test bundle (export/ not built yet)"


def run(manifest: Path, bundle: Path, out: Path, interval: float = 0.2) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "bmd_edge.cli", "predict", str(manifest),
                             "--model", str(bundle), "--out", str(out), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    t0 = time.perf_counter()
    samples: list[tuple[float, float, int, int]] = []  # (s, RSS MiB, fds, rows done)
    tmp_glob = f".{out.name}.tmp-*"
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss / 2**20
            fds = ps.num_fds()
        except psutil.Error:
            break
        done = 0
        for t in out.parent.glob(tmp_glob):
            with open(t, "rb") as fh:
                done = max(0, fh.read().count(b"\n") - 1)
        samples.append((time.perf_counter() - t0, rss, fds, done))
        time.sleep(interval)
    stdout, stderr = proc.communicate()
    return {"code": proc.returncode, "stdout": stdout, "stderr": stderr, "samples": samples,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--distinct", type=int, default=200)
    ap.add_argument("--bundle", default=None)
    a = ap.parse_args()
    import json

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        manifest = make_data(tmp / "data", a.n, a.distinct)
        bundle, which = bundle_path(a.bundle, tmp)
        r = run(manifest, bundle, tmp / "results.csv")
        rows = (tmp / "results.csv").read_text().count("\n") - 1 if r["code"] == 0 else 0
    s = np.array([x[:3] for x in r["samples"]], dtype=float)
    done = np.array([x[3] for x in r["samples"]])
    summary = json.loads(r["stdout"]) if r["code"] == 0 else {}
    warm = done >= min(1000, a.n // 10)  # after the first 1,000 images
    rss_warm = float(s[warm, 1][0]) if warm.any() else float("nan")
    tail = s[warm, 1][-max(1, warm.sum() // 10):] if warm.any() else s[-1:, 1]
    rss_end, rss_peak = float(np.median(tail)), float(s[:, 1].max())
    growth = 100 * (rss_end - rss_warm) / rss_warm
    # fds: worker threads open an image for a moment, so single samples jitter by a few;
    # a leak is a trend: the median of the last 10 % above the median of the first 10 %.
    fds = s[warm, 2] if warm.any() else s[:, 2]
    k = max(1, len(fds) // 10)
    fd_warm, fd_end, fd_max = float(np.median(fds[:k])), float(np.median(fds[-k:])), int(fds.max())
    ok = r["code"] == 0 and growth < 10 and fd_end <= fd_warm and rows == a.n

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(s[:, 0], s[:, 1], label="RSS (MiB)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    ax2 = ax.twinx()
    ax2.plot(s[:, 0], done, color="grey", ls="--", label="images done")
    ax2.set_ylabel("images done")
    ax.set_title(f"bmd-edge predict, {a.n} images ({which})", fontsize=9)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "long_run.png", dpi=100)
    md = f"""# Long run: {a.n} images in one batch

`benchmarks/long_run.py` — {a.distinct} distinct synthetic 160×144 16-bit PNGs, a manifest of
{a.n} rows (hard links, so no duplicate rows), one `bmd-edge predict manifest.csv --out` run in a
subprocess, sampled with psutil every 0.2 s. Model: **{which}**. Machine: {os.cpu_count()} CPU
cores shared with other jobs (timings are indicative only).

| measure | value |
|---|---|
| exit code | {r['code']} |
| rows in results.csv | {rows} (ok {summary.get('n_ok')}, failed {summary.get('n_failed')}) |
| wall time | {r['seconds']:.1f} s ({a.n / r['seconds']:.0f} images/s incl. start-up) |
| RSS after warm-up (1,000 images) | {rss_warm:.1f} MiB |
| RSS at the end (median of last 10 % of samples) | {rss_end:.1f} MiB |
| RSS growth after warm-up | **{growth:+.1f} %** (limit 10 %) |
| peak RSS | {rss_peak:.1f} MiB |
| open fds: median first 10 % after warm-up / last 10 % / max | {fd_warm:g} / {fd_end:g} / {fd_max} |
| samples | {len(s)} |
| verdict | **{'PASS' if ok else 'FAIL'}** |

![RSS over time](long_run.png)
"""
    (RESULTS / "long_run.md").write_text(md)
    print(md)
    if r["code"] != 0:
        print(r["stderr"][-2000:], file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
