"""Network outputs → hips in the original film's pixels (numpy only).

At most one hip per side channel: a film shows at most one hip whose shaft runs to the
image-left and one whose shaft runs to the image-right (an AP pelvis shows both, a hip film one),
so the decoder takes each channel's peak instead of a generic non-maximum suppression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bmd_edge.locate.letterbox import Letterbox
from bmd_edge.locate.spec import GEOMETRY, SIDES, LocatorSpec

_G = {name: k for k, name in enumerate(GEOMETRY)}


@dataclass(frozen=True)
class FoundHip:
    """One femur's proximal end, in original-image pixels (x = column, y = row, y down)."""

    side_in_image: str                 # "left" | "right": the shaft lies on this side of its head
    head_xy: tuple[float, float]       # femoral head centre
    head_r: float                      # femoral head radius
    neck_xy: tuple[float, float]       # where the neck axis meets the shaft axis
    neck_angle_deg: float              # direction head → neck point, degrees, atan2(dy, dx)
    roi_xy: tuple[float, float]        # femoral-neck box centre
    roi_len: float                     # box side along the neck axis
    roi_width: float                   # box side across the neck axis
    roi_angle_deg: float               # = neck_angle_deg (the box is aligned with the neck axis)
    confidence: float                  # heatmap peak, 0-1

    @property
    def side_if_standard(self) -> str:
        """Patient side if the film is displayed conventionally (patient's right on the
        viewer's left). Mirrored films invert it; only the film's laterality tag or lead marker
        can say which, so callers must reconcile this with them."""
        return "right" if self.side_in_image == "left" else "left"

    @property
    def neck_points_outward(self) -> bool:
        """The neck runs from the head towards the named side: False means the geometry head
        contradicts the side channel (a doubtful detection)."""
        dx = math.cos(math.radians(self.neck_angle_deg))
        return dx < 0 if self.side_in_image == "left" else dx > 0


@dataclass(frozen=True)
class LocateResult:
    is_hip_score: float                # 0-1: "this is an adult hip or AP pelvis radiograph"
    hips: tuple[FoundHip, ...]         # sorted image-left first; empty when none clears threshold

    def hip(self, side_in_image: str) -> FoundHip | None:
        return next((h for h in self.hips if h.side_in_image == side_in_image), None)


def decode(heatmap: np.ndarray, geometry: np.ndarray, is_hip: np.ndarray, box: Letterbox,
           spec: LocatorSpec, threshold: float) -> LocateResult:
    """One image's outputs — heatmap (2, G, G) probabilities, geometry (9, G, G), is_hip scalar
    probability — into a LocateResult in original pixels."""
    s = float(spec.size)
    hips = []
    for k, side in enumerate(SIDES):
        hm = heatmap[k]
        cy, cx = np.unravel_index(int(np.argmax(hm)), hm.shape)
        conf = float(hm[cy, cx])
        if conf < threshold:
            continue
        g = geometry[:, cy, cx].astype(np.float64)
        hx = (cx + g[_G["off_x"]]) * spec.stride   # input pixels
        hy = (cy + g[_G["off_y"]]) * spec.stride
        nx, ny = hx + g[_G["neck_dx"]] * s, hy + g[_G["neck_dy"]] * s
        rx, ry = hx + g[_G["roi_dx"]] * s, hy + g[_G["roi_dy"]] * s
        angle = math.degrees(math.atan2(ny - hy, nx - hx))
        L = box.length_to_original
        hips.append(FoundHip(
            side_in_image=side,
            head_xy=box.to_original(hx, hy),
            head_r=L(max(0.0, g[_G["head_r"]]) * s),
            neck_xy=box.to_original(nx, ny),
            neck_angle_deg=angle,
            roi_xy=box.to_original(rx, ry),
            roi_len=L(max(0.0, g[_G["roi_len"]]) * s),
            roi_width=L(max(0.0, g[_G["roi_width"]]) * s),
            roi_angle_deg=angle,
            confidence=conf,
        ))
    return LocateResult(is_hip_score=float(np.asarray(is_hip).reshape(-1)[0]), hips=tuple(hips))
