"""Docs as tests: README.md's shown outputs are what the commands print (scripts/readme_outputs.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_outputs", ROOT / "scripts" / "readme_outputs.py")
assert spec is not None and spec.loader is not None
readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme)
TEXT = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind, arg, start, end", readme.blocks(TEXT),
                         ids=[b[1] for b in readme.blocks(TEXT)])
def test_readme_block_matches_a_fresh_run(kind: str, arg: str, start: int, end: int) -> None:
    shown = "\n".join(TEXT.split("\n")[start:end])
    fresh = readme.GENERATORS[kind](arg)
    assert readme.differences(shown, fresh) == [], (
        "README.md is stale: run `.venv/bin/python scripts/readme_outputs.py --write`")


def test_the_readme_shows_the_first_command_and_the_bundle() -> None:
    args = {b[1] for b in readme.blocks(TEXT)}
    assert "bmd-edge predict export/samples/synthetic_hip_f72.png --age 70 --sex F" in args
    assert {"bmd-edge info", "shipped-variants"} <= args


def test_the_comparison_can_fail() -> None:
    shown = "Femoral-neck BMD 0.878 g/cm² T-score -1.2 WHO category osteopenia screen POSITIVE"
    assert readme.differences(shown, shown.replace("0.878", "0.879")) == []   # within 0.002
    assert readme.differences(shown, shown.replace("-1.2", "-1.3")) == []     # one last digit
    assert readme.differences(shown, shown.replace("0.878", "0.881"))
    assert readme.differences(shown, shown.replace("-1.2", "-1.4"))
    assert readme.differences(shown, shown.replace("osteopenia", "normal"))
    assert readme.differences(shown, shown.replace("POSITIVE", "negative"))
def test_every_results_file_the_readme_cites_exists() -> None:
    cited = set(re.findall(r"`((?:benchmarks/results|calibration)/[\w./-]+)`", TEXT))
    assert cited, "the README cites no results files"
    assert [c for c in cited if not (ROOT / c).exists()] == []
