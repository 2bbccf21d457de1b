"""Pretrain an image encoder on hip landmarks: our stand-in for the paper's ImageNet start.

ImageNet weights cannot be downloaded here, and a pretraining task must not be BMD (the encoder
would otherwise already know the answer the ablation asks about). The synthetic world's
`landmarks.csv` gives, for every hip, the femoral-head centre and radius, where the neck axis
meets the shaft and the DXA-style neck box — a geometry task a radiologist's eye also solves,
learned on a separate, large cohort that shares no person with the ablation cohorts.

Targets are mapped into the preprocessed frame (left hips mirrored like `preprocess` mirrors
them; coordinates as fractions of the image side), then standardised. The network is a ResNet
trunk + one linear layer on the flattened S/32 × S/32 feature map (position matters here, so
no global pooling). Training is resumable per epoch (`state.pt`), and the trunk's weights are
saved with torchvision-compatible names (`encoder.pt`), so `load_torchvision_weights` reads them.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bmd_edge.errors import InputError

LANDMARK_KEYS = ("head_x", "head_y", "head_r", "neck_x", "neck_y", "roi_x", "roi_y",
                 "roi_len", "roi_width")
X_KEYS = ("head_x", "neck_x", "roi_x")  # mirrored for left hips


@dataclass(frozen=True)
class PretrainConfig:
    """The encoder and its training; stored in encoder.pt so the ablation can report it."""

    arch: str = "resnet18"
    width: int = 32
    image_size: int = 128
    epochs: int = 16
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    threads: int = 1


def landmark_targets(landmarks_csv: str | Path, manifest_rows: Sequence[dict[str, str]],
                     widths: Sequence[int]) -> np.ndarray:
    """(N, 9 + 2) targets per manifest row, in the canonical (right-hip) preprocessed frame.

    Coordinates are fractions of the stored image side (x mirrored for a left hip); the box angle
    becomes (cos, sin) of the mirrored angle so a wrap-around cannot make a large error.
    """
    with open(landmarks_csv, newline="") as fh:
        by_image = {r["image"]: r for r in csv.DictReader(fh)}
    out = []
    for row, width in zip(manifest_rows, widths):
        lm = by_image.get(row["image"])
        if lm is None:
            raise InputError(f"{row['image']} has no row in {landmarks_csv}")
        side = row["side"]
        vals = []
        for key in LANDMARK_KEYS:
            v = float(lm[f"{side}_{key}"]) / width
            vals.append(1.0 - v if side == "left" and key in X_KEYS else v)
        angle = math.radians(float(lm[f"{side}_roi_angle_deg"]))
        if side == "left":
            angle = math.pi - angle
        vals += [math.cos(angle), math.sin(angle)]
        out.append(vals)
    return np.asarray(out, dtype=np.float32)


class LandmarkNet(nn.Module):
    """ResNet trunk -> flattened feature map -> landmark targets."""

    def __init__(self, cfg: PretrainConfig, n_targets: int) -> None:
        super().__init__()
        from bmd_edge.model.resnet import create_resnet

        self.backbone = create_resnet(cfg.arch, width=cfg.width)
        grid = cfg.image_size // 32
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1),
                                  nn.Linear(self.backbone.num_features * grid * grid, n_targets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def load_images(cohort: str | Path, rows: Sequence[dict[str, str]], size: int
                ) -> tuple[np.ndarray, list[int]]:
    """Preprocessed (N, 1, S, S) float32 images, exactly as training and inference see them,
    and each stored image's width (landmarks are in stored pixels)."""
    from bmd_edge.image_io import read_image
    from bmd_edge.preprocess import PreprocessSpec, preprocess

    spec = PreprocessSpec(size=size)
    root = Path(cohort)
    images, widths = [], []
    for r in rows:
        pixels = np.asarray(read_image(root / r["image"]).pixels, np.float32)
        widths.append(pixels.shape[1])
        images.append(preprocess(pixels, spec, side=r["side"]))
    return np.stack(images).astype(np.float32), widths


def pretrain(cohort: str | Path, out_dir: str | Path, cfg: PretrainConfig = PretrainConfig(),
             *, limit: int | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Train (or resume) the landmark encoder on `cohort`; return OUT/encoder.pt.

    Resumable: OUT/state.pt holds model, optimiser, scheduler and history after every epoch.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    with open(Path(cohort) / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    t0 = time.time()
    pixels, widths = load_images(cohort, rows, cfg.image_size)
    images = torch.from_numpy(pixels)
    targets = landmark_targets(Path(cohort) / "landmarks.csv", rows, widths)
    order = np.random.default_rng(cfg.seed).permutation(len(rows))
    n_val = max(1, round(cfg.val_fraction * len(rows)))
    val, train = order[:n_val], order[n_val:]
    mean, sd = targets[train].mean(0), targets[train].std(0) + 1e-6
    y = torch.from_numpy((targets - mean) / sd)
    if log:
        log(f"loaded {len(rows)} images in {time.time() - t0:.0f} s; {len(train)} train, {n_val} val")

    net = LandmarkNet(cfg, y.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                pct_start=0.1)
    history: list[dict[str, float]] = []
    state_path = out / "state.pt"
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        history = state["history"]
        if state["sched"]["total_steps"] == cfg.epochs * steps:
            sched.load_state_dict(state["sched"])
        else:  # resumed with another epoch budget: the new schedule, advanced to where we are
            for _ in range(min(len(history) * steps, cfg.epochs * steps - 1)):
                sched.step()
    side_px = 256.0  # report errors in pixels of a 256-px image (the cohort's stored size)
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        net.train()
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(train)
        t_ep, total = time.time(), 0.0
        for b in range(0, len(perm) - 1, cfg.batch_size):
            idx = torch.from_numpy(perm[b:b + cfg.batch_size])
            if len(idx) < 2:
                continue
            loss = nn.functional.smooth_l1_loss(net(images[idx]), y[idx], beta=0.5)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(images[torch.from_numpy(val[b:b + 64])])
                              for b in range(0, len(val), 64)]).numpy() * sd + mean
        err = np.abs(pred - targets[val])
        head_px = float(np.median(np.hypot(err[:, 0], err[:, 1])) * side_px)
        row = {"epoch": epoch, "train_loss": total / len(train), "val_head_centre_px": head_px,
               "val_head_radius_px": float(np.median(err[:, 2]) * side_px),
               "val_neck_px": float(np.median(np.hypot(err[:, 3], err[:, 4])) * side_px),
               "seconds": time.time() - t_ep}
        history.append(row)
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "history": history}, state_path)
        if log:
            log(json.dumps(row))
    encoder = out / "encoder.pt"
    torch.save({"state_dict": net.backbone.state_dict(), "config": asdict(cfg),
                "history": history, "cohort": str(cohort), "n_images": len(rows)}, encoder)
    return encoder
