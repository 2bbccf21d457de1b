"""ModelConfig: the few numbers that rebuild a model, stored verbatim in every checkpoint.

Validated once here, so a bad request fails before any tensor is allocated and a checkpoint can
rebuild its model from this dict alone (nanoGPT's `model_args`, timm's variants-as-data).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bmd_edge.errors import InputError

# Names the factory understands; resnet.VARIANTS must cover ARCHS (checked in tests).
ARCHS: tuple[str, ...] = ("resnet34", "resnet18", "resnet10t")
FUSIONS: tuple[str, ...] = ("xattn", "concat", "image", "meta")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one XAttn-BMD model or one of its ablation baselines."""

    arch: str = "resnet34"  # image encoder: the paper's lightweight ResNet34; resnet18 = fast CPU preset
    fusion: str = "xattn"  # "xattn" (the paper), or a baseline: "concat", "image", "meta"
    d_model: int = 256  # token width shared by image and metadata streams
    n_heads: int = 4  # the paper's four attention heads
    n_layers: int = 3  # the paper's three bidirectional cross-attention layers
    n_fields: int = 10  # clinical fields (schema.FIELDS); one metadata token each
    dropout: float = 0.1  # attention/FFN/head dropout; 233 cases over-fit easily
    image_size: int = 224  # training input S; sizes the 2-D position embedding grid (S/32)
    width: int | None = None  # stem width override (None = the variant's own); tiny tests use 8
    ffn_mult: int = 2  # FFN hidden = ffn_mult * d_model; small because the data set is small
    label_mean: float = 0.85  # initial g/cm2 shift of the head (training sets the train-label mean)
    label_std: float = 0.15  # initial g/cm2 scale of the head (training sets the train-label SD)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"unknown model arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.fusion not in FUSIONS:
            raise InputError(
                f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}"
            )
        for name in ("d_model", "n_heads", "n_layers", "n_fields", "ffn_mult"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"model {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise InputError(
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; "
                "pick d_model a multiple of n_heads"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.image_size < 32 or self.image_size % 32:
            raise InputError(
                f"image_size must be a multiple of 32 and >= 32 (ResNet stride), got {self.image_size}"
            )
        if self.width is not None and self.width < 4:
            raise InputError(f"width must be >= 4 or None, got {self.width}")
        if not self.label_std > 0:
            raise InputError(f"label_std must be > 0 g/cm2, got {self.label_std}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict for checkpoints and bundles."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise InputError(
                f"unknown model_config keys {extra}; accepted keys are {sorted(known)}"
            )
        return cls(**d)
