"""Image-quality statistics of one case: noise, sharpness, intensity curve, saturation, layout.

Why these: the acquisition shifts a department produces (more noise, a different gamma or
LUT, lower resolution, JPEG re-encoding, a flipped or rotated film, a pelvis instead of a hip)
move a few cheap statistics long before anyone looks at the BMD. Each is measured on what the
model sees (the preprocessed S×S input, undone to the [0, 1] window) plus the raw film's
clipping; the scorer compares the vector with the training crops' statistics (Mahalanobis),
so no single threshold here is hand-set. numpy + OpenCV, ~1 ms at 128².
"""

from __future__ import annotations

import cv2
import numpy as np

QUALITY_NAMES = (
    "hf_noise",        # log robust σ of the finest band (image − 3×3 blur): noise, JPEG, resolution
    "mid_band",        # log robust σ of the next band (3×3 blur − 7×7 blur): structure / sharpness
    "q10", "q25", "q50", "q75", "q90",   # intensity curve of the windowed image (gamma, LUT)
    "raw_white",       # log10(0.001 + share of raw pixels at the top of the scale): saturation
    "raw_black",       # log10(0.001 + share at the bottom of the scale)
    "template_r",      # correlation with the training crops' mean image (layout)
    "mirror_r",        # correlation with that mean image mirrored minus template_r (side)
)
_RAW_SAMPLES = 65536   # strided subsample of the raw film for the clipping shares


def _robust_sigma(x: np.ndarray) -> float:
    """1.4826 × median absolute deviation: σ of the bulk, not of the few strong edges."""
    med = float(np.median(x))
    return 1.4826 * float(np.median(np.abs(x - med))) + 1e-6


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def windowed(model_input: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The model input (1, S, S) or (S, S) mapped back to the [0, 1] window it was cut from."""
    x = np.asarray(model_input, np.float32).reshape(model_input.shape[-2:])
    return np.clip(x * np.float32(std) + np.float32(mean), 0.0, 1.0)


def quality_features(model_input: np.ndarray, raw: np.ndarray | None, *, mean: float,
                     std: float, template: np.ndarray | None = None) -> np.ndarray:
    """float64[len(QUALITY_NAMES)] for one case (template None → layout features 0)."""
    w = windowed(model_input, mean, std)
    b1 = cv2.blur(w, (3, 3))
    b2 = cv2.blur(w, (7, 7))
    inner = (slice(4, -4), slice(4, -4))            # ignore the borders' padding artefacts
    fg = w[inner] > 0.02                            # letterbox padding is exact 0: leave it out
    hf = (w - b1)[inner][fg] if fg.sum() > 64 else (w - b1)[inner].ravel()
    mid = (b1 - b2)[inner][fg] if fg.sum() > 64 else (b1 - b2)[inner].ravel()
    qs = np.quantile(w[w > 0.0] if (w > 0).sum() > 64 else w, (0.1, 0.25, 0.5, 0.75, 0.9))
    white = black = 0.0   # shares; logged below (heavy-tailed: 0 on most films, 0.3 on some)
    if raw is not None and raw.size:
        flat = np.asarray(raw, np.float32).ravel()
        step = max(1, flat.size // _RAW_SAMPLES)
        sub = flat[::step]
        white, black = float((sub >= 0.998).mean()), float((sub <= 0.002).mean())
    t_r = m_r = 0.0
    if template is not None:
        t_r = _corr(w, template)
        m_r = _corr(w, template[:, ::-1]) - t_r
    return np.array([np.log(_robust_sigma(hf)), np.log(_robust_sigma(mid)), *qs.tolist(),
                     np.log10(1e-3 + white), np.log10(1e-3 + black), t_r, m_r], np.float64)
