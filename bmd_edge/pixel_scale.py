"""Decoded samples → float32 grey in [0, 1], converted a strip of rows at a time.

Why strips: the conversion of a whole 100-megapixel image makes float64 and float32 temporaries of
0.4–2.4 GB (`arr.astype(np.float64) - lo`, then `/ span`, then `.clip`). Converting a strip of
about 4 M pixels at a time keeps every temporary under ~100 MB, so peak memory is the decoded
samples plus the float32 result, whatever the bit depth, sign, channel count or float range.
Facts that need the whole image (the float range, how much of it is coloured) are gathered in a
first pass over the strips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from bmd_edge.errors import ImageReadError, UnsupportedImageError
from bmd_edge.warn import Warn

STRIP_PIXELS = 1 << 22  # pixels converted at once: float64 temporaries stay at ~32 MB each
COLOUR_TOLERANCE = 8 / 255  # channel spread below this is JPEG chroma noise, not real colour

# Luma weights (ITU-R BT.601), the same ones OpenCV's cvtColor uses.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def row_strips(height: int, width: int) -> Iterator[slice]:
    """Slices of rows covering `height`, each about STRIP_PIXELS pixels."""
    step = max(1, STRIP_PIXELS // max(width, 1))
    for r in range(0, height, step):
        yield slice(r, min(r + step, height))


def map_strips(arr: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """float32 H×W from `fn` applied to each strip of rows of `arr` (H×W or H×W×C)."""
    h, w = arr.shape[:2]
    out = np.empty((h, w), dtype=np.float32)
    for rows in row_strips(h, w):
        out[rows] = fn(arr[rows])
    return out


def _float_scaler(arr: np.ndarray, name: str,
                  warnings: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """Float samples: kept when already in [0, 1], else min-max scaled (with a warning);
    NaN/inf set to the finite minimum (with a warning); all-NaN refused."""
    h, w = arr.shape[:2]
    bad, lo, hi = 0, np.inf, -np.inf
    for rows in row_strips(h, w):
        block = arr[rows]
        finite = np.isfinite(block)
        bad += int(block.size - np.count_nonzero(finite))
        if finite.any():
            vals = block[finite] if not finite.all() else block
            lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
    if bad == arr.size:
        raise ImageReadError(f"{name}: every pixel is NaN or infinite; expected finite values")
    if bad:
        warnings.append(f"{bad} NaN/infinite pixels set to the image minimum")
    rescale = lo < 0.0 or hi > 1.0
    if rescale:
        warnings.append(f"float pixel values span [{lo:.4g}, {hi:.4g}]; scaled to [0, 1]")

    def scale(block: np.ndarray) -> np.ndarray:
        x = block.astype(np.float64)
        if bad:
            x = np.where(np.isfinite(x), x, lo)
        if rescale:
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        return x.astype(np.float32)

    return scale


def _scaler(arr: np.ndarray, name: str, warnings: list[str],
            top: float | None) -> Callable[[np.ndarray], np.ndarray]:
    """Block → float32 in [0, 1]: integers by `top` (default: the type's maximum), signed
    integers by the type's range, floats as `_float_scaler` says."""
    if np.issubdtype(arr.dtype, np.floating):
        return _float_scaler(arr, name, warnings)
    if not np.issubdtype(arr.dtype, np.integer):
        raise UnsupportedImageError(f"{name}: sample type {arr.dtype} is not supported; "
                                    "accepted: 8/16-bit integer or float")
    info = np.iinfo(arr.dtype)
    if info.min < 0:  # signed: keep order, shift the type's range onto [0, 1]
        span = float(info.max) - float(info.min)
        return lambda b: ((b.astype(np.float64) - info.min) / span).astype(np.float32)
    t = np.float32(top if top is not None else info.max)
    clip = top is not None and top < info.max  # e.g. 12 bits stored in uint16: 4095 means 1

    def unsigned(block: np.ndarray) -> np.ndarray:
        x = np.divide(block, t, dtype=np.float32)
        return np.clip(x, 0.0, 1.0, out=x) if clip else x

    return unsigned


def unit_gray(arr: np.ndarray, name: str, warnings: list[str], *, order: str = "rgb",
              top: float | None = None) -> np.ndarray:
    """Any decoded image (H×W, H×W×1..4; integer or float) → float32 H×W in [0, 1].

    Alpha is dropped (with a warning); grey stored as colour (R=G=B) keeps its exact values;
    real colour becomes luma with a warning saying how much of the image was coloured (the quality
    gate reads it). `order` is the channel order ("rgb" or OpenCV's "bgr"); `top` the integer
    value that means 1.0 (e.g. 4095 for 12 bits stored in uint16).
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 and (arr.ndim != 3 or arr.shape[2] not in (2, 3, 4)):
        raise UnsupportedImageError(f"{name}: image has shape {arr.shape}; expected H×W grey, "
                                    "RGB or RGBA")
    scale = _scaler(arr, name, warnings, top)
    if arr.ndim == 2:
        return map_strips(arr, scale)
    if arr.shape[2] in (2, 4):
        warnings.append("alpha channel dropped")
    if arr.shape[2] == 2:  # grey + alpha
        return map_strips(arr, lambda b: scale(b[:, :, 0]))
    weights = _LUMA_RGB if order == "rgb" else _LUMA_RGB[::-1]
    coloured = 0

    def gray(block: np.ndarray) -> np.ndarray:
        nonlocal coloured
        c0, c1, c2 = (scale(block[:, :, k]) for k in range(3))
        spread = np.maximum(np.maximum(c0, c1), c2) - np.minimum(np.minimum(c0, c1), c2)
        if not spread.any():  # R=G=B: a grey image stored as colour; keep the exact values
            return c0
        coloured += int(np.count_nonzero(spread > COLOUR_TOLERANCE))
        return (c0 * weights[0] + c1 * weights[1] + c2 * weights[2]).clip(0.0, 1.0)

    out = map_strips(arr, gray)
    if coloured > 0:
        share = coloured / (arr.shape[0] * arr.shape[1])
        warnings.append(Warn("colour-converted", "image", f"{share:.6f}",
                             f"RGB converted to grayscale (colour in {100 * share:.2f}% "
                             "of pixels)"))
    return out
