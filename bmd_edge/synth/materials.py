"""The contract between anatomy and physics in the synthetic world.

Every anatomy generator (hip, AP pelvis, knee, shoulder, ...) describes its subject only as
per-pixel path lengths / areal densities of a few materials on the detector grid; one physics
module (polyenergetic beam, scatter, noise, detector, clinical post-processing) turns any of them
into a radiograph. Keeping the two apart is what stops rendering style from giving away the
anatomy: a knee and a hip go through exactly the same physics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MaterialMaps:
    """Material content along each detector ray, all (H, W) float32 on the same grid.

    `bone_gcm2` is the areal density of bone mineral (hydroxyapatite-equivalent, g/cm²) along
    the ray — the quantity DXA measures — including cortex and the trabecular texture.
    `soft_cm` is soft tissue (water-equivalent) path length in cm, with the space bone occupies
    already included (bone displaces tissue: physics adds only bone in excess of it).
    `fat_fraction` is the fat share of that soft tissue in [0, 1] (changes contrast with kVp).
    `gas_cm` is bowel or lung gas path length in cm (replaces soft tissue; subtract it there).
    `metal_cm` is implant path length in cm (steel/titanium-equivalent; saturates the detector).
    `px_mm` is the pixel pitch at the detector plane.
    """

    bone_gcm2: np.ndarray
    soft_cm: np.ndarray
    px_mm: float
    fat_fraction: np.ndarray | float = 0.25
    gas_cm: np.ndarray | None = None
    metal_cm: np.ndarray | None = None
    labels: dict[str, object] = field(default_factory=dict)  # anatomy-specific landmarks

    def __post_init__(self) -> None:
        shape = self.bone_gcm2.shape
        for name in ("soft_cm", "gas_cm", "metal_cm"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}, bone_gcm2 {shape}")
        if self.px_mm <= 0:
            raise ValueError(f"px_mm must be positive, got {self.px_mm}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.bone_gcm2.shape  # type: ignore[return-value]
