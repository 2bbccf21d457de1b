"""int8 locator from a training run: `python -m bmd_edge.locate.int8 --run RUN --pos … --neg …`.

Loads RUN/best.pt, calibrates NNCF post-training quantisation on randomised renders of the
run's *training* films, writes RUN/locator_int8.{onnx,xml} and scores the int8 ONNX file on the
run's validation split with the fp32 run's hip-film threshold → RUN/metrics_int8.json, so the
fp32 and int8 numbers are directly comparable (int8 ships only where it holds accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from bmd_edge.locate.data import Augment, load_cohort, render
from bmd_edge.locate.export import export_locator, export_locator_int8
from bmd_edge.locate.locator import Locator
from bmd_edge.locate.metrics import evaluate
from bmd_edge.locate.model import LocatorNet, LocatorNetConfig
from bmd_edge.locate.spec import LocatorSpec
from bmd_edge.locate.train import TrainConfig, split
from bmd_edge.runtime.backends import SessionConfig

app = typer.Typer(add_completion=False)


@app.command()
def main(
    run: Annotated[Path, typer.Option("--run", help="Training run folder with best.pt.")],
    pos: Annotated[list[Path], typer.Option("--pos", help="The run's hip/pelvis cohorts.")],
    neg: Annotated[list[Path], typer.Option("--neg", help="The run's non-hip cohorts.")],
    limit: Annotated[int | None, typer.Option(help="The run's --limit.")] = None,
    batches: Annotated[int, typer.Option(help="Calibration batches of 16 renders.")] = 8,
    flip_average: Annotated[bool, typer.Option(
        help="Bake test-time mirror averaging into both files (fp32 re-exported into --out "
             "with its own validation threshold).")] = False,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: the run).")] = None,
    checkpoint: Annotated[str, typer.Option(help="Checkpoint file in the run.")] = "best.pt",
) -> None:
    """Quantise the run's best locator to int8 and score the int8 file like the fp32 one."""
    ck = torch.load(run / checkpoint, weights_only=True)
    spec = LocatorSpec.from_dict(ck["spec"])
    net = LocatorNet(LocatorNetConfig(**ck["net"]))
    net.load_state_dict(ck["model"])
    net.eval()
    samples = [s for f in [*pos, *neg] for s in load_cohort(f, spec, limit)]
    val_frac = ck["config"].get("val_frac", TrainConfig().val_frac)
    tr, va = split(samples, val_frac)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(tr))[:16 * batches]
    cal = [np.stack([render(tr[i], spec, Augment(), rng)[0][None] for i in pick[k:k + 16]])
           for k in range(0, len(pick), 16)]
    out = out or run
    out.mkdir(parents=True, exist_ok=True)
    if flip_average:
        fp32, _ = export_locator(net, spec, out, flip_average=True)
        m32 = evaluate(Locator(fp32, SessionConfig(backend="onnxruntime")).locate, va)
        (out / "metrics.json").write_text(json.dumps(m32.as_dict(), indent=2))
        typer.echo("fp32 flip-averaged ONNX held-out: " + json.dumps(m32.as_dict()))
    onnx_path, _ = export_locator_int8(net, spec, cal, out, flip_average=flip_average)
    thr = json.loads((out / "metrics.json").read_text())["hip_score_threshold"]
    loc = Locator(onnx_path, SessionConfig(backend="onnxruntime"))
    m = evaluate(loc.locate, va, threshold=thr)
    (out / "metrics_int8.json").write_text(json.dumps(m.as_dict(), indent=2))
    typer.echo("int8 ONNX held-out: " + json.dumps(m.as_dict()))


if __name__ == "__main__":
    app()
