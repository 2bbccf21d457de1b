"""Procedural hip anatomy: path lengths (mm) of bone and soft tissue along each X-ray.

An AP radiograph is a projection, so we never build a voxel volume: each part is a simple solid
whose chord length along the beam has a closed form — a capsule ("tube") with a tapering radius
for the shaft, neck and pubic rami, an ellipsoid for the head, trochanters, acetabulum and iliac
wing. A hollow part is an outer solid minus an inner one; its cortical path is
`chord(outer) − chord(inner)`, which is what makes the cortex look bright at the edges where the
beam runs along it. Parts are combined with a pixel-wise maximum (a union for shapes that are
centred in depth).

Coordinates are millimetres in a hip frame: origin at the femoral-head centre, x towards the
midline (medial), y down. A right hip (shown on the image's left, radiographic convention) maps
x_image = H_x + x; a left hip mirrors x.

Geometry (adult ranges): femoral head diameter 44–52 mm (men larger), neck-shaft angle 120–135°,
femoral-neck width ≈ 27–35 mm, shaft diameter ≈ 27–32 mm; Clark et al. 1987 and Noble et al.
(Clin Orthop 1988) morphometry. Bone quality follows the case's true FN BMD:
- neck cortex (inferior/calcar) 1.0–3.0 mm, superior about half of that (Mayhew et al., Lancet
  2005: superior cortex thins with age), shaft cortex 3–7 mm;
- trabecular bone volume fraction 0.10–0.35, and the tensile trabecular group fades before the
  principal compressive group as BMD falls (the Singh index, Singh et al. JBJS-A 1970).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class HipShape:
    """Geometry and bone quality of one proximal femur and its hemipelvis."""

    bmd: float                 # true FN BMD (g/cm²); drives cortex, trabeculae, Singh grade
    head_r: float              # femoral-head radius (mm)
    neck_shaft_deg: float      # neck-shaft angle (deg); coxa vara < 120 < normal < 135 < valga
    neck_r: float              # in-plane half-width of the neck at its waist (mm)
    neck_len: float            # head centre → shaft-axis intersection along the neck axis (mm)
    shaft_r: float             # outer radius of the femoral shaft (mm)
    shaft_tilt_deg: float      # shaft leans medially going down (anatomical axis, deg)
    gt_size: float             # greater-trochanter scale (1 = typical)
    lt_size: float             # lesser-trochanter scale (external rotation changes it)
    joint_space: float         # head-to-acetabulum gap (cartilage, mm)
    texture_seed: int          # seeds the trabecular noise of this hip
    leg_rot_deg: float = 0.0   # external (+) / internal (−) rotation from the ideal 15° internal
    abduction_deg: float = 0.0 # abduction (+) / adduction (−) of the femur about the head
    pelvic_tilt: float = 1.0   # vertical scale of the pelvis outside the acetabulum (AP tilt)

    @property
    def neck_len_proj(self) -> float:
        """Projected neck length: the neck foreshortens as the leg rotates out of the ideal
        (anteversion ≈ 15° is cancelled by 15° internal rotation in a standard AP)."""
        return self.neck_len * math.cos(math.radians(self.leg_rot_deg))


def bone_quality(bmd: float) -> dict[str, float]:
    """Cortex (mm), trabecular volume fraction and tensile-group retention from true BMD."""
    r = max(bmd, 0.3) / 0.85
    return {
        "cortex_neck": float(np.clip(1.9 * r ** 1.6, 0.6, 3.5)),     # inferior neck (calcar)
        "cortex_shaft": float(np.clip(5.2 * r ** 0.9, 2.5, 8.0)),
        "cortex_pelvis": float(np.clip(1.5 * r ** 0.8, 0.8, 2.5)),
        "bvtv": float(np.clip(0.22 * r ** 1.8, 0.06, 0.45)),
        "bvtv_pelvis": float(np.clip(0.18 * r ** 1.0, 0.08, 0.35)),
        "tensile": float(np.clip((bmd - 0.50) / 0.40, 0.1, 1.0)),   # Singh-like grading
    }


def sample_hip(rng: np.random.Generator, *, sex: str, height_cm: float, bmd: float,
               age: float = 70.0) -> HipShape:
    """Draw hip geometry: size scales with sex and height, angles vary between people, the neck
    widens with age (periosteal apposition)."""
    hip = _sample_hip(rng, sex=sex, height_cm=height_cm, bmd=bmd, age=age)
    # External rotation brings the lesser trochanter into profile (it grows on the image).
    lt = hip.lt_size * (1.0 + 0.012 * hip.leg_rot_deg)
    return dataclasses.replace(hip, lt_size=float(np.clip(lt, 0.5, 1.8)))


def _sample_hip(rng: np.random.Generator, *, sex: str, height_cm: float, bmd: float,
                age: float) -> HipShape:
    """Published morphometry: head diameter ≈ 50 mm in men, 45 mm in women, scaling with
    height; neck-shaft angle 128 ± 4° (women ≈ 1° lower); neck width ≈ 33 mm, widening ≈ 0.25 %
    per year of age by periosteal apposition (Beck et al., JBMR 2000, NHANES III hip structure
    analysis); neck length and offset scale with body size (Clark et al. 1987; Noble et al.
    1988)."""
    size = (1.06 if sex == "M" else 0.94) * (1.0 + 0.004 * (height_cm - 167.0))
    size *= float(rng.normal(1.0, 0.03))
    widen = 1.0 + 0.0025 * (age - 70.0)
    return HipShape(
        bmd=bmd,
        head_r=float(np.clip(24.0 * size, 21.0, 27.0)),
        neck_shaft_deg=float(np.clip(rng.normal(128.5 - (1.0 if sex == "F" else 0.0), 4.0),
                                     118.0, 138.0)),
        neck_r=16.5 * size * widen * float(rng.normal(1.0, 0.04)),
        neck_len=54.0 * size * float(rng.normal(1.0, 0.05)),
        shaft_r=14.5 * size * float(rng.normal(1.0, 0.04)),
        shaft_tilt_deg=float(rng.normal(7.0, 1.5)),
        gt_size=float(rng.normal(1.0, 0.08)),
        lt_size=float(rng.normal(1.0, 0.15)),
        joint_space=float(np.clip(rng.normal(4.0, 0.8), 1.5, 6.0)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        # Positioning: many AP hips are taken with the leg in neutral or external rotation
        # (pain, hip fracture screening), foreshortening the neck; abduction ±5°; pelvic tilt
        # changes the obturator foramen's height (≈ ±10 %).
        leg_rot_deg=float(np.clip(rng.normal(5.0, 10.0), -15.0, 35.0)),
        abduction_deg=float(rng.normal(0.0, 3.0)),
        pelvic_tilt=float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
    )


# --- closed-form chords ---------------------------------------------------------------------

class Grid:
    """Millimetre coordinates of every pixel plus the affine map pixel → mm.

    Knowing the affine lets each part evaluate only the pixels inside its bounding box, which
    is what makes a 256-px case take tens of milliseconds.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, affine: np.ndarray) -> None:
        self.x, self.y = x, y            # mm, shape (n, n)
        self.affine = affine             # 2×3: [x, y] = affine @ [col, row, 1]
        self.shape = x.shape
        self._inv = np.linalg.inv(affine[:, :2])

    def mapped(self, sx: float, dx: float) -> Grid:
        """The grid in a frame with x' = sx·x + dx (sx = −1 mirrors a left hip)."""
        aff = self.affine.copy()
        aff[0] *= sx
        aff[0, 2] += dx
        return Grid(F32(sx) * self.x + F32(dx), self.y, aff)

    def scaled_y(self, k: float) -> Grid:
        """The grid in a frame with y' = k·y (pelvic tilt squashes/stretches the pelvis)."""
        aff = self.affine.copy()
        aff[1] *= k
        return Grid(self.x, F32(k) * self.y, aff)

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Row/column slices covering the mm box [x0, x1] × [y0, y1]; None when outside."""
        inv = self._inv
        pts = np.array([[x0, x1, x0, x1], [y0, y0, y1, y1]]) - self.affine[:, 2:3]
        cols, rows = inv @ pts
        n_r, n_c = self.shape
        r0, r1 = max(int(rows.min()) - 1, 0), min(math.ceil(rows.max()) + 2, n_r)
        c0, c1 = max(int(cols.min()) - 1, 0), min(math.ceil(cols.max()) + 2, n_c)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)


def ellipsoid(g: Grid, c: tuple[float, float], a: float, b: float, depth: float,
              angle: float = 0.0) -> np.ndarray:
    """Beam path (mm) through an ellipsoid: in-plane semi-axes a, b (rotated), depth semi-axis."""
    out = np.zeros(g.shape, F32)
    r = max(a, b)
    sl = g.window(c[0] - r, c[0] + r, c[1] - r, c[1] + r)
    if sl is None or min(a, b, depth) <= 0:
        return out
    ca, sa = math.cos(angle), math.sin(angle)
    dx, dy = g.x[sl] - F32(c[0]), g.y[sl] - F32(c[1])
    u = (dx * F32(ca) + dy * F32(sa)) * F32(1.0 / a)
    v = (dy * F32(ca) - dx * F32(sa)) * F32(1.0 / b)
    q = np.maximum(F32(1.0) - u * u - v * v, F32(0.0))
    out[sl] = F32(2.0 * depth) * np.sqrt(q)
    return out


def tube(g: Grid, p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float,
         depth_ratio: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Beam path (mm) through a capsule from p0 to p1 with radius r0→r1.

    `offset` moves the axis sideways (positive: to the right of p0→p1 in image coordinates), used
    to make an inner cavity eccentric so one cortex is thicker than the other.
    """
    out = np.zeros(g.shape, F32)
    r = max(r0, r1) + abs(offset)
    sl = g.window(min(p0[0], p1[0]) - r, max(p0[0], p1[0]) + r,
                  min(p0[1], p1[1]) - r, max(p0[1], p1[1]) + r)
    if sl is None:
        return out
    ex, ey = p1[0] - p0[0], p1[1] - p0[1]
    length = math.hypot(ex, ey)
    ex, ey = ex / length, ey / length
    dx, dy = g.x[sl] - F32(p0[0]), g.y[sl] - F32(p0[1])
    t = dx * F32(ex) + dy * F32(ey)
    v = dx * F32(-ey) + dy * F32(ex) - F32(offset)
    tc = np.clip(t, F32(0.0), F32(length))
    rr = F32(r0) + F32((r1 - r0) / length) * tc
    q = np.maximum(rr * rr - v * v - (t - tc) ** 2, F32(0.0))
    out[sl] = F32(2.0 * depth_ratio) * np.sqrt(q)
    return out


def hollow(outer: np.ndarray, inner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cortical, cancellous) paths of a shell from its outer and inner chords."""
    inner = np.minimum(inner, outer)
    return outer - inner, inner


def _circle_through(p: tuple[float, float], q: tuple[float, float],
                    r: tuple[float, float]) -> tuple[float, float, float]:
    """Centre and radius of the circle through three points (the tensile trabecular arc)."""
    ax, ay = p
    bx, by = q
    cx, cy = r
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    a2, b2, c2 = ax**2 + ay**2, bx**2 + by**2, cx**2 + cy**2
    ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
    uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    return ux, uy, math.hypot(ax - ux, ay - uy)


@dataclass
class HipPaths:
    """Per-pixel paths (mm) and trabecular orientation of one hip, in the hip frame."""

    cortical: np.ndarray       # cortical bone path (femur + hemipelvis)
    trabecular: np.ndarray     # cancellous bone path already × volume fraction
    theta_c: np.ndarray        # compressive-group direction (rad, hip frame)
    theta_t: np.ndarray        # tensile-group direction (rad, hip frame)
    w_c: np.ndarray            # weight of the compressive group
    w_t: np.ndarray            # weight of the tensile group (× Singh retention)
    femur_mask: np.ndarray     # where the proximal femur is (for the oracle's ROI)


def neck_axes(hip: HipShape) -> dict[str, tuple[float, float]]:
    """Shaft and neck directions in the hip frame, and where the neck axis meets the shaft axis.

    `ds` runs down the shaft, `ns` is its medial normal, `en` runs along the neck from its base
    towards the head centre (the origin), `P` is the neck-shaft intersection.
    """
    phi = math.radians(hip.shaft_tilt_deg - hip.abduction_deg)
    ds = (math.sin(phi), math.cos(phi))
    ns = (math.cos(phi), -math.sin(phi))
    a_n = math.pi / 2 - phi - math.radians(hip.neck_shaft_deg)
    en = (math.cos(a_n), math.sin(a_n))
    length = hip.neck_len_proj
    return {"ds": ds, "ns": ns, "en": en, "P": (-length * en[0], -length * en[1])}


FN_ROI_MM = 15.0   # DXA femoral-neck box length along the neck axis (GE Lunar, 1.5 cm)


def hip_landmarks(hip: HipShape) -> dict[str, object]:
    """Landmarks in the hip frame (mm): head centre and radius, neck axis, DXA-style FN box.

    The neck box is centred on the narrowest part of the neck (the waist, where Lunar's
    automatic FN box goes), FN_ROI_MM long along the neck axis and wide enough to span the neck
    with 5 mm of soft tissue on each side.
    """
    ax = neck_axes(hip)
    en, P = ax["en"], ax["P"]
    s = hip.head_r + 7.0 + 0.25 * FN_ROI_MM
    return {"head": (0.0, 0.0), "head_r": hip.head_r, "neck_base": P, "neck_dir": en,
            "roi_centre": (-s * en[0], -s * en[1]), "roi_len": FN_ROI_MM,
            "roi_width": 2.0 * hip.neck_r + 10.0}


TMD_G_CM3 = 1.15   # g hydroxyapatite per cm³ of bone tissue (cortex ≈ 1.1–1.2)


def neck_box_mask(g: Grid, hip: HipShape) -> np.ndarray:
    """Pixels inside the DXA-style femoral-neck box (hip frame)."""
    lm = hip_landmarks(hip)
    (cx, cy), (ux, uy) = lm["roi_centre"], lm["neck_dir"]           # type: ignore[misc]
    dx, dy = g.x - F32(cx), g.y - F32(cy)
    along = np.abs(dx * F32(ux) + dy * F32(uy))
    across = np.abs(-dx * F32(uy) + dy * F32(ux))
    return (along <= F32(0.5 * float(lm["roi_len"]))) & (across <= F32(0.5 * float(lm["roi_width"])))


def _calibration(g: Grid, hip: HipShape, femur_mm: np.ndarray, femur_mask: np.ndarray) -> float:
    """Scale for the femur's bone paths so its FN-box areal mineral equals hip.bmd (g/cm²)."""
    box = neck_box_mask(g, hip) & femur_mask
    if box.sum() < 4:
        return 1.0
    now = float(femur_mm[box].mean()) * TMD_G_CM3 / 10.0
    return float(np.clip(hip.bmd / max(now, 1e-6), 0.4, 2.5))


def hip_paths(g: Grid, hip: HipShape, midline: float) -> HipPaths:
    """Femur + hemipelvis paths for one hip; `g` is in the hip frame (x medial, y down).

    `midline` is the x of the pubic symphysis in this frame (half the inter-hip distance).
    """
    q = bone_quality(hip.bmd)
    x, y = g.x, g.y
    rh, c_n, c_s = hip.head_r, q["cortex_neck"], q["cortex_shaft"]
    ax = neck_axes(hip)
    ds, ns, en, P = ax["ds"], ax["ns"], ax["en"], ax["P"]
    neck_len = hip.neck_len_proj

    def at(a: float, b: float, o: tuple[float, float] = P) -> tuple[float, float]:
        return (o[0] + a * ns[0] + b * ds[0], o[1] + a * ns[1] + b * ds[1])

    def along_neck(s: float) -> tuple[float, float]:
        return (-s * en[0], -s * en[1])

    # Femur: head, two-piece neck (waist), trochanteric body, greater/lesser trochanter, shaft.
    waist = along_neck(rh + 7.0)
    base = along_neck(neck_len - 6.0)
    # The cavity sits off-centre towards the superior side (positive tube offset along base→head
    # reversed): inferior cortex c_n, superior c_n / 2.
    d_n, c_avg = 0.25 * c_n, 0.75 * c_n
    r_s, gt, lt = hip.shaft_r, hip.gt_size, hip.lt_size
    ang_s = math.atan2(ns[1], ns[0])
    meta0, meta1 = at(-8.0, -4.0), at(0.0, 48.0)          # metaphyseal flare along the shaft
    gt_c, gt_a, gt_b = at(-15.0, -11.0), 11.0 * gt, 16.0 * gt
    outer = [
        ellipsoid(g, (0.0, 0.0), rh, rh, rh),
        tube(g, (0.0, 0.0), waist, 0.80 * rh, hip.neck_r, 0.85),
        tube(g, waist, base, hip.neck_r, 1.45 * hip.neck_r, 0.85),
        tube(g, meta0, meta1, 1.45 * r_s, r_s, 0.85),
        ellipsoid(g, gt_c, gt_a, gt_b, 16.0, ang_s - 0.2),
        ellipsoid(g, at(r_s + 1.0, 30.0), 6.0 * lt, 9.0 * lt, 7.0, ang_s + 0.5),
        tube(g, meta1, at(0.0, 400.0), r_s, 0.92 * r_s),
    ]
    inner = [
        ellipsoid(g, (0.0, 0.0), rh - 1.0, rh - 1.0, rh - 1.0),
        tube(g, (0.0, 0.0), waist, 0.80 * rh - c_avg, hip.neck_r - c_avg, 0.82, offset=d_n),
        tube(g, waist, base, hip.neck_r - c_avg, 1.45 * hip.neck_r - c_avg, 0.82,
             offset=d_n),
        tube(g, meta0, meta1, 1.45 * r_s - c_n, r_s - c_s, 0.85 * (1.0 - c_n / r_s)),
        ellipsoid(g, gt_c, gt_a - 1.2, gt_b - 1.2, 14.8, ang_s - 0.2),
        np.zeros(g.shape, F32),
        tube(g, meta1, at(0.0, 400.0), r_s - c_s, 0.92 * r_s - c_s),
    ]
    f_out = np.maximum.reduce(outer)
    f_in = np.maximum.reduce(inner)
    # Fovea capitis: a shallow pit on the medial-inferior head where the ligamentum teres
    # inserts; it shows as a notch in the head's outline.
    fov = (0.93 * rh * math.cos(0.35), 0.93 * rh * math.sin(0.35))
    pit = ellipsoid(g, fov, 4.5, 3.5, 4.0, 0.35)
    f_out = np.maximum(f_out - pit, 0.0)
    f_in = np.maximum(f_in - pit, 0.0)
    f_cort, f_trab = hollow(f_out, f_in)
    # Intertrochanteric ridge: a low cortical crest from the greater to the lesser trochanter,
    # seen end-on as a faint dense line.
    f_cort = f_cort + tube(g, at(-r_s + 2.0, -6.0), at(r_s - 2.0, 26.0), 1.5, 1.5, 1.2)
    # Cancellous bone fills head, neck and trochanters; the shaft below the lesser trochanter
    # is a marrow canal. Distance down the shaft axis from P:
    t_shaft = (x - F32(P[0])) * F32(ds[0]) + (y - F32(P[1])) * F32(ds[1])
    f_trab = f_trab / (F32(1.0) + np.exp((t_shaft - F32(45.0)) / F32(8.0)))

    # Trabecular groups: the principal compressive fan from the calcar up into the head dome,
    # the tensile arc from the lateral cortex below the greater trochanter over the superior
    # neck into the inferior head; Ward's triangle between them is sparse.
    cal = at(hip.shaft_r - 3.0, 22.0)
    theta_c = np.arctan2(y - F32(cal[1]), x - F32(cal[0]))
    dome = (0.25 * rh, -0.85 * rh)
    w_c = np.exp(-_dist_to_segment(x, y, cal, dome) ** 2 / F32(2 * 11.0**2))
    ux, uy, rad = _circle_through(at(-hip.shaft_r, 8.0),
                                  (along_neck(0.55 * neck_len)[0] - 0.7 * hip.neck_r * en[1],
                                   along_neck(0.55 * neck_len)[1] + 0.7 * hip.neck_r * en[0]),
                                  (0.35 * rh, 0.55 * rh))
    rr = np.hypot(x - F32(ux), y - F32(uy))
    theta_t = np.arctan2(y - F32(uy), x - F32(ux)) + F32(math.pi / 2)
    w_t = np.exp(-((rr - F32(rad)) / F32(9.0)) ** 2) * F32(q["tensile"])
    head = np.clip(outer[0] / F32(6.0), 0.0, 1.0)
    density = F32(0.6) + F32(0.4) * np.clip(w_c + w_t + F32(0.3) * head, 0.0, 1.0)
    femur_mask = f_out > 0

    p_cort, p_trab = _hemipelvis(g, hip, q, midline)
    f_trab = f_trab * density * F32(q["bvtv"])
    # Calibrate: the femur's areal mineral in the DXA-style neck box equals the BMD the hip is
    # drawn with (what DXA measures is exactly this: mineral per projected bone area there).
    k = _calibration(g, hip, f_cort + f_trab, femur_mask)
    trab = f_trab * F32(k) + p_trab * F32(q["bvtv_pelvis"])
    return HipPaths(cortical=f_cort * F32(k) + p_cort, trabecular=trab, theta_c=theta_c,
                    theta_t=theta_t, w_c=w_c * femur_mask, w_t=w_t * femur_mask,
                    femur_mask=femur_mask)


def _dist_to_segment(x: np.ndarray, y: np.ndarray, p0: tuple[float, float],
                     p1: tuple[float, float]) -> np.ndarray:
    ex, ey = p1[0] - p0[0], p1[1] - p0[1]
    length2 = ex * ex + ey * ey
    t = np.clip(((x - F32(p0[0])) * F32(ex) + (y - F32(p0[1])) * F32(ey)) / F32(length2), 0, 1)
    return np.hypot(x - F32(p0[0]) - t * F32(ex), y - F32(p0[1]) - t * F32(ey))


def _chaikin(poly: list[tuple[float, float]], rounds: int) -> list[tuple[float, float]]:
    """Corner cutting: a closed polygon → a smooth outline (no straight-edged bones)."""
    pts = np.asarray(poly, dtype=np.float64)
    for _ in range(rounds):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in pts]


def plate(g: Grid, poly: list[tuple[float, float]], thick: float, cortex: float,
          holes: list[list[tuple[float, float]]] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(cortical, cancellous) paths (mm) of a flat bone seen face-on: a polygon outline.

    The plate is `thick` mm deep with rounded rims (a half-cylinder of radius thick/2 along
    its edge), so the rim, where the beam runs along the cortex, is brighter than the face:
    how iliac crests, pubic rami and the obturator ring look. Holes (foramina) are polygons
    cut through it. Rasterised with OpenCV in the grid's pixel frame, so any outline is cheap.
    """
    out = np.zeros(g.shape, F32)
    poly = _chaikin(poly, 2)
    pts = np.array(poly + [p for h in holes for p in h], dtype=np.float64)
    sl = g.window(pts[:, 0].min() - 2, pts[:, 0].max() + 2, pts[:, 1].min() - 2,
                  pts[:, 1].max() + 2)
    if sl is None:
        return out, out.copy()
    inv = np.linalg.inv(g.affine[:, :2])
    px_mm = float(math.sqrt(abs(np.linalg.det(g.affine[:, :2]))))

    def to_px(points: list[tuple[float, float]]) -> np.ndarray:
        q = (inv @ (np.array(points, dtype=np.float64).T - g.affine[:, 2:3])).T
        q -= np.array([sl[1].start, sl[0].start])
        return np.round(q * 4).astype(np.int32)   # 2 fractional bits: sub-pixel outlines

    h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [to_px(poly)], 1, cv2.LINE_8, shift=2)
    for hole in holes:
        cv2.fillPoly(mask, [to_px(hole)], 0, cv2.LINE_8, shift=2)
    d = cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 3)[1:-1, 1:-1] * F32(px_mm)
    r = F32(thick / 2.0)

    def chord(depth_r: float, shrink: float) -> np.ndarray:
        dd = np.clip(d - F32(shrink), 0.0, None)
        x = np.clip(dd / F32(depth_r), 0.0, 1.0)
        return F32(2.0 * depth_r) * np.sqrt(np.clip(x * (F32(2.0) - x), 0.0, 1.0))

    outer = chord(float(r), 0.0)
    inner = chord(max(float(r) - cortex, 0.3), cortex)
    out[sl] = outer - np.minimum(inner, outer)
    tr = np.zeros(g.shape, F32)
    tr[sl] = np.minimum(inner, outer)
    return out, tr


def _hemipelvis(g: Grid, hip: HipShape, q: dict[str, float],
                midline: float) -> tuple[np.ndarray, np.ndarray]:
    """Acetabulum, ilium and iliac wing, ischium, pubis with the obturator foramen (hip frame).

    Outlines follow an adult AP pelvis (hip frame: origin at the femoral-head centre, x medial,
    y down, mm; `midline` = x of the symphysis): the iliac crest ≈ 150–185 mm above the head
    centre and ≈ 85 mm lateral at the ASIS, the sacroiliac joint ≈ 45 mm lateral of the midline,
    the obturator foramen an oval ≈ 45 × 30 mm tilted inferomedially, the ischial tuberosity
    ≈ 85 mm below the head centre (cf. standard AP pelvis anatomy; Tannast et al., AJR 2007).
    """
    rh, cp, js = hip.head_r, q["cortex_pelvis"], hip.joint_space
    m = midline
    cort: list[np.ndarray] = []
    trab: list[np.ndarray] = []
    # Acetabulum: a hemispherical socket whose anterior and posterior walls overlap the head
    # in an AP projection; open inferolaterally (the notch, and where the neck leaves). The
    # socket is lined by dense subchondral bone, brightest along the weight-bearing roof
    # (sourcil). The bone around it is the periacetabular plate below.
    lx, ly = -math.sin(math.radians(33.0)) * (rh + js), -math.cos(math.radians(33.0)) * (rh + js)
    nx, ny = 0.35 * rh, rh + js
    ex, ey = nx - lx, ny - ly
    side = ((g.x - F32(lx)) * F32(ey) - (g.y - F32(ly)) * F32(ex)) / F32(math.hypot(ex, ey))
    keep = np.clip(F32(0.5) + side / F32(3.0), 0.0, 1.0)   # 1 medial/superior, 0 outside
    r_in, r_out = rh + js, rh + js + 6.0
    cup = np.maximum(ellipsoid(g, (0.0, 0.0), r_out, r_out, r_out)
                     - ellipsoid(g, (0.0, 0.0), r_in, r_in, r_in), 0.0)
    lining = np.maximum(ellipsoid(g, (0.0, 0.0), r_in + cp, r_in + cp, r_in + cp)
                        - ellipsoid(g, (0.0, 0.0), r_in, r_in, r_in), 0.0)
    roof = np.clip(-(g.y + F32(0.3 * rh)) / F32(0.4 * rh), 0.0, 1.0)   # the upper part
    cort.append((lining * (F32(0.6) + F32(0.8) * roof) + cup * F32(0.12)) * keep)
    trab.append(cup * F32(0.5) * keep)
    # Periacetabular plate: the ilium body above and medial to the socket down to the teardrop
    # and the notch, so the head sits inside bone except inferolaterally.
    c, t = plate(g, [(lx - 4.0, ly + 4.0), (-rh - 6.0, -44.0), (-30.0, -64.0),
                     (m - 50.0, -128.0), (m - 40.0, -100.0), (36.0, -30.0), (rh + 17.0, -2.0),
                     (rh + 13.0, 20.0), (nx + 4.0, ny + 3.0)], 16.0, cp)
    cort.append(c * keep)
    trab.append(t * keep)
    # Teardrop (Köhler's): the U-shaped dense outline of the medial acetabular wall.
    tc = (rh + js + 8.0, 6.0)
    cort.append(np.maximum(ellipsoid(g, tc, 5.5, 15.0, 7.0, 0.1)
                           - ellipsoid(g, tc, 3.8, 13.2, 7.0, 0.1), 0.0) * F32(0.8))
    g = g.scaled_y(hip.pelvic_tilt)   # tilt: the rest of the hemipelvis, not the socket
    # Ilium: body above the socket flaring into the wing, crest, SI joint medially.
    ilium = [(lx - 2.0, ly + 2.0), (-rh - 4.0, -42.0), (-34.0, -66.0), (-58.0, -104.0),
             (-80.0, -134.0), (-87.0, -150.0), (-74.0, -170.0), (-40.0, -184.0),
             (0.0, -186.0), (m - 48.0, -170.0), (m - 40.0, -134.0), (m - 38.0, -100.0),
             (34.0, -30.0), (rh + 12.0, -4.0), (4.0, -rh - 8.0)]
    c, t = plate(g, ilium, 8.0, cp)            # the thin iliac fossa
    cort.append(c)
    trab.append(t)
    # Iliac crest: a thick cortical rim along the (smoothed) outline from the ASIS to the
    # posterior crest, so it merges with the wing's edge.
    crest = _chaikin(ilium, 2)[4 * 3:4 * 9 + 1]
    for p0, p1 in itertools.pairwise(crest):
        cort.append(tube(g, p0, p1, 3.0, 3.0, 1.0))
    # Pubis + ischium: one ring around the obturator foramen, with the ischial tuberosity.
    fc = (0.5 * (rh + m) - 4.0, 40.0)
    fa, fb = min(26.0, 0.36 * (m - rh)), 19.0
    hole = [(fc[0] + fa * math.cos(t_) * math.cos(-0.45) - fb * math.sin(t_) * math.sin(-0.45),
             fc[1] + fa * math.cos(t_) * math.sin(-0.45) + fb * math.sin(t_) * math.cos(-0.45))
            for t_ in np.linspace(0.0, 2.0 * math.pi, 24, endpoint=False)]
    ring = [(rh - 4.0, -12.0), (44.0, -16.0), (m - 24.0, -8.0), (m - 3.0, 4.0), (m - 2.0, 46.0),
            (m - 16.0, 60.0), (fc[0] + 6.0, 68.0), (fc[0] - 10.0, 80.0), (24.0, 92.0),
            (6.0, 92.0), (-8.0, 78.0), (-11.0, 48.0), (-7.0, rh + 2.0)]
    c, t = plate(g, ring, 13.0, cp, holes=[hole])
    cort.append(c)
    trab.append(t)
    # Pelvic brim (iliopectineal line): a thin ridge from the sacroiliac joint to the pubis.
    cort.append(tube(g, (m - 40.0, -100.0), (34.0, -30.0), 2.5, 2.5)
                + tube(g, (34.0, -30.0), (m - 10.0, -2.0), 2.5, 2.5))
    return np.maximum.reduce(cort), np.maximum.reduce(trab)


def _vertebra(g: Grid, cx: float, cy: float, w: float, h: float, cortex: float,
              cort: list[np.ndarray], trab: list[np.ndarray]) -> None:
    """Lumbar vertebra, AP: body with endplates, pedicle rings, transverse and spinous processes."""
    body = [(cx - w / 2, cy - h / 2 + 2), (cx - w / 2 + 3, cy - h / 2), (cx + w / 2 - 3, cy - h / 2),
            (cx + w / 2, cy - h / 2 + 2), (cx + w / 2 - 2, cy + h / 2), (cx - w / 2 + 2, cy + h / 2)]
    for poly, thick in ((body, 34.0),
                        ([(cx - w / 2 - 28, cy - 6), (cx + w / 2 + 28, cy - 6),
                          (cx + w / 2 + 28, cy + 2), (cx - w / 2 - 28, cy + 2)], 8.0),
                        ([(cx - 4, cy - 8), (cx + 4, cy - 8), (cx + 3, cy + 12),
                          (cx - 3, cy + 12)], 16.0)):
        c, t = plate(g, poly, thick, cortex)
        cort.append(c)
        trab.append(t)
    for s in (-1.0, 1.0):   # pedicles seen end-on: cortical rings
        pc = (cx + s * 0.34 * w, cy - 0.12 * h)
        cort.append(np.maximum(ellipsoid(g, pc, 5.0, 7.5, 6.0) - ellipsoid(g, pc, 3.2, 5.6, 6.0),
                               0.0))


def spine_paths(g: Grid, hip_y: float, midline_x: float,
                cortex: float) -> tuple[np.ndarray, np.ndarray]:
    """Sacrum (with foramina and SI joints) and L4–L5, for the pelvis view (image mm)."""
    m, h = midline_x, hip_y
    cort: list[np.ndarray] = []
    trab: list[np.ndarray] = []
    sacrum = [(m - 64.0, h - 166.0), (m + 64.0, h - 166.0), (m + 54.0, h - 118.0),
              (m + 22.0, h - 75.0), (m + 8.0, h - 42.0), (m - 8.0, h - 42.0),
              (m - 22.0, h - 75.0), (m - 54.0, h - 118.0)]
    foramina = [[(m + s * 20.0 + 4.0 * math.cos(t), h - 145.0 + 17.0 * k + 3.5 * math.sin(t))
                 for t in np.linspace(0, 2 * math.pi, 10, endpoint=False)]
                for k in range(4) for s in (-1.0, 1.0)]
    c, t = plate(g, sacrum, 24.0, cortex, holes=foramina)
    cort.append(c)
    trab.append(t)
    _vertebra(g, m, h - 182.0, 50.0, 27.0, cortex, cort, trab)
    _vertebra(g, m, h - 219.0, 48.0, 28.0, cortex, cort, trab)
    return np.maximum.reduce(cort), np.maximum.reduce(trab)
