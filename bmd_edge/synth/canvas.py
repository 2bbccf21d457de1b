"""A detector grid on which non-hip anatomy is assembled into `MaterialMaps`.

Every other-anatomy generator (knee, hand, chest, ...) builds its subject here in patient
millimetres: bones as cortical shells around a trabecular interior, a soft-tissue envelope, gas.
The canvas owns the pose (rotation, magnification, shift, left/right mirror) so each generator
draws one canonical right-sided body part, and it owns the trabecular texture so every bone —
hip or not — carries the same kind of texture: oriented, band-limited noise (≈ 3 mm along the
trabeculae, ≈ 0.45 mm across, plus an isotropic ≈ 0.6 mm component), multiplying the cancellous
mineral by clip(1 + 0.6·texture), as `render.py` does for the hips.

Units: shapes and paths in mm while drawing; `finish` converts to the contract's g/cm² and cm.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from bmd_edge.synth.anatomy import Grid, ellipsoid, tube
from bmd_edge.synth.materials import MaterialMaps
from bmd_edge.synth.render import texture_transfer

F32 = np.float32
CORTEX_GCM3 = 1.15     # g HA per cm³ of bone tissue, as the hips (anatomy.TMD_G_CM3)
MAX_INTERNAL_PX_MM = 0.5  # draw at least this finely (2× supersampling), as the hips …
MAX_INTERNAL_PX = 640     # … but never on a grid larger than this (speed), as the hips
TEXTURE_GAIN = 0.3     # cancellous mineral × clip(1 + gain·texture, 0, 3) (hips: 0.6 × BV/TV)
N_ORIENT = 6           # oriented texture fields, 30° apart

# A bone part: (outer chord mm, inner chord mm, cancellous mineral density g/cm³ of the interior).
Part = tuple[np.ndarray, np.ndarray, float]


@dataclass(frozen=True)
class Pose:
    """Where the canonical body part lands on the detector; none of it is anatomy."""

    fov_mm: float                  # field of view across the image (patient mm at scale 1)
    centre: tuple[float, float]    # patient-frame point at the image centre (mm)
    rotation_deg: float            # in-plane rotation of the part
    scale: float                   # magnification × patient size
    flip: bool                     # a left-sided part: the mirror image of the canonical right


def sample_pose(rng: np.random.Generator, fov_mm: float, centre: tuple[float, float], *,
                rot_sd: float = 6.0, shift_sd: float = 0.04) -> Pose:
    """Positioning varies more for extremities (rot_sd larger) than for a table trunk film."""
    return Pose(fov_mm=fov_mm * float(rng.uniform(0.9, 1.12)),
                centre=(centre[0] + float(rng.normal(0.0, shift_sd * fov_mm)),
                        centre[1] + float(rng.normal(0.0, shift_sd * fov_mm))),
                rotation_deg=float(rng.normal(0.0, rot_sd)),
                scale=float(rng.uniform(0.92, 1.08)), flip=bool(rng.random() < 0.5))


class Canvas:
    """Accumulates bone mineral, soft tissue and gas on the posed detector grid."""

    def __init__(self, size: int, pose: Pose, texture_seed: int) -> None:
        # Like the hips (render.py), draw on a grid ≈ 0.5 mm fine (2× the output, ≤ 640 px)
        # so the texture exists before the detector-sized pixels average it.
        self.size, self.pose = size, pose
        self.ss = 2 if pose.fov_mm / size > MAX_INTERNAL_PX_MM and 2 * size <= MAX_INTERNAL_PX \
            else 1
        self.n = n = size * self.ss
        px = pose.fov_mm / n
        rho = math.radians(pose.rotation_deg)
        sx = -1.0 if pose.flip else 1.0
        cr, sr = math.cos(rho) * pose.scale * px, math.sin(rho) * pose.scale * px
        off = 0.5 - n / 2
        cx, cy = pose.centre
        x0 = (cr - sr) * off                      # relative to the centre, before the mirror
        y0 = cy + (sr + cr) * off
        affine = np.array([[sx * cr, -sx * sr, sx * x0 + cx], [sr, cr, y0]])
        j, i = np.meshgrid(np.arange(n, dtype=F32), np.arange(n, dtype=F32))
        x = F32(sx) * (F32(cr) * j - F32(sr) * i + F32(x0)) + F32(cx)
        y = F32(sr) * j + F32(cr) * i + F32(y0)
        self.g = Grid(x, y, affine)
        self.px_mm = px * pose.scale                 # internal grid pitch (patient mm)
        self.mineral = np.zeros((n, n), F32)         # g/cm² of mineral
        self.bone_mm = np.zeros((n, n), F32)         # outer bone chord (mm), for the soft floor
        self.soft = np.zeros((n, n), F32)            # mm
        self.gas = np.zeros((n, n), F32)             # mm
        self.metal = np.zeros((n, n), F32)           # mm
        self._seed = texture_seed
        self._fields, self._iso = _texture_fields(texture_seed, n, round(self.px_mm, 3))

    # --- drawing -------------------------------------------------------------------------

    def shell_ellipsoid(self, c: tuple[float, float], a: float, b: float, depth: float,
                        cortex: float, rho_trab: float, angle: float = 0.0) -> Part:
        g = self.g
        return (ellipsoid(g, c, a, b, depth, angle),
                ellipsoid(g, c, a - cortex, b - cortex, depth - cortex, angle), rho_trab)

    def shell_tube(self, p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float,
                   cortex: float, rho_trab: float, depth: float = 1.0) -> Part:
        g = self.g
        return (tube(g, p0, p1, r0, r1, depth),
                tube(g, p0, p1, max(r0 - cortex, 0.1), max(r1 - cortex, 0.1), depth), rho_trab)

    def bone(self, parts: list[Part], axis_deg: float, *, cortex_gcm3: float = CORTEX_GCM3,
             holes: Sequence[np.ndarray] = (), gaps: Sequence[np.ndarray] = ()) -> None:
        """One bone: the union of its parts, minus holes (chords) and growth-plate gaps (masks).

        Separate bones add (they overlap in projection); parts of one bone merge (max).
        `axis_deg` is the bone's long axis in the patient frame: its trabeculae run along it.
        """
        outer = np.maximum.reduce([p[0] for p in parts])
        inner = np.minimum(np.maximum.reduce([p[1] for p in parts]), outer)
        trab = np.maximum.reduce([np.minimum(p[1], p[0]) * F32(p[2]) for p in parts])
        for h in holes:
            outer = np.maximum(outer - h, 0.0)
            inner = np.minimum(np.maximum(inner - h, 0.0), outer)
            trab = np.maximum(trab - h * F32(0.3), 0.0)
        for m in gaps:
            keep = F32(1.0) - m
            outer, inner, trab = outer * keep, inner * keep, trab * keep
        rows, cols = np.nonzero(outer > 0)
        if rows.size == 0:
            return
        b = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        tex = self._texture(b, axis_deg)
        cort = outer[b] - inner[b]
        mineral = cort * F32(cortex_gcm3) + trab[b] * np.clip(
            F32(1.0) + F32(TEXTURE_GAIN) * tex, 0.0, 3.0)
        self.mineral[b] += F32(0.1) * mineral       # mm × g/cm³ → g/cm²
        self.bone_mm[b] += outer[b]

    def add_soft(self, chord_mm: np.ndarray) -> None:
        np.maximum(self.soft, chord_mm, out=self.soft)

    def add_gas(self, chord_mm: np.ndarray) -> None:
        self.gas += chord_mm

    def band(self, p: tuple[float, float], axis_deg: float, half_mm: float,
             reach_mm: float = 60.0) -> np.ndarray:
        """Mask (0–1) of a strip across the axis through p: a growth plate or a joint gap."""
        a = math.radians(axis_deg)
        dx, dy = self.g.x - F32(p[0]), self.g.y - F32(p[1])
        along = dx * F32(math.cos(a)) + dy * F32(math.sin(a))
        across = -dx * F32(math.sin(a)) + dy * F32(math.cos(a))
        edge = F32(max(self.px_mm * 0.5, 0.2))
        m = np.clip((F32(half_mm) - np.abs(along)) / edge + 0.5, 0.0, 1.0)
        return (m * (np.abs(across) < F32(reach_mm))).astype(F32)

    def segment_band(self, p0: tuple[float, float], p1: tuple[float, float],
                     half_mm: float) -> np.ndarray:
        """Mask (0–1) within half_mm of the segment p0–p1 (a Y-cartilage limb, a fracture)."""
        x, y = self.g.x, self.g.y
        ex, ey = p1[0] - p0[0], p1[1] - p0[1]
        l2 = max(ex * ex + ey * ey, 1e-6)
        t = np.clip(((x - F32(p0[0])) * F32(ex) + (y - F32(p0[1])) * F32(ey)) / F32(l2), 0, 1)
        d = np.hypot(x - F32(p0[0]) - t * F32(ex), y - F32(p0[1]) - t * F32(ey))
        edge = F32(max(self.px_mm * 0.5, 0.2))
        return np.clip((F32(half_mm) - d) / edge + 0.5, 0.0, 1.0).astype(F32)

    # --- output --------------------------------------------------------------------------

    def finish(self, labels: dict[str, object], fat_fraction: float) -> MaterialMaps:
        """The contract: bone g/cm², soft tissue cm (never thinner than the bone it holds).

        Soft tissue is not a uniform jelly: rays near the skin cross mostly subcutaneous fat
        (fat share rises towards the edge of each envelope, a darker rim as on real films), and
        muscle bellies and skin folds modulate the thickness by ≈ 2.5 % at ≈ 4 cm scales.
        """
        soft = np.maximum(self.soft, self.bone_mm + self.gas)
        lumps = _lowpass(self._seed + 1, self.n, 40.0 / self.px_mm)
        soft = soft * (F32(1.0) + F32(0.025) * lumps)
        soft = np.maximum(soft, self.bone_mm + self.gas)
        depth = max(float(np.percentile(soft[soft > 0], 90)) if soft.any() else 1.0, 1.0)
        rim = np.exp(-soft / F32(0.25 * depth))
        fat = np.clip(F32(fat_fraction) + F32(0.5) * rim, 0.0, 0.95).astype(F32)
        return MaterialMaps(
            bone_gcm2=self._out(self.mineral), soft_cm=self._out(soft * F32(0.1)),
            px_mm=float(self.px_mm * self.ss), fat_fraction=self._out(fat),
            gas_cm=self._out(self.gas * F32(0.1)) if self.gas.any() else None,
            metal_cm=self._out(self.metal * F32(0.1)) if self.metal.any() else None,
            labels=labels)

    def _out(self, a: np.ndarray) -> np.ndarray:
        """Internal grid → output pixels (area average, as a detector element integrates)."""
        if self.ss > 1:
            a = cv2.resize(a, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(a, dtype=F32)

    def _texture(self, b: tuple[slice, slice], axis_deg: float) -> np.ndarray:
        """Texture running along the bone axis as seen in the pixel frame (render.py's blend)."""
        theta = math.radians(axis_deg)
        if self.pose.flip:
            theta = math.pi - theta
        theta -= math.radians(self.pose.rotation_deg)
        out = np.zeros_like(self._iso[b])
        wsum = 0.0
        for k, f in enumerate(self._fields):
            w = max(math.cos(2.0 * (theta - math.pi * k / N_ORIENT)), 0.0) ** 2
            if w > 0:
                out += F32(w) * f[b]
                wsum += w * w
        oriented = out / F32(math.sqrt(wsum + 1e-6))
        w_iso = 0.7
        return (oriented + F32(w_iso) * self._iso[b]) / F32(math.sqrt(1.0 + w_iso**2))


def _lowpass(seed: int, size: int, sigma_px: float) -> np.ndarray:
    """Unit-SD smooth noise (Gaussian-filtered in the Fourier domain)."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    h = np.exp(-2.0 * math.pi**2 * sigma_px**2 * (fx**2 + fy**2))
    f = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((size, size))) * h, s=(size, size))
    return (f / (f.std() + 1e-12)).astype(F32)


def _texture_fields(seed: int, size: int, px_mm: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Unit-variance oriented noise fields + an isotropic one (one FFT of white noise)."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft2(rng.standard_normal((size, size), dtype=F32))
    *oriented, iso = texture_transfer(size, px_mm, N_ORIENT)
    fields = []
    for h in (*oriented, iso):
        f = np.fft.irfft2(spec * h, s=(size, size)).astype(F32)
        fields.append(f / F32(f.std() + 1e-9))
    return fields[:-1], fields[-1]


def polyline(canvas: Canvas, pts: list[tuple[float, float]], r: float, cortex: float,
             rho_trab: float, depth: float = 1.0) -> Part:
    """A curved rod (rib, clavicle) as the union of capsules along the points."""
    parts = [canvas.shell_tube(p, q, r, r, cortex, rho_trab, depth)
             for p, q in itertools.pairwise(pts)]
    return (np.maximum.reduce([p[0] for p in parts]), np.maximum.reduce([p[1] for p in parts]),
            rho_trab)


def column(canvas: Canvas, c: tuple[float, float], r: float, half_h: float, depth: float,
           cortex: float, rho_trab: float, angle: float = 0.0) -> Part:
    """A cylinder seen side-on (a vertebral body): chord depends on the across coordinate only,
    with cortical end plates."""
    g = canvas.g
    ca, sa = math.cos(angle), math.sin(angle)

    def chord(rr: float, hh: float) -> np.ndarray:
        out = np.zeros(g.shape, F32)
        ext = max(rr, hh) * 1.5
        sl = g.window(c[0] - ext, c[0] + ext, c[1] - ext, c[1] + ext)
        if sl is None or rr <= 0 or hh <= 0:
            return out
        dx, dy = g.x[sl] - F32(c[0]), g.y[sl] - F32(c[1])
        u = dx * F32(ca) + dy * F32(sa)
        v = dy * F32(ca) - dx * F32(sa)
        q = np.maximum(F32(1.0) - (u / F32(rr)) ** 2, F32(0.0))
        # Slightly concave waist and rounded corners: the end plates are ~ 1 mm wider.
        cap = np.clip((F32(hh) - np.abs(v)) / F32(1.2) + F32(0.5), 0.0, 1.0)
        out[sl] = F32(2.0 * depth * rr) * np.sqrt(q) * cap
        return out

    return chord(r, half_h), chord(r - cortex, half_h - cortex), rho_trab
