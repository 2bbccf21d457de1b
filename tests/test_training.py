"""Trainer, data pipeline, folds, baselines and the train/cv/evaluate CLI on a tiny cohort.

The cohort is drawn here (64 px 16-bit PNGs of a disc whose radius follows the BMD label,
plus metadata that explains part of it) so a 2-epoch tiny model has a real signal to learn.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bmd_edge.cli import app
from bmd_edge.errors import InputError
from bmd_edge.manifest import read_manifest, write_manifest
from bmd_edge.schema import FIELD_NAMES
from bmd_edge.training.config import PRESETS, AugmentConfig, TrainConfig, resolve_config
from bmd_edge.training.cv import fold_strata, make_folds, ols_baseline, ost_baseline, run_cv
from bmd_edge.training.data import BmdDataset, augment_pixels, drop_fields
from bmd_edge.training.trainer import fit, lr_factor, split_cases


def _make_cohort(root: Path, n: int = 64, seed: int = 0, patients: int | None = None) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        sex = "F" if i % 2 else "M"
        age = float(rng.uniform(62, 88))
        bmd = 0.93 - (0.1 if sex == "F" else 0.0) - 0.006 * (age - 75) + rng.normal(0, 0.08)
        img = 0.15 + rng.normal(0, 0.01, (64, 64))
        # windowing normalises brightness away, so the label lives in geometry (like cortex width)
        cv2.circle(img, (32, 32), int(np.clip(round(8 + 30 * (bmd - 0.6)), 4, 28)), 0.7, -1)
        side = "left" if i % 3 == 0 else "right"
        if side == "left":
            img = img[:, ::-1]
        name = f"images/c{i:03d}.png"
        cv2.imwrite(str(root / name), np.clip(img * 65535, 0, 65535).astype(np.uint16))
        rows.append({"image": name, "age_xray": round(age, 1), "sex": sex, "height_cm": 165.0,
                     "weight_kg": float(round(rng.uniform(55, 90))), "smoking": "never",
                     "fn_bmd": round(float(bmd), 4), "side": side,
                     "patient_id": f"p{i % patients}" if patients else f"p{i}"})
    return write_manifest(root / "manifest.csv", rows)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def cases(cohort: Path) -> list:
    m = read_manifest(cohort, require_label=True)
    assert not m.problems and len(m.cases) == 64
    return list(m.cases)


def test_presets_resolve_and_validate() -> None:
    cfg = resolve_config("tiny", epochs=7, fusion="concat", lr=None)
    assert cfg.epochs == 7 and cfg.fusion == "concat" and cfg.lr == PRESETS["tiny"].lr
    assert resolve_config("paper").arch == "resnet34" and resolve_config("paper").image_size == 224
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    cfg.model_config()  # every preset must build a valid ModelConfig
    for bad, match in (({"fusion": "sum"}, "xattn, concat"), ({"image_size": 100}, "multiple of 32"),
                       ({"loss": "l2"}, "wsl1, smoothl1")):
        with pytest.raises(Exception, match=match):
            resolve_config("tiny", **bad)
    with pytest.raises(Exception, match="paper, cpu-fast, crop-cpu, tiny"):
        resolve_config("huge")
    for name in PRESETS:  # every preset, the crop model's too, builds a valid ModelConfig
        resolve_config(name).model_config()


def test_lr_schedule_warmup_then_cosine() -> None:
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(100, 100, 10, 0.2) == pytest.approx(0.2)  # ends on the floor


def test_field_dropout_keeps_age_and_sex() -> None:
    values, present = np.arange(1, 11, dtype=np.float32), np.ones(10, dtype=np.float32)
    rng = np.random.default_rng(0)
    keep = [FIELD_NAMES.index("age_xray"), FIELD_NAMES.index("sex")]
    seen_only_age_sex = False
    for _ in range(200):
        v, p = drop_fields(values, present, FIELD_NAMES, 0.5, 0.2, rng)
        assert p[keep].all() and (v[p == 0] == 0).all() and (v[p == 1] == values[p == 1]).all()
        seen_only_age_sex |= set(np.flatnonzero(p)) == set(keep)
    assert seen_only_age_sex
    assert present.all()  # the inputs were not modified in place


def test_augmentation_is_plausible_and_seeded() -> None:
    img = np.full((64, 64), 0.2, dtype=np.float32)
    cv2.circle(img, (32, 32), 12, 0.8, -1)
    cfg = AugmentConfig()
    a = augment_pixels(img, cfg, np.random.default_rng(5))
    b = augment_pixels(img, cfg, np.random.default_rng(5))
    assert np.array_equal(a, b) and a.shape == img.shape and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and not np.array_equal(a, img)
    # small jitter only: the bright disc stays near the centre (no flip, ≤ 5° / 5 % / 4 %)
    ys, xs = np.nonzero(a > 0.5)
    assert abs(xs.mean() - 31.5) < 4 and abs(ys.mean() - 31.5) < 4


def test_dataset_items_and_canonical_side(cases: list) -> None:
    from bmd_edge.preprocess import PreprocessSpec

    ds = BmdDataset(cases[:6], PreprocessSpec(size=64), cache=True)
    image, values, present, label, idx = ds[(0, 0)]
    assert image.shape == (1, 64, 64) and values.shape == (10,) and present.shape == (10,)
    assert label.item() == pytest.approx(cases[0].fn_bmd) and idx == 0
    aug = BmdDataset(cases[:6], PreprocessSpec(size=64), augment=AugmentConfig(), seed=1)
    assert torch.equal(aug[(2, 3)][0], aug[(2, 3)][0])  # same (seed, epoch, index) → same image
    assert not torch.equal(aug[(2, 3)][0], aug[(2, 4)][0])  # another epoch → another jitter


def test_two_epochs_lower_validation_loss_and_checkpoint(cases: list, tmp_path: Path) -> None:
    from bmd_edge.model.checkpoint import load_checkpoint

    cfg = resolve_config("tiny", epochs=2, patience=5)
    tr, va = split_cases(cases, 0.25, 0)
    assert not {c.patient_id for c in tr} & {c.patient_id for c in va}
    res = fit(cfg, tr, va, tmp_path)
    assert len(res.history) == 2
    assert res.history[-1]["val_loss"] < res.initial_val_loss  # learnt something in 2 epochs
    assert res.best_metrics["loss"] == min(h["val_loss"] for h in res.history)
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,train_loss")

    model, meta = load_checkpoint(tmp_path / "best.pt")
    assert meta["format"] == "bmd-edge-checkpoint/1"
    assert TrainConfig.from_dict(meta["train_config"]) == cfg
    assert meta["preprocess"]["size"] == 64 and meta["schema"]
    labels = np.array([c.fn_bmd for c in tr])
    assert meta["label"]["mean"] == pytest.approx(labels.mean(), abs=1e-5)
    assert meta["label"]["unit"] == "g/cm2"
    assert meta["metrics"]["epoch"] == res.best_epoch
    assert meta["metrics"]["val_mae"] == pytest.approx(res.best_metrics["mae"])
    x = (torch.randn(3, 1, 64, 64), torch.zeros(3, 10), torch.ones(3, 10))
    with torch.no_grad():
        assert torch.allclose(model(*x)[0], res.model(*x)[0])


def test_training_is_deterministic_for_a_seed(cases: list, tmp_path: Path) -> None:
    cfg = resolve_config("tiny", epochs=1)
    tr, va = split_cases(cases, 0.25, 0)
    a = fit(cfg, tr, va, tmp_path / "a").model.state_dict()
    b = fit(dataclasses.replace(cfg, workers=1), tr, va, tmp_path / "b").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # worker count does not change the result
    c = fit(dataclasses.replace(cfg, seed=1), tr, va, tmp_path / "c").model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_folds_are_disjoint_cover_all_and_balanced(cases: list) -> None:
    folds = make_folds(cases, 4, seed=0)
    tests = [set(te.tolist()) for _, te in folds]
    assert sum(len(t) for t in tests) == len(cases) and set().union(*tests) == set(range(64))
    for tr, te in folds:
        assert not set(tr.tolist()) & set(te.tolist())
    y = fold_strata(cases, 4)
    assert len(np.unique(y)) >= 4  # sex × at least two BMD bins
    for s in np.unique(y):
        per_fold = [int((y[te] == s).sum()) for _, te in folds]
        assert max(per_fold) - min(per_fold) <= 1  # each BMD-bin × sex stratum spread evenly
    sex = np.array([c.record.values["sex"] == "F" for c in cases])
    assert all(abs(sex[te].mean() - 0.5) <= 0.13 for _, te in folds)


def test_folds_group_by_patient(tmp_path: Path) -> None:
    grouped = list(read_manifest(_make_cohort(tmp_path, n=48, patients=16), require_label=True).cases)
    for tr, te in make_folds(grouped, 4, seed=0):
        assert not {grouped[i].patient_id for i in tr} & {grouped[i].patient_id for i in te}


def test_baselines_fit_on_training_fold(cases: list) -> None:
    tr, te = cases[:48], cases[48:]
    ost = ost_baseline(tr, te)
    w = np.array([c.record.values["weight_kg"] for c in te])
    a = np.array([c.record.values["age_xray"] for c in te])
    slope = np.polyfit((w - a) / 5, ost, 1)[0]
    assert np.allclose(np.polyval(np.polyfit((w - a) / 5, ost, 1), (w - a) / 5), ost)  # linear in OST
    assert slope != 0
    ols = ols_baseline(tr, te)
    truth = np.array([c.fn_bmd for c in te])
    assert np.mean(np.abs(ols - truth)) < np.mean(np.abs(truth.mean() - truth))  # beats the mean


def test_run_cv_writes_oof_for_every_case(cases: list, tmp_path: Path) -> None:
    cfg = resolve_config("tiny", epochs=1)
    res = run_cv({"xattn": cfg}, cases, 2, tmp_path, seed=0)
    assert set(res.oof) == {"xattn", "OST", "OLS"}
    assert all(np.isfinite(p).all() for p in res.oof.values())
    assert res.completed_folds() == 2 and (res.fold_of >= 0).all()
    lines = (tmp_path / "oof.csv").read_text().splitlines()
    assert len(lines) == 65 and lines[0].endswith("xattn,OST,OLS")


def test_pretrained_image_encoder_starts_from_a_checkpoint(cases: list, tmp_path: Path) -> None:
    from bmd_edge.model import build_model, load_torchvision_weights
    from bmd_edge.model.checkpoint import load_checkpoint

    tr, va = split_cases(cases, 0.25, 0)
    image_only = fit(resolve_config("tiny", epochs=1, fusion="image"), tr, va, tmp_path / "img")
    fused = resolve_config("tiny", epochs=1, pretrained=str(tmp_path / "img" / "best.pt"))
    source, _ = load_checkpoint(tmp_path / "img" / "best.pt")
    # The weights a fused model starts from are the image-only model's backbone, not random ones.
    torch.manual_seed(fused.seed)
    start = build_model(fused.model_config())
    before = {k: v.clone() for k, v in start.image_encoder.backbone.state_dict().items()}
    load_torchvision_weights(start, fused.pretrained)
    after = start.image_encoder.backbone.state_dict()
    src = source.image_encoder.backbone.state_dict()
    assert all(torch.equal(after[k], src[k]) for k in src)
    assert not all(torch.equal(before[k], src[k]) for k in src)
    # ...and training from them differs from training from scratch with the same seed.
    a = fit(fused, tr, va, tmp_path / "a").model.state_dict()
    b = fit(dataclasses.replace(fused, pretrained=None), tr, va, tmp_path / "b").model.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="image encoder"):
        resolve_config("tiny", fusion="meta", pretrained=str(tmp_path / "img" / "best.pt"))


def test_run_cv_init_from_uses_the_same_folds_source(cases: list, tmp_path: Path) -> None:
    img = resolve_config("tiny", epochs=1, fusion="image")
    fused = resolve_config("tiny", epochs=1)
    res = run_cv({"image": img, "fused": fused}, cases, 2, tmp_path, seed=0, baselines=False,
                 init_from={"fused": "image"})
    assert all(np.isfinite(p).all() for p in res.oof.values())
    for f in range(2):
        meta = torch.load(tmp_path / f"fold{f:02d}" / "fused" / "best.pt", weights_only=True)
        assert meta["train_config"]["pretrained"] == str(tmp_path / f"fold{f:02d}" / "image" / "best.pt")
    with pytest.raises(InputError, match="source first"):
        run_cv({"fused": fused, "image": img}, cases, 2, tmp_path / "x", init_from={"fused": "image"})


def test_run_cv_resume_reuses_finished_runs(cases: list, tmp_path: Path) -> None:
    cfg = resolve_config("tiny", epochs=1)
    first = run_cv({"xattn": cfg}, cases, 2, tmp_path, seed=0, baselines=False)
    best = tmp_path / "fold00" / "xattn" / "best.pt"
    stamp = best.stat().st_mtime_ns
    again = run_cv({"xattn": cfg}, cases, 2, tmp_path, seed=0, baselines=False, resume=True)
    assert best.stat().st_mtime_ns == stamp  # finished: re-evaluated, not retrained
    assert np.allclose(first.oof["xattn"], again.oof["xattn"], atol=1e-6)


runner = CliRunner()


def test_cli_train_evaluate_and_bad_preset(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--preset", "tiny", "--manifest", str(cohort), "--out",
                            str(out), "--epochs", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "best.pt").is_file() and (out / "history.csv").is_file()
    assert json.loads((out / "config.json").read_text())["preset"] == "tiny"

    ev = tmp_path / "eval"
    r = runner.invoke(app, ["evaluate", "--checkpoint", str(out / "best.pt"), "--manifest",
                            str(cohort), "--out", str(ev)])
    assert r.exit_code == 0, r.output
    report = json.loads((ev / "metrics.json").read_text())
    assert report["n"] == 64 and set(report["metrics"]["xattn"]) >= {"mse", "auc", "f1"}
    assert {p.name for p in ev.glob("*.png")} == {"scatter.png", "bland_altman.png", "roc.png",
                                                 "attention.png"}
    assert "sex,F,32" in (ev / "subgroups.csv").read_text()

    r = runner.invoke(app, ["train", "--preset", "huge", "--manifest", str(cohort)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    from bmd_edge.training.config import PRESETS
    assert lines == [f"error: unknown preset 'huge'; choose one of: {', '.join(PRESETS)}"]
    assert {"paper", "cpu-fast", "tiny", "crop-cpu"} <= set(PRESETS)


def test_cli_evaluate_missing_checkpoint(cohort: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--manifest",
                            str(cohort), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "checkpoint not found" in r.output


def test_cli_cv_on_a_synthetic_cohort(tmp_path: Path) -> None:
    out = tmp_path / "cv"
    r = runner.invoke(app, ["cv", "--preset", "tiny", "--synth", "24", "--synth-size", "64",
                            "--folds", "2", "--epochs", "1", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "OST" in r.output and "OLS" in r.output and "xattn" in r.output
    oof = (out / "oof.csv").read_text().splitlines()
    assert len(oof) == 25 and oof[0].endswith("xattn,OST,OLS")
    report = json.loads((out / "metrics.json").read_text())
    assert report["folds"] == 2 and set(report["fold_mean_sd"]) == {"xattn", "OST", "OLS"}
    assert "oracle_ceiling" in report  # oracle.csv beside the synthetic manifest was found
    assert "exposure_quanta tertile" in (out / "subgroups.csv").read_text()
    assert (out / "roc.png").is_file() and (out / "bland_altman.png").is_file()
