"""The screening summary: what an operator checks each morning, from the Parquet parts alone.

Counts, refusals by kind (with the most common reasons), WHO categories, the screen-positive
rate by sex and age band, and a BMD histogram (PNG) — over every row of the current model in
the results folder, so a resumed or nightly run reports the whole archive, plus this run's own
counts. Written as summary.json (for machines) and summary.md (for people), atomically.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bmd_edge.screen.store import TMP_PREFIX, ResultsFolder, atomic_write_text

AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<50", 0, 50), ("50-59", 50, 60), ("60-69", 60, 70), ("70-79", 70, 80), ("80+", 80, 1e9))
SUMMARY_COLUMNS = ["key", "hip", "status", "refusal_kind", "refusal_reason", "bmd_gcm2",
                   "who_category", "screen_positive", "threshold_gcm2", "age", "sex",
                   "model_name", "model_version", "variant"]


@dataclass(frozen=True)
class Stratum:
    """Screen-positive rate in one sex × age-band cell (ok rows only)."""

    sex: str
    age_band: str
    n: int
    n_positive: int

    @property
    def rate(self) -> float | None:
        return self.n_positive / self.n if self.n else None


@dataclass(frozen=True)
class Summary:
    """The whole folder's results for one model, plus this run's own counts."""

    model: Mapping[str, str]
    n_rows: int                      # rows of this model (one per hip)
    n_inputs: int                    # distinct keys
    n_ok: int
    n_failed: int
    refusals_by_kind: Mapping[str, int]
    top_reasons: tuple[tuple[str, int], ...]
    who_categories: Mapping[str, int]
    strata: tuple[Stratum, ...]
    n_positive: int
    run: Mapping[str, Any]
    histogram_png: str | None        # file name in OUT, None when matplotlib is missing

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strata"] = [dict(asdict(s), rate=s.rate) for s in self.strata]
        d["top_reasons"] = [{"reason": r, "n": n} for r, n in self.top_reasons]
        return d


def age_band(age: float | None) -> str:
    """The band name for an age in years; "unknown" for None."""
    if age is None:
        return "unknown"
    for name, lo, hi in AGE_BANDS:
        if lo <= age < hi:
            return name
    return "unknown"


def summarise(folder: ResultsFolder, model: Mapping[str, str], run: Mapping[str, Any]) -> Summary:
    """Read OUT's parts (summary columns only), write summary.json/.md and the histogram."""
    t = folder.read(SUMMARY_COLUMNS).to_pylist()
    rows = [r for r in t if all(r[k] == model[k] for k in ("model_name", "model_version",
                                                            "variant"))]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    cells: dict[tuple[str, str], list[int]] = {}
    for r in ok:
        cell = cells.setdefault((r["sex"] or "unknown", age_band(r["age"])), [0, 0])
        cell[0] += 1
        cell[1] += int(bool(r["screen_positive"]))
    order = {name: i for i, (name, _, _) in enumerate(AGE_BANDS)}
    strata = tuple(Stratum(sex, band, n, k) for (sex, band), (n, k) in
                   sorted(cells.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))))
    threshold = next((r["threshold_gcm2"] for r in ok if r["threshold_gcm2"] is not None), None)
    png = _histogram(folder.root / "histogram.png", [r["bmd_gcm2"] for r in ok],
                     [r["sex"] for r in ok], threshold)
    summary = Summary(
        model=dict(model), n_rows=len(rows), n_inputs=len({r["key"] for r in rows}),
        n_ok=len(ok), n_failed=len(failed),
        refusals_by_kind=dict(Counter(r["refusal_kind"] or "unknown" for r in failed)
                              .most_common()),
        top_reasons=tuple(Counter(_reason_shape(r["refusal_reason"]) for r in failed)
                          .most_common(8)),
        who_categories=dict(Counter(r["who_category"] for r in ok).most_common()),
        strata=strata, n_positive=sum(int(bool(r["screen_positive"])) for r in ok),
        run=dict(run), histogram_png=png)
    atomic_write_text(folder.root / "summary.json",
                      json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
    atomic_write_text(folder.root / "summary.md", to_markdown(summary))
    return summary


def _reason_shape(reason: str | None) -> str:
    """A reason without the per-input label, so equal reasons group together."""
    text = reason or "unknown"
    if text.startswith("input ") and len(text) > 19:  # "input <12 hex>..." from the worker
        text = "input" + text[18:]
    return text[:160]


def to_markdown(s: Summary) -> str:
    """summary.md: the numbers first, then the strata table."""
    m = s.model
    run = s.run
    lines = [f"# Screening summary — {m['model_name']} {m['model_version']} ({m['variant']})",
             "",
             (f"Results folder: {s.n_rows} rows (one per hip) from {s.n_inputs} inputs: "
              f"{s.n_ok} ok, {s.n_failed} failed; {s.n_positive} screen-positive "
              f"({_pct(s.n_positive, s.n_ok)} of ok)."),
             "",
             (f"This run ({run.get('run_id')}): {run.get('listed')} listed, "
              f"{run.get('duplicates')} duplicates, {run.get('already_done')} already done, "
              f"{run.get('pending')} run → {run.get('ok')} ok, {run.get('failed')} failed in "
              f"{float(run.get('seconds', 0)):.1f} s."),
             "", "## Refusals by kind", "", "| kind | n |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in s.refusals_by_kind.items()] or ["| none | 0 |"]
    lines += ["", "Most common reasons:", ""]
    lines += [f"- {n} × {r}" for r, n in s.top_reasons] or ["- none"]
    lines += ["", "## WHO categories (ok rows)", "", "| category | n |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in s.who_categories.items()]
    lines += ["", "## Screen-positive rate by sex and age band (ok rows)", "",
              "| sex | age band | n | positive | rate |", "|---|---|---|---|---|"]
    lines += [f"| {c.sex} | {c.age_band} | {c.n} | {c.n_positive} | {_pct(c.n_positive, c.n)} |"
              for c in s.strata]
    if s.histogram_png:
        lines += ["", f"![BMD histogram]({s.histogram_png})"]
    return "\n".join(lines) + "\n"


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.1f} %" if n else "n/a"


def _histogram(path: Path, bmd: list[float], sex: list[str | None],
               threshold: float | None) -> str | None:
    """BMD histogram by sex with the screening threshold; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    bins = [0.3 + 0.025 * i for i in range(57)]
    for s, colour in (("F", "tab:red"), ("M", "tab:blue")):
        vals = [b for b, x in zip(bmd, sex) if x == s and b is not None]
        if vals:
            ax.hist(vals, bins=bins, alpha=0.6, color=colour, label=f"{s} (n={len(vals)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"screen < {threshold:g}")
    ax.set_xlabel("femoral-neck BMD, g/cm² (GE Lunar)")
    ax.set_ylabel("hips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path.name
