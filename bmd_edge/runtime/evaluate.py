"""Score a bundle variant on a labelled manifest, torch-free: `bmd-edge evaluate --model BUNDLE`.

Why here and not in training/: a bundle is what users run, so it is what they must be able to
score — on an edge install, with the runtime that will serve it. Each case goes through
`Predictor.prepare/infer` (the path `predict` uses), and the report is written by
`training.evaluate.write_report`, the same metrics/subgroups/plots as `evaluate --checkpoint`
and `cv` (that module imports torch only inside the functions that train or run torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.errors import ManifestError


def evaluate_bundle(bundle: str | Path | None, manifest: str | Path, out_dir: str | Path, *,
                    backend: str = "openvino", variant: str | None = None,
                    threads: int | None = None, allow_unsigned: bool = False,
                    batch_size: int = 16) -> dict[str, Any]:
    """Predict every labelled case of `manifest` with one bundle variant; write the report."""
    from bmd_edge.manifest import read_manifest
    from bmd_edge.runtime.predictor import Predictor
    from bmd_edge.training.evaluate import read_oracle, write_report

    m = read_manifest(manifest, require_label=True)
    cases = [c for c in m.cases if c.fn_bmd is not None]
    if len(cases) < 2:
        raise ManifestError(f"{manifest}: needs ≥ 2 cases with fn_bmd to evaluate, found "
                            f"{len(cases)}")
    p = Predictor.load(bundle, backend=backend, variant=variant, threads=threads,
                       allow_unsigned=allow_unsigned)
    prepared, gated = [], 0
    for c in cases:
        facts: dict[str, Any] = {k: v for k, v in c.record.values.items()
                                 if v is not None and k not in c.record.derived}
        age = facts.pop("age_xray")
        # force=True: a case the quality gate would refuse is still scored, and counted, so the
        # metrics cover the whole manifest (as the interval-coverage benchmark does).
        pc = p.prepare(c.image, age=age, side=c.side, select=c.select, force=True, **facts)
        gated += any("overridden with --force" in w for w in pc.warnings)
        prepared.append(pc)
    out = []
    for i in range(0, len(prepared), batch_size):
        out += p.infer(prepared[i:i + batch_size])
    pred = np.array([o.bmd_gcm2 for o in out], dtype=np.float64)
    attention = np.array([[dict(o.field_attention).get(n, 0.0) for n in p.field_names]
                          for o in out])
    truth = np.array([c.fn_bmd for c in cases], dtype=np.float64)
    return write_report(out_dir, cases, truth, {p.variant: pred}, p.variant,
                        attention=attention, oracle=read_oracle(manifest),
                        extra={"bundle": str(p.bundle.root), "variant": p.variant,
                               "backend": p.session.backend, "precision": p.precision,
                               "trust": p.bundle.trust.describe(), "manifest": str(manifest),
                               "quality_gate_overridden": gated})
