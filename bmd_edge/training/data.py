"""A torch Dataset over manifest cases: decode once, jitter plausibly, preprocess like run time.

Why the order matters: augmentation acts on the float radiograph *before* `preprocess` (which
windows by percentiles, canonicalises the side and resizes), so exposure/gamma/noise jitter meets
the same robust windowing a real, differently exposed film would meet at run time. There are no
random flips: `preprocess` already turns every hip into a right hip via the manifest's `side`.

Determinism: every sample's randomness comes from `np.random.default_rng([seed, epoch, index])`,
so a run is reproducible for a seed whatever the number of DataLoader workers. The sampler (in
the main process) carries the epoch, so persistent workers need no signalling.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from bmd_edge.errors import ManifestError
from bmd_edge.training.config import AugmentConfig

ALWAYS_KEPT = ("age_xray", "sex")  # field dropout never removes these: predict needs only them
AGE_BMD = "age_bmd"  # dropped half the time in the age+sex-only draw (predict may omit it)


def case_label(case: object) -> float:
    """The training label (fn_bmd, g/cm²) or a ManifestError naming the manifest line."""
    value = getattr(case, "fn_bmd", None)
    if value is None or not math.isfinite(float(value)):
        raise ManifestError(
            f"line {getattr(case, 'line', '?')}: fn_bmd is missing; training needs a BMD in g/cm2"
        )
    return float(value)


def load_pixels(case: object, max_side: int | None = None) -> np.ndarray:
    """Decode a case's image to float32 [0, 1]; optionally shrink so the longer side ≤ max_side."""
    from bmd_edge.image_io import read_image

    pixels = np.asarray(read_image(Path(case.image)).pixels, dtype=np.float32)
    if max_side and max(pixels.shape) > max_side:
        f = max_side / max(pixels.shape)
        size = (max(1, round(pixels.shape[1] * f)), max(1, round(pixels.shape[0] * f)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return pixels


def augment_pixels(pixels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Rotation, scale, shift, exposure, gamma and noise on a float [0, 1] radiograph."""
    h, w = pixels.shape
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
    out = cv2.warpAffine(pixels, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = out * (1.0 + rng.uniform(-cfg.exposure, cfg.exposure))  # exposure: overall gain
    out = np.clip(out, 0.0, 1.0) ** math.exp(rng.uniform(-cfg.gamma, cfg.gamma))  # detector curve
    sd = rng.uniform(0.0, cfg.noise)
    if sd > 0:
        if rng.random() < cfg.poisson_prob:  # quantum noise: variance grows with the signal
            out = out + rng.normal(0.0, 1.0, out.shape) * sd * np.sqrt(out + 1e-3) * 2.0
        else:
            out = out + rng.normal(0.0, sd, out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def drop_fields(
    values: np.ndarray, present: np.ndarray, names: Sequence[str], p: float, p_all: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Mark clinical fields missing at random; age_xray and sex always stay.

    With probability `p_all` only age (+ age_bmd half the time) and sex survive, so the model
    also learns the age-and-sex-only input that `predict` accepts.
    """
    values, present = values.copy(), present.copy()
    droppable = np.array([n not in ALWAYS_KEPT for n in names])
    if rng.random() < p_all:
        drop = droppable.copy()
        if rng.random() < 0.5:
            drop &= np.array([n != AGE_BMD for n in names])
    else:
        drop = droppable & (rng.random(len(names)) < p)
    present[drop] = 0.0
    values[drop] = 0.0
    return values, present


class EpochSampler(Sampler):
    """Yields (index, epoch) pairs, shuffled by (seed, epoch): the epoch travels with each index."""

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.arange(self.n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n)
        return iter([(int(i), self.epoch) for i in order])


def worker_init_fn(worker_id: int) -> None:
    """Seed the global RNGs of a worker from torch's per-worker seed (for third-party code)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class BmdDataset(Dataset):
    """Manifest cases → (image (1,S,S), values (F,), present (F,), label g/cm², index)."""

    def __init__(
        self,
        cases: Sequence[object],
        spec: object,
        *,
        augment: AugmentConfig | None = None,
        field_dropout: float = 0.0,
        field_dropout_all: float = 0.0,
        seed: int = 0,
        cache: bool = True,
        threads: int = 1,
        require_label: bool = True,
        cache_limit_mb: float | None = None,
        disk_cache: object | None = None,
    ) -> None:
        from bmd_edge.schema import FIELD_NAMES, encode

        self.cases = list(cases)
        self.spec = spec
        self.augment = augment if augment is not None and augment.enabled else None
        self.field_dropout, self.field_dropout_all, self.seed = field_dropout, field_dropout_all, seed
        self.names = tuple(FIELD_NAMES)
        self.labels = np.array(
            [case_label(c) if require_label else float(c.fn_bmd or math.nan) for c in self.cases],
            dtype=np.float32,
        )
        encoded = [encode(c.record) for c in self.cases]
        self.values = np.stack([e[0] for e in encoded]).astype(np.float32)
        self.present = np.stack([e[1] for e in encoded]).astype(np.float32)
        self.disk_cache = disk_cache  # a training.cache.TensorCache, or None
        self._cache: list[np.ndarray] | None = None
        if cache and cache_limit_mb is not None and self.ram_bytes() > cache_limit_mb * 2**20:
            cache = False  # bounded: a cohort larger than the limit streams from disk instead
        if cache:
            with ThreadPoolExecutor(max(1, threads)) as pool:
                self._cache = list(pool.map(self._prepare, range(len(self.cases))))

    def ram_bytes(self) -> int:
        """Upper bound of the in-RAM cache: float32 S×S per eval case, uint16 (2S)² per train case."""
        s = int(self.spec.size)
        return len(self.cases) * (s * s * 4 if self.augment is None else 4 * s * s * 2)

    def _prepare(self, i: int) -> np.ndarray:
        """Training: decoded pixels, shrunk to 2·S and stored as uint16; eval: the final tensor."""
        if self.disk_cache is not None:
            stage = "final" if self.augment is None else f"decoded-u16-max{2 * int(self.spec.size)}"
            return self.disk_cache.get(self.cases[i], stage, lambda: self._compute(i))
        return self._compute(i)

    def _compute(self, i: int) -> np.ndarray:
        if self.augment is None:
            return self._finish(load_pixels(self.cases[i]), i)
        small = load_pixels(self.cases[i], max_side=2 * int(self.spec.size))
        return np.round(small * 65535.0).astype(np.uint16)

    def _finish(self, pixels: np.ndarray, i: int) -> np.ndarray:
        from bmd_edge.preprocess import preprocess

        case = self.cases[i]
        side, select = getattr(case, "side", None), getattr(case, "select", None)
        return np.asarray(preprocess(pixels, self.spec, side=side, select=select), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.cases)

    def image(self, i: int, rng: np.random.Generator | None) -> np.ndarray:
        """The model-ready image of case i (augmented when this dataset augments)."""
        stored = self._cache[i] if self._cache is not None else self._prepare(i)
        if self.augment is None:
            return stored
        pixels = stored.astype(np.float32) / 65535.0
        return self._finish(augment_pixels(pixels, self.augment, rng), i)

    def __getitem__(self, key: int | tuple[int, int]):
        i, epoch = key if isinstance(key, tuple) else (int(key), 0)
        rng = np.random.default_rng([self.seed, epoch, i])
        values, present = self.values[i], self.present[i]
        if self.field_dropout > 0 or self.field_dropout_all > 0:
            values, present = drop_fields(
                values, present, self.names, self.field_dropout, self.field_dropout_all, rng
            )
        return (
            torch.from_numpy(np.ascontiguousarray(self.image(i, rng))),
            torch.from_numpy(values),
            torch.from_numpy(present),
            torch.tensor(self.labels[i]),
            i,
        )
