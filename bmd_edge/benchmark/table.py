"""Render a BenchResult: rich table (terminal), Markdown, JSON and a PNG plot.

JSON schema (`schema_version` "bmd-edge-benchmark/1"), top-level keys:
  schema_version, created (ISO UTC), machine {cpu_model, logical_cores, physical_cores,
  available_cores, isa[], flags[], versions{}, platform, has_bf16, has_vnni},
  config {threads, runs, warmup, batch_sizes, streams, throughput_seconds, isolate, bundle,
  checkpoint, peak_size}, dataset {source, n, image_size, n_low_bmd, threshold_gcm2, preprocess},
  peaks [{runtime, precision, gflops, graph, size, threads}],
  flops {gflops, macs, by_op, n_nodes, uncounted, source, batch} (or {gflops: null, reason}),
  variants [{name, runtime, precision, status, reason, file, bundle_variant, size_mb,
  metrics {mae, rmse, r2, auc}, latency_ms {p50, p95, p99, mean, n} | null, first_inference_ms,
  load_ms, throughput [{label, batch, streams, img_s}], best_throughput, peak_rss_mib,
  rss_delta_mib, peak_rss_all_mib, threads, precision_used, speedup_vs_pytorch, gflops,
  achieved_gflops_b1, achieved_gflops_thr, peak_fraction_b1, peak_fraction_thr, peak_ref, notes[],
  pareto}], decode [{format, size, file_kb, status, read_ms, preprocess_ms, total_ms, runs}].
Units: ms, MiB (RSS), MB (file size, 10^6 bytes), GFLOP/s, g/cm². null = not measured (see reason).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bmd_edge.benchmark.runner import BenchResult, VariantResult, result_to_dict

SCHEMA_VERSION = "bmd-edge-benchmark/1"

COLUMNS = ("variant", "status", "MB", "MAE", "RMSE", "R²", "AUC", "p50 ms", "p95 ms", "p99 ms",
           "img/s (cfg)", "1st ms", "RSS MiB (Δ)", "thr", "precision used", "× PyTorch", "GFLOPs",
           "% peak b1/thr")


def _points(rows: list[VariantResult]) -> list[tuple[VariantResult, float, float]]:
    """(row, MAE, p50 ms) of every measured row that has both."""
    out = []
    for r in rows:
        mae, p50 = r.metrics.get("mae"), (r.latency_ms or {}).get("p50")
        if r.status == "ok" and mae is not None and p50 is not None:
            out.append((r, float(mae), float(p50)))
    return out


def pareto_front(rows: list[VariantResult]) -> set[str]:
    """Names of measured rows no other row beats on both MAE and p50 latency (lower is better)."""
    pts = _points(rows)
    return {r.name for r, mae, lat in pts
            if not any(m2 <= mae and l2 <= lat and (m2 < mae or l2 < lat) for _, m2, l2 in pts)}


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def row_cells(r: VariantResult, front: set[str]) -> list[str]:
    """The table cells of one row (shared by rich and Markdown)."""
    name = r.name + (" ★" if r.name in front else "")
    status = r.status if r.status == "ok" else r.reason or r.status
    lat = r.latency_ms or {}
    best = r.best_throughput
    thr = f"{best['img_s']:.1f} ({best['label']})" if best else "–"
    rss = "–" if r.peak_rss_mib is None else (
        f"{r.peak_rss_mib:.0f}" + (f" ({r.rss_delta_mib:+.0f})" if r.rss_delta_mib is not None else ""))
    frac = "–" if r.peak_fraction_b1 is None else (
        f"{100 * r.peak_fraction_b1:.0f}/{_f(None if r.peak_fraction_thr is None else 100 * r.peak_fraction_thr, '.0f')}")
    m = r.metrics
    size = _f(r.size_mb, ".1f" if (r.size_mb or 0) >= 1 else ".3f")
    return [name, status, size, _f(m.get("mae"), ".4f"), _f(m.get("rmse"), ".4f"),
            _f(m.get("r2"), ".3f"), _f(m.get("auc"), ".3f"), _f(lat.get("p50"), ".2f"),
            _f(lat.get("p95"), ".2f"), _f(lat.get("p99"), ".2f"), thr, _f(r.first_inference_ms, ".1f"),
            rss, "–" if r.threads is None else str(r.threads), r.precision_used or "–",
            _f(r.speedup_vs_pytorch, ".2f"), _f(r.gflops, ".3f"), frac]


def header_lines(res: BenchResult) -> list[str]:
    d = res.dataset
    lines = [f"Machine: {res.machine.line()}",
             f"Cases: {d['source']} — {d['n']} cases ({d['n_low_bmd']} below "
             f"{d['threshold_gcm2']} g/cm²), {d['image_size']}² px; threads {res.config['threads']}, "
             f"{res.config['runs']} timed batch-1 runs per variant"]
    if res.peaks:
        lines.append("Matmul peaks (GFLOP/s, same runtime): " + ", ".join(
            f"{p['runtime']} {p['precision']} {p['gflops']:.0f}" for p in res.peaks if p.get("gflops")))
    if res.flops.get("gflops") is not None:
        lines.append(f"Model cost: {res.flops['gflops']:.3f} GFLOPs/inference counted from "
                     f"{res.flops['source']} ({res.flops['n_nodes']} Conv/MatMul/Gemm nodes)")
    return lines


# The terminal table keeps the columns that decide a choice; the Markdown/JSON have them all.
# Listed in order of importance: on a narrow terminal the tail is dropped, never truncated.
TERMINAL_COLUMNS = ("variant", "status", "MAE", "p50 ms", "× PyTorch", "AUC", "img/s (cfg)",
                    "p99 ms", "RSS MiB (Δ)", "% peak b1/thr", "precision used", "1st ms", "MB")


def _fit_columns(rows: list[list[str]], width: int) -> list[str]:
    """The most important TERMINAL_COLUMNS whose widest cells fit in `width` characters."""
    need = {c: max([len(c), *(len(r[COLUMNS.index(c)]) for r in rows)]) + 3 for c in TERMINAL_COLUMNS}
    chosen: list[str] = []
    used = 0
    for c in TERMINAL_COLUMNS:
        if used + need[c] <= width or len(chosen) < 3:
            chosen.append(c)
            used += need[c]
    return chosen


def render_rich(res: BenchResult, console: Any | None = None) -> None:
    """Print the machine line, a table that fits the terminal, why rows were not measured, and
    the decode rows."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for line in header_lines(res):
        console.print(line, highlight=False)
    front = pareto_front(res.variants)
    rows = []
    for r in res.variants:
        cells = row_cells(r, front)
        cells[1] = r.status
        rows.append(cells)
    cols = [c for c in COLUMNS if c in _fit_columns(rows, console.width)]   # table order
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for c in cols:
        table.add_column(c, no_wrap=True)
    for r, cells in zip(res.variants, rows):
        table.add_row(*(cells[COLUMNS.index(c)] for c in cols),
                      style=None if r.status == "ok" else "dim")
    console.print(table)
    for r in res.variants:
        if r.status != "ok":
            console.print(f"  {r.name}: {r.reason}", highlight=False)
    if res.decode:
        dec = Table(title="Decode + preprocess (read_image + preprocess, median ms)",
                    box=box.SIMPLE_HEAD)
        for c in ("format", "size", "file KB", "read ms", "preprocess ms", "total ms"):
            dec.add_column(c)
        for d in res.decode:
            dec.add_row(*_decode_cells(d))
        console.print(dec)
    hidden = [c for c in TERMINAL_COLUMNS if c not in cols]
    more = f"; hidden at this width: {', '.join(hidden)}" if hidden else ""
    console.print(f"★ = Pareto front (MAE vs p50 latency); all columns in latency.md{more}",
                  highlight=False)


def _decode_cells(d: dict) -> list[str]:
    if d.get("status") != "ok":
        return [d["format"], f"{d['size']}²", "–", d.get("reason", "failed"), "–", "–"]
    return [d["format"], f"{d['size']}²", f"{d['file_kb']:.0f}", f"{d['read_ms']:.2f}",
            f"{d['preprocess_ms']:.2f}", f"{d['total_ms']:.2f}"]


def to_markdown(res: BenchResult) -> str:
    front = pareto_front(res.variants)
    out = ["# bmd-edge benchmark", "", *[f"- {line}" for line in header_lines(res)],
           f"- Created {res.created}", "",
           "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in res.variants:
        out.append("| " + " | ".join(c.replace("|", "/") for c in row_cells(r, front)) + " |")
    out += ["", "★ = Pareto front (MAE vs p50 latency). Latency: batch 1, wall time of one call. "
            "img/s: best of batch sizes × OpenVINO streams, named bB×S. RSS: peak of the variant's "
            "own process after load + batch-1 inference (Δ: above the process before the model "
            "loaded, which already holds the runtime and the case arrays). % peak: achieved "
            "GFLOP/s (counted GFLOPs ÷ p50, or × img/s) over the same runtime's measured matmul "
            "peak (int8 rows vs int8 peak)."]
    notes = [f"- {r.name}: {'; '.join(r.notes)}" for r in res.variants if r.notes]
    if notes:
        out += ["", "Notes:", *notes]
    if res.decode:
        out += ["", "## Decode + preprocess (median ms)", "",
                "| format | size | file KB | read ms | preprocess ms | total ms |", "|---|---|---|---|---|---|"]
        out += ["| " + " | ".join(_decode_cells(d)) + " |" for d in res.decode]
    return "\n".join(out) + "\n"


def to_json(res: BenchResult) -> dict[str, Any]:
    d = {"schema_version": SCHEMA_VERSION, **result_to_dict(res)}
    front = pareto_front(res.variants)
    for v in d["variants"]:
        v["pareto"] = v["name"] in front
    return d


def plot_png(res: BenchResult, path: Path) -> Path | None:
    """MAE vs p50 latency, one point per measured row, Pareto front joined; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    front = pareto_front(res.variants)
    pts = _points(res.variants)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for r, mae, p50 in pts:
        on = r.name in front
        ax.scatter(p50, mae, s=60 if on else 30, marker="*" if on else "o",
                   color="C3" if on else "C0", zorder=3)
        ax.annotate(r.name, (p50, mae), textcoords="offset points", xytext=(5, 4), fontsize=8)
    fr = sorted((p50, mae) for r, mae, p50 in pts if r.name in front)
    if len(fr) > 1:
        ax.step([p[0] for p in fr], [p[1] for p in fr], where="post", color="C3", lw=1, alpha=0.6,
                label="Pareto front")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(f"p50 latency, batch 1, {res.config['threads']} threads (ms)")
    ax.set_ylabel("MAE (g/cm²)")
    ax.set_title("bmd-edge: accuracy vs latency", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(res: BenchResult, out: Path) -> dict[str, Path]:
    """DIR/latency.md, DIR/latency.json, DIR/latency.png (the PNG only with matplotlib)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "latency.md", "json": out / "latency.json"}
    paths["md"].write_text(to_markdown(res), encoding="utf-8")
    paths["json"].write_text(json.dumps(to_json(res), indent=2, default=str) + "\n", encoding="utf-8")
    png = plot_png(res, out / "latency.png")
    if png is not None:
        paths["png"] = png
    return paths
