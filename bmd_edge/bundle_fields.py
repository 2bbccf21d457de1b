"""Field readers for bundle.json: each checks one value and names its key path when it is wrong.

Why a module of its own: `bundle.py` builds a frozen, typed `BundleMeta` from untrusted JSON, and
every bad value must end as one line that says *where* ("bundle.json: interval.halfwidth_gcm2:
-0.1 must be > 0"), never as a KeyError or AttributeError three modules later.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from bmd_edge.errors import BundleError

MAX_META_BYTES = 1 << 20          # a real bundle.json is ~20 KB; refuse megabytes of JSON
MAX_DEPTH = 32                    # a real bundle.json nests 6 deep; refuse 200,000 brackets
HEX64 = re.compile(r"[0-9a-f]{64}")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def bad(path: str, problem: str) -> BundleError:
    """The one-line error every reader raises: `bundle.json: <key path>: <problem>`."""
    return BundleError(f"bundle.json: {path or '(top level)'}: {problem}")


def parse_json(text: str) -> Any:
    """JSON without NaN/Infinity, without deep nesting and without duplicate keys."""
    if len(text) > MAX_META_BYTES:
        raise bad("", f"{len(text)} bytes is too large for bundle metadata (limit {MAX_META_BYTES})")
    depth = 0
    for ch in _BRACKETS.findall(_STRINGS.sub('""', text)):  # depth outside strings, before
        depth += 1 if ch in "[{" else -1                    # the recursive parser sees it
        if depth > MAX_DEPTH:
            raise bad("", f"nested deeper than {MAX_DEPTH} levels; not a bmd-edge bundle")

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in pairs:
            if k in d:
                raise ValueError(f"key {k!r} appears twice")
            d[k] = v
        return d

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as err:
        raise bad("", f"not valid JSON ({err})") from None


def obj(d: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise bad(path, f"expected an object, got {_kind(d)}")
    return d


def keys(d: Mapping[str, Any], path: str, required: Sequence[str],
         optional: Sequence[str] = ()) -> None:
    """Every required key present, nothing unknown (a typo is an error, not a silent default)."""
    for k in required:
        if k not in d:
            raise bad(_join(path, k), "missing")
    unknown = sorted(set(d) - set(required) - set(optional))
    if unknown:
        raise bad(_join(path, unknown[0]), f"unknown key; accepted: "
                                           f"{', '.join([*required, *optional])}")


def text(d: Mapping[str, Any], key: str, path: str, *, choices: Sequence[str] = (),
         empty: bool = False) -> str:
    v = _get(d, key, path)
    p = _join(path, key)
    if not isinstance(v, str):
        raise bad(p, f"expected a string, got {_kind(v)}")
    if not empty and not v.strip():
        raise bad(p, "must not be empty")
    if choices and v not in choices:
        raise bad(p, f"{v!r} is not one of {', '.join(choices)}")
    return v


def number(d: Mapping[str, Any], key: str, path: str, *, low: float | None = None,
           high: float | None = None, open_low: bool = False, integer: bool = False) -> float:
    """A finite number in [low, high] (or (low, high] with open_low); ints when `integer`."""
    v = _get(d, key, path)
    p = _join(path, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise bad(p, f"expected a number, got {_kind(v)}")
    if integer and not isinstance(v, int):
        raise bad(p, f"expected an integer, got {v!r}")
    if not math.isfinite(v):
        raise bad(p, f"{v!r} is not finite")
    if low is not None and (v <= low if open_low else v < low):
        raise bad(p, f"{v!r} must be {'>' if open_low else '>='} {low:g}")
    if high is not None and v > high:
        raise bad(p, f"{v!r} must be <= {high:g}")
    return v


def flag(d: Mapping[str, Any], key: str, path: str) -> bool:
    v = _get(d, key, path)
    if not isinstance(v, bool):
        raise bad(_join(path, key), f"expected true or false, got {_kind(v)}")
    return v


def texts(d: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    v = _get(d, key, path)
    p = _join(path, key)
    if not isinstance(v, list) or not v:
        raise bad(p, f"expected a non-empty list of strings, got {_kind(v)}")
    for i, s in enumerate(v):
        if not isinstance(s, str) or not s:
            raise bad(f"{p}[{i}]", f"expected a non-empty string, got {_kind(s)}")
    return tuple(v)


def plain(v: Any, path: str) -> Any:
    """Free-form data (model config, calibration notes): JSON scalars, lists and objects only."""
    if isinstance(v, Mapping):
        return {str(k): plain(x, _join(path, str(k))) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x, f"{path}[{i}]") for i, x in enumerate(v)]
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return v
    raise bad(path, f"{v!r} is not plain JSON data")


def rel_path(v: Any, path: str) -> str:
    """A file name inside the bundle folder: relative, POSIX, no '..', no hidden tricks."""
    if not isinstance(v, str) or not v:
        raise bad(path, f"expected a file name, got {_kind(v)}")
    p = PurePosixPath(v)
    if (v.startswith(("/", "\\")) or "\\" in v or ":" in v or p.is_absolute()
            or any(part in ("..", ".", "") for part in v.split("/")) or "\0" in v):
        raise bad(path, f"{v!r} must be a plain relative path inside the bundle folder")
    return v


def digest(v: Any, path: str) -> str:
    if not isinstance(v, str) or not HEX64.fullmatch(v):
        raise bad(path, f"expected a sha256 as 64 lowercase hex digits, got {_kind(v)}")
    return v


def _get(d: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in d:
        raise bad(_join(path, key), "missing")
    return d[key]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
    if isinstance(v, str):
        return f"string {v[:40]!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, Mapping):
        return "an object"
    return type(v).__name__
