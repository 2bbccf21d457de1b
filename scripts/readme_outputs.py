"""Keep README.md's shown outputs true: regenerate them, or check them (CI: tests/test_readme.py).

    .venv/bin/python scripts/readme_outputs.py            # check; exit 1 naming each difference
    .venv/bin/python scripts/readme_outputs.py --write    # rewrite the blocks from fresh runs

A README block is generated when the line before its opening fence is a marker:
- `<!-- readme-output: bmd-edge ARGS -->` — a ```text block: `$ bmd-edge ARGS`, then what that
  command prints (stdout and stderr, 100 columns, repository paths shown relative);
- `<!-- readme-table: shipped-variants -->` — the Markdown table of the shipped bundle's
  variants, from its bundle.json (what a fresh install can run).
Checking compares text exactly (whitespace-normalised) and numbers with a tolerance: 0.002 for a
number printed with three or more decimals (BMD in g/cm²), one unit of the last printed digit
otherwise — so a WHO category or a screening result can never drift, while a last-digit
difference between CPUs does not fail CI. Measured figures (latencies, throughput) are not
produced here: they come from the benchmark scripts, whose results files name their machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- readme-(output|table): (.+?) -->$")
NUMBER = re.compile(r"[-+−]?\d+(?:\.\d+)?")


def run_command(command: str) -> str:
    """`$ command` and its output, as a user at a 100-column terminal in the repo would see it."""
    args = shlex.split(command)
    if args[0] != "bmd-edge":
        raise SystemExit(f"README marker runs {args[0]!r}; only bmd-edge commands are allowed")
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("BMD_EDGE_BUNDLE", None)
    proc = subprocess.run([sys.executable, "-m", "bmd_edge.cli", *args[1:]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"`{command}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
    out = (proc.stdout + proc.stderr).replace(str(ROOT) + os.sep, "")
    lines = [ln.rstrip() for ln in out.splitlines()]
    return "\n".join([f"$ {command}", *lines]).rstrip() + "\n"


def shipped_variants_table(_: str) -> str:
    from bmd_edge.bundle import Bundle

    b = Bundle.load()
    rows = ["| variant | runtime | weights | MAE g/cm² | R² | AUC @0.899 | size |",
            "|---|---|---|---|---|---|---|"]
    for name in b.installed():
        v = b.meta.variants[name]
        m = v.metrics
        size = m.get("size_bytes")
        rows.append(f"| {name} | {v.runtime} | {v.precision} | {m['mae']:.4f} | {m['r2']:.3f} | "
                    f"{m['auc']:.3f} | {'' if size is None else f'{size / 1e6:.1f} MB'} |")
    return "\n".join(rows) + "\n"


GENERATORS: dict[str, Callable[[str], str]] = {"output": run_command,
                                               "table": shipped_variants_table}


def blocks(text: str) -> list[tuple[str, str, int, int]]:
    """(kind, argument, start, end) of each generated block's body in `text` (line offsets)."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        kind, arg = m.groups()
        if kind == "output":
            if i + 1 >= len(lines) or lines[i + 1].strip() != "```text":
                raise SystemExit(f"README.md:{i + 1}: a readme-output marker must precede ```text")
            end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
            out.append((kind, arg, i + 2, end))
        else:
            end = i + 1
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            out.append((kind, arg, i + 1, end))
    return out


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(f"({NUMBER.pattern})", " ".join(text.split())) if t.strip()]


def _number(tok: str) -> float | None:
    return float(tok.replace("−", "-")) if NUMBER.fullmatch(tok) else None


def differences(shown: str, fresh: str) -> list[str]:
    """Where the README's text differs from a fresh run beyond the numeric tolerance."""
    a, b = _tokens(shown), _tokens(fresh)
    if len(a) != len(b):
        return [f"shown {len(a)} tokens, fresh output {len(b)}: {fresh!r}"]
    diffs = []
    for x, y in zip(a, b):
        nx, ny = _number(x), _number(y)
        if nx is None or ny is None:
            if x.strip() != y.strip():
                diffs.append(f"shown {x.strip()!r}, now {y.strip()!r}")
            continue
        decimals = len(x.split(".")[1]) if "." in x else 0
        tol = 0.002 if decimals >= 3 else 10 ** -decimals + 1e-9
        if abs(nx - ny) > tol:
            diffs.append(f"shown {x}, now {y} (tolerance {tol:g})")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite README.md's generated blocks")
    a = ap.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    lines = text.split("\n")
    problems = []
    for kind, arg, start, end in reversed(blocks(text)):
        fresh = GENERATORS[kind](arg)
        if a.write:
            lines[start:end] = fresh.rstrip("\n").split("\n")
        else:
            problems += [f"README.md:{start + 1} ({arg}): {d}"
                         for d in differences("\n".join(lines[start:end]), fresh)]
    if a.write:
        README.write_text("\n".join(lines), encoding="utf-8")
        print("rewrote README.md's generated blocks")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
