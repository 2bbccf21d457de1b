"""Hand-marked femoral heads on real films, and how far the locator's heads fall from them.

Why here: the real-film test, the drawing script and the real-film benchmark must read the same
marks (`tests/data/realworld_heads.csv`) and score a located head the same way — matched by
`side_in_image`, error as a fraction of the image width (the issue's "within 10 % of the width").
The marks are fractions of width/height, so a film read at another size keeps its marks.
Numpy only; nothing here reads pixels.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from bmd_edge.errors import InputError
from bmd_edge.locate.decode import FoundHip, LocateResult

AGE_GROUPS = ("adult", "adolescent", "paediatric")
QUALITIES = ("clear", "faint", "estimated", "uncertain")  # how sure the mark is (tests/data/README)
COLUMNS = ("file", "side_in_image", "head_x_frac", "head_y_frac", "head_r_frac", "age_group",
           "view", "mark_quality", "notes")


@dataclass(frozen=True)
class HeadMark:
    """One femoral head marked by eye on a real film."""

    file: str                  # path relative to realworld/, e.g. "hip/normal-pelvis-ap.jpg"
    side_in_image: str         # "left" | "right": the side its femoral shaft runs to
    x_frac: float              # head centre column / image width
    y_frac: float              # head centre row / image height
    r_frac: float              # head radius / image width
    age_group: str             # "adult" | "adolescent" | "paediatric"
    view: str                  # "AP pelvis", "AP hip", "frog-leg pelvis", ...
    quality: str               # one of QUALITIES
    notes: str = ""

    def xy(self, width: int, height: int) -> tuple[float, float]:
        """The mark in the film's pixels (x = column, y = row)."""
        return self.x_frac * width, self.y_frac * height


@dataclass(frozen=True)
class HeadCheck:
    """One marked head against what the locator found on the same side of the film."""

    mark: HeadMark
    found: FoundHip | None     # the located hip with the same side_in_image, if any
    error_frac: float | None   # centre distance / image width; None when not found

    def within(self, tolerance: float) -> bool:
        return self.error_frac is not None and self.error_frac <= tolerance


def read_marks(path: str | Path) -> dict[str, list[HeadMark]]:
    """The marks CSV as {file: [HeadMark, ...]} in file order; a malformed row raises."""
    out: dict[str, list[HeadMark]] = {}
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise InputError(f"{path}: columns {reader.fieldnames}; expected {list(COLUMNS)}")
        for n, row in enumerate(reader, start=2):
            mark = HeadMark(row["file"], row["side_in_image"], float(row["head_x_frac"]),
                            float(row["head_y_frac"]), float(row["head_r_frac"]),
                            row["age_group"], row["view"], row["mark_quality"], row["notes"])
            if (mark.side_in_image not in ("left", "right") or mark.age_group not in AGE_GROUPS
                    or mark.quality not in QUALITIES
                    or not all(0 < v < 1 for v in (mark.x_frac, mark.y_frac, mark.r_frac))):
                raise InputError(f"{path}:{n}: bad mark {row}")
            out.setdefault(mark.file, []).append(mark)
    return out


def check_heads(result: LocateResult, marks: list[HeadMark], width: int,
                height: int) -> list[HeadCheck]:
    """Each mark paired with the located hip of the same side_in_image (the decoder returns at
    most one per side), and the centre distance as a fraction of the width."""
    checks = []
    for m in marks:
        hip = result.hip(m.side_in_image)
        err = None
        if hip is not None:
            mx, my = m.xy(width, height)
            err = math.hypot(hip.head_xy[0] - mx, hip.head_xy[1] - my) / width
        checks.append(HeadCheck(m, hip, err))
    return checks
