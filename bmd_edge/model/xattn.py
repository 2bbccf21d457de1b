"""XAttn-BMD: bidirectional cross-attention fusion of a hip radiograph and clinical fields.

Read top to bottom: image -> ImageEncoder tokens (B, N, d); clinical values -> MetadataEncoder
tokens (B, F, d); L layers of bidirectional cross-attention; layer-wise fusion weights mix the
pooled (image mean || metadata masked mean) of every layer; head -> standardised BMD -> g/cm2.

Our readings of the paper's open points (PAPER.md), decided here:
- Bidirectional cross-attention: in every layer image tokens attend to metadata tokens and
  metadata tokens attend to image tokens, both from the previous layer's state (symmetric, not
  sequential), each with a pre-norm residual and a pre-norm residual FFN per stream.
- Key-value updater: each stream keeps a key/value memory of the *other* stream. Layer 0 uses
  the encoder tokens. Before layer l >= 1 the memory is refreshed from the other stream's tokens
  as updated by layer l-1 through a per-channel gate, GRU style:
  g = sigmoid(W [x_l ; m_{l-1}]),  m_l = g * x_l + (1 - g) * m_{l-1}.
  So keys/values track the refined tokens but the model can keep earlier-layer evidence.
- Layer-wise fusion weight: learnable scalars, softmax-normalised, mixing the pooled fused
  representation of every layer (a scalar mix) instead of using only the last layer.
- Missing clinical fields are masked out as keys (exactly zero attention, even if every field
  is missing: the softmax output is multiplied by the mask) and out of the metadata pooling, so
  a missing field's value cannot change the output.
- Per-field attention (interpretation): attention the image tokens pay to each field, averaged
  over heads and image tokens, then mixed over layers with the same layer-wise fusion weights.
  It sums to 1 over present fields (0 everywhere if no field is present).

Attention is written with nn.Linear q/k/v/out projections, not nn.MultiheadAttention, so NNCF
can quantize every matmul weight and the ONNX graph stays plain MatMul/Softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bmd_edge.model.config import ModelConfig
from bmd_edge.model.encoders import (
    BMDModel,
    ImageEncoder,
    MetadataEncoder,
    RegressionHead,
    masked_mean,
)

MASK_VALUE = -1e9  # finite "minus infinity": -inf would turn an all-masked row into NaN


class CrossAttention(nn.Module):
    """Multi-head attention of queries x (B, N, d) over keys/values kv (B, M, d)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)  # (B, h, T, dh)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._heads(self.q(x)), self._heads(self.k(kv)), self._heads(self.v(kv))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, h, N, M)
        if key_mask is not None:  # structural (which call site), not data-dependent
            keep = (key_mask > 0.5)[:, None, None, :]  # (B, 1, 1, M)
            scores = scores.masked_fill(~keep, MASK_VALUE)
            attn = torch.softmax(scores, dim=-1) * keep.to(scores.dtype)  # all-masked -> 0
        else:
            attn = torch.softmax(scores, dim=-1)
        out = (self.drop(attn) @ v).transpose(1, 2).flatten(2)  # (B, N, d)
        return self.out(out), attn


class FeedForward(nn.Module):
    """Pre-norm position-wise MLP with its own residual."""

    def __init__(self, d_model: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.net = nn.Sequential(
            nn.Linear(d_model, mult * d_model), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mult * d_model, d_model), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(self.norm(x))


class KVUpdater(nn.Module):
    """Gated refresh of a key/value memory from the other stream's newly updated tokens."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * d_model, d_model)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([tokens, memory], dim=-1)))  # (B, T, d)
        return g * tokens + (1.0 - g) * memory


class BiCrossAttentionLayer(nn.Module):
    """One layer: image <- metadata and metadata <- image cross-attention, then an FFN each."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm_img_q, self.norm_meta_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.norm_meta_q, self.norm_img_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.img_from_meta = CrossAttention(d, cfg.n_heads, cfg.dropout)
        self.meta_from_img = CrossAttention(d, cfg.n_heads, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.ffn_img = FeedForward(d, cfg.ffn_mult, cfg.dropout)
        self.ffn_meta = FeedForward(d, cfg.ffn_mult, cfg.dropout)

    def forward(
        self,
        img: torch.Tensor,  # (B, N, d) image tokens
        meta: torch.Tensor,  # (B, F, d) metadata tokens
        img_memory: torch.Tensor,  # (B, N, d) image keys/values for the metadata stream
        meta_memory: torch.Tensor,  # (B, F, d) metadata keys/values for the image stream
        present: torch.Tensor,  # (B, F) 1 = field given
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d_img, attn = self.img_from_meta(self.norm_img_q(img), self.norm_meta_kv(meta_memory), present)
        d_meta, _ = self.meta_from_img(self.norm_meta_q(meta), self.norm_img_kv(img_memory))
        img = self.ffn_img(img + self.drop(d_img))
        meta = self.ffn_meta(meta + self.drop(d_meta))
        return img, meta, attn  # attn: (B, h, N, F)


class XAttnBMD(BMDModel):
    """The paper's model: ResNet image tokens <-> clinical field tokens, L bidirectional layers."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.image_encoder = ImageEncoder(cfg)
        self.metadata_encoder = MetadataEncoder(cfg)
        self.layers = nn.ModuleList(BiCrossAttentionLayer(cfg) for _ in range(cfg.n_layers))
        self.img_memory_updaters = nn.ModuleList(
            KVUpdater(cfg.d_model) for _ in range(cfg.n_layers - 1)
        )
        self.meta_memory_updaters = nn.ModuleList(
            KVUpdater(cfg.d_model) for _ in range(cfg.n_layers - 1)
        )
        self.layer_logits = nn.Parameter(torch.zeros(cfg.n_layers))  # layer-wise fusion weights
        self.head = RegressionHead(2 * cfg.d_model, cfg.d_model, cfg.dropout)

    def layer_weights(self) -> torch.Tensor:
        """Softmax-normalised layer-wise fusion weights (L,)."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward_features(
        self, image: torch.Tensor, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(fused pooled representation (B, 2d), per-field attention (B, F))."""
        img = self.image_encoder(image)  # (B, N, d)
        meta = self.metadata_encoder(values, present)  # (B, F, d)
        img_memory, meta_memory = img, meta
        pooled, field_attn = [], []
        for i, layer in enumerate(self.layers):
            if i > 0:  # key-value updater: refresh each memory from the other stream's new tokens
                img_memory = self.img_memory_updaters[i - 1](img, img_memory)
                meta_memory = self.meta_memory_updaters[i - 1](meta, meta_memory)
            img, meta, attn = layer(img, meta, img_memory, meta_memory, present)
            pooled.append(torch.cat([img.mean(dim=1), masked_mean(meta, present)], dim=-1))
            field_attn.append(attn.mean(dim=(1, 2)))  # (B, F): over heads and image tokens
        w = self.layer_weights()[:, None, None]  # (L, 1, 1)
        fused = (torch.stack(pooled) * w).sum(dim=0)  # (B, 2d)
        field_attention = (torch.stack(field_attn) * w).sum(dim=0)  # (B, F)
        return fused, field_attention

    def forward_standardised(
        self, image: torch.Tensor, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fused, field_attention = self.forward_features(image, values, present)
        return self.head(fused), field_attention
