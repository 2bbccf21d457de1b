"""Training configuration: one frozen dataclass, presets as data, overrides validated once.

A preset is a complete `TrainConfig`; command-line flags replace single fields with
`dataclasses.replace`, and the resolved config is printed at the start of a run and stored in the
checkpoint, so every number a run used can be read back. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bmd_edge.errors import InputError

FUSIONS = ("xattn", "concat", "image", "meta")
LOSSES = ("wsl1", "smoothl1")
STOP_METRICS = ("loss", "mae")
BATCHNORMS = ("batch", "sync", "frozen")


@dataclass(frozen=True)
class AugmentConfig:
    """Physically plausible radiograph jitter, applied to the float image before windowing."""

    enabled: bool = True  # off for validation/eval; on for training
    rotate_deg: float = 5.0  # ± in-plane rotation: patient positioning varies a few degrees
    scale: float = 0.05  # ± zoom fraction: source-detector distance / magnification varies
    shift: float = 0.04  # ± translation as a fraction of the image side: centring varies
    exposure: float = 0.10  # ± multiplicative intensity change: mAs/kVp differ between shots
    gamma: float = 0.15  # ± log-gamma: detector response curves differ between vendors
    noise: float = 0.01  # max Gaussian noise SD (in [0,1] units): quantum/electronic noise
    poisson_prob: float = 0.5  # share of images that get signal-dependent (Poisson-like) noise


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data; stored verbatim in the checkpoint."""

    preset: str = "cpu-fast"  # which preset this config started from (for the record)
    arch: str = "resnet18"  # image encoder; resnet34 is the paper's, resnet18 is CPU-friendly
    width: int | None = None  # ResNet stem width override (None = the variant's); tiny uses 8
    image_size: int = 128  # preprocess output S×S; the paper used 224
    d_model: int = 128  # token width in the fusion block
    n_heads: int = 4  # attention heads per cross-attention layer (paper: 4)
    n_layers: int = 3  # bidirectional cross-attention layers (paper: 3)
    dropout: float = 0.1  # dropout in fusion/head: the cohorts are small
    fusion: str = "xattn"  # xattn | concat | image | meta — the paper's ablation axis
    loss: str = "wsl1"  # wsl1 = Weighted Smooth L1 (low-BMD emphasis) | smoothl1
    batch_size: int = 32  # images per step
    lr: float = 3e-4  # peak AdamW learning rate after warm-up
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    epochs: int = 12  # maximum epochs (early stopping may end sooner)
    warmup_epochs: float = 1.0  # linear warm-up before the cosine decay: keeps AdamW stable
    min_lr_ratio: float = 0.02  # cosine floor as a fraction of lr
    patience: int = 5  # epochs without validation improvement before stopping
    stop_metric: str = "mae"  # what early stopping and best.pt track: "loss" or "mae"
    grad_clip: float = 1.0  # max global grad norm: one noisy batch must not wreck the weights
    field_dropout: float = 0.15  # per-field chance to mark a clinical field missing in training
    field_dropout_all: float = 0.1  # chance to keep only age + sex, so that case is trained too
    val_fraction: float = 0.15  # used when the manifest has no split column
    seed: int = 0  # one seed drives init, shuffling, augmentation and dropout
    workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    threads: int = 0  # torch intra-op threads (0 = torch default)
    cache_images: bool = True  # keep decoded images in memory: decoding dominates small runs
    cache_limit_mb: float = 4096.0  # RAM cap per dataset per process; a larger cohort streams
    cache_dir: str | None = None  # on-disk .npy cache of decoded/preprocessed images (None = off)
    # BatchNorm under several processes: "batch" = each process normalises with its own
    # micro-batch (DDP's default, cheap); "sync" = SyncBatchNorm over all ranks (GPU/NCCL only;
    # statistics of the global batch); "frozen" = BN layers in eval mode (running statistics),
    # which makes an N-process step exactly equal to a one-process step on the same global batch
    batchnorm: str = "batch"
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training-time jitter
    # image-encoder weights to start from instead of random init: a torchvision ResNet .pth (the
    # paper starts from ImageNet) or a bmd-edge best.pt (its image encoder's ResNet)
    pretrained: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (goes into checkpoints and history files)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of to_dict; unknown keys are an error so a stale file is not half-read."""
        d = dict(d)
        aug = AugmentConfig(**d.pop("augment", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown train-config keys {unknown}; expected a subset of {sorted(known)}")
        return validate(cls(augment=aug, **d))

    def model_config(self) -> Any:
        """The `bmd_edge.model.ModelConfig` this run trains (imported lazily: it pulls torch)."""
        from bmd_edge.model import ModelConfig

        return ModelConfig(
            arch=self.arch,
            fusion=self.fusion,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            dropout=self.dropout,
            image_size=self.image_size,
            width=self.width,
        )


PRESETS: dict[str, TrainConfig] = {
    # The paper's setting: ResNet34 at 224 px, d=256, 3 layers × 4 heads, batch 16.
    "paper": TrainConfig(
        preset="paper", arch="resnet34", image_size=224, d_model=256, n_heads=4, n_layers=3,
        batch_size=16, lr=1e-4, epochs=30, warmup_epochs=2.0, patience=8,
    ),
    # A workstation-CPU setting: ResNet18 at 128 px, narrower fusion, fewer epochs.
    "cpu-fast": TrainConfig(
        preset="cpu-fast", arch="resnet18", image_size=128, d_model=128, n_heads=4, n_layers=3,
        batch_size=32, lr=3e-4, epochs=12, warmup_epochs=1.0, patience=5,
    ),
    # The canonical-crop BMD model (issue #15/#16) on a shared CPU: ResNet10t on 128 px crops,
    # d=64; more epochs than cpu-fast because each is cheap; stronger field dropout so the model
    # copes with absent fields. Data and jitter come from training/crop_data.py.
    "crop-cpu": TrainConfig(
        preset="crop-cpu", arch="resnet10t", image_size=128, d_model=64, n_heads=4, n_layers=3,
        batch_size=32, lr=1e-3, epochs=30, warmup_epochs=1.0, patience=8, workers=0,
        field_dropout=0.25, field_dropout_all=0.15,
    ),
    # Tests and smoke runs only: a tiny encoder on 64 px images, seconds per epoch.
    "tiny": TrainConfig(
        preset="tiny", arch="resnet10t", width=8, image_size=64, d_model=32, n_heads=2, n_layers=1,
        batch_size=8, lr=1e-3, epochs=3, warmup_epochs=0.5, patience=3, workers=0, threads=1,
        dropout=0.0,
    ),
}


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} '{value}'; choose one of: {', '.join(choices)}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Reject impossible values once, with the bad value and what would be accepted."""
    _choice("fusion", cfg.fusion, FUSIONS)
    _choice("loss", cfg.loss, LOSSES)
    _choice("stop metric", cfg.stop_metric, STOP_METRICS)
    _choice("batchnorm", cfg.batchnorm, BATCHNORMS)
    if cfg.cache_limit_mb < 0:
        raise InputError(f"cache-limit-mb must be ≥ 0, got {cfg.cache_limit_mb}")
    positive = {"image_size": cfg.image_size, "d_model": cfg.d_model, "n_heads": cfg.n_heads,
                "n_layers": cfg.n_layers, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                "lr": cfg.lr, "patience": cfg.patience}
    for name, value in positive.items():
        if not value > 0:
            raise InputError(f"{name.replace('_', '-')} must be > 0, got {value}")
    if cfg.image_size < 32 or cfg.image_size % 32:
        raise InputError(f"image-size must be a multiple of 32 px (ResNet stride), got {cfg.image_size}")
    if cfg.d_model % cfg.n_heads:
        raise InputError(f"d-model ({cfg.d_model}) must be divisible by n-heads ({cfg.n_heads})")
    for name, value in {"val_fraction": cfg.val_fraction, "field_dropout": cfg.field_dropout,
                        "field_dropout_all": cfg.field_dropout_all, "dropout": cfg.dropout}.items():
        if not 0.0 <= value < 1.0:
            raise InputError(f"{name.replace('_', '-')} must be in [0, 1), got {value}")
    if cfg.workers < 0 or cfg.threads < 0:
        raise InputError(f"workers/threads must be ≥ 0, got {cfg.workers}/{cfg.threads}")
    if cfg.weight_decay < 0 or cfg.grad_clip < 0 or cfg.warmup_epochs < 0:
        raise InputError("weight-decay, grad-clip and warmup-epochs must be ≥ 0")
    if cfg.pretrained is not None and cfg.fusion == "meta":
        raise InputError("pretrained image weights need an image encoder; fusion 'meta' has none")
    return cfg


def resolve_config(preset: str, **overrides: Any) -> TrainConfig:
    """Preset + the overrides that are not None → a validated TrainConfig."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(changes) - known)
    if bad:
        raise InputError(f"unknown train options {bad}")
    return validate(dataclasses.replace(PRESETS[preset], **changes))


def describe_presets() -> str:
    """One line per preset with the fields that differ between presets (for --help)."""
    keys = ("arch", "image_size", "d_model", "n_layers", "n_heads", "batch_size", "lr", "epochs",
            "patience")
    lines = []
    for name, cfg in PRESETS.items():
        vals = ", ".join(f"{k.replace('_', '-')} {getattr(cfg, k)}" for k in keys)
        lines.append(f"{name}: {vals}")
    return "; ".join(lines)
