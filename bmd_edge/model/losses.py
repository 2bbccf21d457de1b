"""Weighted Smooth L1: the paper's loss for imbalanced BMD labels (few low-BMD cases).

Units: predictions, targets, `beta`, `threshold` and `bandwidth` are all in g/cm2, i.e. the
model's own output (`model(...)` returns g/cm2). Weights are a deterministic function of the
target label, fitted once on the TRAINING labels with `fit` (never on validation labels):

    d(y)   = Gaussian KDE of the training labels at y, bandwidth h (Scott's rule if None:
             h = SD(train, ddof=1) * n^(-1/5), as scipy.stats.gaussian_kde)
    r(y)   = clip((d(y) / mean_i d(y_i)) ** -alpha, clip_lo, clip_hi)   # smoothed inverse density
    r(y)  *= (1 + low_emphasis)  if y < threshold                        # clinically significant
    w(y)   = r(y) / mean_i r(y_i)                                        # mean 1 on the train set

Loss = mean_b( w(target_b) * SmoothL1(pred_b - target_b; beta) ), SmoothL1(d) = 0.5 d^2 / beta
for |d| < beta, |d| - beta / 2 otherwise. The KDE is stored as buffers (training labels, h,
normalisers), so weights for any batch are reproducible and move with `.to(device)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bmd_edge.errors import InputError
from bmd_edge.references import SCREENING_THRESHOLD_GCM2  # T = -1, GE Lunar FN


class WeightedSmoothL1Loss(nn.Module):
    """Smooth L1 weighted by smoothed inverse label density, with extra weight below threshold."""

    train_labels: torch.Tensor
    bandwidth: torch.Tensor
    mean_density: torch.Tensor
    norm: torch.Tensor

    def __init__(
        self,
        beta: float = 0.05,
        threshold: float = SCREENING_THRESHOLD_GCM2,
        low_emphasis: float = 1.0,
        bandwidth: float | None = None,
        alpha: float = 0.5,
        clip: tuple[float, float] = (0.1, 10.0),
    ) -> None:
        super().__init__()
        if not beta > 0:
            raise InputError(f"Smooth L1 beta must be > 0 g/cm2, got {beta}")
        if low_emphasis < 0:
            raise InputError(f"low_emphasis must be >= 0, got {low_emphasis}")
        if bandwidth is not None and not bandwidth > 0:
            raise InputError(f"KDE bandwidth must be > 0 g/cm2 or None (Scott's rule), got {bandwidth}")
        if alpha < 0:
            raise InputError(f"alpha must be >= 0 (0 = no density weighting), got {alpha}")
        if not 0 < clip[0] <= 1 <= clip[1]:
            raise InputError(f"clip must satisfy 0 < low <= 1 <= high, got {clip}")
        self.beta = float(beta)
        self.threshold = float(threshold)
        self.low_emphasis = float(low_emphasis)
        self.fixed_bandwidth = bandwidth
        self.alpha = float(alpha)
        self.clip = (float(clip[0]), float(clip[1]))
        self.register_buffer("train_labels", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("bandwidth", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("mean_density", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("norm", torch.tensor(0.0, dtype=torch.float64))

    @property
    def fitted(self) -> bool:
        return self.train_labels.numel() > 0

    def fit(self, train_labels: Sequence[float] | np.ndarray | torch.Tensor) -> WeightedSmoothL1Loss:
        """Fit the weight function on the training labels (g/cm2); returns self."""
        y = torch.as_tensor(np.asarray(train_labels, dtype=np.float64)).flatten()
        if y.numel() < 2 or not bool(torch.isfinite(y).all()):
            raise InputError(
                f"fit needs >= 2 finite training labels in g/cm2, got {y.numel()} "
                f"({int((~torch.isfinite(y)).sum())} non-finite)"
            )
        if self.fixed_bandwidth is not None:
            h = float(self.fixed_bandwidth)
        else:
            sd = float(y.std(unbiased=True))
            if sd <= 1e-9:  # equal labels (up to rounding): Scott's rule gives h = 0
                raise InputError("all training labels are equal; pass an explicit bandwidth > 0")
            h = sd * y.numel() ** (-1.0 / 5.0)
        self.train_labels = y.to(self.train_labels.device)
        self.bandwidth.fill_(h)
        density = self.density(y)
        self.mean_density.fill_(float(density.mean()))
        self.norm.fill_(1.0)
        self.norm.fill_(1.0 / float(self.weights(y).mean()))
        return self

    def density(self, labels: torch.Tensor) -> torch.Tensor:
        """Gaussian KDE of the training labels at `labels` (float64, per g/cm2)."""
        self._require_fit()
        x = labels.detach().to(self.train_labels.device, torch.float64).flatten()
        h = self.bandwidth
        z = (x[:, None] - self.train_labels[None, :]) / h  # (B, n)
        return torch.exp(-0.5 * z * z).mean(dim=1) / (h * math.sqrt(2.0 * math.pi))

    def weights(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample weights w(label) (float64, same length as labels); mean 1 on train labels."""
        relative = self.density(labels) / self.mean_density
        raw = relative.pow(-self.alpha).clamp(self.clip[0], self.clip[1])
        x = labels.detach().to(raw.device, torch.float64).flatten()
        emphasis = torch.where(x < self.threshold, 1.0 + self.low_emphasis, 1.0)
        return raw * emphasis * self.norm

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """mean(w(target) * SmoothL1(pred - target; beta)); pred and target in g/cm2, shape (B,)."""
        if pred.shape != target.shape:
            raise InputError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        per_sample = F.smooth_l1_loss(pred, target, beta=self.beta, reduction="none")
        w = self.weights(target).to(per_sample.dtype).reshape(per_sample.shape)
        return (w * per_sample).mean()

    def _require_fit(self) -> None:
        if not self.fitted:
            raise InputError("WeightedSmoothL1Loss is not fitted; call fit(train_labels) first")

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, threshold={self.threshold}, low_emphasis={self.low_emphasis}, "
            f"alpha={self.alpha}, clip={self.clip}, bandwidth={float(self.bandwidth):.4g}"
        )
