"""Locator training data: synthetic films + their landmarks, domain randomisation, targets (numpy).

Positives are `bmd-edge synth` hip and pelvis cohorts (landmarks.csv); negatives are `synth
--anatomy` cohorts (manifest.csv, no landmarks). Each sample is warped straight into the
letterboxed network input by one affine (fit, rotation, scale, translation, mirror), so the
landmarks follow exactly; the side of each hip is re-derived *after* the warp from where its
neck points, so a mirror swaps sides by construction. Photometric randomisation (gamma, blur,
noise, JPEG) follows. Polarity inversion is deliberately absent: readers normalise MONOCHROME1.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.locate.letterbox import window
from bmd_edge.locate.randomize import Photometric, perturb
from bmd_edge.locate.spec import GEOMETRY, SIDES, LocatorSpec

CACHE_SIDE = 192  # films are held in memory at this longest side: augmentation never upsamples much


@dataclass(frozen=True)
class HipLabel:
    head: tuple[float, float]
    head_r: float
    neck: tuple[float, float]
    roi: tuple[float, float]
    roi_len: float
    roi_width: float


@dataclass(frozen=True)
class Sample:
    pixels: np.ndarray                 # float16 windowed film, longest side ≤ CACHE_SIDE
    hips: tuple[HipLabel, ...]         # in `pixels` coordinates
    is_hip: bool                       # adult hip / AP pelvis film
    name: str


def _read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read training image {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)


def _cached(img: np.ndarray, spec: LocatorSpec) -> tuple[np.ndarray, float]:
    k = min(1.0, CACHE_SIDE / max(img.shape))
    img = window(img, spec)
    if k < 1.0:
        img = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)),
                         interpolation=cv2.INTER_AREA)
    return img.astype(np.float16), k


def _f(row: dict[str, str], key: str) -> float:
    return float(row[key])


def load_cohort(folder: str | Path, spec: LocatorSpec, limit: int | None = None) -> list[Sample]:
    """A synth cohort folder: hips/pelvises via landmarks.csv, other anatomy via manifest.csv."""
    folder = Path(folder)
    lm = folder / "landmarks.csv"
    rows = list(csv.DictReader((lm if lm.is_file() else folder / "manifest.csv").open()))
    out = []
    for row in rows[:limit]:
        img, k = _cached(_read_png(folder / row["image"]), spec)
        hips = []
        for side in ("right", "left") if lm.is_file() else ():
            if not row.get(f"{side}_head_x"):
                continue
            p = f"{side}_"
            hips.append(HipLabel(
                head=(_f(row, p + "head_x") * k, _f(row, p + "head_y") * k),
                head_r=_f(row, p + "head_r") * k,
                neck=(_f(row, p + "neck_x") * k, _f(row, p + "neck_y") * k),
                roi=(_f(row, p + "roi_x") * k, _f(row, p + "roi_y") * k),
                roi_len=_f(row, p + "roi_len") * k, roi_width=_f(row, p + "roi_width") * k))
        out.append(Sample(img, tuple(hips), lm.is_file(), f"{folder.name}/{row['image']}"))
    return out


@dataclass(frozen=True)
class Augment:
    """Geometric randomisation (here) + acquisition/export randomisation (`randomize`)."""

    rotate_deg: float = 15.0       # ± in-plane rotation
    scale: tuple[float, float] = (0.6, 1.2)    # zoom relative to the letterbox fit, log-uniform
    shift: float = 0.12            # ± translation, fraction of the input side
    mirror: float = 0.5            # probability of a horizontal flip (sides swap)
    close_up: float = 0.45         # probability of a crop around one hip (or a random spot)
    max_head_frac: float = 0.25    # close-ups zoom until the head radius is up to this × side
    aspect: float = 0.5            # probability of a non-square field of view (letterbox bars)
    photometric: Photometric = field(default_factory=Photometric)

    @classmethod
    def none(cls) -> Augment:
        return cls(0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.25, 0.0, Photometric.off())


def _affine(sample: Sample, spec: LocatorSpec, aug: Augment,
            rng: np.random.Generator) -> np.ndarray:
    """Film → input affine. A close-up picks one hip (a random spot on a non-hip film, so a
    zoomed view is no cue by itself), zooms until its head is 5 %-`max_head_frac` of the side,
    and puts it anywhere it stays whole; otherwise the whole film is fitted, zoomed and shifted."""
    h, w = sample.pixels.shape
    s = spec.size
    fit = s / max(h, w)
    ang = math.radians(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
    src = np.array([(w - 1) / 2, (h - 1) / 2])
    dst = np.array([(s - 1) / 2, (s - 1) / 2])
    if rng.random() < aug.close_up:
        if sample.hips:
            hp = sample.hips[int(rng.integers(len(sample.hips)))]
            r0 = hp.head_r * fit / s
            frac = rng.uniform(max(0.05, min(r0, aug.max_head_frac)), aug.max_head_frac)
            zoom = max(1.0, frac / max(r0, 1e-6))
            src = np.array(hp.head)
            r = hp.head_r * fit * zoom
            dst = rng.uniform(min(r, s / 2), max(s - r, s / 2), 2)
        else:
            zoom = math.exp(rng.uniform(0.0, math.log(3.0)))
            src = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h])
            dst = rng.uniform(0.25 * s, 0.75 * s, 2)
    else:
        lo, hi = aug.scale
        zoom = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        dst = dst + rng.uniform(-aug.shift, aug.shift, 2) * s
    c, si = math.cos(ang) * fit * zoom, math.sin(ang) * fit * zoom
    m = np.array([[c, -si, 0.0], [si, c, 0.0]])
    m[:, 2] = dst - m[:, :2] @ src
    if rng.random() < aug.mirror:
        m = np.array([[-1.0, 0.0, s - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def _content(spec: LocatorSpec, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """Where the film lies in the square input: all of it, or a centred portrait/landscape band
    (a non-square film letterboxed), the rest black like the runtime's padding."""
    s = spec.size
    mask = np.ones((s, s), bool)
    if rng.random() < aug.aspect:
        k = round(s * rng.uniform(0.5, 0.95))
        a = (s - k) // 2
        if rng.random() < 0.5:
            mask[:, :a] = mask[:, a + k:] = False
        else:
            mask[:a] = mask[a + k:] = False
    return mask


def render(sample: Sample, spec: LocatorSpec, aug: Augment,
           rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, HipLabel]]]:
    """(S, S) standardised input and the hips inside it, each with its side in the image."""
    m = _affine(sample, spec, aug, rng)
    img = cv2.warpAffine(sample.pixels.astype(np.float32), m, (spec.size, spec.size),
                         flags=cv2.INTER_LINEAR, borderValue=0.0)
    content = _content(spec, aug, rng)
    img = (perturb(img, content, aug.photometric, rng) - spec.mean) / spec.std
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))

    def pt(p: tuple[float, float]) -> tuple[float, float]:
        q = m @ np.array([p[0], p[1], 1.0])
        return float(q[0]), float(q[1])

    hips = []
    for hp in sample.hips:
        head = pt(hp.head)
        if not (0 <= head[0] < spec.size and 0 <= head[1] < spec.size
                and content[int(head[1]), int(head[0])]):
            continue  # cropped away: not a target, and not a false positive either
        neck = pt(hp.neck)
        side = SIDES[0] if neck[0] < head[0] else SIDES[1]
        hips.append((side, HipLabel(head, hp.head_r * scale, neck, pt(hp.roi),
                                    hp.roi_len * scale, hp.roi_width * scale)))
    return img.astype(np.float32), hips


def targets(hips: list[tuple[str, HipLabel]], spec: LocatorSpec
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap (2,G,G) Gaussians, geometry (9,G,G) and its mask (G,G): the 3×3 cells around each
    head each regress the same hip, so a peak one cell off still decodes the right geometry."""
    g, st, s = spec.grid, spec.stride, float(spec.size)
    heat = np.zeros((len(SIDES), g, g), np.float32)
    geom = np.zeros((len(GEOMETRY), g, g), np.float32)
    mask = np.zeros((g, g), np.float32)
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32)
    for side, hp in hips:
        cx, cy = hp.head[0] / st, hp.head[1] / st
        sigma = max(0.6, hp.head_r / st / 3.0)
        k = SIDES.index(side)
        heat[k] = np.maximum(heat[k], np.exp(-((xx - cx + 0.5) ** 2 + (yy - cy + 0.5) ** 2)
                                             / (2 * sigma ** 2)))
        ix, iy = int(cx), int(cy)
        heat[k, iy, ix] = 1.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                j, i = ix + dx, iy + dy
                if 0 <= i < g and 0 <= j < g:
                    geom[:, i, j] = (cx - j, cy - i, hp.head_r / s,
                                     (hp.neck[0] - hp.head[0]) / s, (hp.neck[1] - hp.head[1]) / s,
                                     (hp.roi[0] - hp.head[0]) / s, (hp.roi[1] - hp.head[1]) / s,
                                     hp.roi_len / s, hp.roi_width / s)
                    mask[i, j] = 1.0
    return heat, geom, mask
