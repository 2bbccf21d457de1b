"""Training throughput (images/s) of each preset on this CPU: a few AdamW steps on random input.

Measures the model's forward + backward + optimizer step only (data loading is cached in memory
during real runs, see bmd_edge/training/data.py). Writes benchmarks/results/train_throughput.md.
Usage: python benchmarks/train_throughput.py [--steps 4] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path

import torch

from bmd_edge.model import build_model, count_parameters
from bmd_edge.model.losses import WeightedSmoothL1Loss
from bmd_edge.training.config import PRESETS, TrainConfig, resolve_config

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.md"


def ablation_config() -> TrainConfig:
    """The small config benchmarks/ablation_end_to_end.py uses (kept here so both agree)."""
    return resolve_config("cpu-fast", arch="resnet10t", image_size=96, d_model=64, n_heads=4,
                          n_layers=3, batch_size=32, lr=1e-3, epochs=6, patience=3,
                          warmup_epochs=0.5, workers=0, threads=1)


def measure(cfg: TrainConfig, steps: int) -> dict[str, float]:
    """Median seconds per step over `steps` timed steps (after one warm-up step)."""
    torch.manual_seed(0)
    model = build_model(cfg.model_config()).train()
    loss_fn = WeightedSmoothL1Loss().fit(torch.rand(256) * 0.6 + 0.6)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    b, s = cfg.batch_size, cfg.image_size
    x = (torch.randn(b, 1, s, s), torch.randn(b, 10), torch.ones(b, 10))
    y = torch.rand(b) * 0.6 + 0.6
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        bmd, _ = model(*x)
        loss = loss_fn(bmd, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return {"params": count_parameters(model), "s_per_step": med, "img_per_s": b / med}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {**PRESETS, "ablation": ablation_config()}
    rows = []
    for name, cfg in configs.items():
        cfg = dataclasses.replace(cfg, threads=args.threads)
        r = measure(cfg, args.steps)
        rows.append((name, cfg, r))
        print(f"{name}: {r['img_per_s']:.1f} img/s ({r['s_per_step']:.3f} s/step, batch {cfg.batch_size})")
    lines = [
        "# Training throughput per preset",
        "",
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Median of {args.steps} "
        "AdamW steps (forward + backward + step) on random input; data loading excluded. The CPU "
        "was shared with other jobs while measuring, so treat these as lower bounds.",
        "",
        "| config | arch | px | d_model | layers×heads | batch | params | s/step | images/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, cfg, r in rows:
        lines.append(f"| {name} | {cfg.arch}{'' if cfg.width is None else f' (w{cfg.width})'} | "
                     f"{cfg.image_size} | {cfg.d_model} | {cfg.n_layers}×{cfg.n_heads} | "
                     f"{cfg.batch_size} | {r['params'] / 1e6:.2f} M | {r['s_per_step']:.3f} | "
                     f"{r['img_per_s']:.1f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
