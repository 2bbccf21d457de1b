"""Average locator checkpoints of one lineage: `python -m bmd_edge.locate.swa OUT.pt A.pt B.pt …`.

Why: with heavy domain randomisation the real-film behaviour of single epochs swings (a head
found at one epoch is an iliac wing at the next); the mean of nearby weights (stochastic weight
averaging) sits in a flatter region and is steadier. BatchNorm running statistics are averaged
too, which holds for checkpoints this close. The output keeps the last input's spec, net and
config; its metrics are the last input's until re-measured (int8 --flip-average re-measures).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """One checkpoint whose floating-point model tensors are the mean of `paths`'."""
    cks = [torch.load(Path(p), weights_only=True) for p in paths]
    if not cks:
        raise ValueError("no checkpoints to average")
    if any(ck["net"] != cks[0]["net"] or ck["spec"] != cks[0]["spec"] for ck in cks):
        raise ValueError("checkpoints differ in net config or spec; cannot average them")
    model = {}
    for k, v in cks[-1]["model"].items():
        model[k] = (sum(ck["model"][k] for ck in cks) / len(cks)) if v.is_floating_point() else v
    out = {k: cks[-1][k] for k in ("spec", "net", "config", "metrics", "epoch")}
    return out | {"model": model, "averaged_from": [str(p) for p in paths]}


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m bmd_edge.locate.swa OUT.pt IN.pt [IN.pt …]")
    torch.save(average_checkpoints(sys.argv[2:]), sys.argv[1])
