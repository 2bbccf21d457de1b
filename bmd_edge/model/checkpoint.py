"""Self-describing checkpoints: one .pt of plain tensors and JSON-able values.

Why so strict: `torch.load(weights_only=True)` refuses arbitrary pickled objects, so opening a
checkpoint someone sent you cannot run their code; and a checkpoint that carries its model
config, preprocessing spec, schema and label scale rebuilds its model without any other file.
Layout (ARCHITECTURE.md):
{"format": "bmd-edge-checkpoint/1", "model_config", "train_config", "preprocess", "schema",
 "label": {"mean", "std", "unit": "g/cm2"}, "metrics", "package_version", "state_dict"}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from bmd_edge import __version__
from bmd_edge.errors import BmdEdgeError, BundleError
from bmd_edge.model.config import ModelConfig
from bmd_edge.model.encoders import BMDModel

CHECKPOINT_FORMAT = "bmd-edge-checkpoint/1"
# Keys the caller may put in `meta`; anything else is refused so typos do not vanish silently.
META_KEYS: tuple[str, ...] = ("train_config", "preprocess", "schema", "metrics", "package_version",
                               "crop")


def save_checkpoint(path: str | Path, model: BMDModel, cfg: ModelConfig, meta: dict[str, Any]) -> Path:
    """Write `model` (+ config, label scale and `meta`) atomically to `path`; returns the path.

    `meta` holds JSON-able values under META_KEYS (missing ones are stored as None/{}); the label
    scale is read from the model's buffers so it can never disagree with the weights.
    """
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise BundleError(f"unknown checkpoint meta keys {unknown}; accepted: {list(META_KEYS)}")
    try:
        json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise BundleError(f"checkpoint meta must be JSON-able (plain dict/list/str/number): {err}") from None
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "model_config": cfg.to_dict(),
        "train_config": meta.get("train_config", {}),
        "preprocess": meta.get("preprocess"),
        "schema": meta.get("schema"),
        "label": {
            "mean": float(model.label_mean),
            "std": float(model.label_std),
            "unit": "g/cm2",
        },
        "metrics": meta.get("metrics", {}),
        "package_version": meta.get("package_version", __version__),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    if meta.get("crop") is not None:  # a canonical-crop model (locate.crop.CropSpec as a dict)
        payload["crop"] = meta["crop"]
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: dict[str, Any], path: str | Path) -> Path:
    """torch.save to a temp file beside `path`, then one rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, safely loaded and format-checked (no model built)."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"checkpoint not found: {path}; pass a .pt file written by bmd-edge train")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unpickling failure is "not a safe checkpoint"
        text = " ".join(str(err).split())
        reason = "it contains pickled Python objects, not only tensors and plain values" if (
            "weights_only" in text or "Unsupported global" in text
        ) else (text[:160] or type(err).__name__)
        raise BundleError(f"refusing to load checkpoint {path.name}: {reason}") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise BundleError(f"{path.name} is not a bmd-edge checkpoint (no 'format' key)")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise BundleError(
            f"unknown checkpoint format {payload['format']!r} in {path.name}; "
            f"this version reads {CHECKPOINT_FORMAT!r}"
        )
    for key in ("model_config", "state_dict", "label"):
        if not isinstance(payload.get(key), dict):
            raise BundleError(f"checkpoint {path.name} lacks its {key!r} dict")
    return payload


def load_checkpoint(path: str | Path) -> tuple[BMDModel, dict[str, Any]]:
    """Rebuild the model (eval mode) and return it with the checkpoint's meta (no state_dict)."""
    from bmd_edge.model import build_model

    payload = read_checkpoint(path)
    name = Path(path).name
    try:
        cfg = ModelConfig.from_dict(payload["model_config"])
        model = build_model(cfg)
    except BmdEdgeError as err:
        raise BundleError(f"checkpoint {name} has an unusable model_config: {err}") from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:200]
        raise BundleError(f"checkpoint {name} weights do not match its model_config: {first}") from None
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta
