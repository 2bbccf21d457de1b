"""The learned front end of `predict`: DICOM evidence → locate → refuse → laterality → per-hip input.

Why one module: every caller of `Predictor.prepare` (CLI, API, batch, screen, serve) must refuse
the same films for the same reasons and label the same hips the same way.

- DICOM tags are evidence: a BodyPartExamined or StudyDescription that names a body part other
  than the hip or pelvis (and none that is) is refused whatever the pixels look like.
- The hip locator (`locate.Locator`, from the bundle's `locator` section) must call the film a
  hip/pelvis radiograph (is_hip_score ≥ the bundle's threshold) and find at least one femoral
  head; otherwise one line says why ("no hip found (hip score 0.12 < 0.79)"). `--force` runs
  anyway, with a warning in every output.
- Orientation comes from the pixels (`side_in_image`: the side the shaft lies on), so the crop
  never depends on `--side`. Patient laterality comes from the DICOM ImageLaterality/Laterality
  tag on a single-hip film, else from the radiological display convention (patient's right on
  the viewer's left); `laterality_source` says which, and a `--side` that disagrees is reported.
- Each hip becomes one model input: the bundle's canonical crop (`locate.crop`) when the model
  was trained on crops, else the bundle's whole-film preprocessing flipped by the pixels' side.

A bundle without a locator (made before issue #15) still runs the old way — `--side`/DICOM side,
whole film — and every result says so (`NO_LOCATOR`). Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from bmd_edge.errors import InputError, QualityGateError
from bmd_edge.warn import Warn

SIDES = ("left", "right")
# Where a hip's patient side came from (the `laterality_source` output field).
FROM_DICOM = "dicom"                    # ImageLaterality / Laterality tag of a single-hip film
FROM_DISPLAY = "display-convention"     # patient's right on the viewer's left (AP, not mirrored)
FROM_SIDE_OPTION = "--side"             # bundles without a locator, and --force without a hip
UNKNOWN = "unknown"

NO_LOCATOR = Warn(
    "no-locator", "bundle", "",
    "this bundle has no hip locator (made before issue #15): the hip was not located, its "
    "orientation was not read from the pixels and non-hip films are not refused; use a bundle "
    "with a locator")

HIP_WORDS = frozenset({"HIP", "HIPS", "PELVIS", "PELVIC", "FEMUR", "FEMORAL", "ACETABULUM",
                       "HUEFTE", "HÜFTE", "BECKEN", "HANCHE", "BASSIN", "CADERA", "ANCA",
                       "BACINO", "HEUP", "BEKKEN"})
# Body parts that are never a hip film. Spine and abdomen are absent on purpose: a lumbar spine
# or abdomen film may show the hips, and then the pixels decide (README: intended use).
NOT_HIP_WORDS = frozenset({
    "KNEE", "PATELLA", "TIBIA", "FIBULA", "ANKLE", "FOOT", "FEET", "TOE", "TOES",
    "CALCANEUS", "HEEL", "HAND", "FINGER", "FINGERS", "THUMB", "WRIST", "FOREARM", "ELBOW",
    "HUMERUS", "ARM", "SHOULDER", "CLAVICLE", "SCAPULA", "CHEST", "THORAX", "RIB", "RIBS",
    "SKULL", "HEAD", "FACE", "SINUS", "SINUSES", "MANDIBLE", "JAW", "DENTAL", "BREAST",
    "CSPINE", "NECK", "KNIE", "GENOU", "RODILLA", "CHEVILLE", "SCHULTER", "HANDGELENK"})
EDGE_CUT = 0.25   # a crop more than this share outside the film gets a warning
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLO", "RLO", "XTABLE", "LLD", "RLD"})


@dataclass(frozen=True)
class HipInput:
    """One hip ready for the BMD model, and how it was found and named."""

    image: np.ndarray                  # float32 (1, S, S): the model's input for this hip
    hip: str | None                    # patient's side: "left" | "right" | None (unknown)
    laterality_source: str             # FROM_DICOM | FROM_DISPLAY | FROM_SIDE_OPTION | UNKNOWN
    side_in_image: str | None          # where its shaft lies in the film (None: not located)
    found: Any = None                  # locate.FoundHip (original pixels), None when not located
    crop: Any = None                   # locate.crop.CanonicalCrop (None: whole-film input)


@dataclass(frozen=True)
class FrontEnd:
    hips: tuple[HipInput, ...]         # image-left hip first; one unless a pelvis shows two
    hip_film_score: float | None       # the locator's is_hip_score (None: no locator ran)
    warnings: tuple[str, ...]


def _words(text: str | None) -> set[str]:
    return set(re.findall(r"[A-ZÄÖÜÉÈ]+", (text or "").upper()))


def dicom_evidence(info: Any) -> tuple[list[str], list[str]]:
    """(refusals, warnings) from BodyPartExamined, StudyDescription and ViewPosition."""
    refusals: list[str] = []
    warnings: list[str] = []
    named = {"BodyPartExamined": getattr(info, "body_part", None),
             "StudyDescription": getattr(info, "study_description", None)}
    words = {k: _words(v) for k, v in named.items()}
    if not any(w & HIP_WORDS for w in words.values()):
        for tag, w in words.items():
            other = sorted(w & NOT_HIP_WORDS)
            if other:
                refusals.append(f"DICOM {tag} names {other[0]}, not a hip or pelvis")
                break
    view = (getattr(info, "view", None) or "").strip().upper()
    if view in LATERAL_VIEWS:
        warnings.append(Warn("lateral-view", "image", view,
                             f"DICOM ViewPosition {view}: a lateral view; the model was trained "
                             "on AP hip and pelvis films"))
    return refusals, warnings


def _patient_sides(found: tuple[Any, ...], tag: str | None, side: str | None
                   ) -> tuple[list[tuple[str, str]], list[str]]:
    """(patient side, source) per found hip, and warnings (tag vs pixels, --side conflicts)."""
    warnings: list[str] = []
    if len(found) == 1 and tag in SIDES:
        h = found[0]
        named = [(tag, FROM_DICOM)]
        if h.side_if_standard != tag:
            warnings.append(Warn(
                "mirrored-film", "side", tag,
                f"the DICOM laterality says {tag}, but the film shows a {h.side_if_standard} hip "
                "in the standard display (the film may be mirrored or PA); reporting "
                f"{tag} (from the tag)"))
    else:
        named = [(h.side_if_standard, FROM_DISPLAY) for h in found]
    if side is not None:
        sides = {s for s, _ in named}
        if len(found) > 1:
            warnings.append(Warn("side-ignored", "side", side,
                                 f"--side {side} ignored: the film shows both hips, named by "
                                 f"the {named[0][1]} (use --select to report one)"))
        elif side not in sides:
            s, src = named[0]
            why = ("the DICOM laterality tag" if src == FROM_DICOM else
                   "the radiological display convention (patient's right on the viewer's left)")
            warnings.append(Warn("side-conflict", "side", side,
                                 f"--side {side} conflicts with {why}, which makes this the "
                                 f"{s} hip; reporting {s}"))
    return named, warnings


def _legacy_input(radiograph: Any, spec: Any, side: str | None, select: str | None) -> np.ndarray:
    from bmd_edge.preprocess import preprocess

    return np.asarray(preprocess(radiograph.pixels, spec, side=side, select=select), np.float32)


def hip_input(pixels: np.ndarray, hip: Any, n_found: int, preprocess_spec: Any,
              crop_spec: Any) -> tuple[np.ndarray, Any]:
    """One located hip → the model's (1, S, S) input: the canonical crop when the bundle has a
    crop spec, else whole-film preprocessing oriented by the pixels (pelvis: that hip's half)."""
    if crop_spec is not None:
        from bmd_edge.locate.crop import canonical_crop, model_input

        crop = canonical_crop(pixels, hip, crop_spec)
        return model_input(crop, crop_spec), crop
    from bmd_edge.preprocess import preprocess

    standard = hip.side_if_standard   # canonical orientation from the pixels, never from a tag
    return np.asarray(preprocess(pixels, preprocess_spec, side=standard,
                                 select=standard if n_found > 1 else None), np.float32), None


def run_front_end(radiograph: Any, *, locator: Any, section: Any, preprocess_spec: Any,
                  crop_spec: Any, side: str | None, select: str | None,
                  force: bool) -> FrontEnd:
    """Evidence, location, refusal, laterality and model inputs for one read film."""
    info = radiograph.info
    tag = info.laterality if info.laterality in SIDES else None
    warnings: list[str] = []
    refusals, notes = dicom_evidence(info)
    warnings += notes
    if refusals and not force:
        raise QualityGateError(f"not a hip/pelvis radiograph: {'; '.join(refusals)} "
                               "(use --force to run anyway)")
    warnings += [Warn("forced", "image", "", f"refusal overridden with --force: {r}")
                 for r in refusals]

    if locator is None:   # a bundle from before the locator: the old path, said in every output
        use = side if side is not None else (tag if select is None else None)
        source = (FROM_SIDE_OPTION if side is not None else FROM_DICOM if use else UNKNOWN)
        hip = select or use
        image = _legacy_input(radiograph, preprocess_spec, use, select)
        return FrontEnd((HipInput(image, hip, source if hip else UNKNOWN, None),), None,
                        (*warnings, NO_LOCATOR))

    found = locator.locate(radiograph.pixels)
    score = float(found.is_hip_score)
    thr = section.hip_film_threshold
    problem = None
    if score < thr:
        problem = f"no hip found (hip score {score:.2f} < {thr:.2f})"
    elif not found.hips:
        problem = (f"no femoral head found (hip score {score:.2f}, but no head reaches "
                   f"confidence {section.head_threshold:.2f})")
    if problem is not None and not force:
        raise QualityGateError(f"{problem}; use --force to run anyway")
    hips = found.hips
    if problem is not None:
        warnings.append(Warn("forced", "image", f"{score:.2f}",
                             f"refusal overridden with --force: {problem}"))
    if not hips:   # forced, nothing located: the whole film, sided by --side/DICOM as before
        use = side if side is not None else (tag if select is None else None)
        image = _legacy_input(radiograph, preprocess_spec, use, select)
        hip = select or use
        src = FROM_SIDE_OPTION if side is not None else FROM_DICOM if use else UNKNOWN
        warnings.append(Warn("not-located", "image", "",
                             "no hip was located: the model ran on the whole film"))
        return FrontEnd((HipInput(image, hip, src if hip else UNKNOWN, None),), score,
                        tuple(warnings))

    named, notes = _patient_sides(hips, tag, side)
    warnings += notes
    chosen = list(zip(hips, named))
    if select is not None:
        chosen = [(h, n) for h, n in chosen if n[0] == select]
        if not chosen:
            have = ", ".join(n[0] for n in named)
            problem = f"--select {select}: no {select} hip found in this film (found: {have})"
            if not force:
                raise InputError(problem)
            warnings.append(Warn("forced", "select", select,
                                 f"refusal overridden with --force: {problem}; the model ran "
                                 f"on the film's {select} half, not on a located hip"))
            image = _legacy_input(radiograph, preprocess_spec, None, select)
            return FrontEnd((HipInput(image, select, FROM_SIDE_OPTION, None),), score,
                            tuple(warnings))
    out = []
    for h, (patient, source) in chosen:
        image, crop = hip_input(radiograph.pixels, h, len(hips), preprocess_spec, crop_spec)
        outside = float(getattr(crop, "outside_fraction", 0.0))
        if outside > EDGE_CUT:
            warnings.append(Warn("edge-cut", "image", f"{outside:.2f}",
                                 f"{100 * outside:.0f}% of the {patient} hip's crop lies "
                                 "outside the film (an edge-cut hip); its BMD is less certain"))
        out.append(HipInput(image, patient, source, h.side_in_image, h, crop))
    return FrontEnd(tuple(out), score, tuple(warnings))
