"""Domain randomisation for the locator's training renders (numpy/cv2, no torch).

Why: the synthetic films draw crisp cortical rims and trabecular texture on a clean canvas;
real films are smooth, soft-tissue shaded, collimated, annotated and re-encoded. A locator that
only saw the synthetic look found heads on real films with peak confidence 0.3-0.5 and put one
in an iliac wing. Everything here perturbs what a real acquisition and its export perturb —
tone curve, sharpness, resolution, noise, compression, burnt-in text and lead markers, rulers,
arrows, collimation, shields, occasional polarity — so the network has to rely on the
anatomy's shape (round head in a socket, neck, shaft) that both worlds share.

All functions take and return an (S, S) float32 image in [0, 1] (0 = black); `content` is the
boolean mask of the film inside the letterbox, and only it is touched, as on a real letterbox.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import cv2
import numpy as np

_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
          cv2.FONT_HERSHEY_COMPLEX_SMALL)
_CHARS = string.ascii_uppercase + string.digits + " .:/-"


@dataclass(frozen=True)
class Photometric:
    """Probabilities and ranges of each perturbation; `off()` gives the identity."""

    gamma: tuple[float, float] = (0.5, 2.0)     # log-uniform exponent
    sigmoid: float = 0.25                        # S-curve contrast (film-like tone mapping)
    soft_tissue: float = 0.5                     # smooth additive field (body thickness, heel)
    clahe: float = 0.2
    unsharp: float = 0.3                         # edge enhancement as on processed CR/DR
    blur: float = 0.45                           # Gaussian sigma 0.3-1.8 px
    resample: float = 0.3                        # down- then up-scale (low-res exports)
    median: float = 0.1
    noise: tuple[float, float] = (0.0, 0.035)     # Gaussian SD range
    jpeg: float = 0.4                            # JPEG round trip, quality 25-90
    invert: float = 0.03                         # unnormalised MONOCHROME1 / inverted exports
    text: float = 0.5                            # burnt-in annotation strings
    marker: float = 0.5                          # L / R lead marker
    ruler: float = 0.12
    arrow: float = 0.12
    collimation: float = 0.3                     # shutters: bright or dark bands at the edges
    blobs: float = 0.15                          # gonad shields, metal clips, buttons

    @classmethod
    def off(cls) -> Photometric:
        probs = {k: 0.0 for k, v in cls.__dataclass_fields__.items() if v.type == "float"}
        return cls(gamma=(1.0, 1.0), noise=(0.0, 0.0), **probs)


def _bright(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.85, 1.0)) if rng.random() < 0.85 else float(rng.uniform(0.0, 0.1))


class _Ink:
    """OpenCV draws text only on 8-bit images: draw in 255 on a uint8 canvas, then blend the
    anti-aliased coverage into the float film at one grey value."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.size = int(img.shape[0])
        self.canvas: np.ndarray = np.zeros(img.shape, np.uint8)

    def blend(self, value: float) -> None:
        a = self.canvas.astype(np.float32) / 255.0
        self.img *= 1.0 - a
        self.img += value * a
        self.canvas[:] = 0


def _box(content: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(content)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _text(ink: _Ink, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    n = ink.size
    for _ in range(int(rng.integers(1, 6))):
        s = "".join(rng.choice(list(_CHARS), int(rng.integers(2, 14))))
        scale = float(rng.uniform(0.2, 0.55)) * n / 128
        # annotations sit mostly in the corners and along the edges
        if rng.random() < 0.7:
            x = int(rng.choice([x0 + 1, max(x0 + 1, x1 - int(len(s) * 9 * scale))]))
            y = int(rng.choice([y0 + int(12 * scale) + 1, y1 - 2]))
        else:
            x = int(rng.integers(x0, max(x0 + 1, x1 - 10)))
            y = int(rng.integers(y0 + 8, max(y0 + 9, y1)))
        cv2.putText(ink.canvas, s, (x, y), int(rng.choice(_FONTS)), scale, 255, 1, cv2.LINE_AA)
        ink.blend(_bright(rng))


def _marker(ink: _Ink, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    scale = float(rng.uniform(0.35, 1.1)) * ink.size / 128
    x = int(rng.uniform(x0, max(x0 + 1, x1 - 20 * scale)))
    y = int(rng.uniform(y0 + 20 * scale, max(y0 + 20 * scale + 1, y1)))
    cv2.putText(ink.canvas, str(rng.choice(["L", "R", "LT", "RT", "L", "R"])), (x, y),
                int(rng.choice(_FONTS)), scale, 255, int(rng.integers(1, 3)), cv2.LINE_AA)
    if rng.random() < 0.3:
        d = int(24 * scale)
        cv2.rectangle(ink.canvas, (x - 3, y - d), (x + d, y + 4), 255, 1)
    ink.blend(_bright(rng))


def _ruler(ink: _Ink, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    c, n = ink.canvas, ink.size
    length = int(rng.uniform(0.2, 0.6) * n)
    step = max(2, int(rng.uniform(0.02, 0.05) * n))
    if rng.random() < 0.5:
        x = int(rng.choice([x0 + 3, x1 - 4]))
        y = int(rng.uniform(y0, max(y0 + 1, y1 - length)))
        cv2.line(c, (x, y), (x, y + length), 255, 1)
        for k in range(0, length, step):
            cv2.line(c, (x, y + k), (x + (4 if k % (5 * step) == 0 else 2), y + k), 255, 1)
    else:
        y = int(rng.choice([y0 + 3, y1 - 4]))
        x = int(rng.uniform(x0, max(x0 + 1, x1 - length)))
        cv2.line(c, (x, y), (x + length, y), 255, 1)
        for k in range(0, length, step):
            cv2.line(c, (x + k, y), (x + k, y - (4 if k % (5 * step) == 0 else 2)), 255, 1)
    ink.blend(_bright(rng))


def _arrow(ink: _Ink, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    p = (int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1)))
    ang = rng.uniform(0, 2 * np.pi)
    ln = rng.uniform(0.06, 0.2) * ink.size
    q = (int(p[0] + ln * np.cos(ang)), int(p[1] + ln * np.sin(ang)))
    cv2.arrowedLine(ink.canvas, q, p, 255, 1, cv2.LINE_AA, tipLength=0.3)
    ink.blend(_bright(rng))


def _collimate(img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    v = float(rng.uniform(0.7, 1.0)) if rng.random() < 0.5 else float(rng.uniform(0.0, 0.15))
    for edge in range(4):
        if rng.random() < 0.5:
            continue
        k = int(rng.uniform(0.02, 0.15) * (w if edge < 2 else h))
        if edge == 0:
            img[y0:y1, x0:x0 + k] = v
        elif edge == 1:
            img[y0:y1, x1 - k:x1] = v
        elif edge == 2:
            img[y0:y0 + k, x0:x1] = v
        else:
            img[y1 - k:y1, x0:x1] = v


def _blobs(ink: _Ink, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    n = ink.size
    for _ in range(int(rng.integers(1, 4))):
        c = (int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1)))
        if rng.random() < 0.5:   # shield: a big ellipse or triangle
            a = (int(rng.uniform(0.04, 0.12) * n), int(rng.uniform(0.03, 0.1) * n))
            if rng.random() < 0.5:
                cv2.ellipse(ink.canvas, c, a, float(rng.uniform(0, 180)), 0, 360, 255, -1)
            else:
                pts = np.array([[c[0] - a[0], c[1] - a[1]], [c[0] + a[0], c[1] - a[1]],
                                [c[0], c[1] + a[1]]], np.int32)
                cv2.fillPoly(ink.canvas, [pts], 255)
        else:                    # clip / button / electrode
            cv2.circle(ink.canvas, c, max(1, int(rng.uniform(0.005, 0.02) * n)), 255, -1)
        ink.blend(float(rng.uniform(0.9, 1.0)))


def _soft_tissue(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = img.shape[0]
    k = int(rng.integers(2, 5))
    field = cv2.resize(rng.normal(0.0, 1.0, (k, k)).astype(np.float32), (n, n),
                       interpolation=cv2.INTER_CUBIC)
    return img + float(rng.uniform(0.05, 0.25)) * field


def _rewindow(img: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The runtime windows each film to its 1-99 percentiles: do the same after perturbing."""
    vals = img[content]
    lo, hi = np.percentile(vals, (1.0, 99.0)) if vals.size else (0.0, 1.0)
    if hi - lo < 1e-3:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def perturb(img: np.ndarray, content: np.ndarray, p: Photometric,
            rng: np.random.Generator) -> np.ndarray:
    """Acquisition + export perturbations of one letterboxed render (see module docstring)."""
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    if not content.any():
        return img
    box = _box(content)
    if rng.random() < p.soft_tissue:
        img = np.clip(_soft_tissue(img, rng), 0.0, 1.0)
    g0, g1 = p.gamma
    img = img ** float(np.exp(rng.uniform(np.log(g0), np.log(g1))))
    if rng.random() < p.sigmoid:
        k, c = rng.uniform(4, 10), rng.uniform(0.35, 0.65)
        img = 1.0 / (1.0 + np.exp(-k * (img - c)))
    if rng.random() < p.collimation:
        _collimate(img, box, rng)
    if rng.random() < p.blobs:
        _blobs(_Ink(img), box, rng)
    if rng.random() < p.clahe:
        cl = cv2.createCLAHE(clipLimit=float(rng.uniform(1.0, 4.0)),
                             tileGridSize=(int(rng.integers(2, 9)),) * 2)
        img = cl.apply((np.clip(img, 0, 1) * 255).astype(np.uint8)).astype(np.float32) / 255.0
    if rng.random() < p.resample:
        n = img.shape[0]
        m = max(8, int(n * rng.uniform(0.35, 0.8)))
        img = cv2.resize(cv2.resize(img, (m, m), interpolation=cv2.INTER_AREA), (n, n),
                         interpolation=cv2.INTER_LINEAR)
    if rng.random() < p.blur:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.8)))
    if rng.random() < p.median:
        img = cv2.medianBlur(np.clip(img, 0, 1).astype(np.float32), 3)
    if rng.random() < p.unsharp:
        soft = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(1.0, 4.0)))
        img = img + float(rng.uniform(0.5, 2.0)) * (img - soft)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    # burnt-in overlays come after the tone curve, as on an exported film
    ink = _Ink(img)
    for prob, draw in ((p.text, _text), (p.marker, _marker), (p.ruler, _ruler), (p.arrow, _arrow)):
        if rng.random() < prob:
            draw(ink, box, rng)
    sd = rng.uniform(*p.noise)
    if sd > 0:
        img = img + rng.normal(0.0, sd, img.shape).astype(np.float32)
    if rng.random() < p.invert:
        img = 1.0 - img
    if rng.random() < p.jpeg:
        _, buf = cv2.imencode(".jpg", (np.clip(img, 0, 1) * 255).astype(np.uint8),
                              [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 91))])
        dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        img = img if dec is None else dec.astype(np.float32) / 255.0
    img = _rewindow(img, content)
    img[~content] = 0.0
    return img.astype(np.float32)
