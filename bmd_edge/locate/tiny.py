"""The tiny test locator (torch): a small LocatorNet trained on toy films in seconds, exported.

Why: the tiny test bundle must carry a *trained* locator so tests exercise the real path —
letterbox, runtime session, decoder, hip-film refusal, per-hip crops — rather than `--force`.
The toy world (`runtime/toy.py`) has hips, pelvises and five other shapes; the same trainer,
augmentation and exporter as the real locator run on it, deterministically (fixed seeds, one
thread). `python -m bmd_edge.locate.tiny OUT_DIR` writes `tiny_locator.onnx` + `metrics.json`;
the committed copy is `bmd_edge/runtime/tiny_locator.onnx` (runtime/tiny.py uses it, torch-free).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from bmd_edge.locate.data import Augment, HipLabel, Sample
from bmd_edge.locate.letterbox import window
from bmd_edge.locate.spec import LocatorSpec
from bmd_edge.runtime.toy import OTHER_KINDS, toy_hip_film, toy_other_film, toy_pelvis_film

TINY_SPEC = LocatorSpec(size=64, stride=8)
N_HIPS, N_PELVIS, N_OTHER = 240, 80, 40   # per-kind count for other films


def toy_samples(spec: LocatorSpec = TINY_SPEC, seed: int = 0) -> list[Sample]:
    """Toy films as locator training samples (hips, pelvises, then each other kind)."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []

    def add(img: np.ndarray, hips: tuple, is_hip: bool, name: str) -> None:
        labels = tuple(HipLabel(h.head, h.head_r, h.neck, h.roi, h.roi_len, h.roi_width)
                       for h in hips)
        out.append(Sample(window(img, spec).astype(np.float16), labels, is_hip, name))

    def size() -> tuple[int, int]:
        return int(rng.integers(40, 97)), int(rng.integers(40, 97))

    for i in range(N_HIPS):
        h, w = size()
        img, hips = toy_hip_film(h, w, side=("left", "right")[i % 2], seed=1000 + i,
                                 noise=float(rng.uniform(0, 0.03)))
        add(img, hips, True, f"hip/{i}")
    for i in range(N_PELVIS):
        h = int(rng.integers(40, 80))
        img, hips = toy_pelvis_film(h, int(h * rng.uniform(1.4, 2.0)), seed=2000 + i,
                                    noise=float(rng.uniform(0, 0.03)))
        add(img, hips, True, f"pelvis/{i}")
    for kind in OTHER_KINDS:
        for i in range(N_OTHER):
            h, w = size()
            add(toy_other_film(kind, h, w, seed=3000 + i, noise=float(rng.uniform(0, 0.03))),
                (), False, f"{kind}/{i}")
    return out


def train_tiny_locator(out_dir: str | Path, epochs: int = 30) -> dict[str, float]:
    """Train, export `tiny_locator.onnx` into out_dir, and return held-out metrics measured on
    the exported file (the hip-film threshold is chosen there, keep 99 % of hip films)."""
    import torch

    from bmd_edge.locate.export import export_locator
    from bmd_edge.locate.locator import Locator
    from bmd_edge.locate.metrics import evaluate
    from bmd_edge.locate.model import LocatorNetConfig
    from bmd_edge.locate.train import TrainConfig, split, train
    from bmd_edge.runtime.backends import SessionConfig

    torch.use_deterministic_algorithms(True)
    out = Path(out_dir)
    samples = toy_samples()
    cfg = TrainConfig(epochs=epochs, batch=32, lr=4e-3, threads=1, neg_share=0.3,
                      net=LocatorNetConfig(width=4, head=16))
    aug = Augment(rotate_deg=10.0, scale=(0.85, 1.15), shift=0.08, mirror=0.5, gamma=(0.7, 1.4),
                  blur=0.2, noise=(0.0, 0.03), jpeg=0.0)
    with tempfile.TemporaryDirectory() as work:
        net, _ = train(samples, Path(work), TINY_SPEC, cfg, aug=aug, log=lambda *_: None)
    onnx_path, xml_path = export_locator(net, TINY_SPEC, out, stem="tiny_locator")
    for extra in (xml_path, xml_path.with_suffix(".bin")):
        extra.unlink(missing_ok=True)  # the bundle writer converts the ONNX to IR itself
    loc = Locator(onnx_path, SessionConfig(backend="onnxruntime", threads=1), threshold=0.3)
    m = evaluate(loc.locate, split(samples, cfg.val_frac)[1]).as_dict()
    (out / "tiny_locator_metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    return m


if __name__ == "__main__":
    print(json.dumps(train_tiny_locator(sys.argv[1] if len(sys.argv) > 1 else "."), indent=2))
