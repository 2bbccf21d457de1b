"""Fast SRs: highdicom builds one template per result *shape*; each image patches its values in.

Why: building the TID 1500 tree with highdicom costs ~30 ms of CPU per SR and pydicom encoding
it ~10 ms more — more than preprocessing and the model together, and serve's budget at 100
images/s on 2 cores is ~20 ms per image for everything. The tree's *shape* depends only on the
model and its settings and on a few categorical facts (WHO category, screen, Z-score present,
number of warnings, the source's SOP class and sex); all else is values. So, per shape:

1. `dicom_out.build_sr` (highdicom, the reference) builds an SR from a *marker* prediction and a
   *marker* source: a distinctive value in every per-image slot (BMD, scores, uncertainties,
   interval text, warnings, patient/study attributes, UIDs, instance number);
2. it is encoded once with undefined-length sequences and items (valid DICOM, PS3.5 §7.5), so a
   value may change length without touching any enclosing length;
3. every element holding a marker, and the creation/content date and time, is located in the
   bytes (the element's exact encoding, found as often as it occurs in the tree — else the
   template is refused and the slow path used).

An image's SR is then the template bytes with those elements re-encoded by pydicom from the
image's own values: the dataset highdicom would build (tests/test_dicom_out.py compares them
element by element over varied sources and predictions) in well under a millisecond.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import functools
import itertools
import threading
from dataclasses import dataclass
from typing import Any

from bmd_edge.dicom_out import (
    ResultUIDs,
    _check_source,
    _hd,
    _with_type2,
    build_sr,
    derived_uid,
    interval_text,
    uncertainties,
)

_ROOT = "1.2.826.0.1.3680043.10.1017.9."     # marker UIDs: in templates only, never an output
_MARK_UIDS = ResultUIDs(sr_series=_ROOT + "11", sr_instance=_ROOT + "12",
                        sc_series=_ROOT + "13", sc_instance=_ROOT + "14")
# Source values the SR refers to below its top level (evidence, image references), and its
# instance number; patient and study attributes are copied whole at the top level instead.
_MARK_SOURCE: dict[str, str | int] = {"StudyInstanceUID": _ROOT + "1",
                                      "SeriesInstanceUID": _ROOT + "2",
                                      "SOPInstanceUID": _ROOT + "3", "InstanceNumber": 987654}
_MARK_NUMBERS = {"bmd": 0.7771234567, "low": 0.5111111111, "high": 1.0222222222,
                 "t": -1.4441234567, "z": -0.5551234567}
_NOW = ("InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime")
_EQUIPMENT = 0x0018A001        # Contributing Equipment Sequence: per image (its time, source)


def shape_of(p: Any, source: Any) -> tuple[Any, ...]:
    """What fixes the SR's layout apart from its values (one template per distinct shape)."""
    return (p.model_name, p.model_version, p.variant, p.backend, p.precision, p.intended_use,
            p.t_reference, p.z_reference, p.threshold_gcm2, p.who_category,
            bool(p.screen_positive), p.z_score is None, getattr(p, "hip", None),
            None if p.interval is None else p.interval[2], len(p.warnings),
            str(source.SOPClassUID), "NumberOfFrames" in source,
            _copied_tags(_with_type2(source)))


def _copied_tags(source: Any) -> tuple[int, ...]:
    """The source's root attributes of the Patient and Study modules of its IOD: what
    highdicom's `copy_patient_and_study_information` copies into the SR, element and all."""
    return tuple(t for t in _patient_study_tags(str(source.SOPClassUID)) if t in source)


@functools.lru_cache(maxsize=64)
def _patient_study_tags(sop_class_uid: str) -> tuple[int, ...]:
    from highdicom._standard_utils import (
        get_iod_module_map,
        get_module_attribute_map,
        get_sop_class_iod_map,
    )
    from pydicom.datadict import tag_for_keyword

    modules = get_iod_module_map()[get_sop_class_iod_map()[sop_class_uid]]
    attributes = get_module_attribute_map()
    tags = set()
    for module in modules:
        if module["ie"] in ("Patient", "Study"):
            for item in attributes[module["key"]]:
                tag = tag_for_keyword(str(item["keyword"])) if len(item["path"]) == 0 else None
                if tag is not None:
                    tags.add(int(tag))
    return tuple(sorted(tags))


def _slot_values(p: Any, source: Any, uids: ResultUIDs) -> dict[str, Any]:
    """Every per-image value of an SR below its copied modules, by slot name."""
    values: dict[str, Any] = {f"src:{kw}": str(getattr(source, kw)) for kw in _MARK_SOURCE
                              if kw != "InstanceNumber"}
    values["src:InstanceNumber"] = int(getattr(source, "InstanceNumber", None) or 1)
    values.update({"uid:series": uids.sr_series, "uid:instance": uids.sr_instance,
                   "uid:tracking": derived_uid("tracking", uids.sr_instance),
                   "num:bmd": float(p.bmd_gcm2), "num:t": float(p.t_score)})
    if p.z_score is not None:
        values["num:z"] = float(p.z_score)
    if p.interval is not None:
        values["num:upper"], values["num:lower"] = uncertainties(p)
        values["text:interval"] = interval_text(p)
    for i, w in enumerate(p.warnings):
        values[f"text:warning{i}"] = str(w)
    return values


def _marker_case(p: Any, source: Any) -> tuple[Any, Any]:
    m = _MARK_NUMBERS
    marker_p = dataclasses.replace(
        p, bmd_gcm2=m["bmd"], t_score=m["t"],
        z_score=None if p.z_score is None else m["z"],
        interval=None if p.interval is None else (m["low"], m["high"], p.interval[2]),
        warnings=tuple(f"SLOTWARNING{i}" for i in range(len(p.warnings))))
    marker_src = copy.deepcopy(_with_type2(source))   # own elements: the source stays as is
    for kw, value in _MARK_SOURCE.items():
        setattr(marker_src, kw, value)
    return marker_p, marker_src


@dataclass(frozen=True)
class _Slot:
    start: int           # byte span of the element inside its top-level element's encoding
    end: int
    tag: int
    vr: str
    name: str            # slot name (`_slot_values`)


class SRTemplate:
    """One shape's SR as top-level parts: fixed bytes, elements re-encoded per image (copied
    from the source, a value, the equipment, the time), and sequences with slots inside."""

    def __init__(self, p: Any, source: Any) -> None:
        import pydicom

        marker_p, marker_src = _marker_case(p, source)
        ds = build_sr(marker_p, marker_src, _MARK_UIDS)
        _undefined_lengths(ds)
        self.encodings = pydicom.charset.convert_encodings(ds.SpecificCharacterSet)
        self.file_meta = _file_meta(ds)
        copied = set(_copied_tags(marker_src))
        markers = _slot_values(marker_p, marker_src, _MARK_UIDS)
        found: set[str] = set()
        self.parts: list[tuple[str, Any]] = []
        for elem in ds:                                  # the top level, in tag order
            if elem.tag in copied:
                self.parts.append(("source", elem.tag))
            elif elem.tag == _EQUIPMENT:
                self.parts.append(("equipment", elem.tag))
            elif elem.keyword in _NOW:
                self.parts.append(("now", (elem.tag, elem.VR, elem.keyword)))
            elif elem.VR != "SQ":
                name = _slot_of(elem, markers)
                if name is None:
                    self.parts.append(("bytes", self._encode(elem.tag, elem.VR, elem.value)))
                else:
                    found.add(name)
                    self.parts.append(("value", (elem.tag, elem.VR, name)))
            else:
                enc, slots = self._nested(elem, markers)
                found |= {s.name for s in slots}
                self.parts.append(("nested", (enc, slots)) if slots else ("bytes", enc))
        missing = set(markers) - found
        if missing:
            raise ValueError(f"template lacks slot(s) {sorted(missing)}")

    def _nested(self, elem: Any, markers: dict[str, Any]) -> tuple[bytes, list[_Slot]]:
        """A sequence's encoding and where the elements holding markers lie in it."""
        enc = self._encode(elem.tag, elem.VR, elem.value, undefined=True)
        wanted: dict[bytes, tuple[int, str, str, int]] = {}   # encoding → tag, VR, slot, count
        for item in elem.value:
            for sub, _ in _elements(item):
                name = _slot_of(sub, markers)
                if name is None:
                    continue
                sub_enc = self._encode(sub.tag, sub.VR, sub.value)
                tag, vr, slot, n = wanted.get(sub_enc, (sub.tag, sub.VR, name, 0))
                if slot != name:
                    raise ValueError(f"template elements of {slot} and {name} encode alike")
                wanted[sub_enc] = (tag, vr, slot, n + 1)
        slots = []
        for sub_enc, (tag, vr, name, n) in wanted.items():
            starts = _find_all(enc, sub_enc)
            if len(starts) != n:
                raise ValueError(f"slot {name}: {n} element(s) in the tree, {len(starts)} in "
                                 "the bytes")
            slots += [_Slot(s, s + len(sub_enc), tag, vr, name) for s in starts]
        slots.sort(key=lambda s: s.start)
        if any(a.end > b.start for a, b in itertools.pairwise(slots)):
            raise ValueError("template slots overlap")
        return enc, slots

    def _encode(self, tag: int, vr: str, value: Any, undefined: bool = False) -> bytes:
        from pydicom.dataelem import DataElement
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element
        from pydicom.valuerep import DS

        if vr == "DS" and isinstance(value, float):
            value = DS(value, auto_format=True)     # as highdicom's NumContentItem writes it
        elem = DataElement(tag, vr, value)
        elem.is_undefined_length = undefined
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_data_element(fp, elem, self.encodings)
        return bytes(fp.getvalue())

    def render(self, p: Any, source: Any, uids: ResultUIDs) -> bytes:
        """The SR file (preamble, file meta, dataset) for one image's values."""
        import pydicom
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element, write_file_meta_info
        from pydicom.valuerep import DA, TM

        hd = _hd()
        source = _with_type2(source)
        values = _slot_values(p, source, uids)
        now = datetime.datetime.now()
        stamp = {"InstanceCreationDate": DA(now.date()), "ContentDate": DA(now.date()),
                 "InstanceCreationTime": TM(now.time()), "ContentTime": TM(now.time())}
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, False
        out.write(b"\x00" * 128 + b"DICM")
        meta = pydicom.dataset.FileMetaDataset(self.file_meta)
        meta.MediaStorageSOPInstanceUID = uids.sr_instance
        write_file_meta_info(out, meta, enforce_standard=True)
        for kind, what in self.parts:
            if kind == "bytes":
                out.write(what)
            elif kind == "source":
                write_data_element(out, source[what], self.encodings)
            elif kind == "value":
                out.write(self._encode(what[0], what[1], values[what[2]]))
            elif kind == "now":
                out.write(self._encode(what[0], what[1], stamp[what[2]]))
            elif kind == "equipment":        # as highdicom's _add_contributing_equipment
                items = []
                if source.get("Manufacturer"):      # highdicom refuses (and skips) without
                    with contextlib.suppress(Exception):
                        items.append(hd.ContributingEquipment.for_image_acquisition(source))
                items.append(hd.ContributingEquipment.for_highdicom())
                out.write(self._encode(what, "SQ", items))
            else:                                            # "nested"
                enc, slots = what
                at = 0
                for s in slots:
                    out.write(enc[at:s.start])
                    out.write(self._encode(s.tag, s.vr, values[s.name]))
                    at = s.end
                out.write(enc[at:])
        return bytes(out.getvalue())


class SRTemplates:
    """Thread-safe cache of templates by shape; `render` is `build_sr` + encoding, fast."""

    def __init__(self) -> None:
        self._by_shape: dict[tuple[Any, ...], SRTemplate | None] = {}
        self._lock = threading.Lock()

    def render(self, p: Any, source: Any, uids: ResultUIDs) -> bytes | None:
        """The SR file's bytes, or None when this shape has no usable template (build the SR
        with `dicom_out.build_sr` then, as for a multi-frame source)."""
        _check_source(source)
        hd = _hd()
        hd.sr.SourceImageForMeasurement.from_source_image(source)   # highdicom's source checks
        try:
            shape = shape_of(p, source)
        except (ImportError, KeyError):     # an IOD highdicom does not map: the slow path
            return None
        if shape[-2]:                       # multi-frame: frame references, the slow path
            return None
        with self._lock:
            if shape not in self._by_shape:
                try:
                    self._by_shape[shape] = SRTemplate(p, source)
                except ValueError:
                    self._by_shape[shape] = None
            template = self._by_shape[shape]
        return None if template is None else template.render(p, source, uids)


def _slot_of(elem: Any, markers: dict[str, Any]) -> str | None:
    if elem.VR == "SQ" or elem.value is None:
        return None
    for name, marker in markers.items():
        if isinstance(marker, float):
            if elem.VR in ("DS", "FD") and float(elem.value) == marker:
                return name
        elif isinstance(marker, int):
            if elem.VR == "IS" and int(elem.value) == marker:
                return name
        elif str(elem.value) == str(marker):
            return name
    return None


def _elements(ds: Any, top: bool = True) -> Any:
    """Every element of the tree, with whether it is at the top level."""
    for elem in ds:
        yield elem, top
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _elements(item, top=False)


def _undefined_lengths(ds: Any) -> None:
    """Undefined-length sequences and items, so a value may change length in place."""
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
                _undefined_lengths(item)


def _file_meta(ds: Any) -> Any:
    """The file meta pydicom's `save_as` would write for this SR (its UID set per image)."""
    import io

    ds.save_as(io.BytesIO(), enforce_file_format=True)   # fills in the implementation UIDs
    return ds.file_meta


def _find_all(data: bytes, needle: bytes) -> list[int]:
    out, at = [], data.find(needle)
    while at >= 0:
        out.append(at)
        at = data.find(needle, at + 1)
    return out
