"""DICOM results: a Structured Report and a Secondary Capture for one analysed source image.

Why DICOM out: a modality or workstation that embeds bmd-edge reads no stdout; it stores what it
gets in the patient's study. So each result is
- a Comprehensive SR following the TID 1500 Measurement Report pattern (template below), and
- a Secondary Capture of the `--report` picture,
both built with highdicom, in the source's study (patient and study modules copied from the
source — PHI stays inside the DICOM and never enters a log line), each in a new series.

UIDs are derived, not random: `2.25.<uuid5(source SOP Instance UID, model name, version,
variant, kind)>`. Delivering the same result twice gives the same SOP Instance UID, so a PACS
stores it once (serve's retry queue relies on this).

SR template (documented; codes: SCT/DCM where standard, the private scheme `99BMDEDGE` for the
concepts that have no standard code):
    Imaging Measurement Report (DCM 126000), procedure reported: Hip (SCT 29836001)
    └ Imaging Measurements (DCM 126010)
      └ Measurement Group: tracking id + UID, finding site Hip (SCT 29836001),
        algorithm (name = model name, version = model version, parameters = variant, backend),
        source image for measurement group = the source SOP Instance
        ├ NUM 99BMDEDGE FNBMD "Femoral neck BMD (estimated)" g/cm2, with upper/lower measurement
        │   uncertainty = the split-conformal interval's half-widths
        ├ NUM 99BMDEDGE TSCORE "T-score" {T-score}
        ├ NUM DCM 113071 "Z-score" {Z-score}          (absent when no reference covers the age)
        ├ CODE 99BMDEDGE WHOCAT "WHO category" = normal | osteopenia | osteoporosis
        ├ CODE 99BMDEDGE SCREEN "Low-BMD screen" = Positive (SCT 10828004) | Negative (SCT 260385009)
        └ TEXT items (CONTAINS): T-score reference, Z-score reference, interval (coverage, method),
          screening threshold, intended use, scale, and one "Warning" per prediction warning
          (e.g. an unsigned bundle, an age that differs from the DICOM's)
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.errors import DependencyError, InputError

log = logging.getLogger("bmd_edge.dicom_out")

UID_NAMESPACE = uuid.UUID("6f1c2a9e-3b51-4c8e-9d0f-000000000017")  # bmd-edge results, fixed forever
SR_SERIES_NUMBER = 9901        # new series for bmd-edge results, distinct from the modality's
SC_SERIES_NUMBER = 9902
MANUFACTURER = "bmd-edge"
PRIVATE_SCHEME = "99BMDEDGE"   # DICOM PS3.16 8.2: private coding schemes start with "99"
# pyplot keeps global state and is not thread-safe: serve's workers draw one picture at a time.
_PYPLOT_LOCK = threading.Lock()


def derived_uid(kind: str, *parts: str) -> str:
    """A stable `2.25.` UID from the parts (same parts, same UID: idempotent redelivery)."""
    return "2.25." + str(uuid.uuid5(UID_NAMESPACE, "|".join((kind, *parts))).int)


@dataclass(frozen=True)
class ResultUIDs:
    """The four UIDs of one result, derived from the source and the model."""

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instance: str

    @classmethod
    def for_result(cls, source: Any, prediction: Any) -> ResultUIDs:
        model = (prediction.model_name, prediction.model_version, prediction.variant)
        if getattr(prediction, "hip_film_score", None) is not None and prediction.hip:
            model = (*model, prediction.hip)   # located hips: one result per hip
        sop, series = str(source.SOPInstanceUID), str(source.SeriesInstanceUID)
        return cls(sr_series=derived_uid("sr-series", series, *model),
                   sr_instance=derived_uid("sr", sop, *model),
                   sc_series=derived_uid("sc-series", series, *model),
                   sc_instance=derived_uid("sc", sop, *model))


def _hd() -> Any:
    try:
        import highdicom
    except ImportError:
        raise DependencyError("DICOM results need highdicom; run `pip install 'bmd-edge[node]'`"
                              ) from None
    return highdicom


def _code(value: str, meaning: str, scheme: str = PRIVATE_SCHEME) -> Any:
    return _hd().sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _check_source(source: Any) -> None:
    for tag in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not str(getattr(source, tag, "") or ""):
            raise InputError(f"the source DICOM lacks {tag}; DICOM results need the source's "
                             "UIDs to join its study")


# Patient and study attributes of type 2 (present, may be empty) that highdicom copies from the
# source; a modality may omit them, so they are added empty rather than invented.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2(source: Any) -> Any:
    """A shallow copy of the source header with missing type-2 patient/study attributes empty."""
    import copy

    ds = copy.copy(source)
    ds._dict = dict(source._dict)   # copy.copy shares pydicom's element dict: adding an
    for kw in _TYPE2_COPIED:        # attribute would add it to the caller's dataset too
        if kw not in ds:
            setattr(ds, kw, "")
    return ds


# SNOMED CT laterality of the hip a result is about (an AP pelvis gives one SR per hip).
_LATERALITY = {"left": ("7771000", "SCT", "Left"), "right": ("24028007", "SCT", "Right")}


def uncertainties(p: Any) -> tuple[float, float]:
    """(upper, lower) measurement uncertainty of the BMD: the interval's half-widths."""
    return float(p.interval[1] - p.bmd_gcm2), float(p.bmd_gcm2 - p.interval[0])


def text_items(p: Any) -> list[tuple[str, str, str]]:
    """The SR's TEXT items as (code value, code meaning, text), in template order."""
    texts = [("TREF", "T-score reference", p.t_reference),
             ("ZREF", "Z-score reference", p.z_reference),
             ("SCALE", "Densitometer scale", "GE Lunar femoral neck"),
             ("THRESH", "Screening threshold", f"{p.threshold_gcm2} g/cm2 (T-score -1)"),
             ("INTUSE", "Intended use", p.intended_use or "not stated")]
    if p.interval is not None:
        texts.append(("INTERVAL", "Prediction interval", interval_text(p)))
    texts += [("WARNING", "Warning", w) for w in p.warnings]   # never identifiers (predictor)
    return texts


def interval_text(p: Any) -> str:
    return (f"{p.interval[0]:.4f}-{p.interval[1]:.4f} g/cm2, split-conformal, "
            f"{p.interval[2]:.0%} coverage")


def build_sr(prediction: Any, source: Any, uids: ResultUIDs) -> Any:
    """The Comprehensive SR for one prediction (see the module docstring for the template)."""
    hd = _hd()
    from pydicom.sr.codedict import codes

    _check_source(source)
    source = _with_type2(source)
    p = prediction
    hip = hd.sr.CodedConcept(value="29836001", scheme_designator="SCT", meaning="Hip")
    algorithm = hd.sr.AlgorithmIdentification(
        name=p.model_name, version=p.model_version,
        parameters=[f"variant {p.variant}", f"backend {p.backend}", f"precision {p.precision}"])
    props = None
    if p.interval is not None:
        upper, lower = uncertainties(p)
        props = hd.sr.MeasurementProperties(upper_measurement_uncertainty=upper,
                                            lower_measurement_uncertainty=lower)
    src_ref = hd.sr.SourceImageForMeasurement.from_source_image(source)
    measurements = [
        hd.sr.Measurement(name=_code("FNBMD", "Femoral neck BMD (estimated)"),
                          value=float(p.bmd_gcm2),
                          unit=_code("g/cm2", "gram per square centimeter", "UCUM"),
                          properties=props, referenced_images=[src_ref]),
        hd.sr.Measurement(name=_code("TSCORE", "T-score"), value=float(p.t_score),
                          unit=_code("{T-score}", "T-score", "UCUM")),
    ]
    if p.z_score is not None:
        measurements.append(hd.sr.Measurement(
            name=hd.sr.CodedConcept(value="113071", scheme_designator="DCM", meaning="Z-score"),
            value=float(p.z_score), unit=_code("{Z-score}", "Z-score", "UCUM")))
    screen = (hd.sr.CodedConcept(value="10828004", scheme_designator="SCT", meaning="Positive")
              if p.screen_positive else
              hd.sr.CodedConcept(value="260385009", scheme_designator="SCT", meaning="Negative"))
    evaluations = [
        hd.sr.QualitativeEvaluation(name=_code("WHOCAT", "WHO category"),
                                    value=_code(p.who_category.upper(), p.who_category)),
        hd.sr.QualitativeEvaluation(name=_code("SCREEN", "Low-BMD screen"), value=screen),
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("tracking", uids.sr_instance), identifier="femoral neck BMD"),
        algorithm_id=algorithm, finding_sites=[hd.sr.FindingSite(
            anatomic_location=hip, laterality=_LATERALITY.get(getattr(p, "hip", None) or "")
            and hd.sr.CodedConcept(*_LATERALITY[p.hip]))],
        measurements=measurements, qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])
    texts = text_items(p)
    content = group[0].ContentSequence
    for value, meaning, text in texts:
        content.append(hd.sr.TextContentItem(
            name=_code(value, meaning), value=str(text),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=hip, imaging_measurements=[group],
        title=codes.DCM.ImagingMeasurementReport)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=uids.sr_series,
        series_number=SR_SERIES_NUMBER, sop_instance_uid=uids.sr_instance,
        instance_number=int(getattr(source, "InstanceNumber", None) or 1),
        manufacturer=MANUFACTURER, is_complete=True, series_description="bmd-edge BMD report")
    sr.SpecificCharacterSet = "ISO_IR 192"   # UTF-8: units (g/cm²) and names in any script
    return sr


def build_sc(picture_rgb: np.ndarray, source: Any, uids: ResultUIDs) -> Any:
    """A Secondary Capture of the report picture (RGB uint8 H×W×3) in the source's study."""
    hd = _hd()
    _check_source(source)
    source = _with_type2(source)
    laterality = str(getattr(source, "ImageLaterality", "") or getattr(source, "Laterality", "")
                     or "")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=np.ascontiguousarray(picture_rgb, np.uint8),
        photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=uids.sc_series, series_number=SC_SERIES_NUMBER,
        sop_instance_uid=uids.sc_instance,
        instance_number=int(getattr(source, "InstanceNumber", None) or 1),
        manufacturer=MANUFACTURER, patient_orientation=("L", "F"),
        series_description="bmd-edge BMD report picture",
        laterality=laterality if laterality in ("L", "R") else None,
        transfer_syntax_uid="1.2.840.10008.1.2.1")
    sc.SpecificCharacterSet = "ISO_IR 192"
    return sc


def render_picture(prediction: Any, model_input: np.ndarray, references: Any) -> np.ndarray:
    """The `--report` PNG as an RGB uint8 array (drawn without patient identifiers)."""
    import tempfile

    import cv2

    from bmd_edge.runtime.report import write_report

    with tempfile.TemporaryDirectory(prefix="bmd-edge-sc-") as tmp, _PYPLOT_LOCK:
        png = write_report(prediction, model_input, Path(tmp) / "report.png",
                           references=references)
        bgr = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"the report picture {png.name} could not be read back")
    return np.ascontiguousarray(bgr[:, :, ::-1])


@dataclass(frozen=True)
class DicomResult:
    """Where one result went and under which UIDs."""

    uids: ResultUIDs
    sr_path: Path
    sc_path: Path | None


def _save(ds: Any, path: Path) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a DICOM."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    if isinstance(ds, bytes):
        tmp.write_bytes(ds)
    else:
        ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)
    return path


def build_results(prediction: Any, source: Any, *, model_input: np.ndarray | None = None,
                  references: Any = None) -> tuple[ResultUIDs, Any, Any | None]:
    """(UIDs, SR dataset, SC dataset or None when `model_input` is None)."""
    uids = ResultUIDs.for_result(source, prediction)
    sr = build_sr(prediction, source, uids)
    sc = None
    if model_input is not None:
        sc = build_sc(render_picture(prediction, model_input, references), source, uids)
    return uids, sr, sc


def write_results(prediction: Any, source: Any, out_dir: str | Path, *,
                  model_input: np.ndarray | None = None, references: Any = None) -> DicomResult:
    """Write `SR_<uid>.dcm` (and `SC_<uid>.dcm` when `model_input` is given) into `out_dir`."""
    uids, sr, sc = build_results(prediction, source, model_input=model_input,
                                 references=references)
    return save_results(uids, sr, sc, out_dir)


def result_paths(uids: ResultUIDs, out_dir: str | Path) -> tuple[Path, Path]:
    """Where `save_results` puts the SR and the SC of a result (names carry the UIDs)."""
    out = Path(out_dir)
    return out / f"SR_{uids.sr_instance}.dcm", out / f"SC_{uids.sc_instance}.dcm"


def save_results(uids: ResultUIDs, sr: Any, sc: Any | None, out_dir: str | Path
                 ) -> DicomResult:
    """Write built results (datasets, or a file's bytes) atomically into `out_dir`, SR first."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sr_target, sc_target = result_paths(uids, out_dir)
    sr_path = _save(sr, sr_target)
    sc_path = None if sc is None else _save(sc, sc_target)
    log.debug("dicom results written: sr=%s sc=%s", uids.sr_instance,
             uids.sc_instance if sc is not None else "-")
    return DicomResult(uids, sr_path, sc_path)


def build_result_files(prediction: Any, source: Any, templates: Any, *,
                       model_input: np.ndarray | None = None, references: Any = None
                       ) -> tuple[ResultUIDs, Any, Any | None]:
    """As `build_results`, but the SR comes as a file's bytes from `templates`
    (`sr_template.SRTemplates`: the same SR, ~20x cheaper), a dataset where no template fits."""
    uids = ResultUIDs.for_result(source, prediction)
    sr = templates.render(prediction, source, uids)
    if sr is None:
        sr = build_sr(prediction, source, uids)
    sc = None
    if model_input is not None:
        sc = build_sc(render_picture(prediction, model_input, references), source, uids)
    return uids, sr, sc


def read_source(path: str | Path) -> Any:
    """The source DICOM's header (for the patient/study modules and UIDs), without pixels."""
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - any parser failure: not a usable DICOM source
        raise InputError(f"--dicom-out needs a DICOM source image; {Path(path).name} is not "
                         f"one ({type(exc).__name__})") from None
