"""Serve configuration: one frozen dataclass, from a TOML file and/or command-line flags.

Flags win over the file; the file's keys are the field names below (`[serve]` table or top
level). Everything is validated once here, with the bad value and what would be accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bmd_edge.errors import InputError

_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5: 16 chars, no backslash, no control


@dataclass(frozen=True)
class Destination:
    """Where results go by C-STORE (the PACS or workstation)."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """AE@HOST:PORT, e.g. PACS@10.0.0.5:104."""
        m = re.fullmatch(r"([^@]+)@([^:]+):(\d+)", text.strip())
        if not m:
            raise InputError(f"destination {text!r} is not AE@HOST:PORT (e.g. PACS@10.0.0.5:104)")
        return cls(host=m.group(2), port=_port(int(m.group(3)), "destination port"),
                   ae_title=_ae(m.group(1), "destination AE title"))


@dataclass(frozen=True)
class ServeConfig:
    ae_title: str = "BMDEDGE"            # our AE title; associations to another title are refused
    port: int = 11112                    # DICOM listening port
    host: str = "0.0.0.0"                # interface to listen on
    destination: Destination | None = None   # results by C-STORE here ...
    outbox: Path | None = None           # ... or written into this folder (exactly one of the two)
    spool: Path = Path("bmd-edge-spool")  # received images and undelivered results (survive restarts)
    workers: int = 2                     # analysis threads sharing one thread-safe Predictor
    queue_size: int = 32                 # received images waiting for a worker (back-pressure)
    store_timeout_s: float = 30.0        # a C-STORE waits this long for queue space, then 0xA700
    retry_interval_s: float = 2.0        # first wait before resending to a down destination
    retry_max_interval_s: float = 30.0   # the wait doubles up to this
    connect_timeout_s: float = 5.0       # TCP connect to the destination (a host that is gone)
    send_timeout_s: float = 10.0         # ACSE/DIMSE/network wait for the destination's answer
    secondary_capture: bool = True       # also send the report picture as a Secondary Capture
    health_port: int | None = None       # HTTP GET /health here (None: no HTTP health check)
    model: Path | None = None            # bundle folder (default: the shipped one)
    backend: str = "openvino"
    threads: int | None = None           # inference threads (default: the runtime's)
    allow_unsigned: bool = False         # run a bundle neither pinned nor signed (SRs say so)
    trusted_keys: tuple[Path, ...] = ()  # extra Ed25519 public keys (PEM) to trust

    def __post_init__(self) -> None:
        _ae(self.ae_title, "ae_title")
        _port(self.port, "port")
        if (self.destination is None) == (self.outbox is None):
            raise InputError("give exactly one of --destination AE@HOST:PORT or --outbox DIR")
        for name in ("workers", "queue_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 1024:
                raise InputError(f"{name} {value!r} is invalid; give an integer 1 to 1024")
        for name in ("store_timeout_s", "retry_interval_s", "retry_max_interval_s",
                     "connect_timeout_s", "send_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"{name} {getattr(self, name)!r} must be a positive number")
        if self.health_port is not None:
            _port(self.health_port, "health_port")
        if self.backend not in ("openvino", "onnxruntime"):
            raise InputError(f"backend {self.backend!r} is unknown; accepted: openvino, "
                             "onnxruntime")

    @classmethod
    def load(cls, toml_path: Path | None = None, **flags: Any) -> ServeConfig:
        """Defaults, then the TOML file, then the flags that were given (not None)."""
        values: dict[str, Any] = {}
        if toml_path is not None:
            values.update(_read_toml(toml_path))
        values.update({k: v for k, v in flags.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown serve setting(s) {', '.join(unknown)}; accepted: "
                             f"{', '.join(sorted(known))}")
        if isinstance(values.get("destination"), str):
            values["destination"] = Destination.parse(values["destination"])
        for key in ("outbox", "spool", "model"):
            if isinstance(values.get(key), str):
                values[key] = Path(values[key])
        if "trusted_keys" in values:
            values["trusted_keys"] = tuple(Path(k) for k in values["trusted_keys"])
        return cls(**values)

    def with_(self, **changes: Any) -> ServeConfig:
        return replace(self, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"config file {path} is not valid TOML ({err})") from None
    table = data.get("serve", data)
    if not isinstance(table, dict):
        raise InputError(f"config file {path}: [serve] must be a table")
    return dict(table)


def _ae(value: str, what: str) -> str:
    if not isinstance(value, str) or not _AE.match(value) or not value.strip():
        raise InputError(f"{what} {value!r} is invalid; give 1-16 printable characters, "
                         "no backslash")
    return value


def _port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InputError(f"{what} {value!r} is invalid; give an integer 1 to 65535")
    return value
