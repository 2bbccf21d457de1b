"""Synthetic hip-radiograph cohort (torch-free): metadata, true BMD, rendered images, oracle.

- `cohort`:  who the people are and their femoral-neck BMD (published effect sizes)
- `anatomy`: procedural proximal femur + hemipelvis as closed-form beam path lengths
- `render`:  Beer–Lambert projection and acquisition nuisance → 16-bit image
- `writer`:  deterministic, parallel writing of PNG/DICOM/manifest.csv/oracle.csv
"""

from __future__ import annotations

from bmd_edge.synth.writer import MANIFEST_COLUMNS, generate_cohort, make_case

__all__ = ["MANIFEST_COLUMNS", "generate_cohort", "make_case"]
