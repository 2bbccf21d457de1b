"""Accuracy-vs-latency benchmarks across runtimes and precisions (`bmd-edge benchmark`).

runner.run_benchmark(BenchConfig) → BenchResult; table renders it (rich, Markdown, JSON, PNG);
gate.check_floors judges it. machine / flops / peak / decode explain the numbers.
"""

from __future__ import annotations

from bmd_edge.benchmark.gate import FloorViolation, check_floors
from bmd_edge.benchmark.measure import MeasureConfig
from bmd_edge.benchmark.runner import BenchConfig, BenchResult, VariantResult, run_benchmark

__all__ = ["BenchConfig", "BenchResult", "FloorViolation", "MeasureConfig", "VariantResult",
           "check_floors", "run_benchmark"]
