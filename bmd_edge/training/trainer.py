"""The full-precision training loop: AdamW, warm-up + cosine, clipping, early stopping, best.pt.

One flat loop (nanoGPT style). `fit` trains on given train/val cases and writes OUT/best.pt
(self-describing, per the checkpoint contract) and OUT/history.csv; it returns the model with the
best-on-validation weights loaded, so cross-validation can predict with it straight away.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from bmd_edge.errors import InputError
from bmd_edge.training.cache import TensorCache
from bmd_edge.training.config import TrainConfig
from bmd_edge.training.data import BmdDataset, case_label, worker_init_fn
from bmd_edge.training.distributed import (
    DistContext,
    ShardedEpochSampler,
    barrier,
    broadcast_flag,
    default_threads,
    gather_arrays,
    make_sampler,
    per_rank_batch,
    sum_values,
)
from bmd_edge.training.distributed import init as dist_init
from bmd_edge.training.metrics import all_metrics
from bmd_edge.training.resume import TrainState, _best_weights, load_resume, save_resume

# Workers start from a clean forkserver process, not a fork of this one: OpenCV's thread pool
# deadlocks in a forked child (seen here as a hang in pthread_cond_destroy inside cv2).
WORKER_CONTEXT = "forkserver"
# Set to a path prefix to have each rank append the case names it trained on to PATH.rankR
# (one JSON line per epoch): how the tests check that ranks see disjoint shards.
DEBUG_SAMPLES_ENV = "BMD_EDGE_DEBUG_SAMPLES"


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: where the best weights are and how it went."""

    checkpoint: Path  # OUT/best.pt, best on validation
    best_epoch: int  # 1-based epoch whose weights are in best.pt
    best_metrics: dict[str, float]  # validation metrics at that epoch (+ "loss")
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    stopped_early: bool = False  # True when patience ran out before cfg.epochs
    model: Any = None  # the model with the best weights loaded (not serialised)
    initial_val_loss: float = math.nan  # validation loss of the untrained model (the baseline)


def strata(cases: Sequence[object], n_bins: int = 4) -> np.ndarray:
    """Stratum label per case: BMD quantile bin × sex (the paper's stratified folds)."""
    labels = np.array([case_label(c) for c in cases])
    edges = np.quantile(labels, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(labels) > n_bins else []
    bins = np.searchsorted(edges, labels, side="right")
    sex = np.array([1 if c.record.values.get("sex") == "F" else 0 for c in cases])
    return bins * 2 + sex


def split_cases(
    cases: Sequence[object], val_fraction: float, seed: int, *, use_split_column: bool = True
) -> tuple[list[object], list[object]]:
    """Train/val split: the manifest's split column if present, else stratified and grouped.

    Grouped by patient_id (all of a patient's images on one side) so validation never sees a
    patient it trained on.
    """
    splits = {getattr(c, "split", None) for c in cases}
    if use_split_column and splits & {"val", "valid", "validation"}:
        val = [c for c in cases if c.split in ("val", "valid", "validation")]
        train = [c for c in cases if c.split in (None, "", "train")]
        return train, val
    if not 0 < val_fraction < 1:
        raise InputError(f"val-fraction must be in (0, 1) without a split column, got {val_fraction}")
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_splits = max(2, min(round(1 / val_fraction), len(cases)))
    groups = [getattr(c, "patient_id", None) or f"case{i}" for i, c in enumerate(cases)]
    x = np.zeros(len(cases))
    for n_bins in (4, 3, 2, 1):  # coarser strata until each has at least n_splits cases
        y = strata(cases, n_bins=n_bins)
        if np.bincount(y)[np.bincount(y) > 0].min() >= n_splits:
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            tr, va = next(folds.split(x, y, groups))
            break
    else:  # too few cases to stratify: grouped split on a seeded shuffle
        order = np.random.default_rng(seed).permutation(len(cases))
        tr_o, va_o = next(GroupKFold(n_splits=n_splits).split(x, groups=[groups[i] for i in order]))
        tr, va = order[tr_o], order[va_o]
    return [cases[i] for i in tr], [cases[i] for i in va]


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up to 1, then cosine decay to `floor` (fraction of the peak lr)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_loss(cfg: TrainConfig, train_labels: np.ndarray) -> torch.nn.Module:
    """Weighted Smooth L1 (weights from the training labels) or plain Smooth L1, on g/cm²."""
    from bmd_edge.model.losses import WeightedSmoothL1Loss

    wsl1 = WeightedSmoothL1Loss().fit(train_labels)
    return wsl1 if cfg.loss == "wsl1" else torch.nn.SmoothL1Loss(beta=wsl1.beta)


def make_loader(
    ds: BmdDataset, cfg: TrainConfig, shuffle: bool, ctx: DistContext | None = None
) -> tuple[DataLoader, ShardedEpochSampler]:
    """DataLoader over (index, epoch) keys of this rank's shard; persistent workers keep caches warm.

    The batch is per rank (cfg.batch_size is global, split evenly over the world size). Training
    shards are equal and disjoint (the sampler's drop_last); validation shards are padded by
    DistributedSampler and de-duplicated after the gather.
    """
    ctx = ctx or DistContext()
    batch = per_rank_batch(cfg.batch_size, ctx)
    sampler = make_sampler(len(ds), ctx, seed=cfg.seed, shuffle=shuffle,
                           drop_last=shuffle and ctx.distributed)
    loader = DataLoader(
        ds,
        batch_size=batch,
        sampler=sampler,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        worker_init_fn=worker_init_fn,
        drop_last=shuffle and len(sampler) > batch,  # a batch of 1 breaks BatchNorm
        generator=torch.Generator().manual_seed(cfg.seed),
        multiprocessing_context=WORKER_CONTEXT if cfg.workers > 0 else None,
    )
    return loader, sampler


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions g/cm², field attention (N, F), case indices) over a loader, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    preds, attn, idx = [], [], []
    for image, values, present, _, i in loader:
        bmd, field_attention = model(image.to(device), values.to(device), present.to(device))
        preds.append(bmd.float().cpu().numpy())
        attn.append(field_attention.float().cpu().numpy())
        idx.append(np.asarray(i))
    return np.concatenate(preds), np.concatenate(attn), np.concatenate(idx)


def predict_all(model: torch.nn.Module, loader: DataLoader, ctx: DistContext) -> tuple[np.ndarray, np.ndarray]:
    """Predictions over every rank's shard, gathered, de-duplicated and ordered by case index."""
    pred, _, idx = predict(model, loader)
    pred, idx = gather_arrays(ctx, pred, idx)
    idx, first = np.unique(idx, return_index=True)  # DistributedSampler pads with repeats
    return pred[first], idx


def _progress(quiet: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
        console=console, disable=quiet or not console.is_terminal, transient=False,
    )


def _set_batchnorm_eval(model: torch.nn.Module) -> None:
    """Frozen BatchNorm: running statistics in training too (cfg.batchnorm == "frozen")."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _debug_samples(ctx: DistContext, epoch: int, names: list[str]) -> None:
    """With BMD_EDGE_DEBUG_SAMPLES=PATH, each rank appends the cases it trained on to PATH.rankR."""
    path = os.environ.get(DEBUG_SAMPLES_ENV)
    if path:
        with open(f"{path}.rank{ctx.rank}", "a") as fh:
            fh.write(json.dumps({"rank": ctx.rank, "world_size": ctx.world_size, "epoch": epoch,
                                 "cases": names}) + "\n")


def fit(
    cfg: TrainConfig,
    train_cases: Sequence[object],
    val_cases: Sequence[object],
    out_dir: str | Path,
    *,
    spec: object | None = None,
    quiet: bool = True,
    log: Any = None,
    resume: str | Path | None = None,
    datasets: tuple[Any, Any] | None = None,
    crop: Any = None,
    stop_at: float | None = None,
) -> TrainResult:
    """Train one model; write OUT/best.pt, OUT/last.pt and OUT/history.csv; return the best model.

    Under torchrun every rank calls this with the same arguments: the model is wrapped in
    DistributedDataParallel, each rank trains on its shard with batch cfg.batch_size / world
    size, validation predictions are gathered, and rank 0 alone writes files and logs.
    `resume` continues from a last.pt (model, optimizer, scheduler, epoch, RNG, early-stop state).
    `datasets` (train, validation) replaces the manifest datasets (e.g. `CropDataset`s: anything
    with `labels`, `cases` and BmdDataset's items); `crop` (a `locate.crop.CropSpec`) is then
    stored in the checkpoint so export writes it into the bundle's input section.
    `stop_at` (a time.time() value): stop after the epoch whose successor would end past it — a
    run on a shared machine that must finish by a wall-clock time keeps its best epoch so far.
    """
    from bmd_edge import __version__
    from bmd_edge.model import build_model
    from bmd_edge.model.checkpoint import save_checkpoint
    from bmd_edge.preprocess import PreprocessSpec
    from bmd_edge.schema import schema_to_dict

    if len(train_cases) < 2 or len(val_cases) < 1:
        raise InputError(
            f"need ≥2 training and ≥1 validation cases, got {len(train_cases)} and {len(val_cases)}"
        )
    ctx = dist_init()
    per_rank_batch(cfg.batch_size, ctx)  # fail early on an indivisible global batch
    if not ctx.is_main:
        quiet, log = True, None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec or PreprocessSpec(size=cfg.image_size)
    torch.manual_seed(cfg.seed)
    threads = default_threads(ctx, cfg.threads)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # cheap on CPU
    device = torch.device(ctx.device)

    disk = TensorCache(cfg.cache_dir, {"preprocess": spec.to_dict()}) if cfg.cache_dir else None
    common: dict[str, Any] = {"seed": cfg.seed, "cache": cfg.cache_images,
                              "threads": max(1, cfg.workers), "cache_limit_mb": cfg.cache_limit_mb,
                              "disk_cache": disk}
    if datasets is not None:
        train_ds, val_ds = datasets
    else:
        train_ds = BmdDataset(train_cases, spec, augment=cfg.augment,
                              field_dropout=cfg.field_dropout,
                              field_dropout_all=cfg.field_dropout_all, **common)
        val_ds = BmdDataset(val_cases, spec, **common)
    train_loader, sampler = make_loader(train_ds, cfg, shuffle=True, ctx=ctx)
    val_loader, _ = make_loader(val_ds, cfg, shuffle=False, ctx=ctx)

    mean, std = float(train_ds.labels.mean()), float(train_ds.labels.std())
    mcfg = dataclasses.replace(cfg.model_config(), label_mean=mean, label_std=max(std, 1e-3))
    model = build_model(mcfg)
    model.set_label_scale(mcfg.label_mean, mcfg.label_std)
    if cfg.pretrained and resume is None:  # a resumed run gets every weight from last.pt
        from bmd_edge.model import load_torchvision_weights

        load_torchvision_weights(model, cfg.pretrained)
    if cfg.batchnorm == "sync" and ctx.distributed:
        if device.type != "cuda":
            raise InputError("batchnorm 'sync' needs GPUs (SyncBatchNorm has no CPU kernel); "
                             "use 'batch' or 'frozen' on CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    net: torch.nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    criterion = make_loss(cfg, train_ds.labels).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(train_loader)
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, cfg.min_lr_ratio)
    )

    def val_loss_of(pred: np.ndarray, truth: np.ndarray) -> float:
        return float(criterion(torch.from_numpy(pred).to(device), torch.from_numpy(truth).to(device)))

    ckpt_path, last_path = out / "best.pt", out / "last.pt"
    state = TrainState()
    if resume is not None:
        state = load_resume(resume, model, opt, sched, device)
        best_state = _best_weights(ckpt_path)
        if state.bad_epochs >= cfg.patience:  # it had stopped early: resuming must not train on
            state.stopped_early = state.epoch < cfg.epochs
            state.epoch = cfg.epochs
    else:
        pred, idx = predict_all(model, val_loader, ctx)
        state.initial_val_loss = val_loss_of(pred, val_ds.labels[idx])
        best_state = {}
    history = state.history
    with _progress(quiet) as bar:
        task = bar.add_task("train", total=total, completed=state.epoch * steps_per_epoch, stats="")
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            net.train()
            if cfg.batchnorm == "frozen":
                _set_batchnorm_eval(model)
            sampler.set_epoch(epoch)
            t0, run_loss, run_abs, seen = time.perf_counter(), 0.0, 0.0, 0
            used: list[int] = []
            for image, values, present, label, i in train_loader:
                image, values, present = image.to(device), values.to(device), present.to(device)
                label = label.to(device)
                bmd, _ = net(image, values, present)  # (B,) g/cm²
                loss = criterion(bmd, label)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # DDP all-reduces (averages) the gradients here
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                n = label.shape[0]
                seen += n
                used.extend(int(k) for k in i)
                run_loss += float(loss.detach()) * n
                run_abs += float((bmd.detach() - label).abs().sum())
                bar.update(task, advance=1, stats=f"ep {epoch} loss {run_loss / seen:.4f} "
                           f"MAE {run_abs / seen:.3f}")
            train_seconds = time.perf_counter() - t0
            _debug_samples(ctx, epoch, [Path(train_ds.cases[k].image).name for k in used])
            run_loss, run_abs, seen = sum_values(ctx, run_loss, run_abs, seen)
            pred, idx = predict_all(model, val_loader, ctx)
            truth = val_ds.labels[idx]
            metrics = {"loss": val_loss_of(pred, truth), **all_metrics(truth, pred)}
            row = {"epoch": epoch, "train_loss": run_loss / seen, "train_mae": run_abs / seen,
                   "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
                   "train_seconds": train_seconds, "train_images": seen,
                   **{f"val_{k}": v for k, v in metrics.items()}}
            history.append(row)
            if log is not None:
                log(f"epoch {epoch}: train loss {row['train_loss']:.4f}, val loss {metrics['loss']:.4f}, "
                    f"val MAE {metrics['mae']:.4f}, R² {metrics['r2']:.3f}")
            score = metrics[cfg.stop_metric]
            improved = broadcast_flag(ctx, score < state.best_score - 1e-6)
            if improved:
                state.best_score, state.best_epoch, state.best_metrics = score, epoch, metrics
                state.bad_epochs = 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                state.bad_epochs += 1
            state.epoch = epoch
            out_of_time = stop_at is not None and time.time() + row["seconds"] > stop_at
            stop = broadcast_flag(ctx, (not improved and state.bad_epochs >= cfg.patience)
                                  or out_of_time)
            if out_of_time and log is not None:
                log(f"stopping after epoch {epoch}: another would end past the deadline")
            if ctx.is_main:
                _write_history(out / "history.csv", history)
                if improved:
                    save_checkpoint(ckpt_path, model, mcfg, {
                        "train_config": cfg.to_dict(), "preprocess": spec.to_dict(),
                        "schema": schema_to_dict(), "package_version": __version__,
                        **({"crop": crop.to_dict()} if crop is not None else {}),
                        "metrics": {"epoch": epoch, "n_train": len(train_ds), "n_val": len(val_ds),
                                    "world_size": ctx.world_size,
                                    **{f"val_{k}": v for k, v in metrics.items()}},
                    })
                save_resume(last_path, state, model, opt, sched, cfg)
            if stop:
                state.stopped_early = epoch < cfg.epochs
                break
    barrier(ctx)  # no rank returns (and maybe reads best.pt) before rank 0 has written it
    final = build_model(mcfg)
    final.set_label_scale(mcfg.label_mean, mcfg.label_std)
    final.load_state_dict(best_state or {k: v.detach().cpu() for k, v in model.state_dict().items()})
    final.eval()
    return TrainResult(ckpt_path, state.best_epoch, state.best_metrics, history,
                       state.stopped_early, final, state.initial_val_loss)


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
