"""Train the canonical-crop BMD model on synthetic cohorts (every hip, locator-like jitter).

    python -m bmd_edge.training.crop_train --cohort DIR [--cohort DIR ...] --out RUN
        [--preset crop-cpu] [--epochs N] [--resume] [--max-samples N]

Writes RUN/best.pt (with the CropSpec), RUN/last.pt (resumable: rerun with --resume after an
interruption), RUN/history.csv and RUN/split.json (which films were held out for validation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bmd_edge.locate.crop import CropSpec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, action="append", required=True,
                    help="a `bmd-edge synth` folder (hip or pelvis view); repeat for several")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="crop-cpu")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-samples", type=int, default=None, help="subsample (smoke runs)")
    ap.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    ap.add_argument("--fov", type=float, default=None, help="crop field of view, head radii")
    ap.add_argument("--image-size", type=int, default=None, help="crop side in px (preset's)")
    ap.add_argument("--stop-at", default=None,
                    help="wall-clock deadline, UTC HH:MM: no epoch starts that would end after it")
    a = ap.parse_args(argv)

    import numpy as np

    from bmd_edge.training.config import resolve_config
    from bmd_edge.training.crop_data import CropAugment, samples_from_cohort, split_by_patient
    from bmd_edge.training.crop_dataset import CropDataset
    from bmd_edge.training.trainer import fit

    cfg = resolve_config(a.preset, epochs=a.epochs, threads=a.threads, image_size=a.image_size)
    spec = CropSpec(size=cfg.image_size, **({"fov_head_radii": a.fov} if a.fov else {}))
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.0f} s] {msg}", flush=True)

    samples = [s for c in a.cohort for s in samples_from_cohort(c)]
    if a.max_samples and len(samples) > a.max_samples:
        keep = np.random.default_rng(cfg.seed).choice(len(samples), a.max_samples, replace=False)
        samples = [samples[i] for i in sorted(keep)]
    train, val = split_by_patient(samples, cfg.val_fraction, cfg.seed)
    val = [s for s in val if s.labelled]  # validate on the labelled hips, as predict is judged
    log(f"config {cfg.to_dict()}")
    log(f"crop {spec.to_dict()}")
    log(f"{len(samples)} hips from {len(a.cohort)} cohorts; train {len(train)}, val {len(val)}")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "split.json").write_text(json.dumps({
        "cohorts": [str(c.resolve()) for c in a.cohort],
        "val_images": sorted({str(s.image) for s in val})}, indent=1), encoding="utf-8")
    aug = CropAugment()
    train_ds = CropDataset(train, spec, augment=aug, field_dropout=cfg.field_dropout,
                           field_dropout_all=cfg.field_dropout_all, seed=cfg.seed)
    val_ds = CropDataset(val, spec, seed=cfg.seed)
    log(f"patches ready ({sum(p.pixels.nbytes for p in train_ds.patches) / 2**20:.0f} MB)")
    resume = a.out / "last.pt" if a.resume and (a.out / "last.pt").is_file() else None
    res = fit(cfg, train, val, a.out, log=log, resume=resume, datasets=(train_ds, val_ds),
              crop=spec, stop_at=_deadline(a.stop_at))
    log(f"best epoch {res.best_epoch}: {res.best_metrics}")
    return 0


def _deadline(hhmm: str | None) -> float | None:
    """'HH:MM' (UTC, today or, if already past, tomorrow) → time.time() value."""
    if not hhmm:
        return None
    import datetime as dt

    h, m = (int(x) for x in hhmm.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    at = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if at <= now:
        at += dt.timedelta(days=1)
    return at.timestamp()


if __name__ == "__main__":
    sys.exit(main())
