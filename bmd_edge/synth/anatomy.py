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

import math
from dataclasses import dataclass

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


def sample_hip(rng: np.random.Generator, *, sex: str, height_cm: float, bmd: float) -> HipShape:
    """Draw hip geometry: size scales with sex and height, angles vary between people."""
    size = (1.06 if sex == "M" else 0.94) * (1.0 + 0.004 * (height_cm - 167.0))
    size *= float(rng.normal(1.0, 0.03))
    return HipShape(
        bmd=bmd,
        head_r=float(np.clip(24.0 * size, 21.0, 27.0)),
        neck_shaft_deg=float(np.clip(rng.normal(128.0, 4.0), 118.0, 138.0)),
        neck_r=16.5 * size * float(rng.normal(1.0, 0.04)),
        neck_len=54.0 * size * float(rng.normal(1.0, 0.05)),
        shaft_r=14.5 * size * float(rng.normal(1.0, 0.04)),
        shaft_tilt_deg=float(rng.normal(7.0, 1.5)),
        gt_size=float(rng.normal(1.0, 0.08)),
        lt_size=float(rng.normal(1.0, 0.15)),
        joint_space=float(np.clip(rng.normal(4.0, 0.8), 1.5, 6.0)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
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

    def mapped(self, sx: float, dx: float) -> "Grid":
        """The grid in a frame with x' = sx·x + dx (sx = −1 mirrors a left hip)."""
        aff = self.affine.copy()
        aff[0] *= sx
        aff[0, 2] += dx
        return Grid(F32(sx) * self.x + F32(dx), self.y, aff)

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Row/column slices covering the mm box [x0, x1] × [y0, y1]; None when outside."""
        inv = self._inv
        pts = np.array([[x0, x1, x0, x1], [y0, y0, y1, y1]]) - self.affine[:, 2:3]
        cols, rows = inv @ pts
        n_r, n_c = self.shape
        r0, r1 = max(int(rows.min()) - 1, 0), min(int(math.ceil(rows.max())) + 2, n_r)
        c0, c1 = max(int(cols.min()) - 1, 0), min(int(math.ceil(cols.max())) + 2, n_c)
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


def hip_paths(g: Grid, hip: HipShape, midline: float) -> HipPaths:
    """Femur + hemipelvis paths for one hip; `g` is in the hip frame (x medial, y down).

    `midline` is the x of the pubic symphysis in this frame (half the inter-hip distance).
    """
    q = bone_quality(hip.bmd)
    x, y = g.x, g.y
    rh, c_n, c_s = hip.head_r, q["cortex_neck"], q["cortex_shaft"]
    phi = math.radians(hip.shaft_tilt_deg)
    ds = (math.sin(phi), math.cos(phi))                       # shaft, distal
    ns = (math.cos(phi), -math.sin(phi))                      # perpendicular, medial
    a_n = math.pi / 2 - phi - math.radians(hip.neck_shaft_deg)
    en = (math.cos(a_n), math.sin(a_n))                       # neck axis, base → head
    P = (-hip.neck_len * en[0], -hip.neck_len * en[1])        # neck axis meets shaft axis

    def at(a: float, b: float, o: tuple[float, float] = P) -> tuple[float, float]:
        return (o[0] + a * ns[0] + b * ds[0], o[1] + a * ns[1] + b * ds[1])

    def along_neck(s: float) -> tuple[float, float]:
        return (-s * en[0], -s * en[1])

    # Femur: head, two-piece neck (waist), trochanteric body, greater/lesser trochanter, shaft.
    waist = along_neck(rh * 0.95 + 4.0)
    base = along_neck(hip.neck_len - 6.0)
    # The cavity sits off-centre towards the superior side (positive tube offset along base→head
    # reversed): inferior cortex c_n, superior c_n / 2.
    d_n, c_avg = 0.25 * c_n, 0.75 * c_n
    r_s, gt, lt = hip.shaft_r, hip.gt_size, hip.lt_size
    ang_s = math.atan2(ns[1], ns[0])
    meta0, meta1 = at(-4.0, -18.0), at(0.0, 48.0)          # metaphyseal flare along the shaft
    gt_c, gt_a, gt_b = at(-12.0, -20.0), 12.5 * gt, 19.0 * gt
    outer = [
        ellipsoid(g, (0.0, 0.0), rh, rh, rh),
        tube(g, (0.0, 0.0), waist, 0.80 * rh, hip.neck_r, 0.85),
        tube(g, waist, base, hip.neck_r, 1.45 * hip.neck_r, 0.85),
        tube(g, meta0, meta1, 1.75 * r_s, r_s, 0.85),
        ellipsoid(g, gt_c, gt_a, gt_b, 16.0, ang_s - 0.2),
        ellipsoid(g, at(r_s + 1.0, 30.0), 6.0 * lt, 9.0 * lt, 7.0, ang_s + 0.5),
        tube(g, meta1, at(0.0, 400.0), r_s, 0.92 * r_s),
    ]
    inner = [
        ellipsoid(g, (0.0, 0.0), rh - 1.0, rh - 1.0, rh - 1.0),
        tube(g, (0.0, 0.0), waist, 0.80 * rh - c_avg, hip.neck_r - c_avg, 0.82, offset=d_n),
        tube(g, waist, base, hip.neck_r - c_avg, 1.45 * hip.neck_r - c_avg, 0.82,
             offset=d_n),
        tube(g, meta0, meta1, 1.75 * r_s - c_n, r_s - c_s, 0.85 * (1.0 - c_n / r_s)),
        ellipsoid(g, gt_c, gt_a - 1.2, gt_b - 1.2, 14.8, ang_s - 0.2),
        np.zeros(g.shape, F32),
        tube(g, meta1, at(0.0, 400.0), r_s - c_s, 0.92 * r_s - c_s),
    ]
    f_out = np.maximum.reduce(outer)
    f_in = np.maximum.reduce(inner)
    f_cort, f_trab = hollow(f_out, f_in)
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
                                  (along_neck(0.55 * hip.neck_len)[0] - 0.7 * hip.neck_r * en[1],
                                   along_neck(0.55 * hip.neck_len)[1] + 0.7 * hip.neck_r * en[0]),
                                  (0.35 * rh, 0.55 * rh))
    rr = np.hypot(x - F32(ux), y - F32(uy))
    theta_t = np.arctan2(y - F32(uy), x - F32(ux)) + F32(math.pi / 2)
    w_t = np.exp(-((rr - F32(rad)) / F32(9.0)) ** 2) * F32(q["tensile"])
    head = np.clip(outer[0] / F32(6.0), 0.0, 1.0)
    density = F32(0.45) + F32(0.55) * np.clip(w_c + w_t + head, 0.0, 1.0)
    femur_mask = f_out > 0

    p_cort, p_trab = _hemipelvis(g, hip, q, midline)
    trab = f_trab * density * F32(q["bvtv"]) + p_trab * F32(q["bvtv_pelvis"])
    return HipPaths(cortical=f_cort + p_cort, trabecular=trab, theta_c=theta_c,
                    theta_t=theta_t, w_c=w_c * femur_mask, w_t=w_t * femur_mask,
                    femur_mask=femur_mask)


def _dist_to_segment(x: np.ndarray, y: np.ndarray, p0: tuple[float, float],
                     p1: tuple[float, float]) -> np.ndarray:
    ex, ey = p1[0] - p0[0], p1[1] - p0[1]
    length2 = ex * ex + ey * ey
    t = np.clip(((x - F32(p0[0])) * F32(ex) + (y - F32(p0[1])) * F32(ey)) / F32(length2), 0, 1)
    return np.hypot(x - F32(p0[0]) - t * F32(ex), y - F32(p0[1]) - t * F32(ey))


def _hemipelvis(g: Grid, hip: HipShape, q: dict[str, float],
                midline: float) -> tuple[np.ndarray, np.ndarray]:
    """Acetabulum (cup with a dense roof), iliac wing, ischium, pubic rami and pubic body."""
    rh, cp, js = hip.head_r, q["cortex_pelvis"], hip.joint_space
    m = midline
    cort: list[np.ndarray] = []
    trab: list[np.ndarray] = []

    def shell(outer: np.ndarray, inner: np.ndarray) -> None:
        c, t = hollow(outer, inner)
        cort.append(c)
        trab.append(t)

    # Acetabular block around the head, open inferolaterally; the cavity is lined by the dense
    # subchondral roof (sourcil), the bright arc over the head.
    ac, aa, ab, ad, ang = (14.0, -17.0), rh + 8.0, rh + 3.0, rh + 6.0, -0.5
    blk = ellipsoid(g, ac, aa, ab, ad, ang)
    blk_in = ellipsoid(g, ac, aa - cp, ab - cp, ad - cp, ang)
    cav = ellipsoid(g, (0.0, 0.0), rh + js, rh + js, rh + js)
    cav_l = ellipsoid(g, (0.0, 0.0), rh + js + 2.0 * cp, rh + js + 2.0 * cp, rh + js + 2 * cp)
    inside = np.clip(blk_in / F32(4.0), 0.0, 1.0)
    cort.append(np.maximum(blk - blk_in, 0.0) + (cav_l - cav) * inside)
    trab.append(np.maximum(blk_in - cav_l, 0.0))
    # Iliac wing: a thin plate rising above the acetabulum (only its base is in a hip view).
    shell(ellipsoid(g, (2.0, -90.0), 52.0, 64.0, 10.0, -0.3),
          ellipsoid(g, (2.0, -90.0), 52.0 - cp, 64.0 - cp, 10.0 - cp, -0.3))
    # Ischium (a thick column under the acetabulum) and the pubic bone: a plate pierced by the
    # obturator foramen, whose rim is thickened cortex; the superior ramus runs to the symphysis.
    shell(ellipsoid(g, (34.0, 46.0), 15.0, 36.0, 13.0, -0.25),
          ellipsoid(g, (34.0, 46.0), 15.0 - cp, 36.0 - cp, 13.0 - cp, -0.25))
    fc, fa, fb, fang = (0.52 * m + 14.0, 50.0), 0.26 * m + 6.0, 19.0, 0.35
    plate = ellipsoid(g, (0.55 * m + 12.0, 46.0), 0.45 * m + 6.0, 38.0, 7.0, 0.25)
    plate_in = ellipsoid(g, (0.55 * m + 12.0, 46.0), 0.45 * m + 6.0 - cp, 38.0 - cp, 7.0 - cp,
                         0.25)
    hole = np.clip(ellipsoid(g, fc, fa, fb, 1.0, fang) * F32(4.0), 0.0, 1.0)
    rim = ellipsoid(g, fc, fa + 5.0, fb + 5.0, 3.0, fang) * (F32(1.0) - hole)
    keep = F32(1.0) - hole
    cort.append((plate - plate_in) * keep + rim)
    trab.append(plate_in * keep)
    shell(tube(g, (18.0, 2.0), (m - 16.0, 20.0), 11.0, 9.0),
          tube(g, (18.0, 2.0), (m - 16.0, 20.0), 11.0 - cp, 9.0 - cp))
    shell(ellipsoid(g, (m - 13.0, 32.0), 11.0, 24.0, 16.0, 0.1),
          ellipsoid(g, (m - 13.0, 32.0), 11.0 - cp, 24.0 - cp, 16.0 - cp, 0.1))
    # Pelvic brim (iliopectineal line): a thin ridge from the sacroiliac joint to the pubis.
    cort.append(tube(g, (m - 50.0, -70.0), (32.0, -6.0), 3.0, 3.0)
                + tube(g, (32.0, -6.0), (m - 18.0, 14.0), 3.0, 3.0))
    return np.maximum.reduce(cort), np.maximum.reduce(trab)


def spine_paths(g: Grid, hip_y: float, midline_x: float,
                cortex: float) -> tuple[np.ndarray, np.ndarray]:
    """Sacrum (with foramina) and the lowest lumbar vertebrae, for the pelvis view (image mm)."""
    m, h = midline_x, hip_y
    cort, trab = [], []
    for outer, inner in (
        (tube(g, (m, h - 125.0), (m, h - 25.0), 46.0, 12.0, 0.35),
         tube(g, (m, h - 125.0), (m, h - 25.0), 46.0 - cortex, 12.0 - cortex, 0.3)),
        (ellipsoid(g, (m, h - 152.0), 27.0, 14.0, 20.0),
         ellipsoid(g, (m, h - 152.0), 27.0 - cortex, 14.0 - cortex, 20.0 - cortex)),
        (ellipsoid(g, (m, h - 190.0), 26.0, 15.0, 20.0),
         ellipsoid(g, (m, h - 190.0), 26.0 - cortex, 15.0 - cortex, 20.0 - cortex)),
    ):
        c, t = hollow(outer, inner)
        cort.append(c)
        trab.append(t)
    holes = sum(ellipsoid(g, (m + s * 22.0, h - 112.0 + 20.0 * k), 4.5, 4.0, 8.0)
                for k in range(4) for s in (-1.0, 1.0))
    return np.maximum.reduce(cort), np.maximum(np.maximum.reduce(trab) - holes, 0.0)
