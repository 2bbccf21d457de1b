"""Model bundles: one directory that holds everything inference needs, verified on load.

A bundle is `bundle.json` plus model files (`model_int8.xml/.bin`, `model_int8.onnx`, ...).
bundle.json says how to preprocess, which clinical schema encodes the metadata, what the output
means, which reference tables turn BMD into T/Z-scores, how wide the prediction interval is, how
each variant scored, and the sha256 of every file — so a changed byte, a missing file or a bundle
from a future format fails loudly at load time instead of giving a silently wrong BMD.
bundle.json also carries `meta_sha256`, the hash of its own canonical JSON without that key, so an
edit to bundle.json itself is caught too. Torch-free: the edge runtime imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from bmd_edge.errors import BundleError

FORMAT_VERSION = "bmd-edge-bundle/1"
SUPPORTED_VERSIONS: tuple[str, ...] = (FORMAT_VERSION,)
META_FILE = "bundle.json"
REQUIRED_KEYS: tuple[str, ...] = (
    "format_version", "model", "intended_use", "training_data", "input", "output", "references",
    "screening_threshold_gcm2", "interval", "variants", "calibration", "versions", "files",
)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (IR .bin files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """The one JSON spelling that hashes are computed over (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def meta_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of bundle.json's content without its own `meta_sha256` key."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def embedded_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The part of bundle.json that model files carry inside (ONNX metadata_props, IR rt_info).

    File hashes are left out: a file cannot contain its own hash.
    """
    return {k: v for k, v in meta.items() if k not in ("files", "meta_sha256")}


def write_bundle(staging: str | Path, meta: dict[str, Any], out: str | Path,
                 *, overwrite: bool = False) -> Path:
    """Hash every file in `staging`, write bundle.json there, then move it to `out` atomically.

    `staging` must be on the same file system as `out` (use `staging_dir(out)`), so the final
    rename either fully happens or not at all — a reader never sees half a bundle.
    """
    staging, out = Path(staging), Path(out)
    files = {}
    for p in sorted(staging.rglob("*")):
        if p.is_file() and p.name != META_FILE:
            files[p.relative_to(staging).as_posix()] = sha256_file(p)
    meta = dict(meta)
    meta["format_version"] = FORMAT_VERSION
    meta["files"] = files
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks keys {missing}; required are {list(REQUIRED_KEYS)}")
    for name, var in meta["variants"].items():
        for f in var.get("files", [var["file"]]):
            if f not in files:
                raise BundleError(f"variant {name!r} names file {f!r} that is not in the bundle")
    meta["meta_sha256"] = meta_digest(meta)
    (staging / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
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


class Bundle:
    """A verified bundle directory: `Bundle.load(path)` or `Bundle.load()` for the default."""

    def __init__(self, root: Path, meta: dict[str, Any], missing_optional: tuple[str, ...] = ()):
        self.root = root
        self.meta = meta
        # Optional variants (fp32 in the shipped default) whose files are not in this copy.
        self.missing_optional = missing_optional

    @classmethod
    def load(cls, path: str | Path | None = None, *, verify: bool = True) -> Bundle:
        """Read bundle.json and check format version, required keys, files and sha256 sums."""
        root = Path(path) if path is not None else default_bundle_path()
        if root.is_file() and root.name == META_FILE:
            root = root.parent
        meta_path = root / META_FILE
        if not root.is_dir():
            raise BundleError(f"bundle folder {root} does not exist; pass a folder holding {META_FILE}")
        if not meta_path.is_file():
            raise BundleError(f"missing file {META_FILE} in bundle {root}; is this a bmd-edge bundle?")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BundleError(f"file {META_FILE} in bundle {root} is not valid JSON ({err})") from None
        if not isinstance(meta, dict):
            raise BundleError(f"file {META_FILE} in bundle {root} is not a JSON object")
        found = meta.get("format_version")
        if found not in SUPPORTED_VERSIONS:
            raise BundleError(
                f"bundle {root} has format_version {found!r}; this bmd-edge reads "
                f"{', '.join(SUPPORTED_VERSIONS)}"
            )
        missing_keys = [k for k in REQUIRED_KEYS if k not in meta]
        if missing_keys:
            raise BundleError(f"file {META_FILE} in bundle {root} lacks keys {missing_keys}")
        missing_optional: list[str] = []
        if verify:
            if meta.get("meta_sha256") != meta_digest(meta):
                raise BundleError(f"checksum mismatch for file {META_FILE} in bundle {root}; "
                                  "it was edited after export — re-export the bundle")
            optional_files = {f for v in meta["variants"].values() if v.get("optional")
                              for f in v.get("files", [v["file"]])}
            for rel, digest in meta["files"].items():
                p = root / rel
                if not p.is_file():
                    if rel in optional_files:
                        missing_optional.append(rel)
                        continue
                    raise BundleError(f"missing file {rel} in bundle {root}; re-export the bundle")
                if sha256_file(p) != digest:
                    raise BundleError(f"checksum mismatch for file {rel} in bundle {root}; "
                                      "the file changed after export — re-export the bundle")
        gone = set(missing_optional)
        meta["variants"] = {n: v for n, v in meta["variants"].items()
                            if not gone.intersection(v.get("files", [v["file"]]))}
        return cls(root, meta, tuple(missing_optional))

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        """Variants whose files are present: name → {file, files, runtime, precision, metrics}."""
        return self.meta["variants"]

    @property
    def preprocess_spec(self) -> Any:
        """The exact preprocessing the model was trained with (a PreprocessSpec)."""
        from bmd_edge.preprocess import PreprocessSpec

        return PreprocessSpec.from_dict(self.meta["input"]["preprocess"])

    @property
    def schema(self) -> dict[str, Any]:
        """The clinical schema dict (field order, normalisation) the model was trained with."""
        return self.meta["input"]["schema"]

    @property
    def references(self) -> dict[str, Any]:
        """T-score and Z-score reference tables (sourced) shipped with the model."""
        return self.meta["references"]

    @property
    def interval(self) -> dict[str, Any]:
        """Split-conformal interval: {method, coverage, halfwidth_gcm2, n_calibration}."""
        return self.meta["interval"]

    @property
    def screening_threshold(self) -> float:
        """Low-BMD screening cut-off in g/cm² (0.899 = T-score −1, GE Lunar FN)."""
        return float(self.meta["screening_threshold_gcm2"])

    def model_file(self, variant: str) -> Path:
        """Path of a variant's main file (the .xml for OpenVINO); BundleError for unknown names."""
        if variant not in self.variants:
            raise BundleError(
                f"variant {variant!r} is not in bundle {self.root}; available: "
                f"{', '.join(self.variants) or 'none'}"
            )
        return self.root / self.variants[variant]["file"]

    def pick_variant(self, runtime: str, precision: str | None = None) -> str:
        """The first variant for `runtime` (int8 before fp32 unless `precision` is given)."""
        order = sorted(self.variants.items(), key=lambda kv: kv[1]["precision"] != "int8")
        for name, var in order:
            if var["runtime"] == runtime and precision in (None, var["precision"]):
                return name
        raise BundleError(
            f"bundle {self.root} has no {precision or 'any-precision'} variant for runtime "
            f"{runtime!r}; it has {', '.join(self.variants) or 'none'}"
        )


def default_bundle_path() -> Path:
    """The shipped default bundle: $BMD_EDGE_BUNDLE, else export/ beside the package."""
    env = os.environ.get("BMD_EDGE_BUNDLE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "export"
