"""Checkpoints: exact round trip, self-description, and refusal of unsafe or foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bmd_edge.errors import BundleError
from bmd_edge.model import ModelConfig, build_model
from bmd_edge.model.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint

S = 64


def tiny(fusion: str = "xattn") -> tuple[torch.nn.Module, ModelConfig]:
    cfg = ModelConfig(arch="resnet10t", fusion=fusion, d_model=32, width=8, image_size=S)
    torch.manual_seed(0)
    return build_model(cfg), cfg


META = {
    "train_config": {"epochs": 3, "lr": 0.001, "loss": {"beta": 0.05}},
    "preprocess": {"size": S, "resize": "letterbox"},
    "schema": {"fields": ["age_xray", "sex"]},
    "metrics": {"mae": 0.071, "folds": [0.07, 0.072]},
}


class NotAllowed:
    """A custom class: its pickled instance must never be loaded."""

    def __init__(self) -> None:
        self.payload = "arbitrary code could live here"


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    present = torch.ones(2, 10)
    present[1, 4] = 0.0
    return torch.randn(2, 1, S, S, generator=g), torch.randn(2, 10, generator=g), present


@pytest.mark.parametrize("fusion", ["xattn", "meta"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, fusion: str) -> None:
    model, cfg = tiny(fusion)
    model.set_label_scale(0.81, 0.13)
    model.train()
    with torch.no_grad():  # move BN statistics away from their init so they must be saved
        for _ in range(2):
            model(*batch())
    model.eval()
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, cfg, META)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    with torch.no_grad():
        a, attn_a = model(*batch())
        b, attn_b = loaded(*batch())
    assert torch.equal(a, b) and torch.equal(attn_a, attn_b)
    assert meta["format"] == CHECKPOINT_FORMAT
    assert meta["model_config"] == cfg.to_dict()
    assert meta["label"] == {"mean": pytest.approx(0.81), "std": pytest.approx(0.13), "unit": "g/cm2"}
    assert meta["metrics"] == META["metrics"] and meta["train_config"] == META["train_config"]
    assert meta["preprocess"] == META["preprocess"] and meta["schema"] == META["schema"]
    assert isinstance(meta["package_version"], str)
    assert "state_dict" not in meta


def test_file_holds_only_plain_values(tmp_path: Path) -> None:
    model, cfg = tiny("concat")
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, {})
    raw = torch.load(path, weights_only=True)  # the safe loader accepts it as is
    assert set(raw) == {"format", "model_config", "train_config", "preprocess", "schema", "label",
                        "metrics", "package_version", "state_dict"}
    assert all(isinstance(v, torch.Tensor) for v in raw["state_dict"].values())


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": {}, "state_dict": {},
                "label": {}, "extra": NotAllowed()}, path)
    with pytest.raises(BundleError, match="refusing to load checkpoint evil.pt: it contains pickled"):
        load_checkpoint(path)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    model, cfg = tiny("meta")
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, {})
    raw = torch.load(path, weights_only=True)
    raw["format"] = "bmd-edge-checkpoint/99"
    torch.save(raw, path)
    with pytest.raises(BundleError, match="unknown checkpoint format 'bmd-edge-checkpoint/99'"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(BundleError, match="not a bmd-edge checkpoint"):
        load_checkpoint(path)


def test_config_and_weights_must_agree(tmp_path: Path) -> None:
    model, cfg = tiny("meta")
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, {})
    raw = torch.load(path, weights_only=True)
    raw["model_config"]["d_model"] = 64
    torch.save(raw, path)
    with pytest.raises(BundleError, match="do not match"):
        load_checkpoint(path)
    raw["model_config"]["arch"] = "resnet999"
    torch.save(raw, path)
    with pytest.raises(BundleError, match="unusable model_config.*resnet34"):
        load_checkpoint(path)


def test_bad_inputs_fail_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip file")
    with pytest.raises(BundleError, match="refusing to load checkpoint junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    model, cfg = tiny("meta")
    with pytest.raises(BundleError, match="JSON-able"):
        save_checkpoint(tmp_path / "m.pt", model, cfg, {"metrics": {"mae": torch.tensor(0.1)}})
    with pytest.raises(BundleError, match="unknown checkpoint meta keys"):
        save_checkpoint(tmp_path / "m.pt", model, cfg, {"metrcs": {}})
    assert not (tmp_path / "m.pt").exists()
