"""The parts every model variant shares: image encoder, metadata encoder, head, label scale.

XAttn-BMD and its baselines differ only in how they fuse; sharing these parts makes an ablation
compare fusions, not encoders. Everything here is ONNX/NNCF-friendly: no data-dependent Python
control flow in forward, masks applied with torch.where / multiplication, no in-place ops on
inputs, only nn.Linear / nn.Conv2d / LayerNorm weights (all quantizable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bmd_edge.errors import InputError
from bmd_edge.model.config import ModelConfig
from bmd_edge.model.resnet import create_resnet


class ImageEncoder(nn.Module):
    """Radiograph (B, 1, S, S) -> image tokens (B, h*w, d) with a learned 2-D position embedding.

    The position embedding is a row table plus a column table sized for the training feature map
    (S/32 x S/32); a different input size interpolates them, so the model still runs (the bundle
    pins the size, so this only matters for experiments).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.backbone = create_resnet(cfg.arch, width=cfg.width)
        self.proj = nn.Conv2d(self.backbone.num_features, cfg.d_model, 1)
        grid = cfg.image_size // 32
        self.row_embed = nn.Parameter(torch.randn(grid, cfg.d_model) * 0.02)
        self.col_embed = nn.Parameter(torch.randn(grid, cfg.d_model) * 0.02)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        rows: torch.Tensor = self.row_embed  # (g, d)
        cols: torch.Tensor = self.col_embed  # (g, d)
        if rows.shape[0] != h:  # shapes are static in an exported graph: a trace-time branch
            rows = F.interpolate(rows.T[None], size=h, mode="linear", align_corners=False)[0].T
        if cols.shape[0] != w:
            cols = F.interpolate(cols.T[None], size=w, mode="linear", align_corners=False)[0].T
        return (rows[:, None, :] + cols[None, :, :]).reshape(h * w, -1)  # (h*w, d)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        fmap = self.proj(self.backbone(image))  # (B, d, h, w)
        h, w = int(fmap.shape[-2]), int(fmap.shape[-1])
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, h*w, d)
        return tokens + self.position_embedding(h, w)[None]


class MetadataEncoder(nn.Module):
    """Clinical values (B, F) + presence (B, F) -> one token per field (B, F, d).

    token_f = [present ? value_f * w_f + b_f : missing_f] + field_f, then a shared per-token MLP
    (residual, pre-norm). A missing field's token never sees its value (torch.where, so even a
    NaN placeholder cannot leak), which is what makes "changing a missing value changes nothing"
    hold exactly.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        f, d = cfg.n_fields, cfg.d_model
        self.value_weight = nn.Parameter(torch.randn(f, d) * 0.02)
        self.value_bias = nn.Parameter(torch.zeros(f, d))
        self.missing_embed = nn.Parameter(torch.randn(f, d) * 0.02)
        self.field_embed = nn.Parameter(torch.randn(f, d) * 0.02)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.ffn_mult * d), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ffn_mult * d, d),
        )

    def forward(self, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        is_present = (present > 0.5)[..., None]  # (B, F, 1)
        safe_values = torch.where(present > 0.5, values, torch.zeros_like(values))
        value_part = safe_values[..., None] * self.value_weight + self.value_bias  # (B, F, d)
        tokens = torch.where(is_present, value_part, self.missing_embed.expand_as(value_part))
        tokens = tokens + self.field_embed  # (B, F, d)
        return tokens + self.mlp(self.norm(tokens))


class RegressionHead(nn.Module):
    """Pooled features (B, n_in) -> standardised BMD (B,)."""

    def __init__(self, n_in: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(n_in), nn.Linear(n_in, d_hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(d_hidden, 1),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled).squeeze(-1)  # (B,)


def masked_mean(tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean over present field tokens (B, F, d) -> (B, d); all-missing gives zeros, not NaN."""
    weights = (present > 0.5).to(tokens.dtype)  # (B, F)
    total = (tokens * weights[..., None]).sum(dim=1)
    return total / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


def uniform_over_present(present: torch.Tensor) -> torch.Tensor:
    """(B, F) uniform distribution over present fields: the baselines' stand-in 'attention'."""
    weights = (present > 0.5).to(torch.float32)
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


class BMDModel(nn.Module):
    """Base of every variant: carries the label scale so forward returns g/cm2 directly."""

    label_mean: torch.Tensor
    label_std: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("label_mean", torch.tensor(float(cfg.label_mean)))
        self.register_buffer("label_std", torch.tensor(float(cfg.label_std)))

    def set_label_scale(self, mean: float, std: float) -> None:
        """Set the g/cm2 scale from the training labels (training calls this before fitting)."""
        if not std > 0:
            raise InputError(f"label std must be > 0 g/cm2, got {std}")
        self.label_mean.fill_(float(mean))
        self.label_std.fill_(float(std))

    def to_gcm2(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised prediction -> g/cm2."""
        return z * self.label_std + self.label_mean

    def forward_standardised(
        self, image: torch.Tensor, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(standardised BMD (B,), field_attention (B, F)); subclasses implement it."""
        raise NotImplementedError

    def forward(
        self, image: torch.Tensor, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z, field_attention = self.forward_standardised(image, values, present)
        return self.to_gcm2(z), field_attention  # (B,) g/cm2, (B, F)
