"""Procedural extremities: knee, shoulder, elbow, hand/wrist, foot/ankle (one canonical right side).

Sizes are adult means from anatomy atlases (mm); every case scales them by a body-size factor
and jitters angles. Long bones have a thick-walled shaft around a marrow canal and thin-walled,
cancellous ends; paediatric cases cut a growth-plate gap (≈ 2–4 mm of unossified cartilage)
between metaphysis and epiphysis. Soft tissue is an envelope of capsules around the bones.
"""

from __future__ import annotations

import math

import numpy as np

from bmd_edge.synth.anatomy import ellipsoid, tube
from bmd_edge.synth.canvas import Canvas, Part, polyline, sample_pose
from bmd_edge.synth.materials import MaterialMaps

F32 = np.float32
MARROW = 0.02          # g/cm³ of mineral left in a diaphyseal marrow canal


def _quality(rng: np.random.Generator, paediatric: bool) -> tuple[float, float]:
    """(cortex scale, cancellous mineral g/cm³): osteoporotic to young-adult bone."""
    q = float(rng.uniform(0.65, 1.2)) * (0.8 if paediatric else 1.0)
    return q, 0.12 + 0.12 * q


def _finish(c: Canvas, rng: np.random.Generator, kind: str, view: str, paediatric: bool,
            fat: tuple[float, float] = (0.15, 0.45)) -> MaterialMaps:
    labels: dict[str, object] = {"anatomy": kind, "view": view, "contains_pelvis": False,
                                 "paediatric": paediatric,
                                 "side": "left" if c.pose.flip else "right"}
    if rng.random() < 0.8:
        labels["marker"] = "L" if c.pose.flip else "R"
    return c.finish(labels, float(rng.uniform(*fat)))


def _physis(c: Canvas, paediatric: bool, p: tuple[float, float], axis: float,
            width: float, reach: float = 40.0) -> list[np.ndarray]:
    return [c.band(p, axis, 0.5 * width, reach)] if paediatric else []


# --- knee ------------------------------------------------------------------------------------

def knee(rng: np.random.Generator, size: int) -> MaterialMaps:
    """AP (condyles, plateau, fibular head, patella over the femur) or lateral (flexed 5–35°)."""
    view = "AP" if rng.random() < 0.6 else "lateral"
    paed = bool(rng.random() < 0.15)
    s = float(rng.normal(1.0, 0.06)) * (0.75 if paed else 1.0)
    c = Canvas(size, sample_pose(rng, 290.0 * s, (0.0, 10.0 * s), rot_sd=5.0),
               int(rng.integers(2**31 - 1)))
    q, rt = _quality(rng, paed)
    pw = float(rng.uniform(2.0, 3.5))
    k = s   # every length below × k
    if view == "AP":
        fib = 36.0 * k
        c.bone([c.shell_tube((0, -300 * k), (0, -80 * k), 14 * k, 16 * k, 4.5 * q, MARROW),
                c.shell_tube((0, -115 * k), (0, -80 * k), 15.5 * k, 18 * k, 1.4 * q, rt),
                c.shell_tube((0, -82 * k), (0, -58 * k), 18 * k, 25 * k, 1.2 * q, rt),
                c.shell_tube((0, -60 * k), (0, -38 * k), 25 * k, 32 * k, 1.2 * q, rt),
                c.shell_ellipsoid((-19 * k, -12 * k), 19 * k, 20 * k, 30 * k, 1.3 * q, rt),
                c.shell_ellipsoid((19 * k, -13 * k), 18 * k, 19 * k, 30 * k, 1.3 * q, rt)],
               90.0, gaps=_physis(c, paed, (0, -32 * k), 90.0, pw))
        c.bone([c.shell_ellipsoid((2 * k, -28 * k), 21 * k, 24 * k, 11 * k, 1.4 * q, rt)], 90.0)
        c.bone([c.shell_ellipsoid((0, 23 * k), 38 * k, 11 * k, 27 * k, 1.3 * q, rt),
                c.shell_ellipsoid((-5 * k, 13 * k), 5 * k, 6 * k, 8 * k, 1.0, rt),
                c.shell_ellipsoid((6 * k, 13 * k), 5 * k, 6 * k, 8 * k, 1.0, rt),
                c.shell_tube((0, 25 * k), (0, 48 * k), 34 * k, 26 * k, 1.3 * q, rt),
                c.shell_tube((0, 45 * k), (0, 75 * k), 26 * k, 19 * k, 1.3 * q, rt),
                c.shell_tube((0, 72 * k), (0, 115 * k), 19 * k, 16 * k, 1.5 * q, rt),
                c.shell_tube((0, 95 * k), (1 * k, 320 * k), 15 * k, 13 * k, 4.5 * q, MARROW)],
               90.0, gaps=_physis(c, paed, (0, 38 * k), 90.0, pw))
        c.bone([c.shell_ellipsoid((fib, 45 * k), 10 * k, 12 * k, 10 * k, 1.0 * q, rt),
                c.shell_tube((fib, 48 * k), (fib - 6 * k, 320 * k), 7 * k, 6 * k, 2.0 * q, 0.1)],
               90.0, gaps=_physis(c, paed, (fib, 37 * k), 90.0, pw, 12.0))
        depth = 1.0
    else:
        flex = math.radians(float(rng.uniform(5.0, 35.0)))
        d = (math.sin(flex), math.cos(flex))          # tibial axis, flexed backwards (+x)
        def tib(a: float, b: float) -> tuple[float, float]:   # a across, b along the tibia
            return (a * d[1] + b * d[0], -a * d[0] + b * d[1])
        ax_t = math.degrees(math.atan2(d[1], d[0]))
        c.bone([c.shell_tube((0, -300 * k), (0, -70 * k), 14 * k, 16 * k, 4.5 * q, MARROW),
                c.shell_tube((0, -90 * k), (6 * k, -30 * k), 17 * k, 27 * k, 1.2 * q, rt),
                c.shell_ellipsoid((9 * k, -12 * k), 29 * k, 25 * k, 38 * k, 1.3 * q, rt),
                c.shell_ellipsoid((12 * k, -10 * k), 27 * k, 24 * k, 34 * k, 1.3 * q, rt)],
               90.0, gaps=_physis(c, paed, (3 * k, -38 * k), 100.0, pw))
        c.bone([c.shell_ellipsoid((-31 * k, -26 * k), 11 * k, 23 * k, 20 * k, 1.4 * q, rt,
                                  -0.25)], 80.0)
        c.bone([c.shell_ellipsoid(tib(0, 23 * k), 30 * k, 11 * k, 38 * k, 1.3 * q, rt,
                                  -flex),
                c.shell_ellipsoid(tib(-24 * k, 50 * k), 8 * k, 13 * k, 14 * k, 1.2 * q, rt,
                                  -flex),
                c.shell_tube(tib(0, 25 * k), tib(-3 * k, 110 * k), 29 * k, 17 * k, 1.3 * q, rt),
                c.shell_tube(tib(-3 * k, 100 * k), tib(-2 * k, 330 * k), 15 * k, 13 * k,
                             4.5 * q, MARROW, 1.2)],
               ax_t, gaps=_physis(c, paed, tib(0, 38 * k), ax_t, pw))
        c.bone([c.shell_ellipsoid(tib(17 * k, 47 * k), 10 * k, 11 * k, 10 * k, 1.0 * q, rt),
                c.shell_tube(tib(17 * k, 50 * k), tib(12 * k, 330 * k), 7 * k, 6 * k,
                             2.0 * q, 0.1)], ax_t)
        depth = 1.15
    thick = float(rng.uniform(0.85, 1.25)) * k
    c.add_soft(np.maximum.reduce([
        tube(c.g, (0, -320 * k), (0, -60 * k), 72 * thick, 58 * thick, depth),
        tube(c.g, (0, -70 * k), (0, 45 * k), 60 * thick, 56 * thick, depth),
        tube(c.g, (0, 40 * k), (0, 350 * k), 55 * thick, 38 * thick, depth)]))
    return _finish(c, rng, "knee", view, paed)


# --- shoulder --------------------------------------------------------------------------------

def shoulder(rng: np.random.Generator, size: int) -> MaterialMaps:
    """AP shoulder: humeral head in the glenoid, acromion, clavicle, scapula, ribs and lung."""
    s = float(rng.normal(1.0, 0.06))
    c = Canvas(size, sample_pose(rng, 280.0 * s, (-40.0 * s, 30.0 * s), rot_sd=6.0),
               int(rng.integers(2**31 - 1)))
    q, rt = _quality(rng, False)
    k = s
    abd = math.radians(float(rng.uniform(-5.0, 25.0)))       # arm abduction
    dh = (math.sin(abd) + 0.08, math.cos(abd))
    def hum(b: float) -> tuple[float, float]:
        return (30 * k + b * dh[0], 8 * k + b * dh[1])
    ax_h = math.degrees(math.atan2(dh[1], dh[0]))
    c.bone([c.shell_ellipsoid((28 * k, 0), 25 * k, 26 * k, 25 * k, 1.1 * q, rt),
            c.shell_ellipsoid((47 * k, -4 * k), 13 * k, 18 * k, 16 * k, 1.1 * q, rt),
            c.shell_tube(hum(10 * k), hum(75 * k), 24 * k, 14 * k, 1.3 * q, rt),
            c.shell_tube(hum(65 * k), hum(330 * k), 14 * k, 12 * k, 3.5 * q, MARROW)], ax_h)
    # Scapula: glenoid, neck, a thin body, the lateral border, spine + acromion, coracoid.
    c.bone([c.shell_ellipsoid((-2 * k, 2 * k), 8 * k, 20 * k, 14 * k, 1.5 * q, rt),
            c.shell_ellipsoid((-45 * k, 70 * k), 42 * k, 90 * k, 5 * k, 1.0 * q, rt, 0.25),
            c.shell_tube((-4 * k, 22 * k), (-30 * k, 170 * k), 6 * k, 5 * k, 1.5 * q, rt),
            c.shell_tube((-115 * k, 25 * k), (15 * k, -30 * k), 7 * k, 9 * k, 1.5 * q, rt, 0.8),
            c.shell_ellipsoid((32 * k, -38 * k), 24 * k, 9 * k, 11 * k, 1.3 * q, rt, 0.1),
            c.shell_ellipsoid((-10 * k, -20 * k), 9 * k, 12 * k, 10 * k, 1.2 * q, rt)], 70.0)
    c.bone([polyline(c, [(-210 * k, -85 * k), (-140 * k, -70 * k), (-70 * k, -62 * k),
                         (-20 * k, -52 * k), (22 * k, -48 * k)], 8.5 * k, 2.0 * q, rt)], 0.0)
    for i in range(5):
        y0 = (-10 + 42 * i) * k
        c.bone([polyline(c, [(-250 * k, y0 - 25 * k), (-185 * k, y0 - 18 * k),
                             (-130 * k, y0 - 2 * k), (-90 * k, y0 + 22 * k),
                             (-65 * k, y0 + 52 * k)], 5 * k, 1.2 * q, 0.12, 0.8)], 20.0)
    c.add_gas(ellipsoid(c.g, (-200 * k, 90 * k), 120 * k, 190 * k, 60 * k))
    thick = float(rng.uniform(0.85, 1.3))
    c.add_soft(np.maximum.reduce([
        tube(c.g, (-190 * k, -300 * k), (-190 * k, 400 * k), 170 * k, 170 * k, 0.65 * thick),
        ellipsoid(c.g, (25 * k, 15 * k), 70 * k * thick, 95 * k, 62 * k * thick),
        tube(c.g, hum(40 * k), hum(380 * k), 55 * k * thick, 45 * k * thick),
        tube(c.g, (-170 * k, -300 * k), (-60 * k, -60 * k), 60 * k, 60 * k)]))
    return _finish(c, rng, "shoulder", "AP", False)


# --- elbow -----------------------------------------------------------------------------------

def elbow(rng: np.random.Generator, size: int) -> MaterialMaps:
    """AP (extended) or lateral (flexed 70–120°): distal humerus, radial head, olecranon."""
    view = "AP" if rng.random() < 0.45 else "lateral"
    s = float(rng.normal(1.0, 0.06))
    c = Canvas(size, sample_pose(rng, 230.0 * s, (0.0, 0.0), rot_sd=10.0),
               int(rng.integers(2**31 - 1)))
    q, rt = _quality(rng, False)
    k = s
    if view == "AP":
        c.bone([c.shell_tube((0, -300 * k), (0, -70 * k), 11 * k, 12 * k, 3.5 * q, MARROW),
                c.shell_tube((0, -80 * k), (0, -26 * k), 14 * k, 28 * k, 1.2 * q, rt, 0.55),
                c.shell_ellipsoid((-8 * k, -8 * k), 16 * k, 11 * k, 15 * k, 1.2 * q, rt),
                c.shell_ellipsoid((15 * k, -10 * k), 11 * k, 11 * k, 14 * k, 1.2 * q, rt),
                c.shell_ellipsoid((-31 * k, -20 * k), 9 * k, 8 * k, 9 * k, 1.1 * q, rt),
                c.shell_ellipsoid((29 * k, -22 * k), 5 * k, 8 * k, 7 * k, 1.1 * q, rt)], 90.0,
               holes=[ellipsoid(c.g, (0, -30 * k), 11 * k, 9 * k, 6 * k)])
        c.bone([c.shell_ellipsoid((-6 * k, 5 * k), 14 * k, 10 * k, 14 * k, 1.2 * q, rt),
                c.shell_tube((-8 * k, 12 * k), (-22 * k, 300 * k), 11 * k, 7 * k, 2.5 * q, 0.1)],
               95.0)
        c.bone([c.shell_ellipsoid((15 * k, 10 * k), 11 * k, 5 * k, 11 * k, 1.0 * q, rt),
                c.shell_tube((15 * k, 14 * k), (18 * k, 42 * k), 7 * k, 7 * k, 1.5 * q, rt),
                c.shell_tube((18 * k, 40 * k), (30 * k, 300 * k), 8 * k, 10 * k, 2.5 * q, 0.1)],
               87.0)
        c.add_soft(np.maximum.reduce([
            tube(c.g, (0, -320 * k), (0, 0), 42 * k, 40 * k),
            tube(c.g, (0, 0), (10 * k, 320 * k), 42 * k, 30 * k, 0.8)]))
    else:
        flex = math.radians(float(rng.uniform(70.0, 120.0)))
        d = (-math.sin(flex), -math.cos(flex))   # forearm direction (anterior = −x)
        j = (6 * k, 0.0)
        def fa(b: float, a: float = 0.0) -> tuple[float, float]:
            return (j[0] + b * d[0] - a * d[1], j[1] + b * d[1] + a * d[0])
        ax_f = math.degrees(math.atan2(d[1], d[0]))
        c.bone([c.shell_tube((0, -300 * k), (0, -40 * k), 11 * k, 13 * k, 3.5 * q, MARROW),
                c.shell_ellipsoid((2 * k, -18 * k), 14 * k, 22 * k, 22 * k, 1.2 * q, rt),
                c.shell_ellipsoid(j, 13 * k, 13 * k, 20 * k, 1.5 * q, rt)], 90.0)
        c.bone([c.shell_ellipsoid((18 * k, -4 * k), 10 * k, 14 * k, 11 * k, 1.2 * q, rt),
                c.shell_tube(fa(-6 * k, -12 * k), fa(40 * k, -10 * k), 12 * k, 9 * k, 1.4 * q,
                             rt),
                c.shell_tube(fa(30 * k, -10 * k), fa(260 * k, -8 * k), 9 * k, 6 * k, 2.5 * q,
                             0.1)], ax_f)
        c.bone([c.shell_ellipsoid(fa(14 * k, 8 * k), 6 * k, 11 * k, 11 * k, 1.0 * q, rt,
                                  math.radians(ax_f)),
                c.shell_tube(fa(16 * k, 8 * k), fa(260 * k, 6 * k), 7 * k, 10 * k, 2.5 * q,
                             0.1)], ax_f)
        c.add_soft(np.maximum.reduce([
            tube(c.g, (0, -320 * k), (4 * k, 0), 44 * k, 42 * k),
            tube(c.g, fa(0), fa(320 * k), 40 * k, 30 * k, 0.85)]))
    return _finish(c, rng, "elbow", view, False)


# --- hand and wrist --------------------------------------------------------------------------

def _hand(c: Canvas, rng: np.random.Generator, k: float, paed: bool) -> None:
    """PA hand: distal radius/ulna, 8 carpals, 5 metacarpals, 14 phalanges, soft tissue."""
    q, rt = _quality(rng, paed)
    rt = rt + 0.05
    pw = float(rng.uniform(1.5, 2.5))
    c.bone([c.shell_tube((-8 * k, 200 * k), (-10 * k, 70 * k), 11 * k, 16 * k, 2.5 * q, MARROW),
            c.shell_ellipsoid((-10 * k, 62 * k), 19 * k, 9 * k, 12 * k, 1.0 * q, rt),
            c.shell_ellipsoid((-27 * k, 58 * k), 5 * k, 8 * k, 7 * k, 1.0 * q, rt)], -90.0,
           gaps=_physis(c, paed, (-10 * k, 72 * k), -90.0, pw, 25.0))
    c.bone([c.shell_tube((22 * k, 200 * k), (20 * k, 72 * k), 7 * k, 9 * k, 2.2 * q, MARROW),
            c.shell_ellipsoid((20 * k, 68 * k), 9 * k, 8 * k, 9 * k, 1.0 * q, rt)], -90.0,
           gaps=_physis(c, paed, (20 * k, 74 * k), -90.0, pw, 12.0))
    carpals = [((-16, 46), 7.5, 12, 0.6), ((0, 48), 8, 8, 0.0), ((13, 47), 6, 7, 0.0),
               ((16, 42), 5, 5, 0.0), ((-22, 30), 8, 8, 0.3), ((-10, 29), 6, 7, 0.0),
               ((2, 29), 7, 11, 0.0), ((14, 31), 8, 10, 0.2)]
    shrink = 0.7 if paed else 1.0
    for (cx, cy), a, b, ang in carpals:
        c.bone([c.shell_ellipsoid((cx * k, cy * k), a * k * shrink, b * k * shrink,
                                  8 * k * shrink, 0.8, rt, ang)], -90.0)
    spread = math.radians(float(rng.uniform(2.0, 9.0)))
    bases = [(-9, 17), (1, 16), (10, 17), (18, 19)]
    mc_len = [66, 62, 56, 52]
    phal = [(40, 24, 17), (45, 28, 18), (42, 26, 18), (33, 19, 16)]
    soft = [tube(c.g, (0, 22 * k), (4 * k, -36 * k), 40 * k, 42 * k, 0.35),
            tube(c.g, (0, 40 * k), (0, 220 * k), 32 * k, 33 * k, 0.6)]
    for f, ((bx, by), ml, (p1, p2, p3)) in enumerate(zip(bases, mc_len, phal)):
        a = -math.pi / 2 + (f - 1.5) * spread + math.radians(float(rng.normal(0, 2.5)))
        tip = _ray(c, (bx * k, by * k), a, [ml * k, p1 * k, p2 * k, p3 * k], q, rt, paed, pw, k)
        soft.append(tube(c.g, (bx * k, by * k - 45 * k), tip, 10 * k, 8 * k, 0.9))
    thumb = -math.pi / 2 - math.radians(float(rng.uniform(30.0, 45.0)))
    tip = _ray(c, (-24 * k, 23 * k), thumb, [42 * k, 29 * k, 21 * k], q, rt, paed, pw, k)
    soft.append(tube(c.g, (-20 * k, 35 * k), tip, 16 * k, 9 * k, 0.9))
    c.add_soft(np.maximum.reduce(soft))


def _ray(c: Canvas, base: tuple[float, float], ang: float, lengths: list[float], q: float,
         rt: float, paed: bool, pw: float, k: float) -> tuple[float, float]:
    """A metacarpal and its phalanges along one direction, with joint spaces between them."""
    u = (math.cos(ang), math.sin(ang))
    ax = math.degrees(ang)
    p = base
    for n, length in enumerate(lengths):
        r = (5.0, 5.0, 4.3, 3.7)[n] * k
        e = (p[0] + length * u[0], p[1] + length * u[1])
        head = (e[0] - 0.5 * r * u[0], e[1] - 0.5 * r * u[1])
        parts: list[Part] = [
            c.shell_ellipsoid((p[0] + 0.6 * r * u[0], p[1] + 0.6 * r * u[1]), 1.3 * r, 0.9 * r,
                              1.1 * r, 0.7, rt, ang),
            c.shell_tube((p[0] + r * u[0], p[1] + r * u[1]), head, 0.8 * r, 0.68 * r,
                         1.3 * q * k, 0.08, 0.9),
            c.shell_ellipsoid(head, 0.95 * r, 1.05 * r, r, 0.7, rt, ang)]
        plate = (p[0] + 1.6 * r * u[0], p[1] + 1.6 * r * u[1]) if n else head
        c.bone(parts, ax, gaps=_physis(c, paed, plate, ax, pw, 1.4 * r))
        p = (e[0] + 2.5 * k * u[0], e[1] + 2.5 * k * u[1])
    return (p[0] + 4 * k * u[0], p[1] + 4 * k * u[1])


def hand(rng: np.random.Generator, size: int) -> MaterialMaps:
    paed = bool(rng.random() < 0.2)
    k = float(rng.normal(1.0, 0.06)) * (0.75 if paed else 1.0)
    c = Canvas(size, sample_pose(rng, 250.0 * k, (-5.0 * k, -20.0 * k), rot_sd=8.0),
               int(rng.integers(2**31 - 1)))
    _hand(c, rng, k, paed)
    return _finish(c, rng, "hand", "PA", paed, (0.1, 0.3))


def wrist(rng: np.random.Generator, size: int) -> MaterialMaps:
    paed = bool(rng.random() < 0.2)
    k = float(rng.normal(1.0, 0.06)) * (0.75 if paed else 1.0)
    c = Canvas(size, sample_pose(rng, 150.0 * k, (0.0, 50.0 * k), rot_sd=8.0),
               int(rng.integers(2**31 - 1)))
    _hand(c, rng, k, paed)
    return _finish(c, rng, "wrist", "PA", paed, (0.1, 0.3))


# --- foot and ankle --------------------------------------------------------------------------

def _foot_lateral(c: Canvas, rng: np.random.Generator, k: float, paed: bool) -> None:
    """Lateral foot: tibia/fibula, talus, calcaneus, midfoot, metatarsals, toes (heel at +x)."""
    q, rt = _quality(rng, paed)
    pw = float(rng.uniform(2.0, 3.5))
    c.bone([c.shell_tube((40 * k, -320 * k), (36 * k, -80 * k), 14 * k, 16 * k, 4 * q, MARROW),
            c.shell_tube((36 * k, -90 * k), (34 * k, -52 * k), 17 * k, 23 * k, 1.2 * q, rt),
            c.shell_ellipsoid((33 * k, -50 * k), 23 * k, 10 * k, 26 * k, 1.2 * q, rt)], 90.0,
           gaps=_physis(c, paed, (34 * k, -60 * k), 90.0, pw))
    c.bone([c.shell_tube((50 * k, -320 * k), (48 * k, -45 * k), 6 * k, 7 * k, 2 * q, 0.1),
            c.shell_ellipsoid((48 * k, -36 * k), 8 * k, 15 * k, 9 * k, 1.0 * q, rt)], 90.0)
    bones = [((30, -30), 25, 16, 20, 0.0), ((4, -24), 13, 12, 14, 0.0),
             ((52, 0), 42, 19, 22, -0.25), ((84, 4), 13, 18, 20, 0.0),
             ((-14, -16), 7, 13, 15, 0.4), ((-12, 6), 14, 11, 16, 0.0),
             ((-32, -8), 12, 14, 18, 0.2)]
    for (cx, cy), a, b, d, ang in bones:
        c.bone([c.shell_ellipsoid((cx * k, cy * k), a * k, b * k, d * k, 1.0 * q, rt, ang)], 0.0)
    for m in range(5):
        y0, y1 = (-10 + 4 * m) * k, (16 + 2 * m) * k
        x0, x1 = (-42 + 3 * m) * k, (-112 + 6 * m) * k
        ang = math.atan2(y1 - y0, x1 - x0)
        c.bone([c.shell_ellipsoid((x0, y0), 8 * k, 7 * k, 8 * k, 0.8, rt, ang),
                c.shell_tube((x0, y0), (x1, y1), 5.5 * k, 4.5 * k, 1.5 * q, 0.08),
                c.shell_ellipsoid((x1, y1), 6 * k, 6 * k, 6 * k, 0.8, rt)], math.degrees(ang))
        c.bone([c.shell_tube((x1 - 9 * k, y1 + 2 * k), (x1 - 32 * k, y1 + 6 * k), 4.5 * k,
                             3.5 * k, 1.0, rt)], 170.0)
    c.add_soft(np.maximum.reduce([
        tube(c.g, (40 * k, -340 * k), (40 * k, -20 * k), 38 * k, 36 * k, 1.0),
        ellipsoid(c.g, (58 * k, 4 * k), 42 * k, 36 * k, 38 * k),
        tube(c.g, (40 * k, -2 * k), (-145 * k, 24 * k), 34 * k, 14 * k, 1.3)]))


def foot(rng: np.random.Generator, size: int) -> MaterialMaps:
    paed = bool(rng.random() < 0.15)
    k = float(rng.normal(1.0, 0.06)) * (0.75 if paed else 1.0)
    c = Canvas(size, sample_pose(rng, 280.0 * k, (-20.0 * k, -30.0 * k), rot_sd=6.0),
               int(rng.integers(2**31 - 1)))
    _foot_lateral(c, rng, k, paed)
    return _finish(c, rng, "foot", "lateral", paed)


def ankle(rng: np.random.Generator, size: int) -> MaterialMaps:
    """AP (mortise: tibial plafond, both malleoli, talar dome) or lateral."""
    paed = bool(rng.random() < 0.2)
    k = float(rng.normal(1.0, 0.06)) * (0.75 if paed else 1.0)
    if rng.random() < 0.5:
        c = Canvas(size, sample_pose(rng, 190.0 * k, (30.0 * k, -40.0 * k), rot_sd=6.0),
                   int(rng.integers(2**31 - 1)))
        _foot_lateral(c, rng, k, paed)
        return _finish(c, rng, "ankle", "lateral", paed)
    c = Canvas(size, sample_pose(rng, 190.0 * k, (5.0 * k, -30.0 * k), rot_sd=6.0),
               int(rng.integers(2**31 - 1)))
    q, rt = _quality(rng, paed)
    pw = float(rng.uniform(2.0, 3.5))
    c.bone([c.shell_tube((0, -320 * k), (0, -70 * k), 15 * k, 16 * k, 4 * q, MARROW),
            c.shell_tube((0, -80 * k), (0, -24 * k), 17 * k, 27 * k, 1.2 * q, rt),
            c.shell_ellipsoid((2 * k, -20 * k), 27 * k, 11 * k, 24 * k, 1.2 * q, rt),
            c.shell_ellipsoid((-22 * k, -6 * k), 8 * k, 16 * k, 12 * k, 1.2 * q, rt)], 90.0,
           gaps=_physis(c, paed, (0, -30 * k), 90.0, pw))
    c.bone([c.shell_tube((35 * k, -320 * k), (33 * k, -40 * k), 6 * k, 8 * k, 2 * q, 0.1),
            c.shell_ellipsoid((33 * k, -8 * k), 9 * k, 20 * k, 10 * k, 1.0 * q, rt)], 90.0,
           gaps=_physis(c, paed, (33 * k, -28 * k), 90.0, pw, 10.0))
    c.bone([c.shell_ellipsoid((4 * k, 11 * k), 23 * k, 15 * k, 25 * k, 1.1 * q, rt)], 0.0)
    c.bone([c.shell_ellipsoid((6 * k, 48 * k), 30 * k, 22 * k, 40 * k, 1.1 * q, rt)], 0.0)
    c.add_soft(np.maximum.reduce([
        tube(c.g, (5 * k, -340 * k), (5 * k, 0), 42 * k, 38 * k),
        ellipsoid(c.g, (6 * k, 25 * k), 45 * k, 60 * k, 60 * k)]))
    return _finish(c, rng, "ankle", "AP", paed)
