"""bundle.json's `reliability` section: shift-detection policy and Mondrian interval tables.

Typed and validated like every other section (`bundle_fields`), so a damaged or hand-edited
table is one `BundleError` line naming its key path. The large arrays (embedding mean and
precision matrix, the quality statistics, the training crops' mean image) live in a small
`.npz` named here and listed with its sha256 in bundle.json's `files`; the runtime hashes it
before use. Optional: a bundle without the section runs with its single `interval` half-width
and no shift score (older bundles).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bmd_edge import bundle_fields as F

RELIABILITY_FORMAT = "bmd-edge-reliability/1"
SEXES = ("F", "M")
VIEWS = ("hip", "pelvis")
EMBEDDING_OUTPUT = "embedding"   # the graph output the shift score reads (see compress/embedding_output.py)


@dataclass(frozen=True)
class ShiftPolicy:
    """When a case is flagged or refused, and what flagging does to its interval."""

    stats_file: str                  # .npz in the bundle: training-crop statistics
    uses_embedding: bool             # the score includes the model's `embedding` output
    flag_threshold: float            # score above this: flagged (≤ 5 % of clean cases)
    refuse_threshold: float          # score above this: refused unless forced
    max_widen: float                 # flagged interval half-width × min(score/flag, max_widen)
    n_stats: int                     # training crops the statistics were computed on
    n_calibration: int               # clean cases the thresholds were chosen on
    clean_flagged: float             # share of those cases flagged (target ≤ 0.05)
    calibration_set: str = ""        # what those cases were
    views: tuple[str, ...] = VIEWS   # views in the statistics set; any other view is flagged

    @classmethod
    def from_dict(cls, d: Any, p: str) -> ShiftPolicy:
        d = F.obj(d, p)
        F.keys(d, p, ("stats_file", "uses_embedding", "flag_threshold", "refuse_threshold",
                      "max_widen", "n_stats", "n_calibration", "clean_flagged"),
               ("calibration_set", "views"))
        flag = float(F.number(d, "flag_threshold", p, low=0, open_low=True, high=1e6))
        refuse = float(F.number(d, "refuse_threshold", p, low=0, open_low=True, high=1e9))
        if not refuse > flag:
            raise F.bad(f"{p}.refuse_threshold", f"{refuse} must be above flag_threshold {flag}")
        return cls(F.rel_path(d["stats_file"], f"{p}.stats_file"),
                   F.flag(d, "uses_embedding", p), flag, refuse,
                   float(F.number(d, "max_widen", p, low=1.0, high=100.0)),
                   int(F.number(d, "n_stats", p, low=1, integer=True)),
                   int(F.number(d, "n_calibration", p, low=1, integer=True)),
                   float(F.number(d, "clean_flagged", p, low=0.0, high=1.0)),
                   F.text(d, "calibration_set", p) if "calibration_set" in d else "",
                   _views(d, p) if "views" in d else VIEWS)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "stats_file": self.stats_file, "uses_embedding": self.uses_embedding,
            "flag_threshold": self.flag_threshold, "refuse_threshold": self.refuse_threshold,
            "max_widen": self.max_widen, "n_stats": self.n_stats,
            "n_calibration": self.n_calibration, "clean_flagged": self.clean_flagged}
        if self.calibration_set:
            d["calibration_set"] = self.calibration_set
        if self.views != VIEWS:
            d["views"] = list(self.views)
        return d


def _views(d: Any, p: str) -> tuple[str, ...]:
    views = F.texts(d, "views", p)
    for i, v in enumerate(views):
        if v not in VIEWS:
            raise F.bad(f"{p}.views[{i}]", f"{v!r} is not one of {', '.join(VIEWS)}")
    return tuple(views)


@dataclass(frozen=True)
class MondrianCell:
    sex: str                         # F | M
    view: str                        # hip | pelvis
    tertile: int                     # 0 low, 1 middle, 2 high predicted BMD (per sex and view)
    halfwidth_gcm2: float            # split-conformal half-width of this cell
    n: int                           # calibration cases in the cell

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.sex, self.view, self.tertile)


@dataclass(frozen=True)
class MondrianIntervals:
    """Half-widths per sex × view × predicted-BMD tertile (Mondrian split-conformal)."""

    coverage: float                               # nominal, e.g. 0.9
    edges: Mapping[tuple[str, str], tuple[float, float]]  # (sex, view) → tertile cut points
    cells: Mapping[tuple[str, str, int], MondrianCell]
    fallback_halfwidth_gcm2: float                # pooled half-width, for a cell never seen

    @classmethod
    def from_dict(cls, d: Any, p: str) -> MondrianIntervals:
        d = F.obj(d, p)
        F.keys(d, p, ("method", "coverage", "edges", "cells", "fallback_halfwidth_gcm2"))
        F.text(d, "method", p, choices=("mondrian-split-conformal",))
        edges: dict[tuple[str, str], tuple[float, float]] = {}
        raw_edges = d["edges"]
        if not isinstance(raw_edges, list):
            raise F.bad(f"{p}.edges", "expected a list of {sex, view, cuts_gcm2}")
        for i, e in enumerate(raw_edges):
            ep = f"{p}.edges[{i}]"
            e = F.obj(e, ep)
            F.keys(e, ep, ("sex", "view", "cuts_gcm2"))
            cuts = e["cuts_gcm2"]
            if (not isinstance(cuts, list) or len(cuts) != 2
                    or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                               for c in cuts) or not cuts[0] <= cuts[1]):
                raise F.bad(f"{ep}.cuts_gcm2", "expected two ascending numbers")
            edges[(F.text(e, "sex", ep, choices=SEXES), F.text(e, "view", ep, choices=VIEWS))] = \
                (float(cuts[0]), float(cuts[1]))
        cells: dict[tuple[str, str, int], MondrianCell] = {}
        raw_cells = d["cells"]
        if not isinstance(raw_cells, list) or not raw_cells:
            raise F.bad(f"{p}.cells", "expected a non-empty list of cells")
        for i, c in enumerate(raw_cells):
            cp = f"{p}.cells[{i}]"
            c = F.obj(c, cp)
            F.keys(c, cp, ("sex", "view", "tertile", "halfwidth_gcm2", "n"))
            cell = MondrianCell(F.text(c, "sex", cp, choices=SEXES),
                                F.text(c, "view", cp, choices=VIEWS),
                                int(F.number(c, "tertile", cp, low=0, high=2, integer=True)),
                                float(F.number(c, "halfwidth_gcm2", cp, low=0, open_low=True,
                                               high=1.0)),
                                int(F.number(c, "n", cp, low=1, integer=True)))
            if cell.key in cells:
                raise F.bad(cp, f"cell {cell.key} appears twice")
            if cell.key[:2] not in edges:
                raise F.bad(cp, f"no tertile edges for sex {cell.sex} view {cell.view}")
            cells[cell.key] = cell
        return cls(float(F.number(d, "coverage", p, low=0, open_low=True, high=0.999)), edges,
                   cells, float(F.number(d, "fallback_halfwidth_gcm2", p, low=0, open_low=True,
                                         high=1.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "mondrian-split-conformal", "coverage": self.coverage,
                "edges": [{"sex": s, "view": v, "cuts_gcm2": list(c)}
                          for (s, v), c in sorted(self.edges.items())],
                "cells": [{"sex": c.sex, "view": c.view, "tertile": c.tertile,
                           "halfwidth_gcm2": c.halfwidth_gcm2, "n": c.n}
                          for _, c in sorted(self.cells.items())],
                "fallback_halfwidth_gcm2": self.fallback_halfwidth_gcm2}

    def tertile(self, bmd: float, sex: str, view: str) -> int | None:
        cuts = self.edges.get((sex, view))
        if cuts is None:
            return None
        return 0 if bmd < cuts[0] else (1 if bmd < cuts[1] else 2)

    def halfwidth(self, bmd: float, sex: str, view: str) -> tuple[float, str]:
        """(half-width, the cell's name) for a prediction; the pooled width if no cell fits."""
        t = self.tertile(bmd, sex, view)
        cell = None if t is None else self.cells.get((sex, view, t))
        if cell is None:
            return self.fallback_halfwidth_gcm2, "pooled"
        return cell.halfwidth_gcm2, f"{sex}/{view}/{('low', 'mid', 'high')[t]}"  # type: ignore[index]


@dataclass(frozen=True)
class Reliability:
    """The whole section: shift policy (optional) and Mondrian intervals (optional)."""

    shift: ShiftPolicy | None
    intervals: MondrianIntervals | None

    @classmethod
    def from_dict(cls, d: Any, p: str = "reliability") -> Reliability:
        d = F.obj(d, p)
        F.keys(d, p, ("format",), ("shift", "intervals"))
        F.text(d, "format", p, choices=(RELIABILITY_FORMAT,))
        shift = ShiftPolicy.from_dict(d["shift"], f"{p}.shift") if "shift" in d else None
        iv = MondrianIntervals.from_dict(d["intervals"], f"{p}.intervals") \
            if "intervals" in d else None
        if shift is None and iv is None:
            raise F.bad(p, "needs shift, intervals or both")
        return cls(shift, iv)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": RELIABILITY_FORMAT}
        if self.shift is not None:
            d["shift"] = self.shift.to_dict()
        if self.intervals is not None:
            d["intervals"] = self.intervals.to_dict()
        return d
