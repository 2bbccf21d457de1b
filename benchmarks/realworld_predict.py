"""`bmd-edge predict` on every real-world file: a result or one clear refusal, never a traceback.

Why: the synthetic cohort is clean; real files are 8-bit RGB JPEGs with annotations, camera
photos of films, pelvis views, children, and DICOMs of other body parts. Each file is run through
the real CLI in a subprocess (`--json --age 70 --sex F`, shipped bundle), as a user would.
Pelvis views show both hips, so every hip/ file (and the two pelvis DICOMs) is also run with
`--select left` and `--select right` (crop the patient's hip first).

    .venv/bin/python benchmarks/realworld_predict.py [--realworld DIR]

Writes benchmarks/results/realworld_predict.md. Acceptance (issue 4): every real hip radiograph
gives a result or a clear one-line refusal; no traceback anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PELVIS_DICOMS = ("224_DDH_115.dcm", "331_DDH_115.dcm")


def run_one(path: Path, select: str | None, bundle: Path | None) -> dict[str, object]:
    cmd = [sys.executable, "-m", "bmd_edge.cli", "predict", str(path), "--age", "70", "--sex",
           "F", "--json"]
    if select:
        cmd += ["--select", select]
    if bundle:
        cmd += ["--model", str(bundle)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    secs = time.perf_counter() - t
    err_lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    row: dict[str, object] = {"file": path.name, "select": select or "—", "code": r.returncode,
                              "secs": secs, "traceback": "Traceback" in r.stderr,
                              "stderr_lines": len(err_lines)}
    if r.returncode == 0:
        try:
            d = json.loads(r.stdout)
            row["result"] = (f"BMD {d['bmd_gcm2']:.3f}, T {d['t_score']:+.1f}, "
                             f"{d['who_category']}")
            row["warnings"] = "; ".join(d["warnings"]) or ""
        except (json.JSONDecodeError, KeyError) as err:
            row["result"] = f"UNPARSEABLE stdout ({err})"
    else:
        row["result"] = err_lines[0] if err_lines else "(no message)"
        row["warnings"] = ""
    return row


def md_cell(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realworld", type=Path,
                    default=ROOT.parent / "shared" / "realworld")
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                    "realworld_predict.md")
    args = ap.parse_args()
    rows = []
    for sub in ("hip", "dicom"):
        for f in sorted((args.realworld / sub).iterdir()):
            if not f.is_file():
                continue
            selects: tuple[str | None, ...] = (None,)
            if sub == "hip" or f.name in PELVIS_DICOMS:
                selects = (None, "left", "right")
            for sel in selects:
                row = run_one(f, sel, args.bundle)
                row["folder"] = sub
                rows.append(row)
                print(f"{sub}/{f.name} select={sel}: exit {row['code']} {row['result']}",
                      flush=True)
    load = os.getloadavg()
    hip = [r for r in rows if r["folder"] == "hip"]
    n_tb = sum(bool(r["traceback"]) for r in rows)
    multi = [r for r in rows if r["code"] != 0 and int(r["stderr_lines"]) > 1]  # type: ignore
    ok_or_refused = all(r["code"] == 0 or (r["code"] == 2 and int(r["stderr_lines"]) == 1
                                           and str(r["result"]).startswith("error: "))
                        for r in hip)  # type: ignore[call-overload]
    L = ["# `bmd-edge predict` on the real-world files", "",
         f"Command per file: `bmd-edge predict FILE --age 70 --sex F --json [--select left|right]` "
         f"with the shipped bundle, in a subprocess. Files: {args.realworld} "
         "(see its SOURCES.md; none are in the repo). Load average at end "
         f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}.", "",
         f"- Runs: {len(rows)} ({len(hip)} on hip/, {len(rows) - len(hip)} on dicom/).",
         f"- Tracebacks: {n_tb}.",
         f"- Failures with more than one stderr line: {len(multi)}.",
         f"- Every hip/ run gave a result (exit 0) or one `error:` line (exit 2): "
         f"{'yes' if ok_or_refused else 'NO'}.",
         f"- Results on hip/: {sum(r['code'] == 0 for r in hip)} / {len(hip)}; refusals "
         f"{sum(r['code'] != 0 for r in hip)}.", "",
         "| folder | file | --select | exit | result or refusal (first stderr line) | warnings "
         "| stderr lines | traceback | s |",
         "|---|---|---|---:|---|---|---:|---|---:|"]
    for r in rows:
        L.append(f"| {r['folder']} | {r['file']} | {r['select']} | {r['code']} | "
                 f"{md_cell(r['result'])} | {md_cell(r.get('warnings', ''))} | "
                 f"{r['stderr_lines']} | "
                 f"{'YES' if r['traceback'] else 'no'} | {float(r['secs']):.1f} |")  # type: ignore
    L.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(L), encoding="utf-8")
    print("\n".join(L[:12]))


if __name__ == "__main__":
    main()
