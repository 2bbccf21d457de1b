"""The shared synthetic physics: any MaterialMaps → a processed radiograph, bone bright."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bmd_edge.synth.materials import MaterialMaps
from bmd_edge.synth.physics import REFERENCE, VIEWS, expose, sample_acquisition

N = 96
PX = 1.5


def _phantom(bone_scale: float = 1.0, soft_scale: float = 1.0, marker: str | None = None,
             metal: bool = False) -> MaterialMaps:
    """A water cylinder (20 cm) with a bone rod in it, on a 96-px grid."""
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32)
    u = (xx - N / 2) * PX / 65.0
    soft = 20.0 * soft_scale * np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0))
    r = np.hypot(xx - N / 2, yy - N / 2) * PX / 15.0
    bone = 1.0 * bone_scale * np.sqrt(np.clip(1.0 - r**2, 0.0, 1.0))
    metal_cm = None
    if metal:
        metal_cm = np.zeros((N, N), np.float32)
        metal_cm[60:70, 20:26] = 1.0
    return MaterialMaps(bone_gcm2=bone.astype(np.float32), soft_cm=soft.astype(np.float32),
                        px_mm=PX, metal_cm=metal_cm,
                        labels={"marker": marker} if marker else {})


def test_expose_range_dtype_and_bone_bright() -> None:
    img = expose(_phantom(), REFERENCE, np.random.default_rng(0))
    assert img.dtype == np.float32 and img.shape == (N, N)
    assert 0.0 <= img.min() and img.max() <= 1.0
    centre = img[N // 2 - 3:N // 2 + 3, N // 2 - 3:N // 2 + 3].mean()
    tissue = img[N // 2 - 3:N // 2 + 3, 18:24].mean()      # soft tissue beside the rod
    air = img[N // 2 - 3:N // 2 + 3, :2].mean()            # outside the body
    assert centre > tissue + 0.1 > air + 0.1


def test_same_rng_same_image_and_noise_differs_by_seed() -> None:
    maps = _phantom()
    a = expose(maps, REFERENCE, np.random.default_rng(3))
    b = expose(maps, REFERENCE, np.random.default_rng(3))
    c = expose(maps, REFERENCE, np.random.default_rng(4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_auto_ranging_hides_absolute_density() -> None:
    """A uniformly denser or thicker patient is auto-ranged to about the same grey levels."""
    rng = np.random.default_rng(0)
    base = expose(_phantom(), REFERENCE, rng)
    thick = expose(_phantom(soft_scale=1.3), REFERENCE, np.random.default_rng(0))
    assert abs(float(np.median(base)) - float(np.median(thick))) < 0.1


def test_sampled_acquisitions_never_saturate_much_of_a_phantom() -> None:
    rng = np.random.default_rng(1)
    for view in ("hip", "pelvis", "knee", "chest"):
        for _ in range(4):
            acq = dataclasses.replace(sample_acquisition(rng, view=view),
                                      collimation=(0.0, 0.0, 0.0, 0.0))
            img = expose(_phantom(), acq, rng)
            assert (img >= 0.999).mean() < 0.05 and (img <= 0.001).mean() < 0.25, acq


def test_metal_and_marker_are_bright_but_not_clipped() -> None:
    img = expose(_phantom(marker="L", metal=True), REFERENCE, np.random.default_rng(0))
    assert img[62:68, 21:25].mean() > 0.8
    # The LUT's shoulder rolls off below display_white: real films have no pure-white pixels.
    assert img.max() < REFERENCE.display_white
    white = dataclasses.replace(REFERENCE, collimation=(0.1, 0.0, 0.0, 0.0), shutter_white=True)
    shuttered = expose(_phantom(), white, np.random.default_rng(0))
    assert 0.8 < float(shuttered[:, :4].mean()) < REFERENCE.display_white
    plain = expose(_phantom(), REFERENCE, np.random.default_rng(0))
    assert (img - plain)[:N // 4, :N // 4].max() > 0.3      # the L in the top-left corner


def test_views_and_bad_view() -> None:
    rng = np.random.default_rng(0)
    kinds = {sample_acquisition(rng, view="hip").detector for _ in range(30)}
    assert kinds == {"DR", "CR"}
    assert "pelvis" in VIEWS and "knee" in VIEWS
    with pytest.raises(ValueError, match="view 'skull'"):
        sample_acquisition(rng, view="skull")


def test_collimated_border_is_uniform() -> None:
    acq = dataclasses.replace(REFERENCE, collimation=(0.1, 0.0, 0.0, 0.0), shutter_white=False)
    img = expose(_phantom(), acq, np.random.default_rng(0))
    assert img[:, :8].max() == 0.0 and img[:, 12:].max() > 0.5
