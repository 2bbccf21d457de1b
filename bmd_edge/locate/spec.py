"""The locator's contract: input geometry and output channel layout, shared by train and runtime.

Why one module: the torch model writes these channels and the numpy decoder reads them; a
channel added on one side only would silently misplace every hip. Torch-free.

Sides are *in the image*, from what the film shows, never from a tag: an "image-left" hip is one
whose femoral shaft lies to the image-left of its head (the hip drawn on the viewer's left of a
standard AP pelvis, i.e. the patient's right when the film is displayed conventionally). A
horizontally mirrored film therefore swaps the two channels, which is exactly the augmentation
the trainer uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bmd_edge.errors import BundleError

INPUT_NAME = "image"
OUTPUT_NAMES = ("heatmap", "geometry", "is_hip")
SIDES = ("left", "right")  # heatmap channel k holds hips drawn on the image's SIDES[k]
# Geometry channels at each output cell; lengths are fractions of the input side, offsets are
# fractions of a cell, and everything is relative to the head centre decoded at that cell.
GEOMETRY = ("off_x", "off_y", "head_r", "neck_dx", "neck_dy", "roi_dx", "roi_dy", "roi_len",
            "roi_width")


@dataclass(frozen=True)
class LocatorSpec:
    size: int = 128                 # square letterboxed input side in pixels: small enough for ~1 ms
    stride: int = 8                 # input pixels per output cell; offsets recover sub-cell position
    low_pct: float = 1.0            # intensity window percentiles: films arrive auto-ranged anyway,
    high_pct: float = 99.0          #   this only removes collimator/label outliers
    mean: float = 0.5               # fixed standardisation after windowing to [0, 1]
    std: float = 0.25

    def __post_init__(self) -> None:
        if self.size % self.stride or self.size < 32:
            raise BundleError(f"locator size {self.size} must be ≥ 32 and a multiple of its "
                              f"stride {self.stride}")

    @property
    def grid(self) -> int:
        """Output cells per side."""
        return self.size // self.stride

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocatorSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise BundleError(f"locator spec has unknown fields {sorted(unknown)}")
        return cls(**dict(d))
