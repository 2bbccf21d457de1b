"""The canonical femoral-neck crop: what the BMD model sees, whatever the film (numpy + OpenCV).

One similarity transform takes a located hip to a fixed frame: centred on the femoral neck,
scaled by the femoral-head radius (so magnification, detector size and hip-vs-pelvis framing
drop out), mirrored so every hip has its shaft on the image-left (the conventional display of a
right hip), and rotated so the neck axis (head centre → neck point) points at one fixed angle.
The BMD model therefore never depends on `--side`, film rotation or the view.

Mirror or turn? Head and neck point alone cannot tell a mirrored film from one turned by 180°;
the hip's `side_in_image` (the side its shaft runs to, the locator's side channel) decides, so
the crop is rotation-invariant for films within ±45° of upright (the locator trains on ±15°).

The transform is returned with the crop (`CanonicalCrop.affine`, film → crop), so a report can
draw the region back on the film. Pixel centres sit at integer coordinates on both sides (as in
the synthetic landmarks, the locator's `FoundHip` and cv2.warpAffine). The spec travels in the
BMD bundle's input section, so training and inference crop identically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import cv2
import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.preprocess import checked_window

SIDES_IN_IMAGE = ("left", "right")
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_PERCENTILE_SAMPLES = 16384  # a 128² crop: every pixel; larger crops are subsampled


class HipGeometry(Protocol):
    """What the crop needs from a hip: the locator's FoundHip and `LandmarkHip` qualify."""

    @property
    def side_in_image(self) -> str: ...    # "left" | "right": the side its shaft runs to
    @property
    def head_xy(self) -> tuple[float, float]: ...
    @property
    def head_r(self) -> float: ...
    @property
    def neck_xy(self) -> tuple[float, float]: ...   # where the neck axis meets the shaft axis


@dataclass(frozen=True)
class CropSpec:
    """Exact crop and intensity parameters; stored with every model so inference matches training."""

    size: int = 128                      # output S×S = the BMD model's image size
    fov_head_radii: float = 6.0          # crop side in head radii: head, neck and trochanters
    centre_head_radii: float = 1.25      # crop centre: this far from the head centre along the
                                         # neck axis (≈ the DXA femoral-neck box centre)
    neck_angle_deg: float = 135.0        # canonical neck-axis direction, atan2(dy, dx), y down:
                                         # down-left, as a conventionally displayed right hip
    side_in_image: str = "left"          # every hip is mirrored to have its shaft on this side
    interpolation: str = "linear"        # resampling after an INTER_AREA pre-shrink (no aliasing)
    window_percentiles: tuple[float, float] = (0.5, 99.5)  # of the crop itself: a local window,
                                         # so the film's framing (pelvis, collimation) drops out
    mean: float = 0.5                    # after windowing to [0, 1]: centres the input
    std: float = 0.25                    # ... and scales it to about unit variance

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) \
                or not 8 <= self.size <= 1024:
            raise InputError(f"crop size {self.size!r} is invalid; give an integer 8 to 1024")
        for name, lo, hi in (("fov_head_radii", 1.0, 40.0), ("centre_head_radii", -5.0, 10.0),
                             ("neck_angle_deg", -180.0, 360.0), ("mean", -10.0, 10.0),
                             ("std", 1e-3, 100.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not lo <= v <= hi:
                raise InputError(f"crop {name} {v!r} is invalid; give a number {lo} to {hi}")
            object.__setattr__(self, name, float(v))
        if self.side_in_image not in SIDES_IN_IMAGE:
            raise InputError(f"crop side_in_image {self.side_in_image!r} is invalid; accepted: "
                             f"left, right")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"crop interpolation {self.interpolation!r} is unknown; accepted: "
                             f"{', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "window_percentiles",
                           checked_window(self.window_percentiles, "crop window_percentiles"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for checkpoints and bundle.json."""
        d = asdict(self)
        d["window_percentiles"] = list(self.window_percentiles)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CropSpec:
        """Rebuild and validate a stored spec; unknown keys are refused, not ignored."""
        if not isinstance(d, Mapping):
            raise InputError(f"crop spec must be a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise InputError(f"crop spec has unknown key(s) {', '.join(map(str, unknown))}; "
                             f"accepted: {', '.join(known)}")
        kwargs = dict(d)
        if "window_percentiles" in kwargs:
            wp = kwargs["window_percentiles"]
            if not isinstance(wp, (list, tuple)) or len(wp) != 2:
                raise InputError(f"crop window_percentiles {wp!r} must be two numbers")
            kwargs["window_percentiles"] = tuple(wp)
        return cls(**kwargs)


@dataclass(frozen=True)
class CanonicalCrop:
    """One hip in the canonical frame, and the way back to the film."""

    pixels: np.ndarray      # S×S float32 film intensities; NaN where the crop leaves the film
    affine: np.ndarray      # 2×3 float64: crop (x, y) = affine @ (film x, film y, 1)
    mirrored: bool          # the film's hip was mirrored to the canonical side
    outside_fraction: float  # share of the crop outside the film (large: an edge-cut hip)

    def to_film(self, points: np.ndarray) -> np.ndarray:
        """Crop coordinates (N×2, x y) → film coordinates (N×2)."""
        inv = cv2.invertAffineTransform(self.affine)
        p = np.asarray(points, np.float64).reshape(-1, 2)
        return p @ inv[:, :2].T + inv[:, 2]

    def from_film(self, points: np.ndarray) -> np.ndarray:
        """Film coordinates (N×2, x y) → crop coordinates (N×2)."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        return p @ self.affine[:, :2].T + self.affine[:, 2]

    def film_corners(self) -> np.ndarray:
        """The crop square's outline on the film (4×2, clockwise from the crop's top-left):
        what a report draws so a reader sees which region the model measured."""
        s = self.pixels.shape[0] - 0.5
        return self.to_film(np.array([[-0.5, -0.5], [s, -0.5], [s, s], [-0.5, s]]))


def _check_hip(hip: HipGeometry) -> tuple[str, np.ndarray, float, np.ndarray]:
    side = getattr(hip, "side_in_image", None)
    if side not in SIDES_IN_IMAGE:
        raise InputError(f"hip side_in_image {side!r} is invalid; accepted: left, right")
    try:
        head = np.asarray(hip.head_xy, np.float64).reshape(2)
        neck = np.asarray(hip.neck_xy, np.float64).reshape(2)
        r = float(hip.head_r)
    except (TypeError, ValueError, AttributeError):
        raise InputError("hip needs head_xy, neck_xy (two numbers each) and head_r") from None
    if not (np.isfinite(head).all() and np.isfinite(neck).all() and math.isfinite(r)) or r <= 0:
        raise InputError(f"hip geometry is not usable: head {head.tolist()}, radius {r!r}, "
                         f"neck {neck.tolist()} (need finite numbers, radius > 0)")
    if float(np.hypot(*(neck - head))) < 1e-6 * max(1.0, r):
        raise InputError("hip neck point coincides with the head centre; no neck axis")
    return str(side), head, r, neck


def crop_affine(hip: HipGeometry, spec: CropSpec) -> tuple[np.ndarray, bool]:
    """The 2×3 film → crop similarity for `hip`, and whether it mirrors.

    crop = k · R · M · (film − centre) + (S − 1)/2, with M the mirror (x → −x) when the hip's
    shaft is on the other side, R the rotation taking the (mirrored) neck axis to the canonical
    angle and k = S / (fov · head radius).
    """
    side, head, r, neck = _check_hip(hip)
    axis = (neck - head) / np.hypot(*(neck - head))
    centre = head + spec.centre_head_radii * r * axis
    mirror = side != spec.side_in_image
    m = np.diag([-1.0, 1.0]) if mirror else np.eye(2)
    ax = m @ axis
    rot = math.radians(spec.neck_angle_deg) - math.atan2(ax[1], ax[0])
    c, s = math.cos(rot), math.sin(rot)
    k = spec.size / (spec.fov_head_radii * r)
    lin = k * np.array([[c, -s], [s, c]]) @ m
    half = (spec.size - 1) / 2.0
    return np.hstack([lin, (np.array([half, half]) - lin @ centre)[:, None]]), mirror


def canonical_crop(gray: np.ndarray, hip: HipGeometry, spec: CropSpec) -> CanonicalCrop:
    """Film (H×W, any numeric dtype, bone bright) → the hip's canonical crop and its transform.

    Only the film region under the crop is read; when the crop is smaller than that region it is
    first shrunk with INTER_AREA by an integer factor so the final warp does not alias.
    """
    if not isinstance(gray, np.ndarray) or gray.ndim != 2 or min(gray.shape) < 2 \
            or gray.dtype.kind not in "uif":
        raise InputError(f"canonical crop needs a 2-D numeric grey image, got "
                         f"{getattr(gray, 'shape', type(gray).__name__)}")
    affine, mirrored = crop_affine(hip, spec)
    s = spec.size
    # Film bounding box of the crop square (+2 px for interpolation), clipped to the film.
    inv = cv2.invertAffineTransform(affine)
    sq = np.array([[-1, -1], [s, -1], [s, s], [-1, s]], np.float64)
    corners = sq @ inv[:, :2].T + inv[:, 2]
    h, w = gray.shape
    x0 = int(max(0, math.floor(corners[:, 0].min()) - 2))
    y0 = int(max(0, math.floor(corners[:, 1].min()) - 2))
    x1 = int(min(w, math.ceil(corners[:, 0].max()) + 3))
    y1 = int(min(h, math.ceil(corners[:, 1].max()) + 3))
    out = np.full((s, s), np.nan, np.float32)
    if x1 - x0 >= 2 and y1 - y0 >= 2:
        region = gray[y0:y1, x0:x1].astype(np.float32, copy=False)
        if not np.isfinite(region).all():
            raise InputError("image contains NaN or infinite pixels; cannot crop the hip")
        local = affine.copy()
        local[:, 2] += local[:, :2] @ np.array([x0, y0], np.float64)  # region → crop
        k = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))        # crop px per film px
        f = math.floor(1.0 / k) if k < 0.5 else 1
        if f >= 2 and min(region.shape) >= 2 * f:
            rh, rw = (region.shape[0] // f) * f, (region.shape[1] // f) * f
            region = np.asarray(cv2.resize(region[:rh, :rw], (rw // f, rh // f),
                                           interpolation=cv2.INTER_AREA), np.float32)
            # shrunk (u, v) = (x + ½)/f − ½  ⇒  x = f·u + (f − 1)/2
            local = np.hstack([local[:, :2] * f,
                               (local[:, 2] + local[:, :2] @ np.full(2, (f - 1) / 2.0))[:, None]])
        out = np.asarray(cv2.warpAffine(
            region, local, (s, s), flags=INTERPOLATIONS[spec.interpolation],
            borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan")), np.float32)
    outside = float(np.isnan(out).mean())
    return CanonicalCrop(pixels=out, affine=affine, mirrored=mirrored, outside_fraction=outside)


def model_input(crop: CanonicalCrop | np.ndarray, spec: CropSpec) -> np.ndarray:
    """Crop → the BMD model's image input (1, S, S) float32: the crop's own percentile window to
    [0, 1] (pixels outside the film count as background, 0), then (x − mean) / std."""
    px = crop.pixels if isinstance(crop, CanonicalCrop) else np.asarray(crop, np.float32)
    valid = np.isfinite(px)
    vals = px[valid]
    out = np.zeros(px.shape, np.float32)
    if vals.size:
        step = max(1, vals.size // _PERCENTILE_SAMPLES)
        lo, hi = np.percentile(vals[::step], spec.window_percentiles)
        if hi > lo:
            out[valid] = np.clip((vals - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    out -= np.float32(spec.mean)
    out /= np.float32(spec.std)
    return out[None]
