"""Repeated stratified k-fold CV of the paper's rows on a FROZEN pretrained image encoder.

Why frozen: the paper fine-tunes an ImageNet ResNet34 at 224 px on a GPU. On a shared 2-core CPU
the same protocol (10 folds × ≥ 3 seeds × 4 deep rows) is out of reach, so the encoder's feature
map is computed once per image and only what sits on top of it is trained per fold: the 1×1
token projection, position embedding, metadata encoder, fusion (cross-attention, concatenation)
and head — a linear-probe-style protocol. Every deep row shares the same frozen features, so the
rows still differ only in how they fuse, which is the paper's question.

Resumable: each finished (seed, fold, row) appends one JSON line (metrics, test indices,
predictions) to a JSONL file; a rerun skips what the file already holds, so an interrupted run
loses at most one model's training, and partial tables can be written at any time.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bmd_edge.errors import InputError
from bmd_edge.training.data import case_label

DEEP_ROWS = {"xattn/WSL1": "xattn", "concat/WSL1": "concat", "image-only": "image",
             "metadata-only": "meta"}
BASELINE_ROWS = ("OLS", "OST")
ROWS = (*DEEP_ROWS, *BASELINE_ROWS)


@dataclass(frozen=True)
class ProbeConfig:
    """What is trained on top of the frozen features (the same for every deep row)."""

    d_model: int = 64
    n_heads: int = 4  # the paper's four heads
    n_layers: int = 3  # the paper's three layers
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 32
    epochs: int = 100  # maximum; early stopping on the inner validation loss
    patience: int = 15
    val_fraction: float = 0.15  # inner split of each training fold, for early stopping only
    warmup_epochs: float = 3.0


# ---------------------------------------------------------------- features (frozen encoder)

def load_encoder(path: str | Path) -> tuple[nn.Module, dict[str, object]]:
    """The pretrained ResNet trunk (eval mode) and its pretraining config."""
    from bmd_edge.model.resnet import create_resnet

    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    cfg = dict(blob["config"])
    net = create_resnet(str(cfg["arch"]), width=int(cfg["width"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval(), cfg


@torch.no_grad()
def extract_features(encoder: nn.Module, cases: Sequence[object], size: int,
                     batch: int = 64) -> np.ndarray:
    """(N, C, S/32, S/32) float32 feature maps of the preprocessed images, computed once."""
    from bmd_edge.preprocess import PreprocessSpec, preprocess
    from bmd_edge.training.data import load_pixels

    spec = PreprocessSpec(size=size)
    out = []
    for b in range(0, len(cases), batch):
        imgs = np.stack([preprocess(load_pixels(c), spec, side=getattr(c, "side", None),
                                    select=getattr(c, "select", None))
                         for c in cases[b:b + batch]])
        out.append(encoder(torch.from_numpy(imgs)).numpy())
    return np.concatenate(out).astype(np.float32)


def cached_features(cache: Path, encoder_path: Path, cases: Sequence[object], size: int
                    ) -> np.ndarray:
    """extract_features, stored in `cache` (.npy) and reused while the encoder file is unchanged."""
    stamp = f"{encoder_path.stat().st_size}-{encoder_path.stat().st_mtime_ns}-{len(cases)}"
    meta = cache.with_suffix(".json")
    if cache.is_file() and meta.is_file() and json.loads(meta.read_text()).get("stamp") == stamp:
        return np.load(cache)
    encoder, _ = load_encoder(encoder_path)
    feats = extract_features(encoder, cases, size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, feats)
    meta.write_text(json.dumps({"stamp": stamp, "shape": list(feats.shape)}))
    return feats


# ---------------------------------------------------------------- one deep row on features

def encode_fields(cases: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """(values, present) float32 arrays in schema order, as the model reads them."""
    from bmd_edge.schema import encode

    enc = [encode(c.record) for c in cases]
    return (np.stack([e[0] for e in enc]).astype(np.float32),
            np.stack([e[1] for e in enc]).astype(np.float32))


class PositionwiseProjection(nn.Module):
    """Feature map (B, C, g, g) -> (B, d, g, g) with its own C -> d projection per position.

    Why not the model's shared 1×1 projection: the frozen trunk was trained with a flattened
    head, so *where* a feature fires carries the information; a shared projection followed by the
    models' mean over tokens would average that away (ridge regression on the pooled features
    explains R² 0.07 of the label, on the flattened map 0.32, n = 233). Projected per position,
    the mean over tokens equals a linear map of the flattened features, as a linear probe uses,
    and the tokens stay separate for cross-attention.
    """

    def __init__(self, channels: int, d_model: int, grid: int) -> None:
        super().__init__()
        t = grid * grid
        self.weight = nn.Parameter(torch.randn(t, channels, d_model) / math.sqrt(channels))
        self.bias = nn.Parameter(torch.zeros(t, d_model))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        b, _, h, w = fmap.shape
        tokens = torch.einsum("btc,tcd->btd", fmap.flatten(2).transpose(1, 2), self.weight)
        return (tokens + self.bias).transpose(1, 2).reshape(b, -1, h, w)


def build_probe(fusion: str, channels: int, grid: int, cfg: ProbeConfig,
                label_mean: float, label_std: float) -> nn.Module:
    """A bmd-edge model of `fusion` whose image backbone is the identity on cached features."""
    from bmd_edge.model import ModelConfig, build_model

    mcfg = ModelConfig(arch="resnet10t", fusion=fusion, d_model=cfg.d_model, n_heads=cfg.n_heads,
                       n_layers=cfg.n_layers, dropout=cfg.dropout, image_size=32 * grid,
                       label_mean=label_mean, label_std=label_std)
    model = build_model(mcfg)
    model.set_label_scale(label_mean, label_std)
    enc = getattr(model, "image_encoder", None)
    if enc is not None:  # the frozen encoder already ran: feed its feature map straight in
        enc.backbone = nn.Identity()
        enc.proj = PositionwiseProjection(channels, cfg.d_model, grid)
    return model


def _predict(model: nn.Module, feats: torch.Tensor, values: torch.Tensor,
             present: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(feats, values, present)[0].numpy().astype(np.float64)


def fit_probe(fusion: str, feats: np.ndarray, values: np.ndarray, present: np.ndarray,
              labels: np.ndarray, train: np.ndarray, val: np.ndarray, cfg: ProbeConfig,
              seed: int) -> nn.Module:
    """Train one row on cached features with AdamW, warm-up + cosine, early stopping on val loss."""
    from bmd_edge.model.losses import WeightedSmoothL1Loss
    from bmd_edge.training.trainer import lr_factor

    torch.manual_seed(seed)
    y = torch.from_numpy(labels.astype(np.float32))
    f, v, p = torch.from_numpy(feats), torch.from_numpy(values), torch.from_numpy(present)
    ytr = labels[train]
    model = build_probe(fusion, feats.shape[1], feats.shape[2], cfg, float(ytr.mean()),
                        max(float(ytr.std()), 1e-3))
    criterion = WeightedSmoothL1Loss().fit(ytr)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(train) // cfg.batch_size)
    total, warm = cfg.epochs * steps, round(cfg.warmup_epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warm, 0.02))
    rng = np.random.default_rng([seed, 1])
    vi = torch.from_numpy(val)
    best, best_state, bad = math.inf, None, 0
    for _ in range(cfg.epochs):
        model.train()
        order = rng.permutation(train)
        for b in range(steps):  # drop the last partial batch: a batch of 1 breaks LayerNorm stats
            idx = torch.from_numpy(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            loss = criterion(model(f[idx], v[idx], p[idx])[0], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(criterion(model(f[vi], v[vi], p[vi])[0], y[vi]))
        if val_loss < best - 1e-6:
            best, bad = val_loss, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


# ---------------------------------------------------------------- the resumable runner

def unit_seed(seed: int, fold: int, row: str) -> int:
    """A stable torch seed per (CV seed, fold, row): reruns reproduce the same model."""
    return zlib.crc32(f"{seed}/{fold}/{row}".encode()) & 0x7FFFFFFF


def read_results(path: Path) -> list[dict[str, object]]:
    """Every finished unit in a results JSONL (a torn last line from a kill is ignored)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def repair_results(path: Path) -> None:
    """Drop a torn last line (a kill mid-write), so the next append starts on a fresh line."""
    if not path.is_file():
        return
    text = path.read_text()
    if not text or text.endswith("\n"):
        return
    keep = [json.dumps(u, default=float) for u in read_results(path)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


def run_probe_cv(cases: Sequence[object], feats: np.ndarray, results: str | Path, *,
                 k: int, seeds: Sequence[int], rows: Sequence[str] = ROWS,
                 cfg: ProbeConfig = ProbeConfig(), max_units: int | None = None,
                 log: Callable[[str], None] | None = None,
                 on_unit: Callable[[dict[str, object]], None] | None = None) -> int:
    """Cross-validate `rows` over `seeds` × k folds; append each finished unit to `results`.

    Returns how many units were trained in this call (units already in the file are skipped).
    `max_units` stops early (tests, time-boxed runs); the next call continues where it stopped.
    """
    from bmd_edge.training.cv import make_folds, ols_baseline, ost_baseline
    from bmd_edge.training.metrics import all_metrics
    from bmd_edge.training.trainer import split_cases

    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise InputError(f"unknown ablation rows {unknown}; choose from {', '.join(ROWS)}")
    if len(feats) != len(cases):
        raise InputError(f"{len(feats)} feature maps for {len(cases)} cases")
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    repair_results(results)
    done = {(r["seed"], r["fold"], r["row"]) for r in read_results(results)}
    cases = list(cases)
    labels = np.array([case_label(c) for c in cases])
    values, present = encode_fields(cases)
    position = {id(c): i for i, c in enumerate(cases)}
    trained = 0
    torch.set_num_threads(1)
    for seed in seeds:
        for fold, (tr, te) in enumerate(make_folds(cases, k, seed)):
            todo = [r for r in rows if (seed, fold, r) not in done]
            if not todo:
                continue
            inner_tr, inner_val = split_cases([cases[i] for i in tr], cfg.val_fraction,
                                              seed * 100 + fold, use_split_column=False)
            itr = np.array([position[id(c)] for c in inner_tr])
            iva = np.array([position[id(c)] for c in inner_val])
            for row in todo:
                if max_units is not None and trained >= max_units:
                    return trained
                t0 = time.time()
                if row in DEEP_ROWS:
                    model = fit_probe(DEEP_ROWS[row], feats, values, present, labels, itr, iva,
                                      cfg, unit_seed(seed, fold, row))
                    pred = _predict(model, torch.from_numpy(feats[te]),
                                    torch.from_numpy(values[te]), torch.from_numpy(present[te]))
                else:
                    fn = ols_baseline if row == "OLS" else ost_baseline
                    pred = fn([cases[i] for i in tr], [cases[i] for i in te])
                unit = {"seed": seed, "fold": fold, "row": row, "k": k, "n_train": len(tr),
                        "n_test": len(te), "metrics": all_metrics(labels[te], pred),
                        "test_idx": [int(i) for i in te],
                        "pred": [round(float(x), 5) for x in pred],
                        "seconds": round(time.time() - t0, 2), "config": asdict(cfg)}
                with open(results, "a") as fh:  # one line per unit: a kill loses at most this one
                    fh.write(json.dumps(unit, default=float) + "\n")
                trained += 1
                if log:
                    m = unit["metrics"]
                    log(f"seed {seed} fold {fold + 1}/{k} {row}: MAE {m['mae']:.4f} "
                        f"R² {m['r2']:.3f} AUC {m['auc']:.3f} ({unit['seconds']} s)")
                if on_unit:
                    on_unit(unit)
    return trained


def paired_differences(units: Sequence[Mapping[str, object]], a: str, b: str, metric: str
                       ) -> dict[int, list[tuple[int, float, int, int]]]:
    """seed -> [(fold, metric(a) − metric(b), n_train, n_test)] over folds both rows finished."""
    by = {(u["seed"], u["fold"], u["row"]): u for u in units}
    out: dict[int, list[tuple[int, float, int, int]]] = {}
    for (seed, fold, row), u in sorted(by.items()):
        if row != a or (seed, fold, b) not in by:
            continue
        d = float(u["metrics"][metric]) - float(by[(seed, fold, b)]["metrics"][metric])
        if math.isfinite(d):
            out.setdefault(int(seed), []).append((int(fold), d, int(u["n_train"]),
                                                  int(u["n_test"])))
    return out
