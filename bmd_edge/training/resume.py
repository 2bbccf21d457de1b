"""Resumable training state: OUT/last.pt beside best.pt, loadable with `weights_only=True`.

Why a second file: best.pt follows the checkpoint contract (weights + description, what export
and quantize read); resuming also needs the optimizer moments, the scheduler position, the
epoch, the RNG state and the early-stopping counters. last.pt holds exactly those as plain
tensors, numbers, strings, lists and dicts, so `torch.load(weights_only=True)` opens it and no
pickled code ever runs. It is written by rank 0 after every epoch, atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bmd_edge.errors import InputError
from bmd_edge.model.checkpoint import atomic_torch_save

RESUME_FORMAT = "bmd-edge-resume/1"


@dataclass
class TrainState:
    """The loop's bookkeeping (mutable: the loop updates it every epoch)."""

    epoch: int = 0  # last completed epoch (1-based); training continues at epoch + 1
    best_score: float = math.inf  # best validation value of cfg.stop_metric so far
    best_epoch: int = 0  # epoch of best.pt
    best_metrics: dict[str, float] = field(default_factory=dict)  # validation metrics at best_epoch
    bad_epochs: int = 0  # epochs since the last improvement (early-stopping counter)
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch so far
    initial_val_loss: float = math.nan  # validation loss of the untrained model
    stopped_early: bool = False  # patience ran out before cfg.epochs


def save_resume(path: Path, state: TrainState, model: torch.nn.Module, opt: torch.optim.Optimizer,
                sched: Any, cfg: Any) -> Path:
    """Write last.pt atomically (temp file + os.replace) so a crash never leaves half a file."""
    payload = {
        "format": RESUME_FORMAT,
        "train_config": cfg.to_dict(),
        "epoch": state.epoch,
        "best_score": state.best_score,
        "best_epoch": state.best_epoch,
        "best_metrics": dict(state.best_metrics),
        "bad_epochs": state.bad_epochs,
        "history": list(state.history),
        "initial_val_loss": state.initial_val_loss,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return atomic_torch_save(payload, path)


def load_resume(path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
                device: torch.device) -> TrainState:
    """Restore model, optimizer, scheduler and RNG from last.pt; returns the loop's state."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"resume checkpoint not found: {path}; pass the last.pt of an earlier run")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a resume file"
        raise InputError(f"{path} is not a readable resume checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise InputError(f"{path} is not a resume checkpoint (format {RESUME_FORMAT!r}); "
                         "pass last.pt, not best.pt")
    try:
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        sched.load_state_dict(payload["scheduler"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path} does not match this model/config ({first[:160]}); "
                         "resume with the same preset and overrides") from None
    for group_state in opt.state.values():  # moments onto the training device
        for k, v in group_state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                group_state[k] = v.to(device)
    torch.set_rng_state(payload["rng"])
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return TrainState(
        epoch=int(payload["epoch"]), best_score=float(payload["best_score"]),
        best_epoch=int(payload["best_epoch"]), best_metrics=dict(payload["best_metrics"]),
        bad_epochs=int(payload["bad_epochs"]), history=list(payload["history"]),
        initial_val_loss=float(payload["initial_val_loss"]),
    )


def _best_weights(best_pt: Path) -> dict[str, torch.Tensor]:
    """best.pt's weights when resuming (so the returned model is the best one), else {}."""
    if not best_pt.is_file():
        return {}
    payload = torch.load(best_pt, map_location="cpu", weights_only=True)
    return dict(payload.get("state_dict", {}))
