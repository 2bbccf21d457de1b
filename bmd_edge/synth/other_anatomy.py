"""Radiographs of what is *not* an adult hip, rendered through the same physics as the hips.

A hip detector trained only on hips learns "bright blob in the middle" unless it also sees
knees, hands, chests and spines that went through identical physics, texture and
post-processing — then only anatomy can separate them. Two groups matter for the intended-use
policy: full-length spine films, which contain a pelvis but are not hip films, and paediatric
pelvises (open triradiate cartilage and femoral capital physes), which are hips outside the
intended population.

`render_anatomy(kind, rng, size=...)` → `MaterialMaps` with labels
{"anatomy", "view", "contains_pelvis", "paediatric", "side", and usually "marker"}.
`physics_view(kind)` names the technique table `physics.sample_acquisition` should use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.synth import limbs, trunk
from bmd_edge.synth.materials import MaterialMaps

Generator = Callable[[np.random.Generator, int], MaterialMaps]

KINDS: dict[str, Generator] = {
    "knee": limbs.knee,
    "shoulder": limbs.shoulder,
    "elbow": limbs.elbow,
    "hand": limbs.hand,
    "wrist": limbs.wrist,
    "foot": limbs.foot,
    "ankle": limbs.ankle,
    "spine": trunk.spine,
    "chest": trunk.chest,
    "long_spine": trunk.long_spine,
    "paed_pelvis": trunk.paed_pelvis,
}
# Kinds whose technique (kVp, grid, ...) the physics tabulates under another name.
_PHYSICS_VIEW = {"wrist": "hand", "ankle": "foot"}


def physics_view(kind: str) -> str:
    """The `physics.sample_acquisition(view=...)` name for this anatomy's technique."""
    _check(kind)
    return _PHYSICS_VIEW.get(kind, kind)


def render_anatomy(kind: str, rng: np.random.Generator, *, size: int = 256) -> MaterialMaps:
    """Draw one subject of `kind` on a size × size detector grid (pose, scale and side random)."""
    _check(kind)
    if not 16 <= size <= 4096:
        raise InputError(f"size = {size} px is not accepted; give 16 to 4096")
    return KINDS[kind](rng, size)


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"anatomy {kind!r} is not known; give one of {', '.join(KINDS)}")
