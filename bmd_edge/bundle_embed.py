"""The copy of bundle.json that model files carry inside, written at export and compared at load.

Why: a bundle.json from one export beside model files from another (or one edited to describe
the model differently, then re-signed) would run silently with the wrong preprocessing or
schema. Each model file carries `BundleMeta.embedded()` (everything except digests and
signature) — ONNX in `metadata_props["bmd_edge.metadata"]`, OpenVINO IR in
`rt_info/bmd_edge/metadata` — and `Bundle.verified_file` requires it to equal bundle.json's.

Reading works on the bytes already read for hashing, without onnx or a second parse of the
graph: ONNX's top-level protobuf fields are walked (field 14 = metadata_props), the IR's XML is
searched for its `<bmd_edge>` rt_info block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bmd_edge.bundle import FORMAT_VERSION, canonical_json

KEY = "bmd_edge.metadata"
_IR_BLOCK = re.compile(rb"<bmd_edge>(.*?)</bmd_edge>", re.DOTALL)
_IR_TEXT_BLOCK = re.compile(r"<bmd_edge>.*?</bmd_edge>", re.DOTALL)
_IR_META = re.compile(rb'<metadata value="([^"]*)"\s*/>')


def stamp(path: Path, embedded: dict[str, Any]) -> None:
    """Write `embedded` into an .onnx or .xml model file in place (export time; needs onnx)."""
    text = canonical_json(embedded)
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        del model.metadata_props[:]
        model.metadata_props.add(key="bmd_edge.format_version", value=FORMAT_VERSION)
        model.metadata_props.add(key=KEY, value=text)
        onnx.save(model, str(path))
    elif path.suffix == ".xml" and _IR_BLOCK.search(path.read_bytes()):
        _restamp_ir_text(path, text)
    elif path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        model.set_rt_info(FORMAT_VERSION, ["bmd_edge", "format_version"])
        model.set_rt_info(text, ["bmd_edge", "metadata"])
        tmp = path.with_name(path.stem + ".stamp.xml")
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        del model
        tmp.replace(path)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))


def _restamp_ir_text(xml: Path, text: str) -> None:
    """Replace an IR's <bmd_edge> rt_info block in place; its weights file is not touched."""
    import html  # export time only: the import costs milliseconds on every predict

    value = html.escape(text, quote=True)
    block = (f"<bmd_edge>\n\t\t\t<format_version value=\"{FORMAT_VERSION}\" />\n"
             f"\t\t\t<metadata value=\"{value}\" />\n\t\t</bmd_edge>")
    old = xml.read_text(encoding="utf-8")
    new = _IR_TEXT_BLOCK.sub(lambda _: block, old, count=1)
    tmp = xml.with_name(f".{xml.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(xml)


def restamp_folder(folder: Path, meta: Any, sign_key: str | Path | None = None) -> Any:
    """Re-stamp an existing bundle's installed model files with `meta`, re-hash them and write
    bundle.json (signed when `sign_key`): for metadata-only changes such as a recalibrated
    interval. Returns the written `BundleMeta`. The caller re-pins or re-signs."""
    from dataclasses import replace

    from bmd_edge.bundle import META_FILE, render, sha256_file

    for v in meta.variants.values():
        if all((folder / f).is_file() for f in v.files):
            stamp(folder / v.file, meta.embedded())
    files = {f: sha256_file(folder / f) if (folder / f).is_file() else h
             for f, h in meta.files.items()}
    meta = replace(meta, files=files, signature=None)
    if sign_key is not None:
        from bmd_edge.bundle_trust import sign

        meta = replace(meta, signature=sign(meta, sign_key))
    tmp = folder / f".{META_FILE}.tmp"
    tmp.write_text(render(meta), encoding="utf-8")
    tmp.replace(folder / META_FILE)
    return meta


def read_embedded(suffix: str, data: bytes) -> str | None:
    """The embedded metadata (canonical JSON text) of a model file's bytes, or None."""
    return _onnx_metadata(data) if suffix == ".onnx" else _ir_metadata(data)


def _ir_metadata(data: bytes) -> str | None:
    start = data.rfind(b"<rt_info>")
    block = _IR_BLOCK.search(data, max(start, 0))
    if block is None:
        return None
    m = _IR_META.search(block.group(1))
    return None if m is None else _xml_unescape(m.group(1).decode("utf-8", "replace"))


def _xml_unescape(text: str) -> str:
    """The five XML entities and numeric references (what OpenVINO's writer produces); str
    replaces, because html.unescape spends milliseconds on the ~5,000 &quot; of a bundle."""
    for entity, char in (("&quot;", '"'), ("&apos;", "'"), ("&lt;", "<"), ("&gt;", ">")):
        text = text.replace(entity, char)
    if "&#" in text:
        text = re.sub(r"&#(x[0-9a-fA-F]+|[0-9]+);",
                      lambda m: chr(int(m.group(1)[1:], 16) if m.group(1)[0] == "x"
                                    else int(m.group(1))), text)
    return text.replace("&amp;", "&")


def _varint(data: bytes | memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(data: bytes | memoryview) -> list[tuple[int, memoryview]]:
    """Length-delimited top-level fields of one protobuf message: (field number, payload)."""
    data = memoryview(data)
    out, i = [], 0
    while i < len(data):
        tag, i = _varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(data, i)
            out.append((number, data[i:i + n]))
            i += n
        else:
            raise ValueError(f"protobuf wire type {wire}")
        if i > len(data):
            raise ValueError("truncated field")
    return out


def _onnx_metadata(data: bytes) -> str | None:
    try:
        for number, payload in _fields(data):
            if number == 14:  # ModelProto.metadata_props: StringStringEntryProto {key 1, value 2}
                entry = {k: bytes(v) for k, v in _fields(payload)}
                if entry.get(1) == KEY.encode():
                    return entry.get(2, b"").decode("utf-8", "replace")
    except ValueError:
        return None
    return None
