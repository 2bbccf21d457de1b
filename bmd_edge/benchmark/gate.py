"""Accuracy floors: `--min-auc` / `--max-mae` turn the benchmark into a release check.

Only measured rows (status "ok") are judged; a row that could not be measured is reported in the
table but is not a floor failure. A floor that cannot be checked on a measured row (AUC undefined
because the cases hold one class only) IS a failure: a floor nobody could verify must not pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from bmd_edge.benchmark.runner import VariantResult


@dataclass(frozen=True)
class FloorViolation:
    """One measured variant below a floor."""

    variant: str          # row name
    metric: str           # "auc" | "mae"
    value: float | None   # measured value; None when undefined
    limit: float          # the floor given

    def message(self) -> str:
        if self.value is None:
            return f"{self.variant}: {self.metric.upper()} is undefined, floor {self.limit} cannot be checked"
        op, flag = (">", "--max-mae") if self.metric == "mae" else ("<", "--min-auc")
        return f"{self.variant}: {self.metric.upper()} {self.value:.4f} {op} {flag} {self.limit}"


def check_floors(rows: list[VariantResult], min_auc: float | None = None,
                 max_mae: float | None = None) -> list[FloorViolation]:
    """Every (measured row, metric) outside its floor, in table order."""
    out: list[FloorViolation] = []
    for r in rows:
        if r.status != "ok":
            continue
        if min_auc is not None:
            auc = r.metrics.get("auc")
            if auc is None or auc < min_auc:
                out.append(FloorViolation(r.name, "auc", auc, min_auc))
        if max_mae is not None:
            mae = r.metrics.get("mae")
            if mae is None or mae > max_mae:
                out.append(FloorViolation(r.name, "mae", mae, max_mae))
    return out
