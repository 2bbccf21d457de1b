"""The per-prediction shift score: how far a case lies from the training crops.

score = max(d_embedding / m_embedding, d_quality / m_quality, z_max / m_z), where each d is a
Mahalanobis distance (Ledoit–Wolf shrinkage covariance, fitted at build time by `fit.py`) of the
model's `embedding` output and of the standardised `quality.quality_features`, z_max is the
largest single standardised quality statistic (one extreme statistic — a mirrored film's
`mirror_r` — is diluted in an 11-D distance), and each m is the median of that number on clean
calibration cases — so 1.0 is "a typical clean case" on every scale and the largest decides. Thresholds on the score live in `section.ShiftPolicy`. numpy only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmd_edge.errors import BundleError
from bmd_edge.reliability.quality import QUALITY_NAMES, quality_features

STATS_KEYS = ("quality_center", "quality_scale", "quality_mean", "quality_precision",
              "quality_median_d", "quality_median_zmax", "template")
EMBEDDING_KEYS = ("emb_mean", "emb_precision", "emb_median_d")


@dataclass(frozen=True)
class ShiftScore:
    score: float                     # max of the two normalised distances (1 ≈ typical clean)
    quality: float                   # normalised quality distance (or extreme statistic)
    embedding: float | None          # normalised embedding distance (None: model has no output)
    worst_quality: str               # the quality statistic furthest from training (for the text)


def _mahalanobis(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> float:
    d = x - mean
    return float(np.sqrt(max(float(d @ precision @ d), 0.0)))


class ShiftScorer:
    """Training-crop statistics from the bundle's .npz; `score` is thread-safe (read-only)."""

    def __init__(self, arrays: dict[str, np.ndarray], uses_embedding: bool,
                 mean: float, std: float) -> None:
        missing = [k for k in (*STATS_KEYS, *(EMBEDDING_KEYS if uses_embedding else ()))
                   if k not in arrays]
        if missing:
            raise BundleError(f"reliability statistics lack {', '.join(missing)}; re-run "
                              "calibration/calibrate_reliability.py")
        q = len(QUALITY_NAMES)
        self.q_center = arrays["quality_center"].astype(np.float64)
        self.q_scale = arrays["quality_scale"].astype(np.float64)
        self.q_mean = arrays["quality_mean"].astype(np.float64)
        self.q_prec = arrays["quality_precision"].astype(np.float64)
        if self.q_center.shape != (q,) or self.q_prec.shape != (q, q):
            raise BundleError(f"reliability statistics are for {self.q_center.shape} quality "
                              f"features; this bmd-edge measures {q}")
        self.q_med = float(arrays["quality_median_d"])
        self.z_med = float(arrays["quality_median_zmax"])
        self.template = arrays["template"].astype(np.float32)
        self.uses_embedding = uses_embedding
        if uses_embedding:
            self.e_mean = arrays["emb_mean"].astype(np.float64)
            self.e_prec = arrays["emb_precision"].astype(np.float64)
            self.e_med = float(arrays["emb_median_d"])
        self.mean, self.std = float(mean), float(std)

    @classmethod
    def from_file(cls, path: Path, uses_embedding: bool, mean: float, std: float) -> ShiftScorer:
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise BundleError(f"cannot read reliability statistics {path.name}: {err}") from None
        return cls(arrays, uses_embedding, mean, std)

    def quality(self, model_input: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
        """The case's quality vector (done in `prepare`, where the raw film is at hand)."""
        return quality_features(model_input, raw, mean=self.mean, std=self.std,
                                template=self.template)

    def score(self, quality: np.ndarray, embedding: np.ndarray | None) -> ShiftScore:
        z = (quality - self.q_center) / self.q_scale
        dq = _mahalanobis(z, self.q_mean, self.q_prec) / self.q_med
        dev = np.abs(z - self.q_mean)
        worst = QUALITY_NAMES[int(np.argmax(dev))]
        dz = float(dev.max()) / self.z_med
        de = None
        if self.uses_embedding:
            if embedding is None:
                raise BundleError("the bundle's shift statistics need the model's 'embedding' "
                                  "output, which this model file lacks; re-export the bundle")
            de = _mahalanobis(np.asarray(embedding, np.float64).ravel(), self.e_mean,
                              self.e_prec) / self.e_med
        s = max(dq, dz) if de is None else max(dq, dz, de)
        return ShiftScore(float(s), float(max(dq, dz)), None if de is None else float(de), worst)
