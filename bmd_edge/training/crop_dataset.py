"""A torch Dataset of canonical-crop samples, shaped like `BmdDataset` so `trainer.fit` runs it.

Each item is (image (1,S,S), values (F,), present (F,), label, index); randomness per item comes
from `default_rng([seed, epoch, index])` as in `BmdDataset`, so runs reproduce for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from bmd_edge.locate.crop import CropSpec
from bmd_edge.training.crop_data import CropAugment, HipSample, Patch, load_patches, sample_input
from bmd_edge.training.data import drop_fields


class CropDataset(Dataset):
    """HipSamples → model inputs; augmented (locator jitter + acquisition shifts) when asked."""

    def __init__(self, samples: Sequence[HipSample], spec: CropSpec, *,
                 augment: CropAugment | None = None, field_dropout: float = 0.0,
                 field_dropout_all: float = 0.0, seed: int = 0, threads: int = 2,
                 patches: Sequence[Patch] | None = None) -> None:
        from bmd_edge.schema import FIELD_NAMES, encode

        self.cases = list(samples)   # named like BmdDataset's (the trainer logs case names)
        self.spec = spec
        self.augment = augment if augment is not None and augment.enabled else None
        self.field_dropout, self.field_dropout_all, self.seed = (field_dropout, field_dropout_all,
                                                                 seed)
        self.names = tuple(FIELD_NAMES)
        self.labels = np.array([s.label for s in self.cases], np.float32)
        encoded = [encode(s.record) for s in self.cases]
        self.values = np.stack([e[0] for e in encoded]).astype(np.float32)
        self.present = np.stack([e[1] for e in encoded]).astype(np.float32)
        self.patches = list(patches) if patches is not None else load_patches(self.cases, spec,
                                                                               threads)
        # Validation images are fixed: compute them once.
        self._fixed = None if self.augment else [sample_input(p, spec, None, None)
                                                 for p in self.patches]

    def __len__(self) -> int:
        return len(self.cases)

    def image(self, i: int, rng: np.random.Generator | None) -> np.ndarray:
        if self._fixed is not None:
            return self._fixed[i]
        return sample_input(self.patches[i], self.spec, self.augment, rng)

    def __getitem__(self, key: int | tuple[int, int]):
        i, epoch = key if isinstance(key, tuple) else (int(key), 0)
        rng = np.random.default_rng([self.seed, epoch, i])
        values, present = self.values[i], self.present[i]
        if self.field_dropout > 0 or self.field_dropout_all > 0:
            values, present = drop_fields(values, present, self.names, self.field_dropout,
                                          self.field_dropout_all, rng)
        return (torch.from_numpy(np.ascontiguousarray(self.image(i, rng))),
                torch.from_numpy(values), torch.from_numpy(present),
                torch.tensor(self.labels[i]), i)
