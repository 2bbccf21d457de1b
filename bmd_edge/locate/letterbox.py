"""Grey film → the locator's square input, and the mapping back to the film's pixels (numpy/cv2).

Letterboxing (not stretching) keeps the head round and the neck angle true; the pad is the
standardised value of black so it reads as air/collimation, which every film has.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.locate.spec import LocatorSpec


@dataclass(frozen=True)
class Letterbox:
    """input = (original + ½) · scale − ½ + pad, per axis; lengths scale by `scale` alone.

    Pixel centres sit at integer coordinates on both sides (as in the synthetic landmarks and
    cv2.warpAffine); the ½ terms are cv2.resize's half-pixel alignment.
    """

    scale: float
    pad_x: float
    pad_y: float

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.pad_x + 0.5) / self.scale - 0.5,
                (y - self.pad_y + 0.5) / self.scale - 0.5)

    def length_to_original(self, n: float) -> float:
        return n / self.scale


def _limits(pixels: np.ndarray, spec: LocatorSpec) -> tuple[float, float]:
    step = max(1, int(np.sqrt(pixels.size / 65536)))
    lo, hi = np.percentile(pixels[::step, ::step], (spec.low_pct, spec.high_pct))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError("image contains NaN or infinite pixels; cannot locate a hip")
    return float(lo), float(hi)


def window(pixels: np.ndarray, spec: LocatorSpec) -> np.ndarray:
    """Percentile window to [0, 1] (float32); a flat image stays flat (zeros)."""
    lo, hi = _limits(pixels, spec)
    if hi <= lo:
        return np.zeros(pixels.shape, np.float32)
    return np.clip((pixels.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def letterbox(pixels: np.ndarray, spec: LocatorSpec) -> tuple[np.ndarray, Letterbox]:
    """(1, 1, size, size) float32 network input and the transform that made it."""
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise InputError(f"locator needs a 2-D grey image of at least 8×8, got shape "
                         f"{pixels.shape}")
    h, w = pixels.shape
    s = spec.size
    scale = s / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale < 1:
        # Shrink first, window the small copy: the same window (percentiles of the full film,
        # strided) without two full-size float copies of a 100-megapixel film.
        lo, hi = _limits(pixels, spec)
        small = cv2.resize(np.asarray(pixels, np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
        img = (np.zeros(small.shape, np.float32) if hi <= lo
               else np.clip((small - lo) / (hi - lo), 0.0, 1.0))
    else:
        img = cv2.resize(window(pixels, spec), (nw, nh), interpolation=cv2.INTER_LINEAR)
    px, py = (s - nw) // 2, (s - nh) // 2
    out = np.zeros((s, s), np.float32)
    out[py:py + nh, px:px + nw] = img
    out = (out - spec.mean) / spec.std
    return out[None, None], Letterbox(scale=scale, pad_x=float(px), pad_y=float(py))
