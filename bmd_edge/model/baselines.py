"""Ablation baselines that share XAttn-BMD's encoders and head, so only the fusion differs.

- ConcatBMD ("concat"): mean-pooled image tokens || MLP of the flattened field tokens -> head.
  This is the paper's "plain feature concatenation" comparator.
- ImageOnlyBMD ("image"): mean-pooled image tokens -> head; clinical values are ignored.
- MetaOnlyBMD ("meta"): flattened field tokens -> MLP -> head; no CNN at all (cheap), the
  image input is accepted for a uniform signature and ignored.

All return (bmd, field_attention) like XAttnBMD. For baselines field_attention is NOT an
attention map: it is a uniform distribution over the present fields (0 for missing ones), kept
only so every variant has the same outputs and export names. Flattening field tokens is safe
for missing fields because a missing field's token never sees its value.
"""

from __future__ import annotations

import torch
from torch import nn

from bmd_edge.model.config import ModelConfig
from bmd_edge.model.encoders import (
    BMDModel,
    ImageEncoder,
    MetadataEncoder,
    RegressionHead,
    uniform_over_present,
)


def _keep_input(z: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
    """Add a zero that depends only on `unused`'s shape, so the exported graph keeps that input.

    ONNX export drops inputs a graph does not read; the runtime feeds all three names for every
    variant, so an ignored input must stay. Shape-only (zeros_like), so even NaN cannot leak.
    """
    return z + torch.zeros_like(unused.flatten(1)[:, 0])


class _MetaVector(nn.Module):
    """Field tokens (B, F, d) -> one metadata vector (B, d) via an MLP over the flattened tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(cfg.n_fields * cfg.d_model),
            nn.Linear(cfg.n_fields * cfg.d_model, cfg.d_model), nn.GELU(), nn.Dropout(cfg.dropout),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens.flatten(1))  # (B, d)


class ConcatBMD(BMDModel):
    """Concatenation fusion: the comparator the paper's cross-attention is measured against."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.image_encoder = ImageEncoder(cfg)
        self.metadata_encoder = MetadataEncoder(cfg)
        self.meta_vector = _MetaVector(cfg)
        self.head = RegressionHead(2 * cfg.d_model, cfg.d_model, cfg.dropout)

    def forward_standardised(
        self, image: torch.Tensor, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.image_encoder(image).mean(dim=1)  # (B, d)
        meta = self.meta_vector(self.metadata_encoder(values, present))  # (B, d)
        return self.head(torch.cat([img, meta], dim=-1)), uniform_over_present(present)


class ImageOnlyBMD(BMDModel):
    """Image only: what the radiograph alone can tell."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.image_encoder = ImageEncoder(cfg)
        self.head = RegressionHead(cfg.d_model, cfg.d_model, cfg.dropout)

    def forward_standardised(
        self, image: torch.Tensor, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.head(self.image_encoder(image).mean(dim=1))  # (B,)
        return _keep_input(z, values), uniform_over_present(present)


class MetaOnlyBMD(BMDModel):
    """Clinical fields only (no CNN): what metadata alone can tell, at almost no cost."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.metadata_encoder = MetadataEncoder(cfg)
        self.meta_vector = _MetaVector(cfg)
        self.head = RegressionHead(cfg.d_model, cfg.d_model, cfg.dropout)

    def forward_standardised(
        self, image: torch.Tensor, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        meta = self.meta_vector(self.metadata_encoder(values, present))
        return _keep_input(self.head(meta), image), uniform_over_present(present)
