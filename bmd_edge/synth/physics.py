"""One physics for every synthetic anatomy: MaterialMaps → the radiograph a PACS would store.

The chain, per pixel, in the order a real acquisition applies it:

1. **Polyenergetic beam.** A tungsten spectrum for the case's kVp (Kramers' law, photon number
   ∝ (kVp − E)/E), hardened by the tube's inherent + added filtration (2.5–4 mm Al equivalent,
   IEC 60601-1-3 minimum 2.5 mm Al), sampled in 8 energy bins. Each bin is attenuated by
   Beer–Lambert with mass attenuation coefficients from NIST XCOM (water for lean soft tissue,
   ICRU adipose for fat, hydroxyapatite for bone mineral minus the water it displaces, iron for
   steel implants and lead markers). Summing the bins *after* attenuation is what produces beam
   hardening: thick bodies transmit a harder spectrum, so bone contrast falls with body size.
2. **Energy-integrating detector.** Each bin is weighted by E × absorption efficiency (CsI DR:
   ≈ 0.9 up to the Cs/I K-edge region then falling; BaFBr CR: lower at high energy).
3. **Scatter.** Scatter-to-primary ratio grows with tissue thickness: without a grid ≈ 2–5 behind
   20 cm of tissue, with a grid (ratio 8–12) ≈ 0.3–0.8 (Sorenson & Floch, Med Phys 1985; Chan &
   Doi, Med Phys 1985; Fritz & Livingston, Invest Radiol 1985). Scatter is the primary blurred
   by a broad kernel (σ ≈ 40–80 mm at the detector); a grid also removes ≈ 30 % of the primary.
4. **Heel effect.** Intensity falls towards the anode side, ≈ ±10–20 % over a 35–43 cm field
   (Bushberg et al., The Essential Physics of Medical Imaging, ch. 6).
5. **Automatic exposure control.** The tube output is set so the detector receives a fixed
   number of quanta (the case's `quanta_mm2`) behind the patient in the central field, as an AEC
   chamber does (DR ≈ 2.5, CR ≈ 5 µGy, ≈ 2.5·10⁵ quanta/mm²/µGy at 70 kVp behind tissue; DQE
   0.6 DR / 0.3 CR at low frequency). Quantum noise is drawn at the detector's native pitch and
   averaged down to the output pitch, so a 256-px image is as (little) noisy as a real one
   resized to 256 px; electronic noise is additive (DR lower than CR).
6. **Blur.** Gaussian; detector (σ ≈ 0.1–0.14 mm: 10 % MTF at ≈ 2.5–3.5 lp/mm), focal-spot
   penumbra, patient motion and the unsharp outlines of real bone added in quadrature
   (`system_blur_mm`, σ ≈ 0.4–1.1 mm for the trunk).
7. **Clinical processing** (what a vendor's "for presentation" image is): log, histogram-based
   auto-ranging on the anatomy (direct exposure and collimated border excluded), multi-frequency
   edge enhancement/dynamic range compression (a 3-band Laplacian decomposition with per-band
   gains, in the spirit of Agfa MUSICA / Fuji MFP), and a display S-curve LUT whose shoulder
   rolls off below full white (markers, metal and white shutters are never pure white). Absolute
   intensity is NOT preserved: a heavier patient is auto-ranged to the same grey range, which is
   how the real images lose their absolute density information.
8. Collimation (shuttered borders, unexposed = white or electronically blacked out) and a lead
   L/R marker (physical lead in the beam, so it goes through the same chain).

Geometry (patient rotation, magnification, flips) belongs to the anatomy generator: `expose`
sees only the material maps on the detector grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from bmd_edge.synth.materials import MaterialMaps

F32 = np.float32

# NIST XCOM mass attenuation coefficients μ/ρ (cm²/g, total with coherent) at these energies.
_E_TAB = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
_MU_WATER = np.array([0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505])
_MU_ADIPOSE = np.array([0.5580, 0.3009, 0.2276, 0.1985, 0.1832, 0.1657, 0.1548, 0.1370])
_MU_HA = np.array([4.240, 1.398, 0.7070, 0.4490, 0.3300, 0.2300, 0.1880, 0.1460])  # Ca10(PO4)6(OH)2
_MU_IRON = np.array([25.68, 8.176, 3.629, 1.958, 1.205, 0.5952, 0.3717, 0.1964])
_MU_AL = np.array([3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378])
_RHO_FAT, _RHO_IRON, _RHO_AL = 0.95, 7.87, 2.70
_HA_DISPLACED_CM_PER_GCM2 = 1.0 / 3.0   # mineral (≈ 3 g/cm³) displaces this much tissue
N_BINS = 8
VIEWS = ("hip", "pelvis", "knee", "shoulder", "elbow", "hand", "foot", "spine", "chest",
         "long_spine", "paed_pelvis")


@dataclass(frozen=True)
class Acquisition:
    """How a radiograph was taken and processed; none of it is the patient."""

    kvp: float                   # tube voltage (kV)
    filtration_mm_al: float      # total filtration (mm Al equivalent)
    quanta_mm2: float            # detected quanta per mm² behind the patient (AEC target)
    grid: bool                   # anti-scatter grid in place
    spr_20cm: float              # scatter-to-primary ratio behind 20 cm of tissue (grid-aware)
    scatter_sigma_mm: float      # width of the scatter kernel at the detector
    detector: str                # "DR" (CsI flat panel) or "CR" (storage phosphor)
    native_px_mm: float          # detector pitch where quantum noise is drawn
    electronic_noise: float      # additive noise, quanta-equivalent per native pixel (SD)
    blur_mm: float               # detector + focal-spot blur (Gaussian σ at the detector)
    heel_angle_deg: float        # direction the intensity falls (anode side), image frame
    heel_strength: float         # fractional intensity drop across 40 cm towards the anode
    window_lo_pct: float         # auto-ranging: percentile of the anatomy histogram → black
    window_hi_pct: float         # … → white
    edge_gains: tuple[float, float, float]  # fine / medium / coarse band gains (1 = unchanged)
    drc: float                   # dynamic range compression: share of the coarsest band removed
    lut_slope: float             # display S-curve steepness (contrast)
    lut_gamma: float             # display gamma after the S-curve
    display_black: float         # grey level the low end of the window is shown at
    display_white: float         # grey level the high end is shown at (headroom for edges/metal)
    mid_grey: float              # grey level of the anatomy's median (mostly soft tissue)
    collimation: tuple[float, float, float, float]  # shuttered fraction: left, top, right, bottom
    shutter_white: bool          # unexposed border left white (True) or blacked out
    marker_corner: int           # 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right


def sample_acquisition(rng: np.random.Generator, *, view: str) -> Acquisition:
    """Draw an acquisition for `view`; ranges are typical clinical techniques for that view.

    AP hip/pelvis: 70–85 kVp with a grid (≈ 85 % of departments); extremities: 50–65 kVp, no
    grid; chest: 100–125 kVp with a grid. DR ≈ 65 %, CR ≈ 35 % of the real images we target.
    """
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {', '.join(VIEWS)}")
    kv_lo, kv_hi, p_grid = {
        "hip": (68.0, 85.0, 0.85), "pelvis": (70.0, 85.0, 0.9), "paed_pelvis": (60.0, 75.0, 0.3),
        "spine": (75.0, 95.0, 0.9), "long_spine": (80.0, 100.0, 0.9),
        "chest": (100.0, 125.0, 0.9), "shoulder": (65.0, 80.0, 0.6), "knee": (60.0, 75.0, 0.4),
    }.get(view, (50.0, 65.0, 0.0))
    dr = bool(rng.random() < 0.65)
    grid = bool(rng.random() < p_grid)
    # SPR behind 20 cm of water: ≈ 3–5 without a grid, ≈ 0.35–0.8 with a 10:1 grid.
    spr = float(rng.uniform(0.35, 0.8) if grid else rng.uniform(2.5, 4.5))
    quanta = (2.5e5 * (2.5 if dr else 5.0) * (0.6 if dr else 0.3)
              * float(np.exp(rng.normal(0.0, 0.35))))
    coll = tuple(float(rng.uniform(0.0, 0.06)) if rng.random() < 0.25 else 0.0 for _ in range(4))
    heel = float(rng.choice([90.0, -90.0, 0.0, 180.0], p=[0.4, 0.4, 0.1, 0.1]))
    return Acquisition(
        kvp=float(rng.uniform(kv_lo, kv_hi)),
        filtration_mm_al=float(rng.uniform(2.5, 4.0)),
        quanta_mm2=quanta,
        grid=grid,
        spr_20cm=spr,
        scatter_sigma_mm=float(rng.uniform(40.0, 80.0)),
        detector="DR" if dr else "CR",
        native_px_mm=float(rng.uniform(0.139, 0.16) if dr else rng.uniform(0.1, 0.2)),
        electronic_noise=float(rng.uniform(2.0, 6.0) if dr else rng.uniform(6.0, 15.0)),
        blur_mm=system_blur_mm(rng, dr=dr, view=view),
        heel_angle_deg=heel + float(rng.normal(0.0, 5.0)),
        heel_strength=float(rng.uniform(0.1, 0.25)),
        window_lo_pct=float(rng.uniform(0.5, 3.0)),
        window_hi_pct=float(rng.uniform(97.5, 99.5)),
        # MUSICA/MFP-style detail gains as shipped for skeletal presets: modest on the finest
        # band (a strong fine gain mostly amplifies noise), more on the medium band.
        edge_gains=(float(rng.uniform(1.0, 1.3)), float(rng.uniform(1.0, 1.4)),
                    float(rng.uniform(0.9, 1.2))),
        drc=float(rng.uniform(0.5, 0.85)),
        lut_slope=float(rng.uniform(2.0, 4.0)),
        lut_gamma=float(np.exp(rng.uniform(math.log(0.85), math.log(1.2)))),
        display_black=float(rng.uniform(0.0, 0.08)),
        # The LUT's shoulder approaches display_white and never reaches it; vendors keep the
        # brightest anatomy below full white (the 99th percentile of real films ≈ 0.75–0.85).
        display_white=float(rng.uniform(0.78, 0.9)),
        mid_grey=float(rng.uniform(0.35, 0.5)),
        collimation=coll,  # type: ignore[arg-type]
        shutter_white=bool(rng.random() < 0.5),
        marker_corner=int(rng.integers(0, 4)),
    )


def system_blur_mm(rng: np.random.Generator, *, dr: bool, view: str) -> float:
    """Gaussian σ (mm, at the detector) of the whole imaging chain's unsharpness.

    Independent blurs add in quadrature. Detector: a Gaussian MTF exp(−2π²σ²f²) reaches 10 % at
    f = 0.34/σ, so CsI DR (10 % at ≈ 3–3.5 lp/mm) has σ ≈ 0.10–0.12 mm and CR (laser spread in
    the phosphor, ≈ 2.5–3 lp/mm) σ ≈ 0.11–0.14 mm. Focal spot: the large 1.2 mm focus used for
    the trunk, penumbra f·(M − 1) with the hip joint 15–25 cm above the detector at 100–115 cm
    SID (M ≈ 1.15–1.3), σ ≈ penumbra/2. Motion: trunk exposures of 50–300 ms with breathing and
    involuntary movement (≈ 2–5 mm/s) smear ≈ 0.5–1.5 mm, σ ≈ 0.3–0.8 mm. Anatomical: a real
    bone outline is a curved, ≈ 1–2 mm-thick cortex with a ragged periosteal surface, so its
    projection rises over ≈ 1.5–3 mm, which a surface-model phantom lacks (σ ≈ 0.3–0.7 mm).
    Extremities are close to the detector (M ≈ 1.05) and held still, so less.
    """
    trunk = view in ("hip", "pelvis", "paed_pelvis", "spine", "long_spine", "chest", "shoulder")
    det = float(rng.uniform(0.10, 0.12) if dr else rng.uniform(0.11, 0.14))
    mag = float(rng.uniform(1.15, 1.3) if trunk else rng.uniform(1.03, 1.08))
    focal = 1.2 * (mag - 1.0) / 2.0
    motion = float(rng.uniform(0.3, 0.8) if trunk else rng.uniform(0.1, 0.3))
    anatomical = float(rng.uniform(0.3, 0.7))
    return math.sqrt(det * det + focal * focal + motion * motion + anatomical * anatomical)


REFERENCE = Acquisition(kvp=75.0, filtration_mm_al=3.0, quanta_mm2=2.25e5, grid=True,
                        spr_20cm=0.5, scatter_sigma_mm=60.0, detector="DR", native_px_mm=0.148,
                        electronic_noise=3.0, blur_mm=0.2, heel_angle_deg=90.0,
                        heel_strength=0.15, window_lo_pct=1.0, window_hi_pct=99.5,
                        edge_gains=(1.5, 1.3, 1.0), drc=0.7, lut_slope=4.5, lut_gamma=1.0,
                        display_black=0.04, display_white=0.9, mid_grey=0.38,
                        collimation=(0.0, 0.0, 0.0, 0.0), shutter_white=True, marker_corner=0)
"""A fixed, typical DR acquisition with a grid: for tests and figures that hold physics still."""


@lru_cache(maxsize=64)
def _spectrum(kvp: float, filtration: float, detector: str) -> tuple[np.ndarray, ...]:
    """Energy bins and per-bin μ of each material (cm⁻¹ or cm²/g) and detector weights."""
    edges = np.linspace(15.0, kvp, N_BINS + 1)
    e = 0.5 * (edges[1:] + edges[:-1])
    fine = np.linspace(15.0, kvp, 200)
    def mu(tab: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.exp(np.interp(np.log(x), np.log(_E_TAB), np.log(tab)))
    phi = np.maximum(kvp - fine, 0.0) / fine                                   # Kramers
    phi *= np.exp(-mu(_MU_AL, fine) * _RHO_AL * filtration / 10.0)            # filtration
    if detector == "DR":   # CsI 500–600 µm: nearly all absorbed below ≈ 50 keV, less above
        eff = 1.0 - np.exp(-mu(_MU_IRON, fine) * 0.45 * (1.0 + (fine < 36.0)))
    else:                  # BaFBr plate: thinner, absorbs less at high energy
        eff = 1.0 - np.exp(-mu(_MU_IRON, fine) * 0.25 * (1.0 + 0.5 * (fine < 37.4)))
    w_fine = phi * fine * eff                                                 # energy integrating
    idx = np.clip(np.digitize(fine, edges) - 1, 0, N_BINS - 1)
    w = np.bincount(idx, weights=w_fine, minlength=N_BINS)
    w = w / w.sum()
    water, fat = mu(_MU_WATER, e), mu(_MU_ADIPOSE, e) * _RHO_FAT
    bone = mu(_MU_HA, e) - water * _HA_DISPLACED_CM_PER_GCM2                  # per g/cm²
    metal = mu(_MU_IRON, e) * _RHO_IRON - water
    return w, water, fat, bone, metal


def _letter_mask(shape: tuple[int, int], letter: str, corner: int) -> np.ndarray:
    """Where a lead side marker lies on the detector (float mask, 0–1)."""
    h, w = shape
    n = min(h, w)
    scale = max(n / 256.0 * 0.9, 0.3)
    thick = max(round(n / 128.0), 1)
    (tw, th), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    m = max(n // 16, 2)
    x = m if corner in (0, 2) else w - m - tw
    y = m + th if corner in (0, 1) else h - m
    mask = np.zeros(shape, np.uint8)
    cv2.putText(mask, letter, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    return mask.astype(F32) / F32(255.0)


def _blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px < 0.3:
        return a
    return cv2.GaussianBlur(a, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)


def _wide_blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """A broad Gaussian computed on a downsampled copy (scatter, low-pass bands): fast at any size."""
    h, w = a.shape
    f = max(int(sigma_px // 4), 1)
    if f == 1:
        return _blur(a, sigma_px)
    small = cv2.resize(a, (max(w // f, 2), max(h // f, 2)), interpolation=cv2.INTER_AREA)
    small = _blur(small, sigma_px / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def detected_quanta(maps: MaterialMaps, acq: Acquisition, rng: np.random.Generator,
                    *, marker: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Noisy detected signal (quanta per output pixel) and the collimated-border mask."""
    h, w = maps.shape
    px = maps.px_mm
    wts, mu_w, mu_f, mu_b, mu_m = _spectrum(round(acq.kvp, 1), round(acq.filtration_mm_al, 2),
                                            acq.detector)
    gas = maps.gas_cm if maps.gas_cm is not None else 0.0
    soft = np.maximum(np.asarray(maps.soft_cm, F32) - gas, F32(0.0))
    ff = np.clip(np.asarray(maps.fat_fraction, F32), 0.0, 1.0)
    fat, lean = soft * ff, soft * (F32(1.0) - ff)
    bone = np.asarray(maps.bone_gcm2, F32)
    metal = maps.metal_cm
    if marker:
        lead = _letter_mask((h, w), marker, acq.marker_corner) * F32(0.3)   # 3 mm lead ≈ opaque
        metal = lead if metal is None else metal + lead
    primary = np.zeros((h, w), F32)
    for k in range(N_BINS):
        att = F32(mu_w[k]) * lean + F32(mu_f[k]) * fat + F32(mu_b[k]) * bone
        if metal is not None:
            att = att + F32(mu_m[k] * 3.0) * metal   # ×3: lead/steel-equivalent opacity
        primary += F32(wts[k]) * np.exp(-np.minimum(att, F32(60.0)))
    # Heel effect: a linear ramp along the anode–cathode axis (centre = 1).
    yy, xx = np.mgrid[0:h, 0:w].astype(F32)
    a = math.radians(acq.heel_angle_deg)
    u = ((xx - w / 2) * F32(math.cos(a)) + (yy - h / 2) * F32(math.sin(a))) * F32(px / 400.0)
    primary *= F32(1.0) - F32(acq.heel_strength) * u
    if acq.grid:
        primary *= F32(0.7)       # grid primary transmission ≈ 0.6–0.75
    # Scatter: SPR ∝ thickness (saturating), spread by a broad kernel.
    spr = F32(acq.spr_20cm) * np.minimum(soft, F32(40.0)) / F32(20.0)
    scatter = _wide_blur(primary * spr, acq.scatter_sigma_mm / px)
    signal = primary + scatter
    # Collimated border: no primary, little scatter.
    left, top, right, bottom = (round(f * n) for f, n in
                                zip(acq.collimation, (w, h, w, h)))
    shut = np.zeros((h, w), bool)
    shut[:, :left] = True
    shut[:top, :] = True
    if right:
        shut[:, w - right:] = True
    if bottom:
        shut[h - bottom:, :] = True
    # The blades sit ≈ 15–25 cm below the focal spot, so their shadow has a penumbra of
    # f·(SID − d)/d ≈ 1.2 mm × 4–6 ≈ 5–7 mm at the detector (σ ≈ 2 mm): a soft edge.
    blade = _blur(shut.astype(F32), 2.0 / px) if shut.any() else shut.astype(F32)
    signal *= F32(1.0) - F32(0.97) * blade
    # AEC: scale so the central field receives the target quanta behind the patient.
    cy, cx = slice(int(0.3 * h), int(0.7 * h)), slice(int(0.3 * w), int(0.7 * w))
    per_px = acq.quanta_mm2 * px * px
    signal *= F32(per_px / max(float(np.median(signal[cy, cx])), 1e-12))
    # Blur (detector + focal spot), then quantum + electronic noise at the native pitch,
    # averaged down: the variance of a mean of m native pixels is 1/m of theirs, i.e. in
    # quanta per output pixel the Poisson variance is the mean itself (thousands of quanta:
    # Gaussian is exact enough) and the electronic variance adds m × its per-pixel variance.
    signal = _blur(signal, acq.blur_mm / px)
    m = max((px / acq.native_px_mm) ** 2, 1.0)
    sd = np.sqrt(np.maximum(signal, F32(0.0)) + F32(acq.electronic_noise ** 2 * m))
    noisy = signal + sd * rng.standard_normal((h, w), dtype=F32)
    return np.maximum(noisy, F32(0.5)), shut


def process(quanta: np.ndarray, shut: np.ndarray, acq: Acquisition, px_mm: float) -> np.ndarray:
    """Clinical post-processing: log, auto-ranging, multi-frequency enhancement, display LUT."""
    s = -np.log(quanta)                               # bone (fewer quanta) → larger
    body = ~shut
    vals = s[body] if body.any() else s.ravel()
    # Histogram analysis: the direct-exposure peak (air) is excluded by starting the range just
    # above it, as vendors' segmentation of "raw radiation" does.
    lo_air = np.percentile(vals, 0.5)
    anat = vals[vals > lo_air + 0.25 * (np.percentile(vals, 50) - lo_air)]
    if anat.size < 0.05 * vals.size:
        anat = vals
    lo = float(np.percentile(anat, 1.0))
    hi = float(np.percentile(anat, 99.5))
    v = (s - F32(lo)) / F32(max(hi - lo, 1e-3))
    # Multi-frequency processing on the normalised log image (σ in mm → pixels): three detail
    # bands amplified by their gains, the coarse background (body thickness) pulled towards its
    # median (dynamic range compression), as vendors do before windowing.
    g1 = _blur(v, 0.6 / px_mm)
    g2 = _blur(v, 2.5 / px_mm)
    g3 = _wide_blur(v, 25.0 / px_mm)
    gf, gm, gc = acq.edge_gains
    ref = float(np.median(g3[body] if body.any() else g3))
    out = (F32(gf) * (v - g1) + F32(gm) * (g1 - g2) + F32(gc) * (g2 - g3)
           + g3 - F32(acq.drc) * (g3 - F32(ref)))
    # Auto-ranging of the processed image on the anatomy (the window a PACS stores).
    anat_mask = body & (s > F32(lo_air + 0.25 * (float(np.percentile(vals, 50)) - lo_air)))
    pv = out[anat_mask] if anat_mask.sum() > 0.05 * out.size else out[body] if body.any() \
        else out.ravel()
    # Anchor the anatomy's median (mostly soft tissue) at the display's mid-grey and its
    # densest percentile (bone) near white: soft tissue grey, bone bright, air dark.
    lo2, med, hi2 = np.percentile(pv, [acq.window_lo_pct, 50.0, acq.window_hi_pct])
    # Piecewise-linear tone curve through three anchors (vendor LUTs are nonlinear too).
    up = (acq.display_white - acq.mid_grey) / max(float(hi2 - med), 1e-3)
    down = (acq.mid_grey - acq.display_black) / max(float(med - lo2), 1e-3)
    d = out - F32(med)
    out = F32(acq.mid_grey) + np.where(d > 0, d * F32(up), d * F32(down))
    # Display LUT: an S-curve whose toe starts at display_black and whose shoulder approaches
    # display_white asymptotically, then gamma. The window's top (dense bone) lands on the
    # shoulder below display_white, and anything denser (lead marker, metal, unexposed border)
    # is compressed towards it instead of clipping at full white, as vendor LUTs roll off.
    k = acq.lut_slope
    x = np.clip((out - F32(acq.display_black))
                / F32(acq.display_white - acq.display_black), -0.5, 6.0)
    lo_l = 1.0 / (1.0 + math.exp(k * 0.5))
    z = F32(1.0) / (F32(1.0) + np.exp(F32(-k) * (x - F32(0.5))))
    curve = np.clip((z - F32(lo_l)) / F32(1.0 - 2.0 * lo_l), 0.0, None) ** F32(acq.lut_gamma)
    v = F32(acq.display_black) + F32(acq.display_white - acq.display_black) * curve
    # Shoulder: above a knee three quarters of the way from mid-grey to display_white, grey
    # levels roll off (tanh) towards display_white, which is never reached.
    knee = acq.mid_grey + 0.75 * (acq.display_white - acq.mid_grey)
    room = F32(acq.display_white - knee)
    lut = np.where(v > F32(knee), F32(knee) + room * np.tanh((v - F32(knee)) / room), v)
    lut = np.clip(lut, 0.0, 1.0)
    if shut.any() and not acq.shutter_white:   # electronic masking: a hard black border
        lut[shut] = F32(0.0)
    elif shut.any():
        # Unmasked border: the vendor's collimation detection shows it at the LUT's top (just
        # below display_white, not pure white), through the blades' soft penumbra.
        top = F32(knee + float(room) * math.tanh(3.0))
        blade = np.clip(_blur(shut.astype(F32), 2.0 / px_mm), 0.0, 1.0)
        lut = lut * (F32(1.0) - blade) + top * blade
    return lut.astype(F32)


def expose(maps: MaterialMaps, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Radiograph of `maps` as stored by a PACS: float32 (H, W) in [0, 1], bone bright.

    A lead side marker is burned in when `maps.labels["marker"]` is "L" or "R".
    """
    marker = maps.labels.get("marker") if maps.labels else None
    quanta, shut = detected_quanta(maps, acq, rng, marker=str(marker) if marker else None)
    return process(quanta, shut, acq, maps.px_mm)
