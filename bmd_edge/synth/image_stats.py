"""Image statistics that tell a rendered radiograph from a real one, computed the same on both.

If a classifier given only these numbers separates synthetic from real hips, the synthetic world
has a give-away that a network will learn instead of bone. Every image goes through the same
canonicalisation first — grey levels to [0, 1], quantised to 8 bits (the real films are 8-bit
JPEGs), shorter side resized to `SIDE` px with area averaging, centre-cropped square — so neither
bit depth nor size can separate them. Then, per image:

- grey-level percentiles (1 … 99) and the black/white saturated fractions;
- noise power spectrum: on the flattest patches (plane-detrended, Hann-windowed), the log-log
  slope of the radially averaged power (white noise ≈ 0, smooth anatomy ≈ −2 to −3) and the
  high-frequency noise level;
- edge sharpness: the 10–90 % rise distance (px) across the strongest edges, sampled along the
  gradient, and gradient-magnitude percentiles relative to the grey-level range;
- bone/soft-tissue contrast: an Otsu split of the non-saturated pixels — the difference of the
  two class means, their separation in pooled SDs, and the bright-class share.

numpy + OpenCV only (the edge install has both).
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np

F32 = np.float32
SIDE = 256          # common size every image is brought to
PATCH = 32          # NPS patch side (px at SIDE)
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
FEATURES = (*(f"p{p:02d}" for p in PERCENTILES), "sat_black", "sat_white", "nps_slope",
            "noise_hf", "edge_rise_px", "grad_p50", "grad_p90", "grad_p99", "otsu_contrast",
            "otsu_separation", "otsu_bright_fraction")


def canonical(img: np.ndarray) -> np.ndarray:
    """Grey image (any dtype, 2-D or colour) → float32 SIDE × SIDE in [0, 1], 8-bit levels."""
    a = np.asarray(img)
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    if a.ndim != 2 or min(a.shape) < 16:
        raise ValueError(f"need a 2-D image of at least 16 px, got shape {np.shape(img)}")
    a = np.clip(np.round(np.asarray(a, np.float64) * 255.0), 0, 255) / 255.0
    h, w = a.shape
    s = SIDE / min(h, w)
    nh, nw = max(SIDE, round(h * s)), max(SIDE, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    r = cv2.resize(a.astype(F32), (nw, nh), interpolation=interp)
    y0, x0 = (nh - SIDE) // 2, (nw - SIDE) // 2
    return np.ascontiguousarray(r[y0:y0 + SIDE, x0:x0 + SIDE])


def image_statistics(img: np.ndarray) -> dict[str, float]:
    """All FEATURES of one image (any size/dtype), in FEATURES order."""
    v = canonical(img)
    out: dict[str, float] = {}
    pct = np.percentile(v, PERCENTILES)
    out.update({f"p{p:02d}": float(x) for p, x in zip(PERCENTILES, pct)})
    out["sat_black"] = float((v <= 1.5 / 255).mean())
    out["sat_white"] = float((v >= 253.5 / 255).mean())
    out["nps_slope"], out["noise_hf"] = nps(v)
    span = max(float(pct[-1] - pct[0]), 1e-3)
    g = _gradient(v)
    inner = g[2:-2, 2:-2]
    out["edge_rise_px"] = edge_rise(v, g)
    for p in (50, 90, 99):
        out[f"grad_p{p}"] = float(np.percentile(inner, p)) / span
    out.update(otsu_contrast(v))
    return out


def feature_vector(img: np.ndarray) -> np.ndarray:
    s = image_statistics(img)
    return np.array([s[k] for k in FEATURES], np.float64)


def nps(v: np.ndarray, keep: float = 0.25) -> tuple[float, float]:
    """(log-log slope, high-frequency RMS) of the noise power spectrum on the flattest patches.

    Patches with saturated pixels are skipped (no noise there); of the rest, the `keep` share
    with the smallest detrended SD are "flat". Slope fitted over 1/16 … 1/2 cycles/px.
    """
    n = PATCH
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    design = np.stack([np.ones(n * n), xx.ravel(), yy.ravel()], axis=1)
    win = np.outer(np.hanning(n), np.hanning(n))
    cands = []
    for r in range(0, v.shape[0] - n + 1, n):
        for c in range(0, v.shape[1] - n + 1, n):
            p = v[r:r + n, c:c + n].astype(np.float64)
            if ((p <= 1.5 / 255) | (p >= 253.5 / 255)).mean() > 0.02:
                continue
            coef, *_ = np.linalg.lstsq(design, p.ravel(), rcond=None)
            d = p - (design @ coef).reshape(n, n)
            cands.append((float(d.std()), d))
    if len(cands) < 2:
        return float("nan"), float("nan")
    cands.sort(key=lambda t: t[0])
    chosen = cands[:max(2, round(keep * len(cands)))]
    power = np.mean([np.abs(np.fft.fft2(d * win)) ** 2 for _, d in chosen], axis=0)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    edges = np.arange(1, n // 2 + 1) / n
    radial, centres = [], []
    for lo, hi in itertools.pairwise(edges):
        m = (f >= lo) & (f < hi)
        if m.any():
            radial.append(power[m].mean())
            centres.append(0.5 * (lo + hi))
    fr, pr = np.array(centres), np.maximum(np.array(radial), 1e-20)
    use = fr >= 1.0 / 16
    slope = float(np.polyfit(np.log10(fr[use]), np.log10(pr[use]), 1)[0])
    hf = fr >= 0.25
    noise = float(math.sqrt(pr[hf].mean() / (win**2).sum()))
    return slope, noise


def _gradient(v: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(v, cv2.CV_32F, 1, 0, ksize=3) / F32(8.0)
    gy = cv2.Sobel(v, cv2.CV_32F, 0, 1, ksize=3) / F32(8.0)
    return np.hypot(gx, gy)


def edge_rise(v: np.ndarray, g: np.ndarray | None = None, top: float = 99.0,
              max_edges: int = 400, reach: float = 6.0) -> float:
    """Median 10–90 % rise distance (px) of the strongest edges, along their gradient.

    A step blurred by a Gaussian of σ px rises over ≈ 2.56 σ px.
    """
    if g is None:
        g = _gradient(v)
    gx = cv2.Sobel(v, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(v, cv2.CV_32F, 0, 1, ksize=3)
    m = math.ceil(reach) + 1
    inner = np.zeros_like(g, bool)
    inner[m:-m, m:-m] = True
    thr = np.percentile(g[inner], top)
    rows, cols = np.nonzero(inner & (g >= thr) & (g > 1e-4))
    if rows.size == 0:
        return float("nan")
    pick = np.linspace(0, rows.size - 1, min(max_edges, rows.size)).astype(int)
    rows, cols = rows[pick], cols[pick]
    norm = np.hypot(gx[rows, cols], gy[rows, cols]) + 1e-12
    ux, uy = gx[rows, cols] / norm, gy[rows, cols] / norm
    t = np.arange(-reach, reach + 0.25, 0.25, dtype=F32)
    mx = (cols[:, None] + ux[:, None] * t[None, :]).astype(F32)
    my = (rows[:, None] + uy[:, None] * t[None, :]).astype(F32)
    prof = cv2.remap(v, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    k = 4
    lo, hi = prof[:, :k].mean(axis=1), prof[:, -k:].mean(axis=1)
    span = hi - lo
    ok = span > 0.02
    if not ok.any():
        return float("nan")
    p = (prof[ok] - lo[ok, None]) / span[ok, None]
    t10 = np.argmax(p >= 0.1, axis=1)
    t90 = np.argmax(p >= 0.9, axis=1)
    rise = (t90 - t10) * 0.25
    return float(np.median(rise[rise > 0])) if (rise > 0).any() else 0.0


def otsu_contrast(v: np.ndarray) -> dict[str, float]:
    """Two-class (bone-ish vs soft-ish) split of the non-saturated pixels."""
    body = v[(v > 1.5 / 255) & (v < 253.5 / 255)]
    if body.size < 100:
        return {"otsu_contrast": float("nan"), "otsu_separation": float("nan"),
                "otsu_bright_fraction": float("nan")}
    b8 = np.round(body * 255).astype(np.uint8).reshape(1, -1)
    t, _ = cv2.threshold(b8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    hi = body[b8[0] > t]
    lo = body[b8[0] <= t]
    if hi.size == 0 or lo.size == 0:
        return {"otsu_contrast": 0.0, "otsu_separation": 0.0, "otsu_bright_fraction": 0.0}
    d = float(hi.mean() - lo.mean())
    pooled = math.sqrt(0.5 * (hi.var() + lo.var())) + 1e-6
    return {"otsu_contrast": d, "otsu_separation": d / pooled,
            "otsu_bright_fraction": float(hi.size / body.size)}
