"""Procedural trunk films: lumbar/thoracic spine, chest PA, full-length spine, paediatric pelvis.

The full-length (scoliosis) film and the paediatric pelvis are the two cases the intended-use
policy must learn: both contain a pelvis with hips, neither is an adult hip film. Children's
pelvises differ in what is *not yet bone*: the triradiate cartilage (a Y-shaped lucency between
ilium, ischium and pubis), the femoral capital physis (a gap between a small ossified head
nucleus and the neck), the ischiopubic synchondrosis and, under ~4 years, no ossified greater
trochanter (ossification ages from Greulich–Pyle/Ogden atlases, rounded).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bmd_edge.synth.anatomy import ellipsoid, tube
from bmd_edge.synth.canvas import Canvas, column, polyline, sample_pose
from bmd_edge.synth.materials import MaterialMaps

F32 = np.float32
Point = tuple[float, float]


def _labels(c: Canvas, rng: np.random.Generator, kind: str, view: str, pelvis: bool,
            paed: bool) -> dict[str, object]:
    out: dict[str, object] = {"anatomy": kind, "view": view, "contains_pelvis": pelvis,
                              "paediatric": paed, "side": "both"}
    if rng.random() < 0.8:
        out["marker"] = "L" if c.pose.flip else "R"
    return out


def _inside(c: Canvas, p: Point, margin: float = 0.0) -> bool:
    """Is patient point p on the detector (at least `margin` of the width inside)?"""
    inv = np.linalg.inv(c.g.affine[:, :2])
    col, row = inv @ (np.array(p) - c.g.affine[:, 2])
    lo, hi = margin * c.n, (1.0 - margin) * c.n
    return bool(lo <= col <= hi and lo <= row <= hi)


# --- building blocks ---------------------------------------------------------------------------

def vertebra_ap(c: Canvas, p: Point, w: float, h: float, q: float, rt: float,
                tilt: float = 0.0) -> None:
    """AP vertebra: body (a cylinder side-on), pedicle rings, spinous and transverse processes."""
    ca, sa = math.cos(tilt), math.sin(tilt)
    def at(a: float, b: float) -> Point:
        return (p[0] + a * ca - b * sa, p[1] + a * sa + b * ca)
    ax = 90.0 + math.degrees(tilt)
    c.bone([column(c, p, w, h, 0.7, 1.2 * q, rt, tilt)], ax)
    post = [c.shell_ellipsoid(at(s * 0.68 * w, -0.3 * h), 0.22 * w, 0.32 * h, 0.45 * w, 1.4 * q,
                              rt) for s in (-1.0, 1.0)]
    post += [c.shell_ellipsoid(at(0.0, 0.55 * h), 0.14 * w, 0.55 * h, 0.7 * w, 1.2 * q, rt),
             c.shell_ellipsoid(at(0.0, 0.15 * h), 0.85 * w, 0.45 * h, 0.25 * w, 1.0 * q, rt)]
    post += [c.shell_tube(at(s * 0.8 * w, -0.2 * h), at(s * 1.9 * w, -0.35 * h), 0.22 * h,
                          0.18 * h, 1.0 * q, rt) for s in (-1.0, 1.0)]
    c.bone(post, ax)


def rib_cage(c: Canvas, top: float, n: int, step: float, half_w: float, q: float, rt: float,
             spine_x: list[float] | None = None) -> None:
    """PA ribs: posterior arcs out from the spine, anterior arcs back down towards the sternum."""
    for i in range(n):
        y0 = top + i * step
        x0 = spine_x[i] if spine_x else 0.0
        wf = half_w * (0.45 + 0.55 * math.sin(0.5 * math.pi * min((i + 1) / 6.0, 1.0)))
        for s in (-1.0, 1.0):
            post = [(x0 + s * 0.12 * wf, y0), (x0 + s * 0.45 * wf, y0 - 0.05 * wf),
                    (x0 + s * 0.8 * wf, y0 + 0.06 * wf), (x0 + s * 0.98 * wf, y0 + 0.3 * wf),
                    (x0 + s * wf, y0 + 0.55 * wf)]
            c.bone([polyline(c, post, 0.045 * half_w, 1.6 * q, rt, 0.8)], 0.0)
            ant = [(x0 + s * 0.97 * wf, y0 + 0.62 * wf), (x0 + s * 0.7 * wf, y0 + 0.75 * wf),
                   (x0 + s * 0.35 * wf, y0 + 0.9 * wf)]
            c.bone([polyline(c, ant, 0.035 * half_w, 0.8 * q, rt * 0.4, 0.6)], 0.0)


def lungs(c: Canvas, centre: Point, half_w: float, height: float, heart: bool = True) -> None:
    """Gas in both lungs (minus the heart shadow) and the trachea."""
    cx, cy = centre
    gas = sum(ellipsoid(c.g, (cx + s * 0.48 * half_w, cy), 0.42 * half_w, 0.5 * height,
                        0.45 * half_w) for s in (-1.0, 1.0))
    if heart:
        gas = gas - 1.4 * ellipsoid(c.g, (cx + 0.15 * half_w, cy + 0.28 * height),
                                    0.45 * half_w, 0.24 * height, 0.4 * half_w)
    gas = gas + tube(c.g, (cx, cy - 0.8 * height), (cx, cy - 0.3 * height), 8.0, 8.0)
    c.add_gas(np.maximum(gas, 0.0))


def pelvis(c: Canvas, k: float, q: float, rt: float, neck_deg: float,
           age: float | None = None, origin: Point = (0.0, 0.0)) -> None:
    """AP pelvis with both proximal femora; `age` (years) < 16 gives the open growth plates.

    Frame: origin midway between the femoral-head centres, x to the image right, y down.
    """
    ox, oy = origin
    child = age is not None and age < 16
    h = 95.0 * k
    rh = 24.0 * k
    js = (4.0 if not child else 6.0) * k
    for s in (-1.0, 1.0):
        def P(a: float, b: float, s: float = s) -> Point:
            return (ox + s * a, oy + b)
        cup = [ellipsoid(c.g, P(h, 0), rh + js, rh + js, rh + js)]
        # Iliac wing (a thin fan, long axis rising laterally), acetabular roof over the head,
        # ischium below it, pubic plate with the obturator foramen, superior ramus, pubic body.
        parts = [c.shell_ellipsoid(P(72 * k, -78 * k), 60 * k, 44 * k, 6 * k, 1.3 * q, 0.8 * rt,
                                   -s * 0.55),
                 c.shell_ellipsoid(P(h - 10 * k, -20 * k), 28 * k, 19 * k, 22 * k, 1.4 * q, rt,
                                   -s * 0.2),
                 c.shell_ellipsoid(P(h - 28 * k, 38 * k), 13 * k, 28 * k, 12 * k, 1.4 * q, rt,
                                   -s * 0.25),
                 c.shell_ellipsoid(P(0.5 * h + 10 * k, 45 * k), 0.45 * h, 36 * k, 7 * k, 1.3 * q,
                                   rt, s * 0.25),
                 c.shell_tube(P(h - 22 * k, 3 * k), P(16 * k, 22 * k), 10 * k, 9 * k, 1.4 * q,
                              rt),
                 c.shell_ellipsoid(P(12 * k, 32 * k), 11 * k, 24 * k, 16 * k, 1.4 * q, rt, 0.1)]
        holes = cup + [ellipsoid(c.g, P(0.5 * h + 12 * k, 50 * k), 0.26 * h, 19 * k, 20 * k,
                                 s * 0.35)]
        gaps = []
        if child:
            tri = P(h - 24 * k, -4 * k)
            gaps = [c.segment_band(tri, P(h - 30 * k, -24 * k), 1.6 * k),
                    c.segment_band(tri, P(h - 27 * k, 16 * k), 1.6 * k),
                    c.segment_band(tri, P(h - 42 * k, 4 * k), 1.6 * k)]
            if age is not None and age < 9:   # ischiopubic synchondrosis not yet fused
                gaps.append(c.segment_band(P(0.5 * h - 10 * k, 78 * k),
                                           P(0.5 * h + 4 * k, 86 * k), 2.5 * k))
        c.bone(parts, 90.0, holes=holes, gaps=gaps)
        _femur(c, P, s, h, rh, k, q, rt, neck_deg, age if child else None)
    sac = [c.shell_tube((ox, oy - 130 * k), (ox, oy - 25 * k), 44 * k, 12 * k, 1.2 * q, rt,
                        0.25)]
    foramina = [ellipsoid(c.g, (ox + s * 22 * k, oy + (-112 + 20 * j) * k), 4.5 * k, 4 * k,
                          8 * k) for j in range(4) for s in (-1.0, 1.0)]
    c.bone(sac, 90.0, holes=foramina)


def _femur(c: Canvas, P: Callable[[float, float], Point], s: float, h: float, rh: float,
           k: float, q: float, rt: float, neck_deg: float, age: float | None) -> None:
    """Proximal femur; in a child the head is a small ossified nucleus across an open physis.

    `neck_deg` is the neck's angle below the horizontal (≈ 40–50°: neck-shaft angle ≈ 130°).
    """
    nsa = math.radians(90.0 - neck_deg)
    neck_end = P(h + 40 * k * math.sin(nsa), 40 * k * math.cos(nsa))
    shaft = [P(h + 48 * k, 50 * k), P(h + 58 * k, 420 * k)]         
    head_c = P(h, 0)                                                 
    parts = [c.shell_tube(head_c, neck_end, 0.8 * rh, 17 * k, 1.2 * q, rt),
             c.shell_tube(shaft[0], shaft[1], 15 * k, 14 * k, 4.0 * q, 0.02)]
    if age is None or age >= 4:
        parts.append(c.shell_ellipsoid(P(h + 52 * k, 28 * k), 13 * k, 20 * k, 16 * k,
                                       1.2 * q, rt, -s * 0.2))
    parts.append(c.shell_ellipsoid(P(h + 30 * k, 68 * k), 6 * k, 9 * k, 7 * k, 1.0 * q, rt))
    parts.append(c.shell_tube(neck_end, shaft[0], 20 * k, 16 * k, 1.3 * q, rt))
    ax = 90.0 - s * 10.0
    if age is None:
        parts.append(c.shell_ellipsoid(head_c, rh, rh, rh, 1.1 * q, rt))
        c.bone(parts, ax)
        return
    # Open capital physis: the neck stops short of the head; the nucleus grows with age.
    d = (neck_end[0] - head_c[0], neck_end[1] - head_c[1])
    n = math.hypot(*d)
    u = (d[0] / n, d[1] / n)
    physis = (head_c[0] + 0.35 * rh * u[0], head_c[1] + 0.35 * rh * u[1])
    gap = c.band(physis, math.degrees(math.atan2(u[1], u[0])), 1.5 * k + 0.8, 1.2 * rh)
    keep_neck = np.clip(((c.g.x - F32(physis[0])) * F32(u[0])
                         + (c.g.y - F32(physis[1])) * F32(u[1])) / F32(0.5) + 0.5, 0.0, 1.0)
    c.bone(parts, ax, gaps=[gap, F32(1.0) - keep_neck])
    r_nuc = rh * float(np.clip(0.25 + 0.07 * age, 0.25, 0.85))
    nuc_c = (head_c[0] - 0.25 * rh * u[0], head_c[1] - 0.25 * rh * u[1])
    c.bone([c.shell_ellipsoid(nuc_c, r_nuc * 1.15, r_nuc * 0.8, r_nuc, 0.8, rt,
                              math.atan2(u[1], u[0]) + math.pi / 2)], ax)


# --- kinds -------------------------------------------------------------------------------------

def _quality(rng: np.random.Generator) -> tuple[float, float]:
    q = float(rng.uniform(0.65, 1.2))
    return q, 0.18 + 0.14 * q


def spine(rng: np.random.Generator, size: int) -> MaterialMaps:
    """Lumbar AP, lumbar lateral or thoracic AP."""
    u = rng.random()
    view = "AP lumbar" if u < 0.45 else ("lateral lumbar" if u < 0.75 else "AP thoracic")
    k = float(rng.normal(1.0, 0.06))
    q, rt = _quality(rng)
    centre = (0.0, 0.0) if view != "AP thoracic" else (0.0, -100.0 * k)
    c = Canvas(size, sample_pose(rng, 290.0 * k, centre, rot_sd=3.0),
               int(rng.integers(2**31 - 1)))
    thick = float(rng.uniform(0.85, 1.3))
    if view == "AP lumbar":
        for i in range(5):
            vertebra_ap(c, (0.0, (-100 + 42 * i) * k), (21 + 1.5 * i) * k, 14 * k, q, rt,
                        float(rng.normal(0, 0.03)))
        vertebra_ap(c, (0.0, -142 * k), 20 * k, 13 * k, q, rt)
        rib_cage(c, -300 * k, 5, 30 * k, 150 * k, q, rt)
        pelvis(c, k, q, rt, float(rng.uniform(40, 50)), origin=(0.0, 220 * k))
        _bowel(c, rng, k, (0.0, 20.0 * k))
        c.add_soft(tube(c.g, (0, -400 * k), (0, 400 * k), 170 * k, 170 * k, 0.65 * thick))
    elif view == "lateral lumbar":
        for i in range(6):
            t = (i - 2.5) / 3.0
            p = (-18 * k * (1 - t * t), (-115 + 42 * i) * k)
            tilt = -0.25 * t
            c.bone([column(c, p, 17 * k, 14 * k, 1.3, 1.2 * q, rt, tilt)], 90.0)
            post = (p[0] + 38 * k, p[1] - 2 * k)
            c.bone([c.shell_tube((p[0] + 15 * k, p[1] - 6 * k), post, 5 * k, 6 * k, 1.4 * q, rt),
                    c.shell_ellipsoid((post[0] + 14 * k, post[1] + 6 * k), 15 * k, 7 * k,
                                      5 * k, 1.2 * q, rt, 0.2),
                    c.shell_ellipsoid(post, 9 * k, 12 * k, 18 * k, 1.2 * q, rt)], 0.0)
        c.bone([c.shell_tube((10 * k, 140 * k), (60 * k, 230 * k), 30 * k, 12 * k, 1.4 * q, rt,
                             1.2)], 60.0)
        c.bone([c.shell_ellipsoid((20 * k, 150 * k), 80 * k, 60 * k, 5 * k, 1.3 * q, rt)], 90.0)
        _bowel(c, rng, k, (-90.0 * k, 20.0 * k))
        c.add_soft(tube(c.g, (-60 * k, -400 * k), (-60 * k, 400 * k), 150 * k, 150 * k,
                         1.1 * thick))
    else:
        for i in range(10):
            vertebra_ap(c, (0.0, (-230 + 28 * i) * k), (14 + 0.8 * i) * k, 10 * k, q, rt)
        rib_cage(c, -245 * k, 12, 28 * k, 150 * k, q, rt)
        lungs(c, (0.0, -90 * k), 150 * k, 260 * k)
        c.add_soft(tube(c.g, (0, -400 * k), (0, 400 * k), 160 * k, 160 * k, 0.65 * thick))
    return c.finish(_labels(c, rng, "spine", view, _hips_visible(c, k, 220 * k)
                            if view == "AP lumbar" else False, False),
                    float(rng.uniform(0.2, 0.45)))


def _hips_visible(c: Canvas, k: float, y: float) -> bool:
    return _inside(c, (95 * k, y)) or _inside(c, (-95 * k, y))


def _bowel(c: Canvas, rng: np.random.Generator, k: float, centre: Point) -> None:
    for _ in range(int(rng.poisson(5))):
        p = (centre[0] + float(rng.uniform(-110, 110)) * k,
             centre[1] + float(rng.uniform(-80, 150)) * k)
        r = float(rng.uniform(8, 28)) * k
        c.add_gas(ellipsoid(c.g, p, r, float(rng.uniform(0.4, 0.9)) * r, 0.5 * r,
                            float(rng.uniform(0, math.pi))))


def chest(rng: np.random.Generator, size: int) -> MaterialMaps:
    """PA chest: lungs, heart, ribs, clavicles, scapulae, thoracic spine, breasts."""
    k = float(rng.normal(1.0, 0.06))
    q, rt = _quality(rng)
    c = Canvas(size, sample_pose(rng, 420.0 * k, (0.0, -20.0 * k), rot_sd=2.5),
               int(rng.integers(2**31 - 1)))
    for i in range(12):
        vertebra_ap(c, (0.0, (-210 + 26 * i) * k), (13 + 0.9 * i) * k, 9 * k, q, rt)
    rib_cage(c, -215 * k, 11, 27 * k, 150 * k, q, rt)
    for s in (-1.0, 1.0):
        c.bone([polyline(c, [(s * 18 * k, -200 * k), (s * 70 * k, -215 * k),
                             (s * 130 * k, -222 * k), (s * 165 * k, -230 * k)], 8.5 * k,
                         2.0 * q, rt)], 0.0)
        c.bone([c.shell_ellipsoid((s * 155 * k, -140 * k), 38 * k, 80 * k, 6 * k, 1.0 * q, rt,
                                  -s * 0.2)], 90.0)
        c.bone([c.shell_ellipsoid((s * 195 * k, -215 * k), 25 * k, 26 * k, 25 * k, 1.1 * q,
                                  rt)], 90.0)
    lungs(c, (0.0, -75 * k), 150 * k, 280 * k)
    thick = float(rng.uniform(0.85, 1.3))
    soft = [tube(c.g, (0, -240 * k), (0, 400 * k), 160 * k, 165 * k, 0.65 * thick),
            tube(c.g, (0, -420 * k), (0, -200 * k), 60 * k, 60 * k),
            tube(c.g, (-190 * k, -230 * k), (190 * k, -230 * k), 45 * k, 45 * k, 1.2)]
    if rng.random() < 0.5:
        soft += [ellipsoid(c.g, (s * 85 * k, 120 * k), 65 * k, 55 * k, 50 * k)
                 for s in (-1.0, 1.0)]
    c.add_soft(np.maximum.reduce(soft))
    return c.finish(_labels(c, rng, "chest", "PA", False, False), float(rng.uniform(0.2, 0.45)))


def long_spine(rng: np.random.Generator, size: int) -> MaterialMaps:
    """Full-length AP spine (scoliosis survey): C3 to the proximal femora, pelvis included."""
    paed = bool(rng.random() < 0.4)
    age = float(rng.uniform(10.0, 15.0)) if paed else None
    k = float(rng.normal(1.0, 0.05)) * (0.88 if paed else 1.0)
    q, rt = _quality(rng)
    c = Canvas(size, sample_pose(rng, 920.0 * k, (0.0, 20.0 * k), rot_sd=1.5, shift_sd=0.02),
               int(rng.integers(2**31 - 1)))
    neck = float(rng.uniform(40, 50))
    amp = float(rng.choice([0.0, 1.0], p=[0.25, 0.75])) * float(rng.uniform(10, 45)) * k
    phase = float(rng.uniform(0, 2 * math.pi))
    ys = [(-400 + 21 * i) * k for i in range(5)] + [(-295 + 24 * i) * k for i in range(12)] \
        + [(-5 + 36 * i) * k for i in range(5)]
    xs = [amp * math.sin(math.pi * (y + 400 * k) / (560 * k) * 1.3 + phase)
          - amp * math.sin(phase) for y in ys]
    for i, (x, y) in enumerate(zip(xs, ys)):
        w, h = ((10 + 0.4 * i) * k, 7 * k) if i < 5 else (((12 + 0.8 * (i - 5)) * k, 9.5 * k)
                                                        if i < 17 else ((21 + i - 17) * k,
                                                                        13 * k))
        vertebra_ap(c, (x, y), w, h, q, rt, float(np.gradient(xs)[i] / (22 * k)) * 0.6)
    rib_cage(c, -305 * k, 12, 24 * k, 140 * k, q, rt, spine_x=xs[5:17])
    lungs(c, (xs[10], -190 * k), 140 * k, 260 * k)
    pelvis(c, k, q, rt, neck, age=age, origin=(0.0, 300 * k))
    for s in (-1.0, 1.0):
        c.bone([polyline(c, [(s * 15 * k, -310 * k), (s * 80 * k, -325 * k),
                             (s * 150 * k, -330 * k)], 8 * k, 2.0 * q, rt)], 0.0)
    c.bone([c.shell_ellipsoid((0, -520 * k), 80 * k, 95 * k, 85 * k, 6 * k, 0.3)], 90.0)
    _bowel(c, rng, k, (0.0, 130.0 * k))
    thick = float(rng.uniform(0.8, 1.25))
    c.add_soft(np.maximum.reduce([
        tube(c.g, (0, -280 * k), (0, 330 * k), 150 * k, 170 * k, 0.6 * thick),
        tube(c.g, (0, -460 * k), (0, -280 * k), 55 * k, 55 * k),
        ellipsoid(c.g, (0, -520 * k), 90 * k, 105 * k, 95 * k),
        tube(c.g, (-100 * k, 330 * k), (-110 * k, 600 * k), 80 * k, 65 * k),
        tube(c.g, (100 * k, 330 * k), (110 * k, 600 * k), 80 * k, 65 * k),
        ellipsoid(c.g, (0, -300 * k), 190 * k, 55 * k, 60 * k)]))
    return c.finish(_labels(c, rng, "long_spine", "AP full-length", True, paed),
                    float(rng.uniform(0.2, 0.45)))


def paed_pelvis(rng: np.random.Generator, size: int) -> MaterialMaps:
    """AP pelvis of a child aged 1–12: open triradiate cartilage and capital physes."""
    age = float(rng.uniform(1.0, 12.0))
    k = 0.5 + 0.042 * age
    q, rt = _quality(rng)
    q *= 0.9
    c = Canvas(size, sample_pose(rng, 380.0 * k, (0.0, -10.0 * k), rot_sd=3.0),
               int(rng.integers(2**31 - 1)))
    pelvis(c, k, q, rt, float(rng.uniform(50, 60)), age=age)  # neck-shaft ≈ 145° in children
    vertebra_ap(c, (0.0, -165 * k), 24 * k, 13 * k, q, rt)
    vertebra_ap(c, (0.0, -205 * k), 23 * k, 13 * k, q, rt)
    _bowel(c, rng, k, (0.0, -120.0 * k))
    if rng.random() < 0.3:   # lead gonad shield
        c.metal += ellipsoid(c.g, (0.0, 60 * k), 28 * k, 32 * k, 0.5)
    thick = float(rng.uniform(0.8, 1.25))
    c.add_soft(np.maximum.reduce([
        tube(c.g, (0, -400 * k), (0, 60 * k), 190 * k, 195 * k, 0.45 * thick),
        tube(c.g, (-100 * k, 40 * k), (-110 * k, 600 * k), 85 * k, 65 * k, 0.9 * thick),
        tube(c.g, (100 * k, 40 * k), (110 * k, 600 * k), 85 * k, 65 * k, 0.9 * thick)]))
    labels = _labels(c, rng, "paed_pelvis", "AP", True, True)
    labels["age_years"] = round(age, 1)
    return c.finish(labels, float(rng.uniform(0.2, 0.4)))
