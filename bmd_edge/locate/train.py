"""Train the hip locator (torch): `python -m bmd_edge.locate.train --pos A --neg B --out DIR`.

A flat loop: cached synthetic films → random warps and photometric noise (data.py) → CenterNet-
style focal loss on the side heatmaps, masked L1 on the geometry, BCE on the hip-film score.
Checkpoints describe themselves (spec, net config, epoch, metrics) and `--resume` continues one.
At the end the best checkpoint is exported to ONNX + OpenVINO IR and scored *through the
exported ONNX file* with the same metrics code, so the reported numbers are the shipped ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
import typer

from bmd_edge.locate.data import Augment, Sample, load_cohort, render, targets
from bmd_edge.locate.decode import LocateResult, decode
from bmd_edge.locate.letterbox import letterbox
from bmd_edge.locate.metrics import LocatorMetrics, evaluate
from bmd_edge.locate.model import LocatorNet, LocatorNetConfig
from bmd_edge.locate.spec import LocatorSpec


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_frac: float = 0.15        # held out per cohort, by index, never augmented
    geom_weight: float = 20.0     # geometry L1 is in small units (fractions of the side)
    cls_weight: float = 0.5
    neg_share: float = 0.3        # non-hip films repeated up to this share of each epoch
    seed: int = 0
    threads: int = 1              # torch threads: the machine is shared
    net: LocatorNetConfig = field(default_factory=LocatorNetConfig)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, averaged over the number of peaks."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    pos_loss = -((1 - p) ** 2) * torch.log(p) * pos
    neg_loss = -((1 - target) ** 4) * (p ** 2) * torch.log(1 - p) * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def batch_of(samples: list[Sample], spec: LocatorSpec, aug: Augment,
             rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    xs, hs, gs, ms, ys = [], [], [], [], []
    for s in samples:
        img, hips = render(s, spec, aug, rng)
        h, g, m = targets(hips, spec)
        xs.append(img[None]); hs.append(h); gs.append(g); ms.append(m); ys.append([float(s.is_hip)])
    return tuple(torch.from_numpy(np.stack(a).astype(np.float32)) for a in (xs, hs, gs, ms, ys))


def loss_of(net: LocatorNet, batch: tuple[torch.Tensor, ...], cfg: TrainConfig) -> torch.Tensor:
    x, heat_t, geom_t, mask, y = batch
    heat, geom, cls = net.logits(x)
    m = mask[:, None]                                             # (B, 1, G, G)
    geom_l = (F.l1_loss(geom, geom_t, reduction="none") * m).sum() / (m.sum() * geom.shape[1]).clamp(min=1)
    return (focal_loss(heat, heat_t) + cfg.geom_weight * geom_l
            + cfg.cls_weight * F.binary_cross_entropy_with_logits(cls, y))


def torch_locate(net: LocatorNet, spec: LocatorSpec, threshold: float = 0.3):
    """film → LocateResult with the torch model and the runtime's letterbox/decoder."""
    def run(pixels: np.ndarray) -> LocateResult:
        x, box = letterbox(pixels, spec)
        with torch.no_grad():
            heat, geom, hip = net(torch.from_numpy(x))
        return decode(heat[0].numpy(), geom[0].numpy(), hip.numpy(), box, spec, threshold)
    return run


def split(samples: list[Sample], frac: float) -> tuple[list[Sample], list[Sample]]:
    """Last `frac` of each cohort held out (cohorts are ordered by generation index)."""
    by: dict[str, list[Sample]] = {}
    for s in samples:
        by.setdefault(s.name.split("/")[0], []).append(s)
    tr, va = [], []
    for group in by.values():
        k = max(1, round(len(group) * frac)) if len(group) > 1 else 0
        tr += group[:len(group) - k]
        va += group[len(group) - k:]
    return tr, va


def balance(samples: list[Sample], neg_share: float) -> list[Sample]:
    """Repeat the (usually scarcer) non-hip films until they are ~neg_share of the list."""
    neg = [s for s in samples if not s.is_hip]
    pos = len(samples) - len(neg)
    if not neg or not 0 < neg_share < 1:
        return samples
    want = int(neg_share / (1 - neg_share) * pos)
    extra = max(0, want - len(neg))
    return samples + [neg[i % len(neg)] for i in range(extra)]


def train(samples: list[Sample], out: Path, spec: LocatorSpec, cfg: TrainConfig,
          resume: bool = False, log=print, aug: Augment | None = None,
          init: Path | None = None) -> tuple[LocatorNet, LocatorMetrics]:
    """Train, checkpoint every epoch to out/last.pt (best → out/best.pt); returns the best net
    and its validation metrics. `aug` defaults to the full domain randomisation; `init` starts
    from another run's weights (same net config), which a fresh `--resume` then supersedes."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    tr, va = split(samples, cfg.val_frac)
    tr = balance(tr, cfg.neg_share)
    net = LocatorNet(cfg.net)
    if init is not None:
        net.load_state_dict(torch.load(init, weights_only=True)["model"])
        log(f"initialised from {init}")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(tr) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    start, best = 0, None
    if resume and (out / "last.pt").is_file():
        ck = torch.load(out / "last.pt", weights_only=True)
        net.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); sched.load_state_dict(ck["sched"])
        start, best = ck["epoch"] + 1, ck.get("best")
        log(f"resumed at epoch {start}")
    aug = aug or Augment()
    for epoch in range(start, cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(tr))
        net.train()
        t0, total = time.time(), 0.0
        for b in range(steps_per_epoch):
            batch = batch_of([tr[i] for i in order[b * cfg.batch:(b + 1) * cfg.batch]], spec, aug, rng)
            loss = loss_of(net, batch, cfg)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            total += loss.item()
        net.eval()
        m = evaluate(torch_locate(net, spec), va)
        score = m.head_found + m.side_correct - m.centre_err_median_pct / 100 + m.other_films_refused
        log(f"epoch {epoch}: loss {total / steps_per_epoch:.4f} ({time.time() - t0:.0f} s) "
            + json.dumps({k: round(v, 4) for k, v in m.as_dict().items()}))
        ck = {"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
              "epoch": epoch, "spec": spec.to_dict(), "net": cfg.net.to_dict(),
              "config": {k: v for k, v in asdict(cfg).items() if k != "net"},
              "metrics": m.as_dict()}
        if best is None or not (score <= best["score"]):
            best = {"score": score, "epoch": epoch}
            torch.save(ck | {"best": best}, out / "best.pt")
        torch.save(ck | {"best": best}, out / "last.pt")
    ck = torch.load(out / "best.pt", weights_only=True)
    net = LocatorNet(LocatorNetConfig(**ck["net"]))
    net.load_state_dict(ck["model"])
    return net.eval(), LocatorMetrics(**ck["metrics"])


app = typer.Typer(add_completion=False)


@app.command()
def main(
    pos: Annotated[list[Path], typer.Option("--pos", help="synth hip/pelvis cohort folder(s).")],
    neg: Annotated[list[Path], typer.Option("--neg", help="synth --anatomy cohort folder(s).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, exports, metrics.")],
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 32,
    size: Annotated[int, typer.Option(help="Input side in pixels.")] = 128,
    limit: Annotated[int | None, typer.Option(help="At most this many films per cohort.")] = None,
    threads: Annotated[int, typer.Option(help="Torch threads.")] = 1,
    resume: Annotated[bool, typer.Option(help="Continue out/last.pt.")] = False,
    geom_weight: Annotated[float, typer.Option(help="Weight of the geometry L1 loss.")] = 20.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle).")] = 2e-3,
    init: Annotated[Path | None, typer.Option(help="Start from this checkpoint's weights.")] = None,
) -> None:
    """Train the hip locator, export ONNX + OpenVINO IR, and score the exported ONNX file."""
    from bmd_edge.locate.export import export_locator
    from bmd_edge.locate.locator import Locator
    from bmd_edge.runtime.backends import SessionConfig

    spec = LocatorSpec(size=size)
    samples = [s for f in [*pos, *neg] for s in load_cohort(f, spec, limit)]
    typer.echo(f"{len(samples)} films ({sum(s.is_hip for s in samples)} hip/pelvis)")
    cfg = TrainConfig(epochs=epochs, batch=batch, threads=threads, geom_weight=geom_weight, lr=lr)
    net, _ = train(samples, out, spec, cfg, resume=resume, log=typer.echo,
                   init=None if resume and (out / "last.pt").is_file() else init)
    onnx_path, _ = export_locator(net, spec, out)
    loc = Locator(onnx_path, SessionConfig(backend="onnxruntime", threads=threads))
    m = evaluate(loc.locate, split(samples, cfg.val_frac)[1])
    (out / "metrics.json").write_text(json.dumps(m.as_dict(), indent=2))
    typer.echo("exported ONNX held-out: " + json.dumps(m.as_dict()))


if __name__ == "__main__":
    app()
