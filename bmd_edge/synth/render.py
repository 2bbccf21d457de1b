"""Hip and AP-pelvis views as MaterialMaps (+ landmarks), exposed by the shared physics.

`hip_maps` lays out the procedural femur/hemipelvis (`anatomy`), sacrum and lower lumbar spine,
the trabecular texture, soft tissue (trunk and thighs whose thickness and fat share follow BMI
and sex), bowel gas, optional metal (contralateral hip prosthesis or screws) and the patient's
pose (in-plane rotation, magnification, shift) on a grid finer than the output (so trabecular
texture exists before the detector averages it), then downsamples to the output size. Bone is
areal mineral density: path length × tissue mineral density (≈ 1.15 g HA/cm³ of bone tissue).

Its labels are analytic: each hip's head centre and radius, neck axis and a DXA-style
femoral-neck box, mapped through exactly the pixel transform of the image (pose, supersampling,
mirror for a left hip view). `render` is hip_maps + `physics.expose` → 16-bit PNG pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from bmd_edge.synth.anatomy import (
    TMD_G_CM3,
    Grid,
    HipShape,
    bone_quality,
    ellipsoid,
    hip_landmarks,
    hip_paths,
    spine_paths,
    tube,
)
from bmd_edge.synth.materials import MaterialMaps
from bmd_edge.synth.physics import REFERENCE, Acquisition, expose

F32 = np.float32
FOV_MM = {"hip": 220.0, "pelvis": 380.0}   # field of view across the image
MAX_INTERNAL_PX_MM = 0.5                    # aim to render at least this finely, then downsample
MAX_INTERNAL_PX = 640                       # … but never on a grid larger than this (speed)
METAL_KINDS = ("none", "prosthesis", "screws")


@dataclass(frozen=True)
class Body:
    """Soft tissue around the hips; thickness and fat share follow BMI and sex."""

    ap_mm: float                 # front-to-back thickness of the trunk at hip level
    half_width_mm: float         # half the width of the hips (skin to skin)
    thigh_mm: float              # front-to-back thickness of the thigh
    thigh_half_mm: float         # half-width of the thigh
    hip_half_mm: float           # half the distance between the femoral-head centres
    gas: tuple[tuple[float, float, float], ...]  # bowel gas (x from midline, y from hips, r) mm
    fat_fraction: float = 0.3    # fat share of the soft tissue


def sample_body(rng: np.random.Generator, *, sex: str, bmi: float) -> Body:
    """AP trunk thickness ≈ 160–300 mm (grows ≈ 7 mm per BMI unit), women's pelvis wider.

    Fat share of soft tissue ≈ 0.2 + 0.012/BMI unit, +0.08 in women (body fat % vs BMI,
    Gallagher et al., Am J Clin Nutr 2000): at a fixed kVp fat attenuates less than muscle,
    so the soft-tissue grey level under auto-ranging depends on BMI and sex.
    """
    women = sex == "F"
    ap = float(np.clip(rng.normal(205.0 + 7.0 * (bmi - 27.0), 12.0), 140.0, 340.0))
    half_w = 170.0 + 4.0 * (bmi - 27.0) + (10.0 if women else 0.0) + float(rng.normal(0, 8))
    gas = tuple((float(rng.uniform(-90, 90)), float(rng.uniform(-170, -20)),
                 float(rng.uniform(8, 28))) for _ in range(int(rng.poisson(5))))
    fat = float(np.clip(0.2 + 0.012 * (bmi - 27.0) + (0.08 if women else 0.0)
                        + rng.normal(0.0, 0.04), 0.05, 0.6))
    return Body(ap_mm=ap, half_width_mm=half_w,
                thigh_mm=float(0.8 * ap * rng.normal(1.0, 0.05)),
                thigh_half_mm=85.0 + 2.5 * (bmi - 27.0),
                hip_half_mm=(98.0 if women else 94.0) + float(rng.normal(0, 4)), gas=gas,
                fat_fraction=fat)


@dataclass(frozen=True)
class Pose:
    """Where the patient lies relative to the detector (in-plane only)."""

    rotation_deg: float = 0.0                       # in-plane rotation of the patient
    scale: float = 1.0                              # magnification
    shift_mm: tuple[float, float] = (0.0, 0.0)      # positioning offset


def sample_pose(rng: np.random.Generator) -> Pose:
    return Pose(rotation_deg=float(rng.normal(0.0, 4.0)), scale=float(rng.uniform(0.9, 1.1)),
                shift_mm=(float(rng.normal(0.0, 6.0)), float(rng.normal(0.0, 6.0))))


@dataclass(frozen=True)
class Metal:
    """Hardware in the image: a contralateral hip prosthesis or screws (or none)."""

    kind: str = "none"           # one of METAL_KINDS
    side: str = ""               # "left" | "right": which hip carries it


def sample_metal(rng: np.random.Generator, *, view: str, label_side: str) -> Metal:
    """≈ 8 % of pelvis views carry hardware on the contralateral hip (THA 5 %, screws 3 %);
    a DXA-measured hip has none, so hip views never show hardware on the labelled femur."""
    if view != "pelvis":
        return Metal()
    u = rng.random()
    other = "left" if label_side == "right" else "right"
    if u < 0.05:
        return Metal("prosthesis", other)
    if u < 0.08:
        return Metal("screws", other)
    return Metal()


@dataclass
class HipLabel:
    """One hip's landmarks in output pixels (x = column, y = row)."""

    side: str
    head_x: float
    head_y: float
    head_r: float
    neck_x: float                # neck base (neck axis meets the shaft axis)
    neck_y: float
    roi_x: float                 # DXA-style femoral-neck box: centre, size, angle
    roi_y: float
    roi_len: float               # along the neck axis
    roi_width: float             # across the neck
    roi_angle_deg: float         # direction of the neck axis (head → base), image frame

    def roi_corners(self) -> np.ndarray:
        a = math.radians(self.roi_angle_deg)
        u = np.array([math.cos(a), math.sin(a)])
        v = np.array([-u[1], u[0]])
        c = np.array([self.roi_x, self.roi_y])
        hl, hw = self.roi_len / 2, self.roi_width / 2
        return np.array([c + hl * u + hw * v, c + hl * u - hw * v, c - hl * u - hw * v,
                         c - hl * u + hw * v])


@dataclass
class Layout:
    """The pixel transform of one image: grid + supersampling + mirror."""

    grid: Grid
    ss: int
    size: int
    px_mm: float                 # patient mm per output pixel (pose scale included)
    flip: bool
    labels: list[HipLabel] = field(default_factory=list)

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        """Image-frame mm → output pixel (column, row)."""
        aff = self.grid.affine
        col, row = np.linalg.solve(aff[:, :2], np.array([x, y]) - aff[:, 2])
        col, row = (col + 0.5) / self.ss - 0.5, (row + 0.5) / self.ss - 0.5
        if self.flip:
            col = self.size - 1 - col
        return float(col), float(row)


def _oriented_fields(seed: int, size: int, px_mm: float, k: int = 6) -> tuple[list[np.ndarray],
                                                                               np.ndarray]:
    """K unit-variance noise fields, each stretched along one direction, plus an isotropic one.

    Filtering in the Fourier domain: one FFT of white noise, K anisotropic Gaussian transfer
    functions (≈ 3 mm along the trabecula, ≈ 0.45 mm across), K inverse FFTs.
    """
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft2(rng.standard_normal((size, size), dtype=F32))
    *oriented, iso = texture_transfer(size, round(px_mm, 2), k)
    fields = []
    for h in oriented:
        f = np.fft.irfft2(spec * h, s=(size, size)).astype(F32)
        fields.append(f / F32(f.std() + 1e-9))
    f = np.fft.irfft2(spec * iso, s=(size, size)).astype(F32)
    return fields, f / F32(f.std() + 1e-9)


@lru_cache(maxsize=64)
def texture_transfer(size: int, px_mm: float, k: int) -> tuple[np.ndarray, ...]:
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


def _soft_tissue(g: Grid, body: Body, mid: float,
                 shafts: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Trunk above the groin, two thighs below it (mm of tissue), and bowel gas (mm).

    Cross-sections are super-ellipses (|r|^4): the buttocks and thighs are flat-sided.
    """
    x, y = g.x, g.y

    def profile(centre: float, half: float, depth: float) -> np.ndarray:
        r2 = ((x - F32(centre)) * F32(1.0 / half)) ** 2
        return F32(depth) * np.sqrt(np.sqrt(np.maximum(F32(1.0) - r2 * r2, F32(0.0))))

    trunk = profile(mid, body.half_width_mm, body.ap_mm)
    thigh = np.maximum(profile(shafts[0], body.thigh_half_mm, body.thigh_mm),
                       profile(shafts[1], body.thigh_half_mm, body.thigh_mm))
    # Buttocks and perineum: the trunk fades into the thighs over a few centimetres, later
    # near the midline (the perineum) than laterally.
    w_y = F32(85.0) + F32(30.0) * np.exp(-((x - F32(mid)) / F32(45.0)) ** 2)
    w = F32(1.0) / (F32(1.0) + np.exp((y - w_y) / F32(22.0)))
    tissue = np.maximum(w * trunk, thigh)
    gas = np.zeros(g.shape, F32)
    for gx, gy, r in body.gas:
        gas += ellipsoid(g, (mid + gx, gy), r, 0.8 * r, 0.45 * r)
    return tissue, np.minimum(gas, F32(0.5) * tissue)


def _layout(size: int, view: str, pose: Pose, flip: bool) -> Layout:
    """Image-frame mm coordinates of every internal pixel (origin: right hip or pelvis midline)."""
    fov = FOV_MM[view]
    px_out = fov / size
    # Supersample ×2 while the internal grid stays ≤ MAX_INTERNAL_PX (a 256-px hip is drawn at
    # 0.43 mm); larger outputs are drawn at their own size (a 512-px pelvis at 0.74 mm).
    ss = 2 if px_out > MAX_INTERNAL_PX_MM and 2 * size <= MAX_INTERNAL_PX else 1
    n = size * ss
    px = px_out / ss
    centre = (0.03 * fov, 0.2 * fov) if view == "hip" else (0.0, -0.1 * fov)
    rho = math.radians(pose.rotation_deg)
    cr, sr = math.cos(rho) * pose.scale * px, math.sin(rho) * pose.scale * px
    off = 0.5 - n / 2
    x0 = centre[0] + pose.shift_mm[0] + (cr - sr) * off
    y0 = centre[1] + pose.shift_mm[1] + (sr + cr) * off
    affine = np.array([[cr, -sr, x0], [sr, cr, y0]])
    j, i = np.meshgrid(np.arange(n, dtype=F32), np.arange(n, dtype=F32))
    x = F32(cr) * j - F32(sr) * i + F32(x0)
    y = F32(sr) * j + F32(cr) * i + F32(y0)
    return Layout(Grid(x, y, affine), ss, size, px_out * pose.scale, flip)


def detector_px_mm(size: int, view: str) -> float:
    """Pixel pitch at the detector plane (what DICOM PixelSpacing states)."""
    return FOV_MM[view] / size


def _label(lay: Layout, hip: HipShape, side: str, to_image) -> HipLabel:  # type: ignore[no-untyped-def]
    """Project a hip's analytic landmarks (hip frame) into output pixels."""
    lm = hip_landmarks(hip)
    hx, hy = lay.to_px(*to_image(*lm["head"]))
    bx, by = lay.to_px(*to_image(*lm["neck_base"]))
    rx, ry = lay.to_px(*to_image(*lm["roi_centre"]))
    scale = 1.0 / lay.px_mm
    ang = math.degrees(math.atan2(by - hy, bx - hx))
    return HipLabel(side=side, head_x=hx, head_y=hy, head_r=float(lm["head_r"]) * scale,
                    neck_x=bx, neck_y=by, roi_x=rx, roi_y=ry,
                    roi_len=float(lm["roi_len"]) * scale,
                    roi_width=float(lm["roi_width"]) * scale, roi_angle_deg=ang)


def _metal_paths(g: Grid, hip: HipShape, metal: Metal) -> np.ndarray:
    """Implant path (mm) in the hip frame: a THA (cup, 28-mm head, stem) or 3 neck screws."""
    if metal.kind == "prosthesis":
        lm = hip_landmarks(hip)
        en = lm["neck_dir"]
        bx, by = lm["neck_base"]                             # type: ignore[misc]
        cup = np.maximum(ellipsoid(g, (0.0, 0.0), hip.head_r + 3.0, hip.head_r + 3.0,
                                   hip.head_r + 3.0)
                         - ellipsoid(g, (0.0, 0.0), hip.head_r, hip.head_r, hip.head_r), 0.0)
        cup *= (g.y < F32(4.0)).astype(F32) * F32(0.3)     # hemispherical titanium shell
        head = ellipsoid(g, (0.0, 0.0), 14.0, 14.0, 14.0)
        neck = tube(g, (0.0, 0.0), (bx, by), 6.0, 7.0)      # type: ignore[arg-type]
        stem = tube(g, (bx - 3.0 * en[0], by - 3.0 * en[1]),   # type: ignore[index]
                    (bx - 8.0, by + 150.0), 9.0, 4.5, 0.8)
        return np.maximum.reduce([cup, head, neck, stem])
    if metal.kind == "screws":
        lm = hip_landmarks(hip)
        en = lm["neck_dir"]
        bx, by = lm["neck_base"]                             # type: ignore[misc]
        out = np.zeros(g.shape, F32)
        for off in (-8.0, 0.0, 8.0):
            nx, ny = -en[1] * off, en[0] * off               # type: ignore[index]
            out = np.maximum(out, tube(g, (bx - 25.0 * en[0] + nx, by + 12.0 + ny),  # type: ignore[index]
                                       (0.45 * bx + nx, 0.45 * by + ny), 3.3, 3.3))
        return out
    return np.zeros(g.shape, F32)


def hip_maps(hips: tuple[HipShape, HipShape], body: Body, pose: Pose, *, size: int = 256,
             view: str = "hip", flip: bool = False, marker: str | None = None,
             metal: Metal = Metal(), label_side: str = "right") -> MaterialMaps:
    """Material maps of a hip or AP pelvis view; `labels` holds the landmarks (HipLabel list).

    hips = (right, left). A hip view shows the right-hip anatomy canonically (a left hip is a
    mirrored right hip: pass flip=True, label_side="left"); a pelvis view shows both.
    """
    lay = _layout(size, view, pose, flip)
    g = lay.grid
    rho = math.radians(pose.rotation_deg)
    n = g.shape[0]
    fields, iso = _oriented_fields(hips[0].texture_seed, n, FOV_MM[view] / n * pose.scale)
    if view == "hip":
        mid = body.hip_half_mm
        sides = [(hips[0], g, 1.0, label_side, lambda x, y: (x, y))]
        shafts = (-10.0, 2 * mid + 10.0)
    else:
        mid = 0.0
        h = body.hip_half_mm
        sides = [(hips[0], g.mapped(1.0, h), 1.0, "right", lambda x, y: (x - h, y)),
                 (hips[1], g.mapped(-1.0, h), -1.0, "left", lambda x, y: (h - x, y))]
        shafts = (-h - 10.0, h + 10.0)
    cort = np.zeros(g.shape, F32)
    trab = np.zeros(g.shape, F32)
    metal_mm = np.zeros(g.shape, F32)
    for hip, gl, sign, side, to_image in sides:
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
        trab += p.trabecular * np.clip(F32(1.0) + F32(0.3) * tex, 0.0, 3.0)
        if metal.kind != "none" and metal.side == side:
            metal_mm += _metal_paths(gl, hip, metal)
        lay.labels.append(_label(lay, hip, side, to_image))
    if view == "pelvis":
        q = bone_quality(0.5 * (hips[0].bmd + hips[1].bmd))
        sc, st = spine_paths(g, 0.0, 0.0, q["cortex_pelvis"])
        cort += sc
        trab += st * F32(q["bvtv_pelvis"]) * np.clip(F32(1.0) + F32(0.5) * iso, 0.0, 3.0)
    tissue, gas = _soft_tissue(g, body, mid, shafts)

    def out(a: np.ndarray) -> np.ndarray:
        if lay.ss > 1:
            a = cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(a[:, ::-1]) if flip else a

    labels: dict[str, object] = {"hips": lay.labels, "view": view, "metal": metal.kind,
                                 "metal_side": metal.side, "patient_mm_per_px": lay.px_mm}
    if marker:
        labels["marker"] = marker
    return MaterialMaps(
        bone_gcm2=out((cort + trab) * F32(TMD_G_CM3 / 10.0)),
        soft_cm=out(tissue * F32(0.1)),
        px_mm=detector_px_mm(size, view),
        fat_fraction=body.fat_fraction,
        gas_cm=out(gas * F32(0.1)),
        metal_cm=out(metal_mm * F32(0.1)) if metal.kind != "none" else None,
        labels=labels,
    )


def render(hips: tuple[HipShape, HipShape], body: Body, acq: Acquisition = REFERENCE, *,
           size: int = 256, view: str = "hip", flip: bool = False, marker: str | None = None,
           pose: Pose = Pose(), metal: Metal = Metal(), label_side: str = "right",
           rng: np.random.Generator | None = None) -> np.ndarray:
    """Render one radiograph as uint16 (bone bright): hip_maps → physics.expose."""
    maps = hip_maps(hips, body, pose, size=size, view=view, flip=flip, marker=marker,
                    metal=metal, label_side=label_side)
    img = expose(maps, acq, rng if rng is not None else np.random.default_rng(0))
    return np.round(img * F32(65535.0)).astype(np.uint16)
