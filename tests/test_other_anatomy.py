"""Non-hip synthetic anatomy: every kind renders, is deterministic, goes through the shared
physics without burning out, carries its labels, shows open growth plates in children, and
`bmd-edge synth --anatomy` writes images plus a manifest."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bmd_edge.cli import app
from bmd_edge.errors import InputError
from bmd_edge.synth import physics
from bmd_edge.synth.canvas import Canvas, Pose
from bmd_edge.synth.other_anatomy import KINDS, physics_view, render_anatomy
from bmd_edge.synth.other_writer import OTHER_COLUMNS, generate_other
from bmd_edge.synth.trunk import pelvis

SIZE = 64


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_renders_finite_maps_with_labels(kind: str) -> None:
    for i in range(3):
        m = render_anatomy(kind, np.random.default_rng([3, i]), size=SIZE)
        assert m.shape == (SIZE, SIZE) and m.px_mm > 0
        for a in (m.bone_gcm2, m.soft_cm):
            assert a.dtype == np.float32 and np.isfinite(a).all() and (a >= 0).all()
        assert m.bone_gcm2.max() > 0.2, "no bone drawn"
        assert (m.bone_gcm2 < 20).all(), "implausible areal density (g/cm²)"
        # Tissue holds the bone: wherever there is bone there is at least some tissue path.
        assert (m.soft_cm[m.bone_gcm2 > 0.05] > 0).all()
        lab = m.labels
        assert lab["anatomy"] == kind and isinstance(lab["view"], str) and lab["view"]
        assert isinstance(lab["contains_pelvis"], bool) and isinstance(lab["paediatric"], bool)


def test_same_seed_same_maps_other_seed_other_maps() -> None:
    for kind in KINDS:
        a = render_anatomy(kind, np.random.default_rng(11), size=SIZE)
        b = render_anatomy(kind, np.random.default_rng(11), size=SIZE)
        c = render_anatomy(kind, np.random.default_rng(12), size=SIZE)
        assert np.array_equal(a.bone_gcm2, b.bone_gcm2) and a.labels == b.labels
        assert np.array_equal(a.soft_cm, b.soft_cm)
        assert not np.array_equal(a.bone_gcm2, c.bone_gcm2), kind


def test_policy_flags() -> None:
    """Full-length spines contain a pelvis; paediatric pelvises are paediatric pelvises."""
    for i in range(4):
        p = render_anatomy("paed_pelvis", np.random.default_rng(i), size=SIZE).labels
        assert p["contains_pelvis"] and p["paediatric"]
        s = render_anatomy("long_spine", np.random.default_rng(i), size=SIZE).labels
        assert s["contains_pelvis"]
        for kind in ("knee", "hand", "chest", "shoulder"):
            assert not render_anatomy(kind, np.random.default_rng(i), size=SIZE) \
                .labels["contains_pelvis"]


def test_unknown_kind_and_bad_size_are_input_errors() -> None:
    with pytest.raises(InputError, match="knee"):
        render_anatomy("nose", np.random.default_rng(0), size=SIZE)
    with pytest.raises(InputError, match="size"):
        render_anatomy("knee", np.random.default_rng(0), size=4)


def _bone_along_neck(age: float | None) -> np.ndarray:
    """Mineral sampled from the right femoral-head centre outwards along the neck axis."""
    neck_deg = 45.0
    pose = Pose(fov_mm=128.0, centre=(110.0, 20.0), rotation_deg=0.0, scale=1.0, flip=False)
    c = Canvas(256, pose, texture_seed=0)
    pelvis(c, 1.0, 1.0, 0.25, neck_deg, age=age)
    inv = np.linalg.inv(c.g.affine[:, :2])
    a = math.radians(90.0 - neck_deg)
    out = []
    for t in np.arange(0.0, 30.0, 0.5):
        p = np.array([95.0 + t * math.sin(a), t * math.cos(a)])
        col, row = inv @ (p - c.g.affine[:, 2])
        out.append(c.mineral[round(row), round(col)])
    return np.array(out)


def test_child_femur_has_an_open_capital_physis_adult_does_not() -> None:
    child, adult = _bone_along_neck(6.0), _bone_along_neck(None)
    # The child's head nucleus and neck are both bone, separated by a cartilage gap.
    assert child[:6].max() > 0.1 and child[-10:].min() > 0.1
    assert child.min() < 0.02
    assert adult.min() > 0.1


def test_physics_view_names_exist_in_the_physics() -> None:
    for kind in KINDS:
        assert physics_view(kind) in physics.VIEWS


@pytest.mark.parametrize("kind", list(KINDS))
def test_through_shared_physics_no_burn_out(kind: str) -> None:
    rng = np.random.default_rng(5)
    m = render_anatomy(kind, rng, size=96)
    acq = dataclasses.replace(physics.sample_acquisition(rng, view=physics_view(kind)),
                              collimation=(0.0, 0.0, 0.0, 0.0))
    img = physics.expose(m, acq, rng)
    assert img.shape == (96, 96) and np.isfinite(img).all()
    assert img.min() >= 0.0 and img.max() <= 1.0
    body = m.soft_cm > 1.0
    assert (img >= 0.999).mean() < 0.05, "large white-saturated area"
    assert ((img[body] <= 0.001) | (img[body] >= 0.999)).mean() < 0.15, "anatomy clipped"
    # Bone is bright: dense bone is brighter than bone-free tissue no thicker than around it.
    dense = m.bone_gcm2 > np.percentile(m.bone_gcm2[m.bone_gcm2 > 0], 75)
    thin = body & (m.bone_gcm2 == 0) & (m.soft_cm <= np.median(m.soft_cm[dense]))
    if thin.sum() > 20:
        assert np.median(img[dense]) > np.median(img[thin])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_generate_other_deterministic_for_any_worker_count(tmp_path: Path) -> None:
    a = generate_other(4, tmp_path / "a", kind="hand", seed=3, size=SIZE, workers=1)
    b = generate_other(4, tmp_path / "b", kind="hand", seed=3, size=SIZE, workers=2)
    assert a.read_bytes() == b.read_bytes()
    for i in range(4):
        name = f"images/case_{i:05d}.png"
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes()
    rows = _rows(a)
    assert tuple(rows[0]) == OTHER_COLUMNS and {r["anatomy"] for r in rows} == {"hand"}
    c = generate_other(1, tmp_path / "c", kind="knee", seed=3, size=SIZE, workers=1)
    assert (c.parent / "images/case_00000.png").read_bytes() != \
        (a.parent / "images/case_00000.png").read_bytes()


def test_cli_writes_manifest_and_rejects_unknown_anatomy(tmp_path: Path) -> None:
    import cv2

    runner = CliRunner()
    res = runner.invoke(app, ["synth", "--anatomy", "paed_pelvis", "--n", "2", "--out",
                              str(tmp_path / "p"), "--size", str(SIZE), "--workers", "1"])
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "p" / "manifest.csv")
    assert len(rows) == 2 and all(r["paediatric"] == "1" and r["contains_pelvis"] == "1"
                                  for r in rows)
    img = cv2.imread(str(tmp_path / "p" / rows[0]["image"]), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img.shape == (SIZE, SIZE)
    bad = runner.invoke(app, ["synth", "--anatomy", "nose", "--n", "2", "--out",
                              str(tmp_path / "x")])
    assert bad.exit_code == 2 and "error:" in bad.output and "knee" in bad.output
    assert not (tmp_path / "x" / "manifest.csv").exists()
