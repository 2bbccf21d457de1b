"""Predictor: image + clinical facts → a Prediction a person can read, with no torch in sight.

The path is split in two so batch mode can run it on two cores: `prepare` (read, quality gate,
preprocess, encode — numpy/opencv, thread-safe) and `infer` (one batched runtime call plus the
clinical read-out — T/Z-scores, WHO category, screening flag, interval). `predict` does both.

Rules kept here: the command line (or keyword) wins over DICOM tags, a disagreement becomes a
warning; patient identifiers from DICOM stay in `Prediction.patient_ids` (hidden from repr and
from `to_dict()` unless asked) and never enter a warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np

from bmd_edge import references as refs_mod
from bmd_edge.errors import BundleError, InputError, MetadataError, QualityGateError
from bmd_edge.runtime.backends import SessionConfig, default_threads, open_session, user_cache_dir
from bmd_edge.runtime.quality_gate import check_quality
from bmd_edge.warn import Warn

PREDICTION_SCHEMA_VERSION = 1
SIDES = ("left", "right")

ImageLike = Union[str, Path, np.ndarray, Any]  # path, float32 H×W in [0,1], or a Radiograph


@dataclass(frozen=True)
class HipResult:
    """One located hip's estimate (an AP pelvis gives two, like a DXA dual-femur report)."""

    hip: str | None                                  # patient's side: left | right | None
    laterality_source: str                           # dicom | display-convention | --side | unknown
    side_in_image: str | None                        # side of the film its shaft lies on
    bmd_gcm2: float
    interval: tuple[float, float, float] | None
    t_score: float
    z_score: float | None
    who_category: str
    screen_positive: bool
    field_attention: tuple[tuple[str, float], ...]
    found: Any = None                                # locate.FoundHip (original pixels) or None
    crop: Any = field(default=None, repr=False, compare=False)  # locate.crop.CanonicalCrop

    def to_dict(self) -> dict[str, Any]:
        f = self.found
        return {
            "hip": self.hip, "laterality_source": self.laterality_source,
            "side_in_image": self.side_in_image,
            "bmd_gcm2": round(self.bmd_gcm2, 4),
            "interval": None if self.interval is None else {
                "low": round(self.interval[0], 4), "high": round(self.interval[1], 4),
                "coverage": self.interval[2]},
            "t_score": round(self.t_score, 2),
            "z_score": None if self.z_score is None else round(self.z_score, 2),
            "who_category": self.who_category, "screen_positive": self.screen_positive,
            "field_attention": [{"field": n, "weight": round(w, 4)}
                                for n, w in self.field_attention],
            "located": None if f is None else {
                "confidence": round(f.confidence, 3),
                "head_xy": [round(v, 1) for v in f.head_xy], "head_r": round(f.head_r, 1),
                "neck_angle_deg": round(f.neck_angle_deg, 1),
                "roi": {"xy": [round(v, 1) for v in f.roi_xy], "len": round(f.roi_len, 1),
                        "width": round(f.roi_width, 1), "angle_deg": round(f.roi_angle_deg, 1)}},
        }


@dataclass(frozen=True)
class Prediction:
    """One film's result: the estimate, what it means clinically, and how it was computed.

    `hips` holds every hip estimated (two for an AP pelvis); the top-level BMD, interval,
    scores, category and screen are those of the *reported* hip, `hip`: the one with the lower
    BMD, as a DXA dual-femur report diagnoses on the lower of the two. `per_hip()` splits a
    pelvis into one Prediction per hip (one CSV row, screen row or DICOM SR each).
    """

    bmd_gcm2: float                                  # femoral-neck BMD, g/cm², GE Lunar scale
    interval: tuple[float, float, float] | None      # (low, high, coverage), split-conformal
    t_score: float                                   # vs the named young-adult reference
    t_reference: str                                 # name of the T-score reference table
    z_score: float | None                            # vs age/sex-matched reference; None if n/a
    z_reference: str                                 # name of the Z-score reference table
    who_category: str                                # normal | osteopenia | osteoporosis
    screen_positive: bool                            # bmd < threshold (the paper's screen)
    threshold_gcm2: float                            # screening threshold used (0.899)
    field_attention: tuple[tuple[str, float], ...]   # given fields, most-attended first
    model_name: str
    model_version: str
    intended_use: str
    backend: str                                     # openvino | onnxruntime
    variant: str                                     # bundle variant that ran
    precision: str                                   # e.g. "int8+f32": weights + float math
    inputs: Mapping[str, Any]                        # clinical facts used (after DICOM fill)
    warnings: tuple[str, ...] = ()
    source: str = ""                                 # file name (no folders), "" for arrays
    patient_ids: Mapping[str, str] = field(default_factory=dict, repr=False)
    shift_score: float | None = None                 # 1 ≈ typical clean case; None: no stats
    flagged: bool = False                            # shift score above the bundle's threshold
    interval_cell: str = ""                          # Mondrian cell, e.g. "F/hip/low"
    hips: tuple[HipResult, ...] = ()                 # every hip estimated, image-left first
    hip: str | None = None                           # patient side of the reported hip
    laterality_source: str = "unknown"               # where `hip` came from
    hip_film_score: float | None = None              # locator's is_hip_score (None: no locator)

    def per_hip(self) -> list[Prediction]:
        """One Prediction per hip, each reporting that hip (a single-hip film: itself)."""
        if len(self.hips) <= 1:
            return [self]
        return [replace(self, bmd_gcm2=h.bmd_gcm2, interval=h.interval, t_score=h.t_score,
                        z_score=h.z_score, who_category=h.who_category,
                        screen_positive=h.screen_positive, field_attention=h.field_attention,
                        hips=(h,), hip=h.hip, laterality_source=h.laterality_source)
                for h in self.hips]

    def to_dict(self, include_ids: bool = False) -> dict[str, Any]:
        """The stable JSON schema (`schema_version` 1), documented in commands/inference.py."""
        d: dict[str, Any] = {
            "schema_version": PREDICTION_SCHEMA_VERSION,
            "source": self.source,
            "bmd_gcm2": round(self.bmd_gcm2, 4),
            "unit": "g/cm2",
            "scale": "GE Lunar femoral neck",
            "interval": None if self.interval is None else {
                "low": round(self.interval[0], 4), "high": round(self.interval[1], 4),
                "coverage": self.interval[2]},
            "t_score": round(self.t_score, 2),
            "t_reference": self.t_reference,
            "z_score": None if self.z_score is None else round(self.z_score, 2),
            "z_reference": self.z_reference,
            "who_category": self.who_category,
            "screen_positive": self.screen_positive,
            "threshold_gcm2": self.threshold_gcm2,
            "field_attention": [{"field": n, "weight": round(w, 4)}
                                for n, w in self.field_attention],
            "inputs": dict(self.inputs),
            "model": {"name": self.model_name, "version": self.model_version,
                      "variant": self.variant, "backend": self.backend,
                      "precision": self.precision},
            "intended_use": self.intended_use,
            "warnings": list(self.warnings),
            "reliability": {"shift_score": None if self.shift_score is None
                            else round(self.shift_score, 3), "flagged": self.flagged,
                            "interval_cell": self.interval_cell or None},
            "hip": self.hip,
            "laterality_source": self.laterality_source,
            "hip_film_score": None if self.hip_film_score is None
            else round(self.hip_film_score, 3),
            "hips": [h.to_dict() for h in self.hips],
        }
        if include_ids:
            d["patient_ids"] = dict(self.patient_ids)
        return d


@dataclass(frozen=True)
class Prepared:
    """One case ready for the runtime: the product of `Predictor.prepare` (thread-safe)."""

    images: np.ndarray                      # float32 (H, 1, S, S): one model input per hip
    values: np.ndarray                      # float32 (F,)
    present: np.ndarray                     # float32 (F,)
    inputs: Mapping[str, Any]               # validated clinical facts given
    age: float | None                       # for the Z-score
    sex: str | None
    warnings: tuple[str, ...]
    source: str
    patient_ids: Mapping[str, str] = field(default_factory=dict, repr=False)
    quality: np.ndarray | None = None       # reliability.quality features (bundle has stats)
    view: str = "hip"                       # hip | pelvis (a hip selected from a pelvis view)
    force: bool = False                     # a refused shift becomes a flagged result
    hips: tuple[Any, ...] = ()              # front_end.HipInput per row of `images`
    qualities: tuple[Any, ...] = ()         # per hip: reliability.quality features (or None)
    hip_film_score: float | None = None     # the locator's is_hip_score (None: no locator)

    @property
    def image(self) -> np.ndarray:
        """The first hip's model input (1, S, S): what the report and the DICOM SC show."""
        return self.images[0]


def _fmt(x: object) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class Predictor:
    """A loaded bundle plus one runtime session. Create with `Predictor.load(...)`.

    Thread-safe: one Predictor may be shared by any number of threads, on both backends. Each
    `predict`/`prepare`/`infer` call works on its own arrays; OpenVINO calls borrow an infer
    request from a pool and copy its outputs before returning it, ONNX Runtime's `run` is
    re-entrant. Every caller gets its own image's result (tests/test_concurrency.py). Calls
    beyond the runtime's parallel capacity wait; they never fail for being concurrent.
    """

    def __init__(self, bundle: Any, session: Any, variant: str, locator: Any = None) -> None:
        self.bundle = bundle
        self.session = session
        self.variant = variant
        self.locator = locator                        # locate.Locator, None: bundle has none
        meta = bundle.meta                            # a validated bundle.BundleMeta
        self.meta = meta
        self.spec = meta.input.preprocess
        self.crop_spec = meta.input.crop              # None: the model reads whole films
        self.schema: Mapping[str, Any] = meta.input.schema.data
        self.field_names: tuple[str, ...] = meta.input.schema.names
        self.references: Mapping[str, Any] = meta.references.tables
        self.threshold = meta.references.screening_threshold_gcm2
        self.interval = meta.interval
        self.model_name = meta.model.name
        self.model_version = meta.model.version
        self.intended_use = meta.intended_use
        trust_warning = getattr(bundle.trust, "warning", None)
        self.bundle_warnings: tuple[str, ...] = (str(trust_warning),) if trust_warning else ()
        vprec = meta.variants[variant].precision
        self.precision = f"{vprec}+{session.precision}" if vprec == "int8" else session.precision
        self.reliability = meta.reliability            # reliability.section.Reliability | None
        self.scorer = _load_scorer(bundle, session, meta.input.crop or self.spec)

    @classmethod
    def load(cls, bundle: str | Path | Any = None, backend: str = "openvino",
             variant: str | None = None, threads: int | None = None,
             precision: str = "f32", cache: bool = True, *, allow_unsigned: bool = False,
             trusted_keys: tuple[str | Path, ...] = ()) -> Predictor:
        """Load a bundle (default: the shipped one) and open one session on it.

        variant: a variant name from bundle.json or a precision ("int8" default, "fp32").
        precision: float math for OpenVINO ("f32" default for parity; "bf16" on request).
        allow_unsigned: run a bundle that is neither pinned nor signed by a trusted key (every
        result then carries a warning); trusted_keys: extra public-key files to trust.
        """
        from bmd_edge.bundle import Bundle

        b = bundle if hasattr(bundle, "meta") else Bundle.load(
            bundle, allow_unsigned=allow_unsigned, trusted_keys=trusted_keys)
        name = b.choose_variant(backend, variant).name
        cfg = SessionConfig(backend=backend, threads=threads or default_threads(),
                            precision=precision,
                            cache_dir=(user_cache_dir() / "openvino") if cache else None)
        session = open_session(b.verified_file(name), cfg)
        return cls(b, session, name, _open_locator(b, backend, b.meta.variants[name].precision,
                                                   cfg))

    # -- preparation (thread-safe) ------------------------------------------------------------
    def prepare(self, image: ImageLike, *, age: float | str | None = None,
                sex: str | None = None, side: str | None = None, select: str | None = None,
                force: bool = False, **fields: object) -> Prepared:
        """Read, gate, preprocess and encode one case. Raises InputError subclasses."""
        from bmd_edge.runtime.front_end import run_front_end
        from bmd_edge.schema import parse_value

        # Explicit values are checked before anything else: "" is an error, never "unknown"
        # (an empty sex must not run as "sex missing", nor hide the DICOM's PatientSex).
        age = None if age is None else parse_value("age_xray", age)
        sex = None if sex is None else parse_value("sex", sex)  # type: ignore[assignment]
        for key, value in fields.items():
            if value is not None:
                parse_value(key, value)
        radiograph, source = _as_radiograph(image)
        warnings = list(radiograph.warnings)
        info = radiograph.info
        warnings += check_quality(radiograph, force=force).warnings
        for name, val in (("side", side), ("select", select)):
            if val is not None and val not in SIDES:
                raise InputError(f"{name} {val!r} is not valid; use left or right")

        # Clinical facts: keyword wins, DICOM tags fill gaps, disagreements are reported.
        # A derived age is shown in whole years only (a fraction gives back the birth date).
        if info.age_years is not None:
            dicom_age = int(info.age_years)
            if age is None:
                age = float(dicom_age)
            elif abs(float(age) - float(info.age_years)) >= 1.0:
                warnings.append(Warn("dicom-conflict", "age", _fmt(age),
                                     f"age {_fmt(age)} given differs from the image's DICOM age "
                                     f"{dicom_age}; using {_fmt(age)}"))
        if info.sex is not None:
            if sex is None:
                sex = info.sex
            elif str(sex).strip().upper()[:1] != info.sex:
                warnings.append(Warn("dicom-conflict", "sex", str(sex),
                                     f"sex {sex} given differs from the image's DICOM sex "
                                     f"{info.sex}; using {sex}"))
        if age is None:
            raise MetadataError("age is required: give --age (years) or a DICOM with PatientAge")
        if sex is None:
            raise MetadataError("sex is required: give --sex F|M or a DICOM with PatientSex")
        raw: dict[str, object] = {k: v for k, v in fields.items() if v is not None}
        raw["age_xray"] = age
        # At run time the BMD is wanted "now": the DXA age equals the X-ray age unless given.
        raw.setdefault("age_bmd", age)
        raw["sex"] = sex
        from bmd_edge.schema import encode, parse_record

        record = parse_record(raw)
        values, present = encode(record, self.schema)
        if "bmi" in record.derived:
            warnings.append(Warn("derived", "bmi", f"{record['bmi']:.1f}",
                                 f"bmi derived from height and weight: {record['bmi']:.1f} kg/m2"))
        front = run_front_end(radiograph, locator=self.locator,
                              section=self.meta.locator, preprocess_spec=self.spec,
                              crop_spec=self.crop_spec, side=side, select=select, force=force)
        warnings += front.warnings
        inputs = {k: v for k, v in record.values.items() if v is not None}
        if side:
            inputs["side"] = side
        if select:
            inputs["select"] = select
        images = np.stack([h.image for h in front.hips]).astype(np.float32)
        qualities = tuple(None if self.scorer is None else
                          self.scorer.quality(im, radiograph.pixels) for im in images)
        return Prepared(images=images, values=values, present=present,
                        inputs=inputs, age=float(record["age_xray"]),  # type: ignore[arg-type]
                        sex=str(record["sex"]), warnings=tuple(warnings), source=source,
                        patient_ids=dict(info.patient_ids or {}), quality=qualities[0],
                        view="pelvis" if (select or len(front.hips) > 1) else "hip",
                        force=force, hips=front.hips, qualities=qualities,
                        hip_film_score=front.hip_film_score)

    # -- inference (thread-safe) --------------------------------------------------------------
    def infer(self, cases: Sequence[Prepared]) -> list[Prediction]:
        """Run the runtime once on every hip of a stack of prepared cases; one Prediction each.

        Raises the first case's error (e.g. a shift refusal); `infer_each` keeps them per case.
        """
        out = self.infer_each(cases)
        for o in out:
            if isinstance(o, BaseException):
                raise o
        return out  # type: ignore[return-value]

    def infer_each(self, cases: Sequence[Prepared]) -> list[Prediction | InputError]:
        """`infer`, but a case refused by the shift limit is its own QualityGateError in the
        list instead of failing the whole batch (batch screening). An AP pelvis is one case
        (one Prediction with two `hips`)."""
        if not cases:
            return []
        counts = [len(c.images) for c in cases]
        image = np.concatenate([c.images for c in cases])      # (H, 1, S, S), all hips
        values = np.repeat(np.stack([c.values for c in cases]), counts, axis=0)    # (H, F)
        present = np.repeat(np.stack([c.present for c in cases]), counts, axis=0)  # (H, F)
        if hasattr(self.session, "run_full"):
            bmd, att, emb = self.session.run_full(image, values, present)  # emb (H, D) | None
        else:
            (bmd, att), emb = self.session.run(image, values, present), None
        out: list[Prediction | InputError] = []
        k = 0
        for c, n in zip(cases, counts):
            try:
                out.append(self._readout(c, [float(b) for b in bmd[k:k + n]], att[k:k + n],
                                         None if emb is None else emb[k:k + n]))
            except QualityGateError as err:
                out.append(err)
            k += n
        return out

    def _shift(self, case: Prepared, i: int, bmd: float, embedding: np.ndarray | None,
               warnings: list[str]) -> tuple[float, str, float | None, bool]:
        """(interval half-width, Mondrian cell, shift score, flagged) for hip i of a case; a
        shift past the refuse limit raises unless forced (issue #16's reliability section)."""
        hw, cell = self.interval.halfwidth_gcm2, ""
        if self.reliability is not None and self.reliability.intervals is not None \
                and case.sex in ("F", "M"):
            hw, cell = self.reliability.intervals.halfwidth(bmd, case.sex, case.view)
        quality = case.qualities[i] if i < len(case.qualities) else case.quality
        shift, flagged = None, False
        if self.scorer is not None and quality is not None:
            policy = self.reliability.shift  # type: ignore[union-attr]
            sc = self.scorer.score(quality, embedding)
            shift = sc.score
            why = (f"image statistics {sc.quality:.2f}, furthest: {sc.worst_quality}"
                   + ("" if sc.embedding is None else f"; model features {sc.embedding:.2f}"))
            if sc.score > policy.refuse_threshold and not case.force:
                raise QualityGateError(
                    f"{case.source or 'image'}: refused, the image is far from the training data "
                    f"(shift score {sc.score:.2f} > refuse limit {policy.refuse_threshold:.2f}; "
                    f"{why}); check the acquisition "
                    "(noise, LUT/gamma, resolution, side, view) or use --force for a flagged "
                    "result")
            if case.view not in policy.views:  # the model never saw this view: always flagged
                flagged = True
                warnings.append(Warn(
                    "shift-flagged", "view", case.view,
                    f"FLAGGED: the model was not trained on {case.view} films (trained: "
                    f"{', '.join(policy.views)}); shift score {sc.score:.2f}; check the result "
                    "before relying on it"))
            if sc.score > policy.flag_threshold:
                flagged = True
                # an untrained view's cell was calibrated on all of that view's cases: no widening
                widen = (min(sc.score / policy.flag_threshold, policy.max_widen)
                         if case.view in policy.views else 1.0)
                hw *= widen
                warnings.append(Warn(
                    "shift-flagged", "image", f"{sc.score:.2f}",
                    f"FLAGGED: image unlike the training data (shift score {sc.score:.2f} > "
                    f"flag limit {policy.flag_threshold:.2f}; {why}); interval widened "
                    f"x{widen:.1f}; check the "
                    "acquisition before relying on this result"
                    + (" (past the refuse limit: forced)" if sc.score > policy.refuse_threshold
                       else "")))
        return hw, cell, shift, flagged

    def _hip(self, case: Prepared, i: int, bmd: float, att: np.ndarray,
             embedding: np.ndarray | None, warnings: list[str]
             ) -> tuple[HipResult, str, float | None, bool]:
        if not math.isfinite(bmd):
            raise BundleError(f"the model returned {bmd} for {case.source or 'the image'}; "
                              "the bundle may be damaged")
        hw, cell, shift, flagged = self._shift(case, i, bmd, embedding, warnings)
        t = refs_mod.t_score(bmd, self.references)
        z: float | None = None
        if case.age is not None and case.sex is not None:
            try:
                z = refs_mod.z_score(bmd, case.age, case.sex, self.references)
            except MetadataError as err:
                w = Warn("no-z-score", "age_xray", f"{case.age:g}", f"no Z-score: {err}")
                if w not in warnings:
                    warnings.append(w)
        ranked = sorted(((n, float(w)) for n, w, p in
                         zip(self.field_names, att.tolist(), case.present.tolist()) if p > 0),
                        key=lambda nw: -nw[1])
        h = case.hips[i] if i < len(case.hips) else None
        return HipResult(
            hip=getattr(h, "hip", None), laterality_source=getattr(h, "laterality_source",
                                                                   "unknown"),
            side_in_image=getattr(h, "side_in_image", None), bmd_gcm2=bmd,
            interval=(bmd - hw, bmd + hw, self.interval.coverage), t_score=t, z_score=z,
            who_category=refs_mod.who_category(t, self.references),
            screen_positive=bmd < self.threshold, field_attention=tuple(ranked),
            found=getattr(h, "found", None), crop=getattr(h, "crop", None)), cell, shift, flagged

    def _readout(self, case: Prepared, bmds: list[float], att: np.ndarray,
                 embeddings: np.ndarray | None = None) -> Prediction:
        warnings = [*case.warnings, *self.bundle_warnings]
        rows = [self._hip(case, i, b, att[i], None if embeddings is None else embeddings[i],
                          warnings) for i, b in enumerate(bmds)]
        hips = tuple(r[0] for r in rows)
        k = min(range(len(hips)), key=lambda j: hips[j].bmd_gcm2)   # DXA dual femur: the
        r, cell = hips[k], rows[k][1]                               # lower hip is reported
        scores = [x[2] for x in rows if x[2] is not None]
        return Prediction(
            bmd_gcm2=r.bmd_gcm2, interval=r.interval, t_score=r.t_score,
            t_reference=refs_mod.t_reference_name(self.references), z_score=r.z_score,
            z_reference=refs_mod.z_reference_name(self.references),
            who_category=r.who_category, screen_positive=r.screen_positive,
            threshold_gcm2=self.threshold, field_attention=r.field_attention,
            model_name=self.model_name, model_version=self.model_version,
            intended_use=self.intended_use, backend=self.session.backend, variant=self.variant,
            precision=self.precision, inputs=case.inputs, warnings=tuple(warnings),
            source=case.source, patient_ids=case.patient_ids, hips=hips, hip=r.hip,
            laterality_source=r.laterality_source, hip_film_score=case.hip_film_score,
            shift_score=max(scores) if scores else None, flagged=any(x[3] for x in rows),
            interval_cell=cell)

    # -- convenience --------------------------------------------------------------------------
    def predict(self, image: ImageLike, *, age: float | str | None = None,
                sex: str | None = None, side: str | None = None, select: str | None = None,
                force: bool = False, **fields: object) -> Prediction:
        """One image and its clinical facts → Prediction (age and sex required, or from DICOM)."""
        prepared = self.prepare(image, age=age, sex=sex, side=side, select=select,
                                force=force, **fields)
        return self.infer([prepared])[0]

    def predict_batch(self, images: Sequence[ImageLike],
                      records: Sequence[Mapping[str, object]], *, force: bool = False,
                      batch_size: int = 16) -> list[Prediction]:
        """Many images (paths or arrays) with one dict of facts each (age, sex, side, …)."""
        try:
            n_images, n_records = len(images), len(records)
        except TypeError:
            raise InputError("predict_batch needs a list of images and a list of records "
                             "(dicts of clinical facts)") from None
        if n_images != n_records:
            raise InputError(f"{n_images} images but {n_records} records; give one each")
        if not all(isinstance(r, Mapping) for r in records):
            raise InputError("every record must be a dict of clinical facts, e.g. "
                             "{'age': 70, 'sex': 'F'}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size {batch_size!r} is invalid; give an integer >= 1")
        prepared = [self.prepare(im, force=force, **dict(r)) for im, r in zip(images, records)]
        out: list[Prediction] = []
        for i in range(0, len(prepared), batch_size):
            out += self.infer(prepared[i:i + batch_size])
        return out


def _load_scorer(bundle: Any, session: Any, spec: Any) -> Any:
    """The bundle's ShiftScorer (None without a shift section); BundleError if the model file
    lacks the `embedding` output its statistics need."""
    r = bundle.meta.reliability
    if r is None or r.shift is None:
        return None
    from bmd_edge.reliability.scorer import ShiftScorer

    if r.shift.uses_embedding and not getattr(session, "has_embedding", False):
        raise BundleError("the bundle's shift statistics need the model's 'embedding' output, "
                          "which this model file lacks; re-export the bundle")
    return ShiftScorer.from_file(bundle.verified_stats(), r.shift.uses_embedding, spec.mean,
                                 spec.std)


def _open_locator(bundle: Any, backend: str, precision: str, cfg: SessionConfig) -> Any:
    """The bundle's hip locator on `backend` (its files hashed first), or None when the bundle
    has no locator section. Its file's own spec must equal bundle.json's."""
    section = bundle.meta.locator
    if section is None:
        return None
    from bmd_edge.locate.locator import Locator

    path, v = bundle.verified_locator_file(backend, precision)
    loc = Locator(path, SessionConfig(backend="openvino" if path.suffix == ".xml" and
                                      backend == "openvino" else "onnxruntime",
                                      threads=cfg.threads, precision=cfg.precision,
                                      cache_dir=cfg.cache_dir),
                  threshold=section.head_threshold)
    if loc.spec != section.spec:
        raise BundleError(f"locator file {v.file} in bundle {bundle.root} was exported with "
                          f"{loc.spec}, but bundle.json says {section.spec}; re-export the bundle")
    return loc


def _as_radiograph(image: ImageLike) -> tuple[Any, str]:
    """A Radiograph from a path, an array (float in [0,1]) or a Radiograph; plus a safe name."""
    from bmd_edge.image_io import ImageInfo, Radiograph, check_dimensions, read_image

    if isinstance(image, str) and not image.strip():
        raise InputError("image path is empty; give a radiograph file")
    if isinstance(image, (str, Path)):
        return read_image(image), Path(image).name
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "fiub":
            raise InputError(f"image array has dtype {image.dtype}; expected floats in [0, 1]")
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim != 2:
            raise InputError(f"image array has shape {arr.shape}; expected a 2-D H×W array")
        check_dimensions(arr.shape[1], arr.shape[0], "image array", "array")  # same as files
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise InputError("image array must be finite floats in [0, 1] (1 = bone bright)")
        info = ImageInfo(format="array", bits_stored=None, age_years=None, sex=None,
                         pixel_spacing_mm=None, laterality=None, view=None, modality=None,
                         patient_ids={})
        return Radiograph(pixels=arr, info=info, warnings=()), ""
    if hasattr(image, "pixels") and hasattr(image, "info"):
        return image, ""
    raise InputError(f"image of type {type(image).__name__} is not supported; give a file path, "
                     "a 2-D float array in [0, 1] or a Radiograph")
