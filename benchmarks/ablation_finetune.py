"""The fine-tuned rows of the paper-regime ablation: one seed, n = 233, encoder NOT frozen.

The main ablation (`benchmarks/ablation.py`) freezes the landmark-pretrained encoder to fit the
CPU budget. The paper fine-tunes. This adds, for CV seed 0 only (the same ten folds:
`make_folds` with the same seed), xattn/WSL1 and image-only trained end to end from the same
pretrained encoder (augmentation on, WSL1, early stopping on an inner split), so the report can
show whether fine-tuning changes the answer. Each finished fold is appended to
results/ablation/units_n233_finetune.jsonl in the same unit format; `fit` resumes from last.pt.

Usage: nice -n 10 python benchmarks/ablation_finetune.py [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ablation import UNITS
from ablation_prepare import cohort_dirs

ROWS = {"xattn/WSL1, fine-tuned": "xattn", "image-only, fine-tuned": "image"}


def main() -> None:
    import torch

    from bmd_edge.manifest import read_manifest
    from bmd_edge.training.config import resolve_config
    from bmd_edge.training.cv import run_cv
    from bmd_edge.training.probe_cv import read_results

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, default=Path("local/ablation"))
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    encoder = args.work / "pretrain" / "encoder.pt"
    pre = torch.load(encoder, map_location="cpu", weights_only=False)["config"]
    cases = list(read_manifest(cohort_dirs(args.work)["n233"] / "manifest.csv",
                               require_label=True).cases)
    base = resolve_config("cpu-fast", arch=pre["arch"], width=int(pre["width"]),
                          image_size=int(pre["image_size"]), d_model=64, n_heads=4, n_layers=3,
                          batch_size=32, lr=5e-4, epochs=args.epochs, patience=4,
                          warmup_epochs=1.0, workers=0, threads=1, field_dropout=0.0,
                          field_dropout_all=0.0, stop_metric="loss", pretrained=str(encoder))
    import dataclasses

    configs = {name: dataclasses.replace(base, fusion=f) for name, f in ROWS.items()}
    out = UNITS / "units_n233_finetune.jsonl"
    done = {(u["fold"], u["row"]) for u in read_results(out)}
    started = time.time()

    def on_fold(f: int, res) -> None:
        te = res.folds[f][1]
        with open(out, "a") as fh:
            for name in ROWS:
                if (f, name) in done:
                    continue
                fh.write(json.dumps({
                    "seed": 0, "fold": f, "row": name, "k": 10, "n_train": len(res.folds[f][0]),
                    "n_test": len(te), "metrics": res.per_fold[name][-1],
                    "test_idx": [int(i) for i in te],
                    "pred": [round(float(x), 5) for x in res.oof[name][te]],
                    "seconds": round(time.time() - started, 1), "config": base.to_dict()},
                    default=float) + "\n")
        print(f"{time.strftime('%H:%M:%S')} fine-tuned fold {f + 1}/10 done", flush=True)

    run_cv(configs, cases, 10, args.work / "finetune", seed=0, baselines=False, resume=True,
           log=lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True), on_fold=on_fold)
    print(np.round(time.time() - started), "s")


if __name__ == "__main__":
    main()
