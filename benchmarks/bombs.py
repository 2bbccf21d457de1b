"""Resource bombs: peak RSS and wall time of `bmd-edge predict` on each hostile input.

Why: issue #12's target is that no single input takes the process past 1.5 GB RSS or 5 s before
its answer. The tests enforce the memory bound with an address-space limit (a bomb that
allocates fails them); time is measured here, never asserted in a unit test. Each case is the
real CLI in a fresh subprocess (interpreter start-up, OpenVINO and the model load included, the
way a user runs it); peak RSS is the child's own `ru_maxrss` from `os.wait4`. Cases: every
"bomb" case of the bad-input corpus, plus references — a small good PNG (the fixed cost) and
the largest images we accept (100 MP grey 8- and 16-bit), which bound what a legitimate file
may cost.

    .venv/bin/python benchmarks/bombs.py [--label after] [--pythonpath OLD_SRC] [--cap-gb 4]

`--pythonpath` runs another source tree (e.g. `git archive` of the commit before the fix) to
record a "before" run; runs are kept per label in bombs.json and the report shows them side by
side. `--cap-gb` bounds each child's address space so a before-run bomb cannot take the
machine down (such a run is reported as stopped at the cap). Writes benchmarks/results/
bombs.md, bombs.png and bombs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))
RSS_TARGET_MB = 1500.0  # 1.5 GB
TIME_TARGET_S = 5.0


@dataclass
class Run:
    case: str
    exit_code: int | None   # None: killed at the timeout
    peak_rss_mb: float
    wall_s: float
    stderr: str             # first line, cut
    note: str = ""


def measure(argv: list[str], env: dict[str, str], cap: int, timeout: float, cwd: Path) -> Run:
    """Run `argv` in a child under an address-space cap; its own peak RSS and wall time."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd,
                            preexec_fn=limit, start_new_session=True)
    code: int | None = None
    deadline = t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = -1  # reaped by wait4 above
    err.seek(0)
    lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    first = lines[0][:160] if lines else ""
    if len(lines) > 1:
        first += f"  (+{len(lines) - 1} more stderr lines)"
    return Run("", code, usage.ru_maxrss / 1024, wall, first)


def references(folder: Path) -> dict[str, Path]:
    """The fixed cost and the largest accepted inputs."""
    import cv2
    import numpy as np

    from corpus.make_bad_inputs import dicom, hip_like, png, u8

    out = {"ref_small_png": folder / "small.png"}
    out["ref_small_png"].write_bytes(png(u8(hip_like())))
    big = cv2.resize(hip_like(500, 500), (10_000, 10_000), interpolation=cv2.INTER_LINEAR)
    out["ref_100mp_grey8_png"] = folder / "grey8_100mp.png"
    cv2.imwrite(str(out["ref_100mp_grey8_png"]), np.round(big * 255).astype(np.uint8))
    out["ref_100mp_grey16_png"] = folder / "grey16_100mp.png"
    cv2.imwrite(str(out["ref_100mp_grey16_png"]), np.round(big * 65535).astype(np.uint16))
    out["ref_100mp_dicom16_rescale"] = folder / "dicom16_100mp.dcm"
    out["ref_100mp_dicom16_rescale"].write_bytes(dicom(
        np.round(big * 4095).astype(np.uint16), bits=12, RescaleSlope=1, RescaleIntercept=-1024,
        WindowCenter=1000, WindowWidth=3000, PatientAge="070Y", PatientSex="F"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="after", help="name of this run in bombs.json")
    ap.add_argument("--pythonpath", default=None, help="source tree to run instead of ours")
    ap.add_argument("--cap-gb", type=float, default=4.0, help="address-space cap per child")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a child is killed")
    ap.add_argument("--only", nargs="*", default=None, help="case names to run")
    args = ap.parse_args()

    from bmd_edge.benchmark.machine import detect_machine
    from bmd_edge.runtime.tiny import write_tiny_bundle
    from corpus.make_bad_inputs import BASE, hostile_cases, write_corpus

    env = {**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="bombs-cache-")}
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    cap = int(args.cap_gb * 1e9)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bombs-") as tmp:
        root = Path(tmp)
        bundle = write_tiny_bundle(root / "tiny", size=32)
        try:  # tiny bundles are signed with a fixed test key; trust it for these runs only
            from bmd_edge.bundle_trust import TRUSTED_KEYS_ENV
            from bmd_edge.runtime.tiny import tiny_signing_key

            env[TRUSTED_KEYS_ENV] = str(tiny_signing_key(root / "key")[1])
        except ImportError:  # a source tree from before signed bundles
            pass
        pairs = [(c, f) for c, f in hostile_cases() if c.group == "bomb"]
        write_corpus(root / "corpus", pairs)
        targets = {c.name: (c.target[1:] if c.target.startswith("=")
                            else str(root / "corpus" / c.target), c.args) for c, _ in pairs}
        for name, path in references(root).items():
            targets[name] = (str(path), BASE + ("--force",))
        for name, (image, extra) in targets.items():
            if args.only and name not in args.only:
                continue
            argv = [sys.executable, "-m", "bmd_edge.cli", "predict", image, *extra,
                    "--model", str(bundle), "--json"]
            run = measure(argv, env, cap, args.timeout, cwd=root)  # cwd: not our source tree
            run.case = name
            if run.exit_code is None:
                run.note = f"killed after {args.timeout:.0f} s (hung)"
            elif "MemoryError" in run.stderr or (run.exit_code != 0 and run.peak_rss_mb * 1e6
                                                 > 0.9 * cap):
                run.note = f"stopped by the {args.cap_gb:g} GB address-space cap"
            runs.append(run)
            print(f"{name:28s} exit {run.exit_code!s:>4}  {run.peak_rss_mb:7.0f} MB  "
                  f"{run.wall_s:6.2f} s  {run.note} {run.stderr[:90]}", flush=True)

    store = RESULTS / "bombs.json"
    data = json.loads(store.read_text()) if store.exists() else {}
    merged = {r["case"]: r for r in data.get(args.label, {}).get("runs", [])} if args.only else {}
    merged.update({r.case: asdict(r) for r in runs})  # --only: rerun some cases, keep the rest
    data[args.label] = {"machine": detect_machine().line(), "load_avg": os.getloadavg(),
                        "cap_gb": args.cap_gb, "pythonpath": bool(args.pythonpath),
                        "runs": list(merged.values())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    write_report(data)


def write_report(data: dict) -> None:
    """bombs.md (before → after per case) and bombs.png from bombs.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [k for k in ("before", "after") if k in data] or list(data)
    by = {lab: {r["case"]: r for r in data[lab]["runs"]} for lab in labels}
    cases = list(dict.fromkeys(c for lab in labels for c in by[lab]))
    lines = ["# Resource bombs: peak RSS and time per hostile input", "",
             "`benchmarks/bombs.py`: the real `bmd-edge predict` in a fresh subprocess per input "
             "(start-up and model load included), peak RSS from the child's own `ru_maxrss`. "
             f"Target: under {RSS_TARGET_MB:.0f} MB and {TIME_TARGET_S:g} s per input. "
             "The tests enforce the memory bound with RLIMIT_AS 1.5 GB "
             "(`tests/test_bad_inputs.py`); time is only measured here.", ""]
    for lab in labels:
        d = data[lab]
        lines.append(f"- **{lab}**: {d['machine']}; load average at the end "
                     f"{', '.join(f'{x:.1f}' for x in d['load_avg'])} (2 cores shared by other "
                     f"jobs: times are inflated accordingly); address-space cap "
                     f"{d['cap_gb']:g} GB per child.")
    lines += ["", "| input | " + " | ".join(f"{lab} RSS MB | {lab} s | {lab} outcome"
                                            for lab in labels) + " |",
              "|---|" + "---:|---:|---|" * len(labels)]
    for case in cases:
        cells = []
        for lab in labels:
            r = by[lab].get(case)
            if r is None:
                cells += ["", "", ""]
                continue
            said = re.sub(r"\S*/bombs-[^/]+/(corpus/single/)?", "", r["stderr"])[:110]
            outcome = r["note"] or f"exit {r['exit_code']}: {said}".replace("|", "\\|")
            cells += [f"{r['peak_rss_mb']:.0f}", f"{r['wall_s']:.2f}", outcome]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    last = by[labels[-1]]
    worst_rss = max(r["peak_rss_mb"] for r in last.values())
    worst_t = max(r["wall_s"] for r in last.values())
    bombs = [r for c, r in last.items() if not c.startswith("ref_")]
    fixed = last.get("ref_small_png", {}).get("wall_s")
    lines += ["", f"Worst bomb in the **{labels[-1]}** run: "
              f"{max(r['peak_rss_mb'] for r in bombs):.0f} MB, "
              f"{max(r['wall_s'] for r in bombs):.2f} s; worst of all inputs including the "
              f"largest accepted images: {worst_rss:.0f} MB, {worst_t:.2f} s (targets "
              f"{RSS_TARGET_MB:.0f} MB, {TIME_TARGET_S:g} s)."]
    if fixed is not None:
        lines += ["", f"`ref_small_png` (a good 64×56 PNG) measures the fixed cost of one run on "
                  f"this machine at this load: {fixed:.2f} s for interpreter start-up, imports "
                  "and the model load. Times are wall-clock on 2 cores shared with other jobs "
                  "(see the load averages), so they overstate what an idle workstation takes."]
    (RESULTS / "bombs.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(12, 0.38 * len(cases) + 1.5), sharey=True)
    y = list(range(len(cases)))
    h = 0.8 / len(labels)
    for k, lab in enumerate(labels):
        off = [v + (k - (len(labels) - 1) / 2) * h for v in y]
        rss = [by[lab].get(c, {}).get("peak_rss_mb", 0) for c in cases]
        wall = [by[lab].get(c, {}).get("wall_s", 0) for c in cases]
        axes[0].barh(off, rss, height=h, label=lab)
        axes[1].barh(off, wall, height=h, label=lab)
    axes[0].axvline(RSS_TARGET_MB, color="red", ls="--", label="target")
    axes[1].axvline(TIME_TARGET_S, color="red", ls="--", label="target")
    axes[0].set_xlabel("peak RSS (MB)")
    axes[1].set_xlabel("wall time (s)")
    axes[0].set_yticks(y, cases, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8)
    fig.suptitle("bmd-edge predict on hostile inputs: peak RSS and time per input")
    fig.tight_layout()
    fig.savefig(RESULTS / "bombs.png", dpi=110)


if __name__ == "__main__":
    main()
