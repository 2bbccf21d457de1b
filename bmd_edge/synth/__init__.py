"""Synthetic hip-radiograph cohort (torch-free): metadata, true BMD, rendered images, oracle.

- `cohort`:  who the people are and their femoral-neck BMD (published effect sizes)
- `materials`: MaterialMaps, the contract between any anatomy and the physics
- `anatomy`: procedural proximal femur + hemipelvis + sacrum/L-spine as beam path lengths
- `render`:  hip / AP-pelvis views as MaterialMaps with analytic landmarks
- `physics`: polyenergetic exposure, scatter, noise, detector and clinical post-processing
- `writer`:  deterministic, parallel writing of PNG/DICOM/manifest/landmarks/oracle CSVs
See WORLD.md (next to this file) for the mechanisms, sources and the information split.
"""

from __future__ import annotations

from bmd_edge.synth.writer import MANIFEST_COLUMNS, generate_cohort, make_case

__all__ = ["MANIFEST_COLUMNS", "generate_cohort", "make_case"]
