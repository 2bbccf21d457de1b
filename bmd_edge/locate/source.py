"""Which locator to evaluate, with the thresholds that belong to it.

Why: the real-film test, the drawing script and the benchmarks must judge the locator `predict`
ships — the default bundle's `locator` section (its file, hip-film threshold and head threshold)
— and, while a retrained locator is not in a bundle yet, a training run's exported file with
the hip-film threshold that run chose (`metrics.json` beside it: `hip_score_threshold`).
Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bmd_edge.errors import BundleError
from bmd_edge.locate.locator import Locator
from bmd_edge.runtime.backends import SessionConfig

HEAD_THRESHOLD = 0.3  # Locator's default heatmap-peak threshold, used for bare run files


@dataclass(frozen=True)
class LocatorSource:
    locator: Locator
    hip_threshold: float   # is_hip_score below this: not a hip/pelvis film (refused)
    label: str             # what was evaluated, for reports ("bundle export/ (hip-locator 2)")


def from_file(path: str | Path, hip_threshold: float | None = None) -> LocatorSource:
    """A training run's exported locator (.xml → OpenVINO, .onnx → ORT); the hip-film threshold
    from `metrics.json` beside it unless given."""
    p = Path(path)
    if hip_threshold is None:
        metrics = p.parent / "metrics.json"
        if not metrics.is_file():
            raise BundleError(f"{metrics} not found: give the hip-film threshold explicitly")
        hip_threshold = float(json.loads(metrics.read_text())["hip_score_threshold"])
    backend = "openvino" if p.suffix == ".xml" else "onnxruntime"
    loc = Locator(p, SessionConfig(backend=backend, threads=1), threshold=HEAD_THRESHOLD)
    return LocatorSource(loc, hip_threshold, f"file {p}")


def from_bundle(root: str | Path | None = None) -> LocatorSource:
    """The locator section of a bundle (default: the shipped one); BundleError when it has none."""
    from bmd_edge.bundle import Bundle, default_bundle_path

    root = Path(root) if root is not None else default_bundle_path()
    bundle = Bundle.load(root, allow_unsigned=root != default_bundle_path())
    section = bundle.meta.locator
    if section is None:
        raise BundleError(f"bundle {root} has no hip locator (issue #15): its predict path "
                          "neither finds hips nor refuses non-hip films")
    path, _ = bundle.verified_locator_file("openvino", "int8")  # hashed before it is opened
    backend = "openvino" if Path(path).suffix == ".xml" else "onnxruntime"
    loc = Locator(path, SessionConfig(backend=backend, threads=1),
                  threshold=section.head_threshold)
    return LocatorSource(loc, section.hip_film_threshold,
                         f"bundle {root} ({section.name} {section.version}, {Path(path).name})")


def resolve(path: str | Path | None, hip_threshold: float | None = None) -> LocatorSource:
    """`path` names a locator file or a bundle folder; None means the shipped default bundle."""
    if path is not None and Path(path).is_file():
        return from_file(path, hip_threshold)
    src = from_bundle(path)
    if hip_threshold is not None:
        return LocatorSource(src.locator, hip_threshold, src.label + f", threshold {hip_threshold}")
    return src
