"""Beer–Lambert projection of the procedural hip plus the nuisance of a real acquisition.

Per pixel the detector counts N ~ Poisson(I0·exp(−Σ μ·t) + scatter): soft tissue (μ ≈ 0.20 cm⁻¹
at an effective ≈ 55 keV, water/muscle) plus bone in excess of the tissue it displaces
(μ ≈ 0.45 cm⁻¹, cortical bone 1.9 g/cm³ × 0.31 cm²/g − tissue; NIST XCOM). Scatter is a blurred
copy of the primary, growing with body thickness (scatter-to-primary ≈ 0.3–1.5 behind a grid).
The stored image is the inverted log signal ln(N_ref/N) (bone bright), windowed to 16 bits with a
FIXED window, so exposure, body thickness and kVp move the grey levels just as BMD does. That is
the point: a mean intensity over the neck is confounded; cortical thickness and trabecular texture
relative to the surrounding tissue carry the BMD.

Nuisance per case: exposure (quanta per pixel, ×10 range), kVp-like bone contrast and soft-tissue
μ, display gamma, a small window shift, unsharp-mask edge enhancement, detector blur, rotation
(±8°), magnification (±10 %), shift, collimation borders (unexposed = white, or an electronic
shutter = black), a horizontal flip for left hips and a burned-in lead side marker ("L"/"R").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from bmd_edge.synth.anatomy import Grid, HipShape, bone_quality, ellipsoid, hip_paths, spine_paths

F32 = np.float32
FOV_MM = {"hip": 220.0, "pelvis": 380.0}   # field of view across the image
N_REF = 20000.0                             # detector counts that map to log signal 0
MU_BONE = 0.045                             # mm⁻¹, bone minus displaced tissue
# Where the femoral neck of a canonical (right, unflipped) hip view falls, as image fractions
# (x0, y0, x1, y1); fixed, for the "simple image statistic" baseline.
NECK_ROI = (0.32, 0.38, 0.39, 0.45)


@dataclass(frozen=True)
class Body:
    """Soft tissue around the hips; thickness follows BMI and sex."""

    ap_mm: float                 # front-to-back thickness of the trunk at hip level
    half_width_mm: float         # half the width of the hips (skin to skin)
    thigh_mm: float              # front-to-back thickness of the thigh
    thigh_half_mm: float         # half-width of the thigh
    hip_half_mm: float           # half the distance between the femoral-head centres
    gas: tuple[tuple[float, float, float], ...]  # bowel gas (x from midline, y from hips, r) mm


def sample_body(rng: np.random.Generator, *, sex: str, bmi: float) -> Body:
    """AP trunk thickness ≈ 160–300 mm (grows ≈ 7 mm per BMI unit), women's pelvis wider."""
    women = sex == "F"
    ap = float(np.clip(rng.normal(205.0 + 7.0 * (bmi - 27.0), 12.0), 140.0, 340.0))
    half_w = 200.0 + 4.0 * (bmi - 27.0) + (10.0 if women else 0.0) + float(rng.normal(0, 8))
    gas = tuple((float(rng.uniform(-90, 90)), float(rng.uniform(-170, 0)),
                 float(rng.uniform(8, 28))) for _ in range(int(rng.poisson(4))))
    return Body(ap_mm=ap, half_width_mm=half_w,
                thigh_mm=float(0.62 * ap * rng.normal(1.0, 0.05)),
                thigh_half_mm=95.0 + 2.5 * (bmi - 27.0),
                hip_half_mm=(98.0 if women else 94.0) + float(rng.normal(0, 4)), gas=gas)


@dataclass(frozen=True)
class Acquisition:
    """How this radiograph was taken and processed; none of it is the patient's bone."""

    photons: float               # detected quanta/pixel behind 200 mm of tissue (mAs, ×10 range)
    bone_contrast: float         # scales bone μ: low kVp → more bone contrast (0.8–1.2)
    soft_mu: float               # soft-tissue μ (mm⁻¹), also moves with kVp
    spr: float                   # scatter-to-primary ratio per 200 mm of tissue
    gamma: float                 # display gamma of the processing
    window_shift: float          # shift of the fixed log window (processing differences)
    sharpen: float               # unsharp-mask amount (edge enhancement), 0 = none
    blur_px: float               # detector blur sigma at 256 px (scaled to the image size)
    rotation_deg: float          # in-plane rotation of the patient
    scale: float                 # magnification (source-detector geometry, patient size)
    shift_mm: tuple[float, float]  # positioning offset
    collimation: tuple[float, float, float, float]  # shuttered fraction: left, top, right, bottom
    shutter_white: bool          # unexposed border left white (True) or blacked out
    marker_corner: int           # 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
    noise_seed: int              # quantum noise


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Draw the acquisition nuisance (independent of the patient)."""
    coll = tuple(float(rng.uniform(0.0, 0.08)) if rng.random() < 0.5 else 0.0 for _ in range(4))
    return Acquisition(
        photons=float(np.exp(rng.uniform(math.log(400.0), math.log(4000.0)))),
        bone_contrast=float(rng.uniform(0.8, 1.2)),
        soft_mu=float(rng.uniform(0.019, 0.022)),
        spr=float(rng.uniform(0.3, 1.0)),
        gamma=float(np.exp(rng.uniform(math.log(0.8), math.log(1.25)))),
        window_shift=float(rng.normal(0.0, 0.15)),
        sharpen=float(rng.uniform(0.0, 0.8)),
        blur_px=float(rng.uniform(0.4, 1.1)),
        rotation_deg=float(rng.normal(0.0, 4.0)),
        scale=float(rng.uniform(0.9, 1.1)),
        shift_mm=(float(rng.normal(0.0, 6.0)), float(rng.normal(0.0, 6.0))),
        collimation=coll,  # type: ignore[arg-type]
        shutter_white=bool(rng.random() < 0.7),
        marker_corner=int(rng.integers(0, 2)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


NO_NUISANCE = Acquisition(photons=2000.0, bone_contrast=1.0, soft_mu=0.0205, spr=0.5, gamma=1.0,
                          window_shift=0.0, sharpen=0.0, blur_px=0.6, rotation_deg=0.0, scale=1.0,
                          shift_mm=(0.0, 0.0), collimation=(0.0, 0.0, 0.0, 0.0),
                          shutter_white=True, marker_corner=0, noise_seed=0)


def _grid(size: int, view: str, acq: Acquisition) -> tuple[Grid, float]:
    """Image-frame mm coordinates of every pixel (origin: right hip or pelvis midline)."""
    fov = FOV_MM[view]
    px = fov / size
    centre = (0.03 * fov, 0.2 * fov) if view == "hip" else (0.0, -0.1 * fov)
    rho = math.radians(acq.rotation_deg)
    cr, sr = math.cos(rho) * acq.scale * px, math.sin(rho) * acq.scale * px
    off = 0.5 - size / 2
    x0 = centre[0] + acq.shift_mm[0] + (cr - sr) * off
    y0 = centre[1] + acq.shift_mm[1] + (sr + cr) * off
    affine = np.array([[cr, -sr, x0], [sr, cr, y0]])
    j, i = np.meshgrid(np.arange(size, dtype=F32), np.arange(size, dtype=F32))
    x = F32(cr) * j - F32(sr) * i + F32(x0)
    y = F32(sr) * j + F32(cr) * i + F32(y0)
    return Grid(x, y, affine), px * acq.scale


def _oriented_fields(seed: int, size: int, px_mm: float, k: int = 6) -> tuple[list[np.ndarray],
                                                                               np.ndarray]:
    """K unit-variance noise fields, each stretched along one direction, plus an isotropic one.

    Filtering in the Fourier domain: one FFT of white noise, K anisotropic Gaussian transfer
    functions (≈ 3 mm along the trabecula, ≈ 0.45 mm across), K inverse FFTs.
    """
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft2(rng.standard_normal((size, size), dtype=F32))
    *oriented, iso = _transfer(size, round(px_mm, 2), k)
    fields = []
    for h in oriented:
        f = np.fft.irfft2(spec * h, s=(size, size)).astype(F32)
        fields.append(f / F32(f.std() + 1e-9))
    f = np.fft.irfft2(spec * iso, s=(size, size)).astype(F32)
    return fields, f / F32(f.std() + 1e-9)


@lru_cache(maxsize=64)
def _transfer(size: int, px_mm: float, k: int) -> tuple[np.ndarray, ...]:
    """Fourier transfer functions of the K oriented texture filters and the isotropic one."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    sl, sw = max(3.0 / px_mm, 1.0), max(0.45 / px_mm, 0.5)
    out = []
    for i in range(k):
        a = math.pi * i / k
        along = fx * math.cos(a) + fy * math.sin(a)
        across = -fx * math.sin(a) + fy * math.cos(a)
        out.append(np.exp(-2.0 * math.pi**2 * ((sl * along) ** 2 + (sw * across) ** 2))
                   .astype(F32))
    out.append(np.exp(-2.0 * math.pi**2 * max(0.6 / px_mm, 0.5) ** 2 * (fx**2 + fy**2))
               .astype(F32))
    return tuple(out)


def _blend(fields: list[np.ndarray], theta: np.ndarray) -> np.ndarray:
    """Per-pixel texture running along theta (rad, pixel frame), from the K oriented fields."""
    k = len(fields)
    out = np.zeros_like(fields[0])
    wsum = np.zeros_like(fields[0])
    for i, f in enumerate(fields):
        w = np.maximum(np.cos(F32(2.0) * (theta - F32(math.pi * i / k))), 0.0) ** 2
        out += w * f
        wsum += w * w
    return out / np.sqrt(wsum + F32(1e-6))


def _soft_tissue(g: Grid, body: Body, mid: float, shafts: tuple[float, float]) -> np.ndarray:
    """Trunk above the groin, two thighs below it (mm of tissue along the beam).

    Cross-sections are super-ellipses (|r|^4): the buttocks and thighs are flat-sided.
    """
    x, y = g.x, g.y
    def profile(centre: float, half: float, depth: float) -> np.ndarray:
        r2 = ((x - F32(centre)) * F32(1.0 / half)) ** 2
        return F32(depth) * np.sqrt(np.sqrt(np.maximum(F32(1.0) - r2 * r2, F32(0.0))))

    trunk = profile(mid, body.half_width_mm, body.ap_mm)
    thigh = np.maximum(profile(shafts[0], body.thigh_half_mm, body.thigh_mm),
                       profile(shafts[1], body.thigh_half_mm, body.thigh_mm))
    w = F32(1.0) / (F32(1.0) + np.exp((y - F32(75.0)) / F32(12.0)))
    tissue = w * trunk + (F32(1.0) - w) * thigh
    for gx, gy, r in body.gas:
        tissue -= ellipsoid(g, (mid + gx, gy), r, 0.8 * r, 0.9 * r)
    return np.maximum(tissue, 0.0)


def render(hips: tuple[HipShape, HipShape], body: Body, acq: Acquisition, *, size: int = 256,
           view: str = "hip", flip: bool = False, marker: str | None = None) -> np.ndarray:
    """Render one radiograph as uint16 (bone bright).

    hips = (right, left). A hip view shows the right-hip anatomy canonically (the left hip is
    rendered as a mirrored right hip: pass flip=True); a pelvis view shows both.
    """
    g, px_mm = _grid(size, view, acq)
    rho = math.radians(acq.rotation_deg)
    fields, iso = _oriented_fields(hips[0].texture_seed, size, px_mm)
    if view == "hip":
        mid = body.hip_half_mm
        sides = [(hips[0], g, 1.0)]
        shafts = (-10.0, 2 * mid + 10.0)
    else:
        mid = 0.0
        h = body.hip_half_mm
        sides = [(hips[0], g.mapped(1.0, h), 1.0), (hips[1], g.mapped(-1.0, h), -1.0)]
        shafts = (-h - 10.0, h + 10.0)
    cort = np.zeros(g.shape, F32)
    trab = np.zeros(g.shape, F32)
    for hip, gl, sign in sides:
        p = hip_paths(gl, hip, body.hip_half_mm)
        # Hip-frame angles → image (mirror for the left hip) → pixel frame (undo the rotation).
        tc = (p.theta_c if sign > 0 else F32(math.pi) - p.theta_c) - F32(rho)
        tt = (p.theta_t if sign > 0 else F32(math.pi) - p.theta_t) - F32(rho)
        w_iso = F32(0.7)
        tex = iso.copy()
        rows, cols = np.nonzero((p.w_c + p.w_t) > 0.02)
        if rows.size:   # oriented groups only where they live (saves most of the blending)
            b = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
            wc, wt = p.w_c[b], p.w_t[b]
            tex[b] = ((wc * _blend([f[b] for f in fields], tc[b])
                       + wt * _blend([f[b] for f in fields], tt[b]) + w_iso * iso[b])
                      / np.sqrt(wc**2 + wt**2 + w_iso**2))
        cort += p.cortical
        trab += p.trabecular * np.clip(F32(1.0) + F32(0.6) * tex, 0.0, 3.0)
    if view == "pelvis":
        q = bone_quality(0.5 * (hips[0].bmd + hips[1].bmd))
        sc, st = spine_paths(g, 0.0, 0.0, q["cortex_pelvis"])
        cort += sc
        trab += st * F32(q["bvtv_pelvis"]) * np.clip(F32(1.0) + F32(0.9) * iso, 0.0, 3.0)
    tissue = _soft_tissue(g, body, mid, shafts)

    atten = F32(acq.soft_mu) * tissue + F32(MU_BONE * acq.bone_contrast) * (cort + trab)
    i0 = acq.photons * math.exp(acq.soft_mu * 200.0)
    primary = F32(i0) * np.exp(-atten)
    small = cv2.resize(primary, (max(size // 8, 4), max(size // 8, 4)),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(size / 8 * 30.0 / FOV_MM[view], 1.0))
    scatter = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    scatter *= F32(acq.spr) * np.minimum(tissue, 400.0) / F32(200.0)
    noise_rng = np.random.default_rng(acq.noise_seed)
    counts = noise_rng.poisson(primary + scatter).astype(F32)
    detected = cv2.GaussianBlur(counts, (0, 0), max(acq.blur_px * size / 256.0, 0.3))
    signal = np.log(F32(N_REF) / np.maximum(detected, F32(0.5)))
    if acq.sharpen > 0:
        soft = cv2.GaussianBlur(signal, (0, 0), max(6.0 / px_mm, 1.0))
        signal = signal + F32(acq.sharpen) * (signal - soft)
    # The detector's auto-ranging follows only part of the exposure (60 %), so a residual
    # exposure effect stays in the grey levels.
    lo = 0.3 + 0.6 * math.log(N_REF / acq.photons / 8.0) + acq.window_shift
    hi = lo + 3.6
    v = np.clip((signal - F32(lo)) / F32(hi - lo), 0.0, 1.0) ** F32(acq.gamma)
    _collimate(v, acq)
    img = np.round(v * F32(65535.0)).astype(np.uint16)
    if flip:
        img = np.ascontiguousarray(img[:, ::-1])
    if marker:
        _burn_marker(img, marker, acq.marker_corner)
    return img


def _collimate(v: np.ndarray, acq: Acquisition) -> None:
    """Shuttered borders: unexposed (white) or electronically blacked out (in place)."""
    n = v.shape[0]
    left, top, right, bottom = (int(round(f * n)) for f in acq.collimation)
    fill = 1.0 if acq.shutter_white else 0.0
    if left:
        v[:, :left] = fill
    if right:
        v[:, n - right:] = fill
    if top:
        v[:top, :] = fill
    if bottom:
        v[n - bottom:, :] = fill


def _burn_marker(img: np.ndarray, letter: str, corner: int) -> None:
    """A lead side marker burned into the image, as technologists place them (in place)."""
    n = img.shape[0]
    scale = max(n / 256.0 * 0.9, 0.3)
    thick = max(int(round(n / 128.0)), 1)
    w, h = _text_size(letter, scale, thick)
    m = max(n // 20, 2)
    x = m if corner in (0, 2) else n - m - w
    y = m + h if corner in (0, 1) else n - m
    mask = np.zeros(img.shape, np.uint8)      # OpenCV draws text on 8-bit images only
    cv2.putText(mask, letter, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    np.maximum(img, mask.astype(np.uint16) * np.uint16(257), out=img)


@lru_cache(maxsize=32)
def _text_size(letter: str, scale: float, thick: int) -> tuple[int, int]:
    (w, h), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    return w, h
