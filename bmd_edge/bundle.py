"""Model bundles: one folder, one typed and versioned contract (`BundleMeta`), verified on load.

A bundle is `bundle.json` plus model files. bundle.json says how to preprocess, which clinical
schema encodes the facts, what the output means, which references turn BMD into T/Z-scores and
where the screening threshold lies, how wide the prediction interval is, which variants exist
with their files, where it all came from, the sha256 of every file, and (optionally) an Ed25519
signature over all of that. This module is the only one that reads or writes that JSON:
everything else gets the frozen dataclasses below, built by `BundleMeta.from_dict`, which
checks types, ranges, finiteness and cross-field rules and names the first bad key path.

Trust (`bundle_trust.py`): the shipped default is pinned by digest in the package source; other
bundles must be signed by a key the user trusts, or loaded with an explicit `allow_unsigned`.
Only what is loaded is hashed: bundle.json and the chosen variant's files. Torch-free.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bmd_edge import bundle_fields as F
from bmd_edge.errors import BundleError
from bmd_edge.preprocess import PreprocessSpec

FORMAT_VERSION = "bmd-edge-bundle/2"
OLD_VERSIONS = ("bmd-edge-bundle/1",)
META_FILE = "bundle.json"
RUNTIMES = ("openvino", "onnxruntime")
PRECISIONS = ("int8", "fp32")
FLOAT_MATH = ("f32", "bf16")
INPUT_NAMES = ["image", "values", "present"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file through one reused 256 KiB buffer (IR .bin files can be large)."""
    with open(path, "rb") as fh:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            return hashlib.file_digest(fh, "sha256").hexdigest()
        h = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
        return h.hexdigest()


def render(meta: BundleMeta) -> str:
    """bundle.json's exact text for `meta`: a file that differs from this by any byte is refused."""
    return json.dumps(meta.to_dict(), indent=2, ensure_ascii=False) + "\n"


def canonical_json(obj: Any) -> str:
    """The one JSON spelling that digests and signatures cover (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


# -- the schema ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    name: str                        # e.g. xattn-bmd
    version: str                     # the model's own version, not the package's
    config: Mapping[str, Any]        # architecture hyper-parameters (informative, free-form)
    label: Mapping[str, Any] | None  # label scaling the network was trained with, if any

    @classmethod
    def from_dict(cls, d: Any, p: str) -> ModelInfo:
        d = F.obj(d, p)
        F.keys(d, p, ("name", "version"), ("config", "label"))
        return cls(F.text(d, "name", p), F.text(d, "version", p),
                   F.plain(F.obj(d.get("config", {}), f"{p}.config"), f"{p}.config"),
                   None if d.get("label") is None else F.plain(F.obj(d["label"], f"{p}.label"),
                                                                f"{p}.label"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "version": self.version, "config": dict(self.config)}
        if self.label is not None:
            d["label"] = dict(self.label)
        return d


@dataclass(frozen=True)
class ClinicalSchema:
    """The clinical fields in model order with their normalisation (`schema.schema_to_dict`)."""

    names: tuple[str, ...]
    data: Mapping[str, Any]          # the full stored dict, given to schema.encode as is

    @classmethod
    def from_dict(cls, d: Any, p: str) -> ClinicalSchema:
        from bmd_edge.schema import SCHEMA_FORMAT

        d = F.obj(d, p)
        F.keys(d, p, ("format", "names", "fields"),
               ("max_age_gap_years", "bmi_tolerance", "encoding"))
        F.text(d, "format", p, choices=(SCHEMA_FORMAT,))
        names = F.texts(d, "names", p)
        fields_ = d["fields"]
        if not isinstance(fields_, list) or len(fields_) != len(names):
            raise F.bad(f"{p}.fields", f"expected a list of {len(names)} field objects")
        for i, f in enumerate(fields_):
            fp = f"{p}.fields[{i}]"
            f = F.obj(f, fp)
            for k in ("name", "kind", "mean", "std", "choices"):
                if k not in f:
                    raise F.bad(f"{fp}.{k}", "missing")
            if F.text(f, "name", fp) != names[i]:
                raise F.bad(f"{fp}.name", f"{f['name']!r} differs from names[{i}] {names[i]!r}")
            F.text(f, "kind", fp, choices=("continuous", "categorical"))
            F.number(f, "mean", fp)
            F.number(f, "std", fp, low=0, open_low=True)
            if not isinstance(f["choices"], list) or \
                    not all(isinstance(c, str) for c in f["choices"]):
                raise F.bad(f"{fp}.choices", "expected a list of strings")
            if f["kind"] == "categorical" and not f["choices"]:
                raise F.bad(f"{fp}.choices", "a categorical field needs its choices")
        return cls(names, F.plain(d, p))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))


@dataclass(frozen=True)
class InputSpec:
    preprocess: PreprocessSpec       # the exact preprocessing the model was trained with
    schema: ClinicalSchema           # how clinical facts become `values` and `present`
    crop: Any = None                 # locate.crop.CropSpec: the canonical neck crop the model
    #                                  was trained on (None: whole film, `preprocess` only)

    @property
    def image_size(self) -> int:
        """Side of the square `image` input: the crop's when the model reads crops."""
        size = getattr(self.crop, "size", None) if self.crop is not None else None
        return int(size) if isinstance(size, int) else self.preprocess.size

    @property
    def shapes(self) -> dict[str, list[Any]]:
        """The graph's input shapes, implied by the spec (the model files carry the same)."""
        s, n = self.image_size, len(self.schema.names)
        return {"image": ["batch", 1, s, s], "values": ["batch", n], "present": ["batch", n]}

    @classmethod
    def from_dict(cls, d: Any, p: str) -> InputSpec:
        d = F.obj(d, p)
        F.keys(d, p, ("preprocess", "schema", "names", "shapes"), ("crop",))
        try:
            spec = PreprocessSpec.from_dict(F.obj(d["preprocess"], f"{p}.preprocess"))
        except BundleError:
            raise
        except Exception as err:  # noqa: BLE001 - InputError from the spec, or a bad type
            raise F.bad(f"{p}.preprocess", str(err)) from None
        crop = None if d.get("crop") is None else _crop_spec(d["crop"], f"{p}.crop")
        out = cls(spec, ClinicalSchema.from_dict(d["schema"], f"{p}.schema"), crop)
        if d["names"] != INPUT_NAMES:
            raise F.bad(f"{p}.names", f"expected {INPUT_NAMES}")
        if d["shapes"] != out.shapes:
            raise F.bad(f"{p}.shapes", f"{d['shapes']!r} disagrees with preprocess.size and the "
                                       f"schema; expected {out.shapes!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {"preprocess": self.preprocess.to_dict(), "schema": self.schema.to_dict(),
             "names": list(INPUT_NAMES), "shapes": self.shapes}
        if self.crop is not None:
            d["crop"] = json.loads(json.dumps(self.crop.to_dict()))
        return d


def _crop_spec(d: Any, p: str) -> Any:
    """input.crop → locate.crop.CropSpec, with its errors as one bundle.json line."""
    try:
        from bmd_edge.locate.crop import CropSpec
    except ImportError:
        raise F.bad(p, "this bmd-edge cannot read a canonical-crop spec; upgrade bmd-edge") from None
    try:
        return CropSpec.from_dict(F.plain(F.obj(d, p), p))
    except BundleError as err:
        raise F.bad(p, str(err)) from None
    except Exception as err:  # noqa: BLE001 - a bad type or value inside the spec
        raise F.bad(p, str(err)) from None


@dataclass(frozen=True)
class OutputSpec:
    name: str                        # the graph's BMD output
    unit: str                        # g/cm2
    scale: str                       # densitometer scale, e.g. "GE Lunar femoral neck"
    attention: str = ""              # what the second output means

    @classmethod
    def from_dict(cls, d: Any, p: str) -> OutputSpec:
        d = F.obj(d, p)
        F.keys(d, p, ("name", "unit", "scale"), ("attention",))
        return cls(F.text(d, "name", p, choices=("bmd",)), F.text(d, "unit", p, choices=("g/cm2",)),
                   F.text(d, "scale", p), F.text(d, "attention", p, empty=True)
                   if "attention" in d else "")

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "unit": self.unit, "scale": self.scale}
        return {**d, "attention": self.attention} if self.attention else d


@dataclass(frozen=True)
class References:
    """T/Z-score tables, WHO bands, and the screening threshold: the clinical read-out."""

    tables: Mapping[str, Any]        # `references.default_references()` layout
    screening_threshold_gcm2: float  # BMD below this screens positive (0.899: T = −1, Lunar FN)

    @classmethod
    def from_dict(cls, d: Any, p: str) -> References:
        from bmd_edge import references as refs

        d = F.obj(d, p)
        F.keys(d, p, ("format", "t_score", "z_score", "who", "screening_threshold_gcm2"),
               ("site", "scale", "unit"))
        F.text(d, "format", p, choices=(refs.REFERENCES_FORMAT,))
        thr = F.number(d, "screening_threshold_gcm2", p, low=0.3, high=1.6)
        who = F.obj(d["who"], f"{p}.who")
        hi = F.number(who, "normal_min_t", f"{p}.who", low=-5, high=5)
        lo = F.number(who, "osteoporosis_max_t", f"{p}.who", low=-8, high=5)
        if not lo < hi:
            raise F.bad(f"{p}.who", f"osteoporosis_max_t {lo} must be below normal_min_t {hi}")
        tables = F.plain({k: v for k, v in d.items() if k != "screening_threshold_gcm2"}, p)
        try:
            refs.validate_references(tables)
            for k in ("mean_gcm2", "sd_gcm2"):
                F.number(tables["t_score"], k, f"{p}.t_score", low=0, open_low=True, high=3)
        except BundleError:
            raise
        except Exception as err:  # noqa: BLE001 - MetadataError: tables lack what scores need
            raise F.bad(p, str(err)) from None
        return cls(tables, float(thr))

    def to_dict(self) -> dict[str, Any]:
        return {**json.loads(json.dumps(self.tables)),
                "screening_threshold_gcm2": self.screening_threshold_gcm2}


@dataclass(frozen=True)
class Interval:
    method: str                      # split-conformal
    coverage: float                  # nominal coverage in (0, 1)
    halfwidth_gcm2: float            # BMD ± this
    n_calibration: int               # cases it was calibrated on
    variant: str = ""                # the variant whose predictions calibrated it
    calibration_set: str = ""        # what those cases were

    @classmethod
    def from_dict(cls, d: Any, p: str) -> Interval:
        d = F.obj(d, p)
        F.keys(d, p, ("method", "coverage", "halfwidth_gcm2", "n_calibration"),
               ("variant", "calibration_set"))
        return cls(F.text(d, "method", p, choices=("split-conformal",)),
                   float(F.number(d, "coverage", p, low=0, open_low=True, high=0.999)),
                   float(F.number(d, "halfwidth_gcm2", p, low=0, open_low=True, high=1.0)),
                   int(F.number(d, "n_calibration", p, low=0, integer=True)),
                   F.text(d, "variant", p) if "variant" in d else "",
                   F.text(d, "calibration_set", p) if "calibration_set" in d else "")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "coverage": self.coverage,
                             "halfwidth_gcm2": self.halfwidth_gcm2,
                             "n_calibration": self.n_calibration}
        if self.variant:
            d["variant"] = self.variant
        if self.calibration_set:
            d["calibration_set"] = self.calibration_set
        return d


@dataclass(frozen=True)
class Variant:
    name: str                        # the key in `variants`, also the CLI's --variant
    file: str                        # the file the runtime opens (.xml or .onnx)
    files: tuple[str, ...]           # every file it uses (an .xml needs its .bin)
    runtime: str                     # openvino | onnxruntime: the runtime it was exported for
    precision: str                   # int8 | fp32: the weights
    inference_precision: str = "f32"  # float math the recorded metrics were measured with
    metrics: Mapping[str, float | None] = field(default_factory=dict)  # measured at export
    optional: bool = False           # may be absent from a copy (not shipped; rebuilt locally)
    method: str = ""                 # int8 only: "ptq" | "qat" when known ("" = not recorded)

    @classmethod
    def from_dict(cls, name: str, d: Any, p: str) -> Variant:
        d = F.obj(d, p)
        F.keys(d, p, ("file", "files", "runtime", "precision"),
               ("inference_precision", "metrics", "optional", "method"))
        file = F.rel_path(d["file"], f"{p}.file")
        raw_files = d["files"]
        if not isinstance(raw_files, list) or not raw_files:
            raise F.bad(f"{p}.files", "expected a non-empty list of file names")
        files = tuple(F.rel_path(f, f"{p}.files[{i}]") for i, f in enumerate(raw_files))
        if len(set(files)) != len(files):
            raise F.bad(f"{p}.files", "lists a file twice")
        if file not in files:
            raise F.bad(f"{p}.file", f"{file!r} is not in the variant's files {list(files)}")
        runtime = F.text(d, "runtime", p, choices=RUNTIMES)
        suffix = Path(file).suffix
        if suffix not in ((".onnx",) if runtime == "onnxruntime" else (".xml", ".onnx")):
            raise F.bad(f"{p}.file", f"{file!r} cannot be run by {runtime}")
        if suffix == ".xml" and str(Path(file).with_suffix(".bin")) not in files:
            raise F.bad(f"{p}.files", f"an OpenVINO IR needs {Path(file).with_suffix('.bin')}")
        metrics = F.obj(d.get("metrics", {}), f"{p}.metrics")
        for k, v in metrics.items():
            if v is not None:
                F.number(metrics, k, f"{p}.metrics")
        return cls(name, file, files, runtime, F.text(d, "precision", p, choices=PRECISIONS),
                   F.text(d, "inference_precision", p, choices=FLOAT_MATH)
                   if "inference_precision" in d else "f32",
                   dict(metrics), F.flag(d, "optional", p) if "optional" in d else False,
                   F.text(d, "method", p, choices=("ptq", "qat")) if "method" in d else "")

    def to_dict(self) -> dict[str, Any]:
        d = {"file": self.file, "files": list(self.files), "runtime": self.runtime,
             "precision": self.precision, "inference_precision": self.inference_precision,
             "metrics": dict(self.metrics), "optional": self.optional}
        return {**d, "method": self.method} if self.method else d


@dataclass(frozen=True)
class Provenance:
    training_data: str               # one line: what the model learned from
    calibration: Mapping[str, Any]   # int8 calibration, held-out splits, torch metrics (free-form)
    versions: Mapping[str, str]      # package versions at export

    @classmethod
    def from_dict(cls, d: Any, p: str) -> Provenance:
        d = F.obj(d, p)
        F.keys(d, p, ("training_data", "calibration", "versions"))
        versions = F.obj(d["versions"], f"{p}.versions")
        for k in versions:
            F.text(versions, k, f"{p}.versions")
        return cls(F.text(d, "training_data", p),
                   F.plain(F.obj(d["calibration"], f"{p}.calibration"), f"{p}.calibration"),
                   dict(versions))

    def torch_metrics_test(self) -> Mapping[str, Any]:
        """PyTorch metrics on the held-out test half by stage ("fp32", "ptq", "qat"); {} if absent."""
        found = self.calibration.get("torch_metrics_test")
        return found if isinstance(found, Mapping) else {}

    def interval_halfwidth_of(self, variant: str) -> float:
        """The interval half-width calibrated for `variant` itself (NaN when not recorded)."""
        per = self.calibration.get("interval_per_variant")
        entry = per.get(variant) if isinstance(per, Mapping) else None
        value = entry.get("halfwidth_gcm2") if isinstance(entry, Mapping) else None
        return float(value) if isinstance(value, (int, float)) else float("nan")

    def test_cases(self) -> int | None:
        """How many held-out cases the recorded metrics were measured on (None when unknown)."""
        value = self.calibration.get("test_cases")
        return value if isinstance(value, int) else None

    def to_dict(self) -> dict[str, Any]:
        return {"training_data": self.training_data,
                "calibration": json.loads(json.dumps(self.calibration)),
                "versions": dict(self.versions)}


@dataclass(frozen=True)
class LocatorSection:
    """The hip locator that runs before the BMD model (issue #15): its files, its input spec,
    the two thresholds `predict` applies, and where it came from. Optional: a bundle without it
    still loads, and every prediction from it then carries a warning (runtime/pipeline.py)."""

    name: str                        # e.g. hip-locator
    version: str                     # the locator's own version (its training run)
    spec: Any                        # locate.spec.LocatorSpec: letterbox size, stride, window
    variants: Mapping[str, Variant]  # name → files (OpenVINO IR / ONNX, int8 and/or fp32)
    hip_film_threshold: float        # is_hip_score below this: not a hip/pelvis film (refused)
    head_threshold: float            # heatmap peak below this: no femoral head found there
    metrics: Mapping[str, Any] = field(default_factory=dict)     # measured at export (free-form)
    provenance: Mapping[str, Any] = field(default_factory=dict)  # training data, run (free-form)

    @classmethod
    def from_dict(cls, d: Any, p: str) -> LocatorSection:
        from bmd_edge.locate.spec import LocatorSpec

        d = F.obj(d, p)
        F.keys(d, p, ("name", "version", "spec", "variants", "hip_film_threshold",
                      "head_threshold"), ("metrics", "provenance"))
        try:
            spec = LocatorSpec.from_dict(F.plain(F.obj(d["spec"], f"{p}.spec"), f"{p}.spec"))
        except BundleError as err:
            raise F.bad(f"{p}.spec", str(err)) from None
        except (TypeError, ValueError) as err:
            raise F.bad(f"{p}.spec", str(err)) from None
        raw = F.obj(d["variants"], f"{p}.variants")
        if not raw:
            raise F.bad(f"{p}.variants", "a locator needs at least one file")
        variants = {n: Variant.from_dict(n, v, f"{p}.variants.{n}") for n, v in raw.items()}
        return cls(F.text(d, "name", p), F.text(d, "version", p), spec, variants,
                   float(F.number(d, "hip_film_threshold", p, low=0, open_low=True, high=0.999)),
                   float(F.number(d, "head_threshold", p, low=0, open_low=True, high=0.999)),
                   F.plain(F.obj(d.get("metrics", {}), f"{p}.metrics"), f"{p}.metrics"),
                   F.plain(F.obj(d.get("provenance", {}), f"{p}.provenance"), f"{p}.provenance"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "spec": self.spec.to_dict(),
                "variants": {n: v.to_dict() for n, v in self.variants.items()},
                "hip_film_threshold": self.hip_film_threshold,
                "head_threshold": self.head_threshold,
                "metrics": json.loads(json.dumps(self.metrics)),
                "provenance": json.loads(json.dumps(self.provenance))}

    def choose(self, backend: str, precision: str, available: tuple[str, ...]) -> Variant:
        """The locator file to run beside a BMD variant: one `backend` can run, the same
        precision first (int8 before fp32 otherwise), files exported for `backend` first."""
        runnable = (".onnx",) if backend == "onnxruntime" else (".xml", ".onnx")
        ranked = sorted((v for n, v in self.variants.items()
                         if n in available and Path(v.file).suffix in runnable),
                        key=lambda v: (v.precision != precision, v.precision != "int8",
                                       v.runtime != backend, v.name))
        if not ranked:
            raise BundleError(f"bundle has no hip-locator file that {backend} can run; listed: "
                              f"{', '.join(self.variants)}")
        return ranked[0]


@dataclass(frozen=True)
class Signature:
    algorithm: str                   # ed25519
    public_key: str                  # 64 hex digits (raw Ed25519 public key)
    value: str                       # 128 hex digits over `BundleMeta.signed_bytes()`

    @classmethod
    def from_dict(cls, d: Any, p: str) -> Signature:
        d = F.obj(d, p)
        F.keys(d, p, ("algorithm", "public_key", "value"))
        sig = cls(F.text(d, "algorithm", p, choices=("ed25519",)), F.text(d, "public_key", p),
                  F.text(d, "value", p))
        if not F.HEX64.fullmatch(sig.public_key):
            raise F.bad(f"{p}.public_key", "expected 64 lowercase hex digits")
        if len(sig.value) != 128 or not all(c in "0123456789abcdef" for c in sig.value):
            raise F.bad(f"{p}.value", "expected 128 lowercase hex digits")
        return sig

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "public_key": self.public_key, "value": self.value}


@dataclass(frozen=True)
class BundleMeta:
    """bundle.json as one frozen, validated object (format `bmd-edge-bundle/2`)."""

    model: ModelInfo
    intended_use: str
    input: InputSpec
    output: OutputSpec
    references: References
    interval: Interval
    variants: Mapping[str, Variant]
    provenance: Provenance
    files: Mapping[str, str] = field(default_factory=dict)  # file name → sha256 (all files)
    signature: Signature | None = None
    reliability: Any = None          # reliability.section.Reliability: shift policy, Mondrian
    locator: LocatorSection | None = None   # the hip locator (absent in bundles before #15)

    @classmethod
    def from_dict(cls, d: Any) -> BundleMeta:
        d = F.obj(d, "")
        if "format_version" not in d:
            raise F.bad("format_version", "missing; is this a bmd-edge bundle?")
        found = d["format_version"]
        if found in OLD_VERSIONS:
            raise BundleError(f"bundle.json: format_version {found!r} is an older bundle format; "
                              f"this bmd-edge reads {FORMAT_VERSION!r} (typed, signed) — "
                              "re-export it with `bmd-edge export`")
        if found != FORMAT_VERSION:
            raise F.bad("format_version", f"{found!r} is not supported; this bmd-edge reads "
                                          f"{FORMAT_VERSION!r}")
        F.keys(d, "", ("format_version", "model", "intended_use", "input", "output",
                       "references", "interval", "variants", "provenance", "files"),
               ("signature", "reliability", "locator"))
        files = F.obj(d["files"], "files")
        checked_files = {F.rel_path(k, f"files.{k}"): F.digest(v, f"files.{k}")
                         for k, v in files.items()}
        if META_FILE in checked_files:
            raise F.bad(f"files.{META_FILE}", "bundle.json cannot list its own digest")
        raw_variants = F.obj(d["variants"], "variants")
        if not raw_variants:
            raise F.bad("variants", "a bundle needs at least one variant")
        variants = {n: Variant.from_dict(n, v, f"variants.{n}") for n, v in raw_variants.items()}
        locator = (None if d.get("locator") is None
                   else LocatorSection.from_dict(d["locator"], "locator"))
        listed = [(f"variants.{v.name}", v) for v in variants.values()] + (
            [(f"locator.variants.{v.name}", v) for v in locator.variants.values()]
            if locator is not None else [])
        for where, v in listed:
            for i, f in enumerate(v.files):
                if f not in checked_files:
                    raise F.bad(f"{where}.files[{i}]",
                                f"{f!r} is not listed (with its sha256) in files")
        if locator is not None:
            shared = {f for v in variants.values() for f in v.files} & \
                {f for v in locator.variants.values() for f in v.files}
            if shared:
                raise F.bad("locator.variants", f"{min(shared)!r} is also a BMD model file")
        meta = cls(
            model=ModelInfo.from_dict(d["model"], "model"),
            intended_use=F.text(d, "intended_use", ""),
            input=InputSpec.from_dict(d["input"], "input"),
            output=OutputSpec.from_dict(d["output"], "output"),
            references=References.from_dict(d["references"], "references"),
            interval=Interval.from_dict(d["interval"], "interval"),
            variants=variants,
            provenance=Provenance.from_dict(d["provenance"], "provenance"),
            files=checked_files,
            signature=None if d.get("signature") is None
            else Signature.from_dict(d["signature"], "signature"),
            reliability=_reliability(d.get("reliability"), checked_files),
            locator=locator)
        if meta.interval.variant and meta.interval.variant not in variants:
            raise F.bad("interval.variant", f"{meta.interval.variant!r} is not a variant")
        return meta

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self._json)  # a fresh copy: callers may edit it

    @functools.cached_property
    def _json(self) -> str:
        """to_dict's JSON, built once (the object is frozen; load needs it three times)."""
        d: dict[str, Any] = {
            "format_version": FORMAT_VERSION, "model": self.model.to_dict(),
            "intended_use": self.intended_use, "input": self.input.to_dict(),
            "output": self.output.to_dict(), "references": self.references.to_dict(),
            "interval": self.interval.to_dict(),
            "variants": {n: v.to_dict() for n, v in self.variants.items()},
            "provenance": self.provenance.to_dict()}
        if self.locator is not None:
            d["locator"] = self.locator.to_dict()
        d["files"] = dict(sorted(self.files.items()))
        if self.reliability is not None:
            d["reliability"] = self.reliability.to_dict()
        if self.signature is not None:
            d["signature"] = self.signature.to_dict()
        return json.dumps(d, ensure_ascii=False, allow_nan=False)

    def signed_bytes(self) -> bytes:
        """What a signature covers: every field, every file's digest, not the signature itself."""
        d = self.to_dict()
        d.pop("signature", None)
        return canonical_json(d).encode("utf-8")

    def digest(self) -> str:
        """sha256 of `signed_bytes()`: what the package pins for its shipped bundle."""
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def embedded(self) -> dict[str, Any]:
        """What model files carry inside: all of bundle.json except digests and signature."""
        d = self.to_dict()
        d.pop("files")
        d.pop("signature", None)
        return d

    @functools.cached_property
    def embedded_json(self) -> str:
        """`embedded()` in canonical JSON (what `bundle_embed.stamp` writes)."""
        return canonical_json(self.embedded())

    @property
    def screening_threshold_gcm2(self) -> float:
        return self.references.screening_threshold_gcm2

    def choose_variant(self, backend: str, wanted: str | None = None,
                       available: tuple[str, ...] | None = None) -> Variant:
        """The one variant chooser: an exact name, or a precision (default int8) `backend` runs.

        Among variants of that precision, those exported for `backend` come first, then by name.
        """
        have = [n for n in self.variants if available is None or n in available]
        if wanted is not None and wanted in self.variants:
            if wanted not in have:
                raise BundleError(_not_installed(self.variants[wanted]))
            return self.variants[wanted]
        precision = wanted or "int8"
        if precision not in PRECISIONS:
            hint = ("; fp32 files are not shipped: build them with `bmd-edge export` "
                    "(export/build_default.py for the default model)"
                    if "fp32" in precision else "")
            raise BundleError(f"variant {wanted!r} is neither a variant of this bundle nor a "
                              f"precision; installed variants: {', '.join(have) or 'none'}; "
                              f"precisions: {', '.join(PRECISIONS)}{hint}")
        runnable = (".onnx",) if backend == "onnxruntime" else (".xml", ".onnx")
        ranked = sorted((self.variants[n] for n in have
                         if self.variants[n].precision == precision
                         and Path(self.variants[n].file).suffix in runnable),
                        key=lambda v: (v.runtime != backend, v.name))
        if not ranked:
            absent = [v for n, v in self.variants.items() if n not in have
                      and v.precision == precision and Path(v.file).suffix in runnable]
            if absent:
                raise BundleError(_not_installed(absent[0]))
            shown = ", ".join(f"{n} ({self.variants[n].runtime}, {self.variants[n].precision})"
                              for n in have) or "none"
            raise BundleError(f"bundle has no {precision} variant that {backend} can run; "
                              f"installed variants: {shown}")
        return ranked[0]


def _reliability(d: Any, files: Mapping[str, str]) -> Any:
    """The optional `reliability` section; its statistics file must be listed in `files`."""
    if d is None:
        return None
    from bmd_edge.reliability.section import Reliability

    r = Reliability.from_dict(d, "reliability")
    if r.shift is not None and r.shift.stats_file not in files:
        raise F.bad("reliability.shift.stats_file",
                    f"{r.shift.stats_file!r} is not listed (with its sha256) in files")
    return r


def _not_installed(v: Variant) -> str:
    return (f"variant {v.name!r} is listed but its files ({', '.join(v.files)}) are not in this "
            "copy of the bundle; it is built locally by `bmd-edge export` "
            "(see export/README.md)")


# -- a bundle folder -----------------------------------------------------------------------------
class Bundle:
    """A bundle folder whose bundle.json is valid and trusted: `Bundle.load(path)`.

    Model files are hashed when a variant is opened (`verified_file`), not at load: only what
    is run is read.
    """

    def __init__(self, root: Path, meta: BundleMeta, trust: Any) -> None:
        self.root = root
        self.meta = meta
        self.trust = trust            # bundle_trust.Trust: how this bundle was trusted
        self._verified: set[str] = set()

    @classmethod
    def load(cls, path: str | Path | None = None, *, allow_unsigned: bool = False,
             trusted_keys: tuple[str | Path, ...] = ()) -> Bundle:
        """Read, validate and trust-check bundle.json; BundleError (one line) otherwise."""
        from bmd_edge.bundle_trust import check_trust

        root = Path(path) if path is not None else default_bundle_path()
        if root.is_file() and root.name == META_FILE:
            root = root.parent
        if not root.is_dir():
            raise BundleError(f"bundle folder {root} does not exist; pass a folder holding {META_FILE}")
        meta_path = root / META_FILE
        if not meta_path.is_file():
            raise BundleError(f"missing file {META_FILE} in bundle {root}; is this a bmd-edge bundle?")
        try:
            if meta_path.stat().st_size > F.MAX_META_BYTES:
                raise BundleError(f"file {META_FILE} in bundle {root} is larger than "
                                  f"{F.MAX_META_BYTES} bytes; not bmd-edge metadata")
            raw = meta_path.read_bytes()
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"file {META_FILE} in bundle {root} is not UTF-8 text") from None
        except OSError as err:
            raise BundleError(f"cannot read {meta_path}: {err.strerror}") from None
        try:
            meta = BundleMeta.from_dict(F.parse_json(text))
        except BundleError as err:
            raise BundleError(f"{err} (in {root})") from None
        if text != render(meta):
            raise BundleError(f"file {META_FILE} in bundle {root} is not in the exact form "
                              "`bmd-edge export` writes (edited by hand?); re-export the bundle")
        trust = check_trust(meta, allow_unsigned=allow_unsigned, trusted_keys=trusted_keys)
        return cls(root, meta, trust)

    def installed(self) -> tuple[str, ...]:
        """Variants whose files are all present; a missing required file is an error."""
        out = []
        for v in self.meta.variants.values():
            missing = [f for f in v.files if not (self.root / f).is_file()]
            if not missing:
                out.append(v.name)
            elif not v.optional:
                raise BundleError(f"missing file {missing[0]} in bundle {self.root}; "
                                  "re-export the bundle")
        return tuple(out)

    def choose_variant(self, backend: str, wanted: str | None = None) -> Variant:
        return self.meta.choose_variant(backend, wanted, self.installed())

    def verified_file(self, variant: str) -> Path:
        """The variant's main file, after hashing every file it uses and checking that the
        metadata embedded in the model equals bundle.json's. BundleError otherwise."""
        if variant not in self.meta.variants:
            raise BundleError(f"variant {variant!r} is not in bundle {self.root}; available: "
                              f"{', '.join(self.meta.variants) or 'none'}")
        v = self.meta.variants[variant]
        if variant not in self._verified:
            self._hash(v, embedded=True)
            self._verified.add(variant)
        return self.root / v.file

    def locator_installed(self) -> tuple[str, ...]:
        """Locator files present in this copy (empty when the bundle has no locator)."""
        loc = self.meta.locator
        if loc is None:
            return ()
        out = [n for n, v in loc.variants.items() if all((self.root / f).is_file() for f in v.files)]
        for n, v in loc.variants.items():
            if n not in out and not v.optional:
                missing = next(f for f in v.files if not (self.root / f).is_file())
                raise BundleError(f"missing file {missing} in bundle {self.root}; re-export the "
                                  "bundle")
        return tuple(out)

    def verified_locator_file(self, backend: str, precision: str = "int8") -> tuple[Path, Variant]:
        """The locator file to run with `backend` (precision preferred), after hashing every file
        it uses against bundle.json. BundleError when the bundle has no locator."""
        loc = self.meta.locator
        if loc is None:
            raise BundleError(f"bundle {self.root} has no hip locator")
        v = loc.choose(backend, precision, self.locator_installed())
        key = f"locator:{v.name}"
        if key not in self._verified:
            self._hash(v, embedded=False)
            self._verified.add(key)
        return self.root / v.file, v

    def _hash(self, v: Variant, *, embedded: bool) -> None:
        """Every file of `v` inside the folder and matching its sha256; with `embedded`, the
        metadata inside the main file equal to bundle.json's (BMD model files carry it)."""
        from bmd_edge.bundle_embed import read_embedded

        root = self.root.resolve()
        for f in v.files:
            p = self.root / f
            if not p.resolve().is_relative_to(root):
                raise BundleError(f"file {f} of bundle {self.root} resolves outside the bundle "
                                  "folder; refusing it")
            if not p.is_file():
                raise BundleError(_not_installed(v))
            # The main file is read whole (its embedded metadata is compared below); others,
            # such as a 12 MB .bin, are hashed through one small reused buffer.
            data = p.read_bytes() if embedded and f == v.file else None
            digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(p)
            if digest != self.meta.files[f]:
                raise BundleError(f"checksum mismatch for file {f} in bundle {self.root}; the "
                                  "file changed after export — re-export the bundle")
            if data is not None:
                found = read_embedded(p.suffix, data)
                if found is None:
                    raise BundleError(f"model file {f} in bundle {self.root} carries no bmd-edge "
                                      "metadata; re-export the bundle")
                if found != self.meta.embedded_json:
                    raise BundleError(f"the metadata inside {f} differs from {META_FILE} in "
                                      f"bundle {self.root}; they come from different exports")

    def verified_stats(self) -> Path | None:
        """The reliability statistics file after checking its sha256 (None: no shift section)."""
        r = self.meta.reliability
        if r is None or r.shift is None:
            return None
        f = r.shift.stats_file
        p = self.root / f
        if not p.is_file() or not p.resolve().is_relative_to(self.root.resolve()):
            raise BundleError(f"missing file {f} in bundle {self.root}; re-export the bundle")
        if sha256_file(p) != self.meta.files[f]:
            raise BundleError(f"checksum mismatch for file {f} in bundle {self.root}; the "
                              "file changed after export — re-export the bundle")
        return p

    # -- short names for the read-out ------------------------------------------------------------
    @property
    def variants(self) -> Mapping[str, Variant]:
        return self.meta.variants

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return self.meta.input.preprocess

    @property
    def screening_threshold(self) -> float:
        return self.meta.references.screening_threshold_gcm2


def write_bundle(staging: str | Path, meta: BundleMeta, out: str | Path, *,
                 overwrite: bool = False, sign_key: str | Path | None = None) -> Path:
    """Hash every file in `staging`, write bundle.json (signed if `sign_key`), then move the
    folder to `out` atomically.

    `staging` must be on the same file system as `out` (use `staging_dir(out)`), so the final
    rename either fully happens or not at all — a reader never sees half a bundle.
    """
    staging, out = Path(staging), Path(out)
    files = {p.relative_to(staging).as_posix(): sha256_file(p)
             for p in sorted(staging.rglob("*")) if p.is_file() and p.name != META_FILE}
    final = BundleMeta.from_dict({**meta.to_dict(), "files": files, "signature": None})
    if sign_key is not None:
        from bmd_edge.bundle_trust import sign

        final = replace(final, signature=sign(final, sign_key))
    (staging / META_FILE).write_text(render(final), encoding="utf-8")
    if out.exists():
        if not overwrite:
            raise BundleError(f"output {out} already exists; pass --overwrite or choose a new folder")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
    return out


def staging_dir(out: str | Path) -> Path:
    """A fresh temp folder beside `out` (same file system, so `write_bundle` can rename it)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))


def default_bundle_path() -> Path:
    """The shipped default bundle: $BMD_EDGE_BUNDLE, else export/ beside the package."""
    env = os.environ.get("BMD_EDGE_BUNDLE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "export"
