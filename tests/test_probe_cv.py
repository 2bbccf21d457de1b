"""The resumable frozen-encoder CV runner on a tiny synthetic cohort (real images, real models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bmd_edge.training.probe_cv import (
    ROWS,
    ProbeConfig,
    cached_features,
    paired_differences,
    read_results,
    run_probe_cv,
)

TINY = ProbeConfig(d_model=16, n_heads=2, n_layers=1, batch_size=4, epochs=3, patience=2,
                   warmup_epochs=0.5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, np.ndarray, Path]:
    from bmd_edge.manifest import read_manifest
    from bmd_edge.model.resnet import create_resnet
    from bmd_edge.synth import generate_cohort

    root = tmp_path_factory.mktemp("probe")
    manifest = generate_cohort(20, root / "cohort", seed=9, size=64, workers=1)
    cases = list(read_manifest(manifest, require_label=True).cases)
    torch.manual_seed(0)
    encoder = root / "encoder.pt"
    torch.save({"state_dict": create_resnet("resnet10t", width=8).state_dict(),
                "config": {"arch": "resnet10t", "width": 8, "image_size": 64}}, encoder)
    feats = cached_features(root / "feats.npy", encoder, cases, 64)
    return cases, feats, root


def test_features_are_cached_once_per_encoder(tiny) -> None:
    cases, feats, root = tiny
    assert feats.shape == (20, 64, 2, 2) and np.isfinite(feats).all()
    before = (root / "feats.npy").stat().st_mtime_ns
    again = cached_features(root / "feats.npy", root / "encoder.pt", cases, 64)
    assert (root / "feats.npy").stat().st_mtime_ns == before  # read back, not recomputed
    np.testing.assert_array_equal(again, feats)


def test_runner_resumes_per_unit_and_reproduces_a_lost_unit(tiny, tmp_path: Path) -> None:
    cases, feats, _ = tiny
    out = tmp_path / "units.jsonl"
    kw = {"k": 2, "seeds": [0], "cfg": TINY}
    assert run_probe_cv(cases, feats, out, max_units=3, **kw) == 3  # "killed" after 3 units
    assert len(read_results(out)) == 3
    assert run_probe_cv(cases, feats, out, **kw) == 2 * len(ROWS) - 3  # only the rest is trained
    assert run_probe_cv(cases, feats, out, **kw) == 0  # nothing left
    units = read_results(out)
    assert sorted((u["fold"], u["row"]) for u in units) == sorted(
        (f, r) for f in range(2) for r in ROWS)
    for row in ROWS:  # each row's out-of-fold predictions cover every case exactly once
        idx = sorted(i for u in units if u["row"] == row for i in u["test_idx"])
        assert idx == list(range(20))
        assert all(np.isfinite(u["pred"]).all() for u in units if u["row"] == row)

    # a torn last line (a kill mid-write) and a lost unit: the rerun retrains exactly that unit,
    # with the same per-unit seed, so the prediction is the same
    lines = out.read_text().splitlines()
    lost = json.loads(lines[1])
    out.write_text("\n".join(lines[:1] + lines[2:]) + "\n" + lines[1][:25])
    assert run_probe_cv(cases, feats, out, **kw) == 1
    again = [u for u in read_results(out) if (u["fold"], u["row"]) == (lost["fold"], lost["row"])]
    assert len(again) == 1
    np.testing.assert_allclose(again[0]["pred"], lost["pred"], atol=1e-5)


def test_paired_differences_pair_the_same_seed_and_fold() -> None:
    units = [{"seed": s, "fold": f, "row": r, "n_train": 9, "n_test": 1,
              "metrics": {"mae": 0.1 * f + (0.05 if r == "b" else 0.0) + s}}
             for s in (0, 1) for f in range(3) for r in ("a", "b")]
    units = [u for u in units if not (u["seed"] == 1 and u["fold"] == 2 and u["row"] == "b")]
    d = paired_differences(units, "a", "b", "mae")
    assert [f for f, *_ in d[0]] == [0, 1, 2] and [f for f, *_ in d[1]] == [0, 1]
    assert all(x == pytest.approx(-0.05) for v in d.values() for _, x, _, _ in v)


def test_positionwise_projection_keeps_where_a_feature_fires() -> None:
    from bmd_edge.training.probe_cv import PositionwiseProjection

    torch.manual_seed(0)
    proj = PositionwiseProjection(channels=3, d_model=5, grid=2)
    x = torch.randn(4, 3, 2, 2)
    out = proj(x)
    assert out.shape == (4, 5, 2, 2)
    # the mean over tokens is one linear map of the flattened map (what a linear probe fits) ...
    flat = x.flatten(2).transpose(1, 2).reshape(4, -1)  # (B, positions × channels)
    w = proj.weight.reshape(-1, 5) / 4
    torch.testing.assert_close(out.mean(dim=(2, 3)), flat @ w + proj.bias.mean(0))
    # ... so moving a feature to another position changes it, unlike a shared 1×1 projection
    moved = x.roll(1, dims=3)
    assert not torch.allclose(proj(moved).mean(dim=(2, 3)), out.mean(dim=(2, 3)))
