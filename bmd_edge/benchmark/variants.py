"""The variant rows of the benchmark table, as data, and how each row finds its model file.

Every row is always printed: a variant that is missing from the bundle, unsupported by this CPU
or that fails at run time keeps its row with the reason, so a reader sees what was NOT measured.
Rows map onto `bundle.json` `variants` {name: {file, runtime, precision, metrics}} by what the
entry says (runtime / file suffix, precision, and "ptq"/"qat" in its name or method); bundle
variants that match no canonical row are appended as extra rows under their own name.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bmd_edge.errors import InputError


@dataclass(frozen=True)
class VariantRow:
    """One canonical row: what runs, and at which precision."""

    name: str                 # row name in tables and --variants
    runtime: str              # "torch" | "onnxruntime" | "openvino"
    precision: str            # requested math: "fp32" | "bf16" | "int8"
    method: str | None = None   # "ptq" | "qat" for int8 rows that distinguish them
    hint: str | None = None   # OpenVINO INFERENCE_PRECISION_HINT ("f32" | "bf16"); None = default


CANONICAL: tuple[VariantRow, ...] = (
    VariantRow("pytorch-fp32", "torch", "fp32"),
    VariantRow("ort-fp32", "onnxruntime", "fp32"),
    VariantRow("ort-int8", "onnxruntime", "int8"),
    VariantRow("ov-f32", "openvino", "fp32", hint="f32"),
    VariantRow("ov-bf16", "openvino", "bf16", hint="bf16"),
    VariantRow("ov-int8-ptq", "openvino", "int8", "ptq", hint="f32"),
    VariantRow("ov-int8-qat", "openvino", "int8", "qat", hint="f32"),
)
CANONICAL_NAMES = tuple(r.name for r in CANONICAL)


@dataclass(frozen=True)
class VariantPlan:
    """A row plus what it will run, or why it will not run."""

    row: VariantRow
    file: Path | None = None           # model file (.xml/.onnx/.pt); None when absent
    bundle_variant: str | None = None  # the bundle.json variants key it came from
    status: str = "pending"            # "pending" | "absent" | "unsupported"
    reason: str = ""                   # why absent/unsupported, or a note (e.g. "IR from ONNX")

    @property
    def name(self) -> str:
        return self.row.name


@dataclass(frozen=True)
class _Entry:
    """A bundle variant, normalised."""

    key: str
    file: Path
    runtime: str       # "openvino" | "onnxruntime" | "torch"
    precision: str     # "fp32" | "int8" | "bf16" | other (kept verbatim)
    method: str | None


def _norm_precision(p: str) -> str:
    p = p.lower()
    if p in {"fp32", "f32", "float32", "float"}:
        return "fp32"
    if p in {"int8", "i8", "u8", "qdq", "int8-qdq"} or "int8" in p:
        return "int8"
    return p


def _entry(key: str, spec: Mapping[str, Any], root: Path) -> _Entry:
    file = root / str(spec.get("file", ""))
    runtime = str(spec.get("runtime", "")).lower()
    if file.suffix == ".xml":
        runtime = "openvino"
    elif file.suffix == ".onnx":
        runtime = "onnxruntime"   # OpenVINO can also read it; rows decide how they use it
    elif file.suffix in {".pt", ".pth"}:
        runtime = "torch"
    text = " ".join(str(spec.get(k, "")) for k in ("method", "quantization", "compression"))
    text = f"{key} {file.name} {text}".lower()
    method = "qat" if "qat" in text else "ptq" if "ptq" in text else None
    return _Entry(key, file, runtime, _norm_precision(str(spec.get("precision", "fp32"))), method)


def _pick(entries: list[_Entry], used: set[str], runtime: str, precision: str,
          method: str | None = None, prefer: str | None = None) -> _Entry | None:
    """First unused entry matching; int8 rows with a method need that method, else prefer one."""
    cands = [e for e in entries if e.runtime == runtime and e.precision == precision]
    if method is not None:
        cands = [e for e in cands if e.method == method]
    if prefer is not None:
        cands.sort(key=lambda e: e.method != prefer)
    for e in cands:
        if e.key not in used:
            return e
    return cands[0] if cands else None


def torch_status() -> str | None:
    """None when torch can be imported by a worker; else why not (without importing it here)."""
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):   # blocked (sys.modules["torch"] = None) or broken
        found = False
    return None if found else "torch is not installed (or not importable)"


def plan_variants(
    bundle_variants: Mapping[str, Mapping[str, Any]] | None,
    root: Path | None,
    *,
    checkpoint: Path | None = None,
    has_bf16: bool = False,
    only: tuple[str, ...] | None = None,
) -> list[VariantPlan]:
    """Resolve every canonical row (plus extra bundle variants) to a file or a reason."""
    entries = [_entry(k, v, root) for k, v in (bundle_variants or {}).items()] if root else []
    if checkpoint is None:
        checkpoint = next((e.file for e in entries if e.runtime == "torch"), None)
    used: set[str] = set()
    plans: list[VariantPlan] = []
    no_bundle = "absent: no bundle given (pass --model)"
    for row in CANONICAL:
        if row.runtime == "torch":
            why = torch_status()
            if why:
                plans.append(VariantPlan(row, status="absent", reason=f"absent: {why}"))
            elif checkpoint is None:
                plans.append(VariantPlan(row, status="absent", reason=(
                    "absent: no checkpoint (pass --checkpoint, or reference a .pt in bundle.json)")))
            elif not checkpoint.is_file():
                plans.append(VariantPlan(row, checkpoint, status="absent",
                                         reason=f"absent: checkpoint {checkpoint} does not exist"))
            else:
                plans.append(VariantPlan(row, checkpoint))
            continue
        if root is None:
            plans.append(VariantPlan(row, status="absent", reason=no_bundle))
            continue
        note = ""
        if row.runtime == "onnxruntime":
            e = _pick(entries, used, "onnxruntime", row.precision, prefer="qat")
        else:
            want = "fp32" if row.precision == "bf16" else row.precision
            e = _pick(entries, used, "openvino", want, row.method)
            if e is None and row.precision in {"fp32", "bf16"}:
                e = _pick(entries, used, "onnxruntime", "fp32")
                note = "OpenVINO reads the fp32 ONNX file (no fp32 IR in the bundle)" if e else ""
        if e is None:
            what = f"{row.method.upper()} " if row.method else ""
            plans.append(VariantPlan(row, status="absent", reason=(
                f"absent: bundle has no {what}{row.precision} model for {row.runtime}")))
            continue
        if e.runtime == row.runtime:   # OV reading the ONNX file leaves it to the ORT row too
            used.add(e.key)
        if row.precision == "bf16" and not has_bf16:
            plans.append(VariantPlan(row, e.file, e.key, "unsupported",
                                     "unsupported: no BF16 ISA (needs avx512_bf16 or amx_bf16)"))
            continue
        plans.append(VariantPlan(row, e.file, e.key, reason=note))
    for e in entries:   # bundle variants no canonical row took
        if e.key not in used and e.runtime != "torch":
            hint = "f32" if e.runtime == "openvino" else None
            plans.append(VariantPlan(VariantRow(e.key, e.runtime, e.precision, e.method, hint),
                                     e.file, e.key))
    if only:
        known = {p.name for p in plans}
        bad = [n for n in only if n not in known]
        if bad:
            raise InputError(f"unknown variant(s) {bad}; choose from {sorted(known)}")
        plans = [p for p in plans if p.name in only]
    return plans


def with_status(plan: VariantPlan, status: str, reason: str) -> VariantPlan:
    """A copy of `plan` with a new status (e.g. a file that vanished)."""
    return replace(plan, status=status, reason=reason)
