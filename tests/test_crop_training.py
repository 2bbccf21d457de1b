"""Training on canonical crops: both pelvis hips become samples, jitter is seeded and bounded,
and a tiny run writes a checkpoint that carries its CropSpec."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bmd_edge.locate.crop import CropSpec, canonical_crop, model_input
from bmd_edge.synth import generate_cohort
from bmd_edge.training.crop_data import (
    CropAugment,
    load_patches,
    sample_input,
    samples_from_cohort,
    split_by_patient,
)

SPEC = CropSpec(size=32)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("crops")
    hip = generate_cohort(24, root / "hip", seed=3, size=96, view="hip", workers=1).parent
    pelvis = generate_cohort(4, root / "pelvis", seed=4, size=128, view="pelvis", workers=1).parent
    return hip, pelvis


def test_pelvis_films_give_both_hips_with_their_own_labels(cohorts: tuple[Path, Path]) -> None:
    hip, pelvis = cohorts
    single = samples_from_cohort(hip)
    assert len(single) == 24 and all(s.labelled and s.view == "hip" for s in single)
    both = samples_from_cohort(pelvis)
    assert len(both) == 8 and sum(s.labelled for s in both) == 4
    for film in {s.image for s in both}:
        pair = [s for s in both if s.image == film]
        assert {s.hip.patient_side for s in pair} == {"left", "right"}
        assert {s.hip.side_in_image for s in pair} == {"left", "right"}
    assert len(samples_from_cohort(pelvis, both_hips=False)) == 4
    train, val = split_by_patient(both + single, 0.3, 0)
    assert {s.image for s in train}.isdisjoint({s.image for s in val})  # a pelvis stays whole


def test_patches_reproduce_the_film_crop(cohorts: tuple[Path, Path]) -> None:
    """Cutting (and shrinking) a patch moves the landmarks with it: the unjittered crop of the
    patch is the crop of the whole film."""
    from bmd_edge.image_io import read_image

    samples = samples_from_cohort(cohorts[1])[:2]
    spec = CropSpec(size=32, fov_head_radii=6.0)
    for s, p in zip(samples, load_patches(samples, spec), strict=True):
        film = read_image(s.image).pixels
        a = model_input(canonical_crop(film, s.hip, spec), spec)
        b = sample_input(p, spec, None, None)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97


def test_jitter_is_seeded_and_changes_the_crop(cohorts: tuple[Path, Path]) -> None:
    samples = samples_from_cohort(cohorts[0])[:1]
    (patch,) = load_patches(samples, SPEC)
    aug = CropAugment()
    a = sample_input(patch, SPEC, aug, np.random.default_rng([0, 1, 2]))
    b = sample_input(patch, SPEC, aug, np.random.default_rng([0, 1, 2]))
    c = sample_input(patch, SPEC, aug, np.random.default_rng([0, 1, 3]))
    clean = sample_input(patch, SPEC, None, None)
    assert a.shape == (1, 32, 32) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, clean)
    # With every shift switched off the jitter-free path is reproduced exactly.
    off = replace(aug, centre_sd_radii=(0.0, 0.0), radius_log_sd=0.0, angle_sd_deg=0.0,
                  mirror_p=0.0, noise_p=0.0, gamma_range=(1.0, 1.0), contrast_range=(1.0, 1.0),
                  blur_p=0.0, downscale_p=0.0, jpeg_p=0.0)
    np.testing.assert_allclose(sample_input(patch, SPEC, off, np.random.default_rng(5)), clean,
                               atol=1e-4)


def test_tiny_crop_run_stores_its_crop_spec(cohorts: tuple[Path, Path], tmp_path: Path) -> None:
    from bmd_edge.model.checkpoint import read_checkpoint
    from bmd_edge.training.crop_train import main

    hip, pelvis = cohorts
    assert main(["--cohort", str(hip), "--cohort", str(pelvis), "--out", str(tmp_path / "run"),
                 "--preset", "tiny", "--epochs", "1", "--threads", "1"]) == 0
    ck = read_checkpoint(tmp_path / "run" / "best.pt")
    assert CropSpec.from_dict(ck["crop"]) == CropSpec(size=64)
    assert ck["model_config"]["image_size"] == 64
    assert (tmp_path / "run" / "last.pt").is_file()


def test_crop_run_exports_a_bundle_that_crops(cohorts: tuple[Path, Path], tmp_path: Path) -> None:
    """Quantize + export a tiny crop run: bundle.json's input carries the run's CropSpec, the
    image input is the crop's size, and every runtime file matches torch on held-out crops."""
    from bmd_edge.bundle import Bundle
    from bmd_edge.compress.crop_pipeline import run_crop_export, run_crop_quantize
    from bmd_edge.compress.quantize import QuantizeConfig
    from bmd_edge.training.crop_train import main

    hip, pelvis = cohorts
    run = tmp_path / "run"
    assert main(["--cohort", str(hip), "--cohort", str(pelvis), "--out", str(run),
                 "--preset", "tiny", "--epochs", "1", "--threads", "1"]) == 0
    films = sorted({str(s.image) for s in samples_from_cohort(hip) + samples_from_cohort(pelvis)})
    (run / "split.json").write_text(json.dumps({  # 22 films held out (interval + test)
        "cohorts": [str(hip.resolve()), str(pelvis.resolve())], "val_images": films[:22]}))
    run_crop_quantize(run, tmp_path / "q", QuantizeConfig(subset_size=8, qat_epochs=0,
                                                          batch_size=4), log=lambda _: None)
    run_crop_export(run, tmp_path / "q", tmp_path / "bundle", training_data="test",
                    batch_size=4, log=lambda _: None)
    meta = Bundle.load(tmp_path / "bundle", allow_unsigned=True).meta
    assert meta.input.crop == CropSpec(size=64)
    assert meta.input.shapes["image"] == ["batch", 1, 64, 64]
    for v in meta.variants.values():
        assert v.metrics["max_abs_diff_vs_torch_gcm2"] < (0.05 if v.precision == "int8" else 1e-4)
