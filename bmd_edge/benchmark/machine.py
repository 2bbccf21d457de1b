"""What machine a benchmark ran on: CPU model, cores, the ISA flags that decide which kernels
run (AVX2 / AVX-512 / VNNI / BF16 / AMX), and the versions of every runtime measured.

A latency number is meaningless without this line above it: an int8 model is fast on a CPU with
VNNI and barely faster than fp32 without it, and bf16 only exists where the CPU has BF16 or AMX.
Read from /proc/cpuinfo (Linux); elsewhere the fields say "unknown" instead of guessing.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

# /proc/cpuinfo flag -> the name we print. Order = the order on the machine line.
ISA_FLAGS: tuple[tuple[str, str], ...] = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512_bf16", "AVX512-BF16"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
)

# Distributions whose versions go into every result file.
RUNTIME_PACKAGES: tuple[str, ...] = (
    "bmd-edge", "numpy", "openvino", "onnxruntime", "onnx", "torch", "nncf", "opencv-python-headless",
)


@dataclass(frozen=True)
class MachineInfo:
    """The hardware and software a benchmark result belongs to."""

    cpu_model: str                      # e.g. "Intel(R) Xeon(R) ... @ 2.50GHz"; "unknown" off Linux
    logical_cores: int                  # os.cpu_count(): what thread counts are relative to
    physical_cores: int | None          # distinct (physical id, core id) pairs; None if unknown
    available_cores: int                # cores this process may run on (affinity / cgroup)
    isa: tuple[str, ...]                # printable ISA names present, ordered as ISA_FLAGS
    flags: frozenset[str] = field(default_factory=frozenset)   # raw cpuinfo flags we care about
    versions: dict[str, str] = field(default_factory=dict)     # distribution -> version
    platform: str = ""                  # OS + Python, e.g. "Linux-6.1 / CPython 3.11.9"

    @property
    def has_bf16(self) -> bool:
        """True when OpenVINO can run bf16 natively (AVX512-BF16 or AMX)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def has_vnni(self) -> bool:
        """True when int8 dot products have a native instruction (VNNI or AMX-INT8)."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    def line(self) -> str:
        """The one-line summary printed above every table."""
        cores = f"{self.available_cores} usable / {self.logical_cores} logical"
        if self.physical_cores:
            cores += f" / {self.physical_cores} physical"
        isa = ", ".join(self.isa) or "no AVX2"
        vers = ", ".join(f"{k} {v}" for k, v in self.versions.items() if k != "bmd-edge")
        return f"{self.cpu_model} | {cores} cores | {isa} | {vers}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flags"] = sorted(self.flags)
        d["has_bf16"] = self.has_bf16
        d["has_vnni"] = self.has_vnni
        return d


def parse_cpuinfo(text: str) -> tuple[str, int | None, frozenset[str]]:
    """(model name, physical core count, flags of interest) from /proc/cpuinfo text."""
    model = "unknown"
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    phys = core = None
    for raw in text.splitlines():
        key, _, value = raw.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model == "unknown":
            model = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not raw.strip():
            if phys is not None and core is not None:
                cores.add((phys, core))
            phys = core = None
    if phys is not None and core is not None:
        cores.add((phys, core))
    wanted = {f for f, _ in ISA_FLAGS}
    return model, (len(cores) or None), frozenset(flags & wanted)


def runtime_versions(packages: tuple[str, ...] = RUNTIME_PACKAGES) -> dict[str, str]:
    """Installed versions, read from package metadata so nothing (torch!) gets imported."""
    out: dict[str, str] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def detect_machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> MachineInfo:
    """Describe this machine. Never raises: unknown parts say so."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    model, physical, flags = parse_cpuinfo(text)
    if model == "unknown" and platform.processor():
        model = platform.processor()
    logical = os.cpu_count() or 1
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = logical
    isa = tuple(label for flag, label in ISA_FLAGS if flag in flags)
    plat = f"{platform.system()}-{platform.release()} / {platform.python_implementation()} {platform.python_version()}"
    return MachineInfo(model, logical, physical, available, isa, flags, runtime_versions(), plat)
