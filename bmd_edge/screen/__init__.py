"""Opportunistic screening of whole archives: `bmd-edge screen SOURCE --out results/`.

The same torch-free `Predictor` as `predict`, run over millions of files by Ray Data (an actor
pool, one bundle load per actor) on a laptop or a cluster, with results in Parquet parts that
are written atomically and keyed so a rerun only does what is missing.

Modules, one job each:
- `keys`     keyed hashes (HMAC, per-output-folder salt): stored keys that re-identify nobody.
- `listing`  SOURCE (folder, manifest CSV, Parquet/CSV listing) → inputs with clinical facts.
- `store`    the results folder: settings, lock, atomic parts, the keys already done.
- `rows`     the Parquet row schema (one row per hip) and how a Prediction becomes a row.
- `worker`   the Ray actor: read, digest, prepare, infer, write one part per batch.
- `engine`   ray.init, the dataset pipeline, progress.
- `report`   the summary (counts, refusals by reason, screen-positive rate by sex/age band, PNG).

Ray and pyarrow come with the `scale` extra and are imported inside functions, so the edge
install (`pip install bmd-edge`) never needs them.
"""

from __future__ import annotations
