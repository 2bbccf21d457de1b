"""Toy films for tests: closed-form "hips", "pelvises" and other shapes a tiny locator can learn.

Why: tests must run the real locate → crop → BMD path on tiny images in milliseconds, without
the synthetic world's physics. A toy hip is what the locator needs to see in a hip — a bright
round head, a neck running down and out from it, a shaft below, a socket above — on a smooth
background; a toy pelvis is two mirrored hips in a ring. Toy non-hips (a knee's two long bones,
a hand's fingers, a bright blob on a ramp, a chest's lung fields) share the background and
brightness, so only shape tells them apart. Everything is numpy, deterministic per seed, and
returns its own landmarks in pixels (the synth landmarks.csv layout). Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OTHER_KINDS = ("knee", "hand", "blob", "chest", "bar")


@dataclass(frozen=True)
class ToyHip:
    """One toy hip's landmarks in pixels (x = column, y = row)."""

    side_in_image: str                 # the shaft lies on this side of the head
    head: tuple[float, float]
    head_r: float
    neck: tuple[float, float]          # where the neck axis meets the shaft
    roi: tuple[float, float]           # femoral-neck box centre
    roi_len: float
    roi_width: float


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x, y


def _disc(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    return np.clip(r + 0.75 - d, 0.0, 1.0)


def _bar(x: np.ndarray, y: np.ndarray, p: tuple[float, float], q: tuple[float, float],
         half_width: float) -> np.ndarray:
    """A soft-edged thick segment p → q."""
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    n2 = max(dx * dx + dy * dy, 1e-6)
    t = np.clip(((x - px) * dx + (y - py) * dy) / n2, 0.0, 1.0)
    d = np.sqrt((x - px - t * dx) ** 2 + (y - py - t * dy) ** 2)
    return np.clip(half_width + 0.75 - d, 0.0, 1.0)


def _hip(x: np.ndarray, y: np.ndarray, side: str, cx: float, cy: float, r: float,
         tilt_deg: float) -> tuple[np.ndarray, ToyHip]:
    """Bone density map of one toy proximal femur + socket, and its landmarks."""
    s = -1.0 if side == "left" else 1.0          # shaft towards the image-left: s = −1
    a = math.radians(45.0 + tilt_deg)
    u = (s * math.cos(a), math.sin(a))           # head → neck point, down and outwards
    neck = (cx + 2.4 * r * u[0], cy + 2.4 * r * u[1])
    h, _ = x.shape
    shaft_end = (neck[0] + s * 0.25 * r, float(h + 2 * r))
    bone = np.maximum(_disc(x, y, cx, cy, r), 0.8 * _bar(x, y, (cx, cy), neck, 0.55 * r))
    bone = np.maximum(bone, 0.8 * _bar(x, y, neck, shaft_end, 0.75 * r))
    bone = np.maximum(bone, 0.7 * _disc(x, y, neck[0] + s * 0.6 * r, neck[1] - 0.5 * r, 0.7 * r))
    socket = _bar(x, y, (cx - s * 0.6 * r, cy - 1.3 * r), (cx - s * 2.6 * r, cy - 2.0 * r),
                  0.45 * r)
    bone = np.maximum(bone, 0.55 * socket)
    roi = (cx + 1.3 * r * u[0], cy + 1.3 * r * u[1])
    return bone, ToyHip(side, (cx, cy), r, neck, roi, 0.9 * r, 1.2 * r)


def _background(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape
    gx, gy = rng.uniform(-0.1, 0.1, 2)
    return (0.12 + rng.uniform(0, 0.06) + gx * x / w + gy * y / h).astype(np.float32)


def _finish(bg: np.ndarray, bone: np.ndarray, rng: np.random.Generator,
            noise: float) -> np.ndarray:
    img = bg + rng.uniform(0.45, 0.6) * bone
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def toy_hip_film(h: int = 64, w: int = 56, *, side: str = "left", seed: int = 0,
                 noise: float = 0.0) -> tuple[np.ndarray, tuple[ToyHip, ...]]:
    """One hip: float32 H×W in [0, 1] (bone bright) and its landmarks. `side` is the side of the
    image its shaft lies on ("left": a patient's right hip in a standard AP display)."""
    rng = np.random.default_rng([seed, 1])
    x, y = _grid(h, w)
    m = min(h, w)
    r = m * rng.uniform(0.09, 0.12)
    s = -1.0 if side == "left" else 1.0
    cx = w / 2 - s * m * rng.uniform(0.02, 0.1)
    cy = h * rng.uniform(0.3, 0.4)
    bone, hip = _hip(x, y, side, cx, cy, r, rng.uniform(-10, 10))
    return _finish(_background(x, y, rng), bone, rng, noise), (hip,)


def toy_pelvis_film(h: int = 56, w: int = 96, *, seed: int = 0,
                    noise: float = 0.0) -> tuple[np.ndarray, tuple[ToyHip, ...]]:
    """An AP pelvis: two mirrored hips (image-left first) joined by a pelvic ring."""
    rng = np.random.default_rng([seed, 2])
    x, y = _grid(h, w)
    r = min(h, w / 2) * rng.uniform(0.09, 0.11)
    cy = h * rng.uniform(0.35, 0.42)
    off = w * rng.uniform(0.25, 0.3)
    tilt = rng.uniform(-8, 8)
    left, lh = _hip(x, y, "left", w / 2 - off, cy, r, tilt)
    right, rh = _hip(x, y, "right", w / 2 + off, cy, r, tilt)
    ring = np.clip(1.0 - np.abs(np.sqrt(((x - w / 2) / (off * 0.75)) ** 2
                                        + ((y - cy) / (h * 0.3)) ** 2) - 1.0) * 8, 0, 1)
    bone = np.maximum(np.maximum(left, right), 0.5 * ring)
    return _finish(_background(x, y, rng), bone, rng, noise), (lh, rh)


def toy_other_film(kind: str, h: int = 64, w: int = 56, *, seed: int = 0,
                   noise: float = 0.0) -> np.ndarray:
    """A film that is not a hip: knee, hand, blob (the old test image), chest or bar."""
    rng = np.random.default_rng([seed, 3, OTHER_KINDS.index(kind)])
    x, y = _grid(h, w)
    m = min(h, w)
    cx = w / 2 + rng.uniform(-0.1, 0.1) * w
    if kind == "knee":
        jy = h * rng.uniform(0.4, 0.6)
        bone = np.maximum(_bar(x, y, (cx, -5.0), (cx, jy - 0.06 * h), 0.09 * m),
                          _bar(x, y, (cx, jy + 0.06 * h), (cx + rng.uniform(-3, 3), h + 5.0),
                               0.08 * m))
        bone = np.maximum(bone, 0.9 * _bar(x, y, (cx - 0.17 * m, jy - 0.07 * h),
                                           (cx + 0.17 * m, jy - 0.07 * h), 0.06 * m))
        bone = np.maximum(bone, 0.9 * _bar(x, y, (cx - 0.15 * m, jy + 0.07 * h),
                                           (cx + 0.15 * m, jy + 0.07 * h), 0.05 * m))
    elif kind == "hand":
        base = (cx, h * 0.85)
        bone = _disc(x, y, base[0], base[1], 0.15 * m)
        for k in range(5):
            ang = math.radians(-150 + 30 * k + rng.uniform(-5, 5))
            tip = (base[0] + math.cos(ang) * 0.7 * h, base[1] + math.sin(ang) * 0.7 * h)
            bone = np.maximum(bone, 0.9 * _bar(x, y, base, tip, 0.035 * m))
    elif kind == "blob":
        cy = h * rng.uniform(0.3, 0.6)
        bone = 0.8 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.12 * m) ** 2))
        bone = bone + 0.5 * x / w
    elif kind == "chest":
        body = _disc(x, y, cx, h / 2, 0.48 * m)
        lungs = np.maximum(_disc(x, y, cx - 0.2 * m, h * 0.45, 0.15 * m),
                           _disc(x, y, cx + 0.2 * m, h * 0.45, 0.15 * m))
        bone = 0.6 * body - 0.5 * lungs
    elif kind == "bar":
        a = math.radians(rng.uniform(60, 120))
        d = (math.cos(a) * h, math.sin(a) * h)
        bone = _bar(x, y, (cx - d[0], h / 2 - d[1]), (cx + d[0], h / 2 + d[1]), 0.08 * m)
    else:
        raise ValueError(f"unknown toy kind {kind!r}; use one of {', '.join(OTHER_KINDS)}")
    return _finish(_background(x, y, rng), np.clip(bone, 0, 1), rng, noise)
