"""The export formats, as ONE table (ultralytics' exporter idea: every format is a row).

`export.py` loops over this table; the bundle records each row it wrote as a variant; the
benchmark reads the same rows. Adding a format means adding a row here and a writer in export.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from bmd_edge.errors import InputError


@dataclass(frozen=True)
class ExportFormat:
    """One exported model file kind."""

    name: str  # variant name used in bundle.json["variants"] and on the CLI (--variant)
    suffix: str  # file name after "model_": the main file of this variant
    precision: str  # "fp32" or "int8" (weights and activations)
    runtime: str  # "openvino" or "onnxruntime": the engine the bundle says runs it
    in_default_bundle: bool  # committed in the shipped default bundle (int8 only, size budget)
    extra_files: tuple[str, ...] = ()  # sibling files the main file needs (the IR's .bin)

    @property
    def file(self) -> str:
        """Main file name inside a bundle."""
        return f"model_{self.suffix}"

    @property
    def files(self) -> tuple[str, ...]:
        """Every file this variant occupies inside a bundle."""
        return (self.file, *self.extra_files)


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("openvino-int8", "int8.xml", "int8", "openvino", True, ("model_int8.bin",)),
    ExportFormat("onnx-int8", "int8.onnx", "int8", "onnxruntime", True),
    ExportFormat("openvino-fp32", "fp32.xml", "fp32", "openvino", False, ("model_fp32.bin",)),
    ExportFormat("onnx-fp32", "fp32.onnx", "fp32", "onnxruntime", False),
)

FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)


def get_format(name: str) -> ExportFormat:
    """The row called `name`; InputError listing the known names otherwise."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise InputError(f"unknown export format {name!r}; choose one of {', '.join(FORMAT_NAMES)}")


def select_formats(names: list[str] | tuple[str, ...] | None) -> tuple[ExportFormat, ...]:
    """Rows for `names` in table order (all rows for None); unknown names rejected up front."""
    if not names:
        return FORMATS
    wanted = {get_format(n).name for n in names}
    return tuple(f for f in FORMATS if f.name in wanted)
