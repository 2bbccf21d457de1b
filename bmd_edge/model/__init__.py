"""The XAttn-BMD model, its ablation baselines, the Weighted Smooth L1 loss and checkpoints (torch).

`build_model(cfg)` is the one factory; every variant's forward is
(image (B,1,S,S), values (B,F), present (B,F)) -> (bmd (B,) in g/cm2, field_attention (B,F)).
"""

from __future__ import annotations

from torch import nn

from bmd_edge.errors import InputError
from bmd_edge.model.baselines import ConcatBMD, ImageOnlyBMD, MetaOnlyBMD
from bmd_edge.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from bmd_edge.model.config import ARCHS, FUSIONS, ModelConfig
from bmd_edge.model.encoders import BMDModel
from bmd_edge.model.losses import WeightedSmoothL1Loss
from bmd_edge.model.resnet import VARIANTS, create_resnet, load_torchvision_weights
from bmd_edge.model.xattn import XAttnBMD

# Exported graph names (ARCHITECTURE.md): the runtime feeds and reads exactly these.
INPUT_NAMES: tuple[str, ...] = ("image", "values", "present")
OUTPUT_NAMES: tuple[str, ...] = ("bmd", "field_attention")

MODELS: dict[str, type[BMDModel]] = {
    "xattn": XAttnBMD,
    "concat": ConcatBMD,
    "image": ImageOnlyBMD,
    "meta": MetaOnlyBMD,
}


def build_model(cfg: ModelConfig) -> BMDModel:
    """Build the variant `cfg` names; fails loudly on an unknown arch or fusion."""
    if cfg.arch not in VARIANTS:
        raise InputError(f"unknown model arch {cfg.arch!r}; choose one of {', '.join(VARIANTS)}")
    if cfg.fusion not in MODELS:
        raise InputError(f"unknown fusion {cfg.fusion!r}; choose one of {', '.join(MODELS)}")
    return MODELS[cfg.fusion](cfg)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count (reported in model cards and benchmarks)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "ARCHS",
    "FUSIONS",
    "INPUT_NAMES",
    "MODELS",
    "OUTPUT_NAMES",
    "VARIANTS",
    "BMDModel",
    "ConcatBMD",
    "ImageOnlyBMD",
    "MetaOnlyBMD",
    "ModelConfig",
    "WeightedSmoothL1Loss",
    "XAttnBMD",
    "build_model",
    "count_parameters",
    "create_resnet",
    "load_checkpoint",
    "load_torchvision_weights",
    "read_checkpoint",
    "save_checkpoint",
]
