"""DICOM → `Radiograph`: pixels the way a radiologist's viewer would show them, plus the tags
the model can use (age, sex, spacing, side) and the identifying ones kept apart, never logged.

Why not just `ds.pixel_array`: stored values are not display values. We apply the modality LUT
(rescale slope/intercept), then the VOI LUT or the window the modality chose, and invert
MONOCHROME1 so bone is bright everywhere. Multi-frame objects (cine, ultrasound loops) are
refused: a radiograph is one frame, and guessing which frame the user meant is worse than asking.
Compressed transfer syntaxes decode when a pydicom plugin is installed; otherwise the error says
which package to install.

Bomb guards, all before the allocation they protect against: a deflated dataset is inflated once
under a byte budget before pydicom inflates it whole; Rows × Columns × samples × bytes must fit
`MAX_DECODED_BYTES`; and a compressed frame's own codestream header (JPEG SOF, JPEG 2000 SIZ)
must claim the same size as Rows/Columns, since the decoder allocates what the codestream says.
Ages derived from tags are whole years (completed years), so an output line next to the study
date never gives back the birth date.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import warnings
from datetime import date, datetime
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from bmd_edge.errors import ImageReadError, UnsupportedImageError
from bmd_edge.image_io import (MAX_FILE_BYTES, ImageInfo, Radiograph, check_budget,
                               check_dimensions)
from bmd_edge.pixel_scale import map_strips, unit_gray

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag

# Tags that identify a person. They go to ImageInfo.patient_ids (repr=False), never into a
# message or a warning.
IDENTIFYING_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                    "AccessionNumber", "InstitutionName")
_DATE_TAGS = ("StudyDate", "AcquisitionDate", "ContentDate", "SeriesDate")  # in this order
_AGE_DAYS = {"D": 1, "W": 7}  # PatientAge units counted in days; months and years below
_DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
_SIDES = {"L": "left", "R": "right"}


def _install_hint(uid: str) -> str:
    """The pip line that brings a decoder for this transfer syntax."""
    from pydicom import uid as u

    if uid in u.JPEG2000TransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-openjpeg"
    if uid in u.JPEGTransferSyntaxes or uid in u.JPEGLSTransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-libjpeg"
    return "pip install 'bmd-edge[dicom]'"


def decode_dicom(source: bytes | BinaryIO, name: str = "<bytes>") -> Radiograph:
    """Decode one single-frame DICOM image (bytes or a binary file positioned at its start);
    see the module docstring for the pixel pipeline and the bomb guards."""
    import pydicom

    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    _check_deflated(fp, name)
    # pydicom's warnings and log lines can quote tag values (names, IDs): keep them all in.
    logger = logging.getLogger("pydicom")
    was_disabled, logger.disabled = logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(fp, force=True)  # force: no-preamble files
            except Exception as exc:  # noqa: BLE001 - any parser failure means a bad file
                raise ImageReadError(f"{name}: DICOM file is truncated or corrupt "
                                     f"({type(exc).__name__}); re-export it") from None
            warn: list[str] = []
            _convert_elements(ds, name, warn)
            _fill_transfer_syntax(ds)
            pixels = _pixels(ds, name, warn)
            info = _info(ds)
    finally:
        logger.disabled = was_disabled
    return Radiograph(pixels=pixels, info=info, warnings=tuple(warn))


def _check_deflated(fp: BinaryIO, name: str) -> None:
    """A deflated dataset must inflate within MAX_FILE_BYTES (pydicom inflates it whole)."""
    from bmd_edge.stream_checks import inflated_size

    start = fp.tell()
    try:
        ts, meta_end = _file_meta_syntax(fp)
        if ts == _DEFLATED:
            fp.seek(meta_end)
            inflated_size(fp, MAX_FILE_BYTES, name)
    finally:
        fp.seek(start)


def _file_meta_syntax(fp: BinaryIO) -> tuple[str | None, int]:
    """(TransferSyntaxUID, offset after the file meta group) read from the raw bytes; the file
    meta is always explicit VR little endian, after a 128-byte preamble and "DICM"."""
    start = fp.tell()
    head = fp.read(132)
    pos = start + (132 if head[128:132] == b"DICM" else 0)
    ts: str | None = None
    while True:
        fp.seek(pos)
        h = fp.read(8)
        if len(h) < 8 or struct.unpack("<H", h[:2])[0] != 0x0002:
            return ts, pos
        element, vr = struct.unpack("<H", h[2:4])[0], h[4:6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            raw = fp.read(4)
            if len(raw) < 4:
                return ts, pos
            length, pos = struct.unpack("<I", raw)[0], pos + 12
        else:
            length, pos = struct.unpack("<H", h[6:8])[0], pos + 8
        if element == 0x0010 and length < 256:
            fp.seek(pos)
            ts = fp.read(length).rstrip(b"\0 ").decode("ascii", "replace")
        if length == 0xFFFFFFFF:
            return ts, pos
        pos += length


def _convert_elements(ds: Dataset, name: str, warn: list[str]) -> None:
    """Convert every public element now, so a corrupt one is dealt with here, in one place.

    pydicom parses lazily: an element with a corrupt VR (e.g. 'TI') or an unparsable value raises
    (NotImplementedError, ValueError, ...) the first time it is read, deep inside pixel decoding
    or tag reading. A corrupt element that defines the pixels (file meta, the 0028 image-pixel
    group, pixel data) refuses the file; any other one is dropped with a warning, as if absent,
    so a broken tag we never use does not cost the user the image. Private elements are never
    read. Messages name the tag number only, never a value (values can be PHI).
    """
    def defines_pixels(tag: BaseTag) -> bool:
        return tag.group in (0x0002, 0x7FE0) or (tag.group == 0x0028 and tag != 0x00280030)

    todo: list[tuple[Dataset, bool]] = [(ds, False)]
    if getattr(ds, "file_meta", None) is not None:
        todo.append((ds.file_meta, True))
    while todo:
        current, critical = todo.pop()
        for tag in list(current.keys()):
            if tag.is_private:
                continue
            try:
                elem = current[tag]
                items = list(elem.value) if elem.VR == "SQ" else []
            except Exception as exc:  # noqa: BLE001 - any conversion failure is a corrupt element
                if critical or defines_pixels(tag):
                    raise ImageReadError(f"{name}: DICOM element {tag} is corrupt "
                                         f"({type(exc).__name__}); re-export the image") from None
                del current[tag]
                warn.append(f"DICOM element {tag} is corrupt ({type(exc).__name__}); ignored")
                continue
            todo.extend((item, critical or defines_pixels(tag)) for item in items)


def _fill_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta (old ACR-NEMA style) still say how they were encoded."""
    from pydicom import uid
    from pydicom.dataset import FileMetaDataset

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if little is False:
            ds.file_meta.TransferSyntaxUID = uid.ExplicitVRBigEndian
        else:
            ds.file_meta.TransferSyntaxUID = (uid.ImplicitVRLittleEndian if implicit
                                              else uid.ExplicitVRLittleEndian)


def _pixels(ds: Dataset, name: str, warn: list[str]) -> np.ndarray:
    """Check size and decoder first, then decode and map to display values in [0, 1]."""
    from pydicom.pixels import apply_color_lut, get_decoder

    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(f"{name}: DICOM file has no pixel data (SOP class "
                             f"{_sop_name(ds)}); expected an image object such as DX or CR")
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    check_dimensions(cols, rows, name, "DICOM")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise UnsupportedImageError(f"{name}: DICOM has {frames} frames; expected a single-frame "
                                    "radiograph (export the frame you want as its own file)")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = 3 if photometric == "PALETTE COLOR" else max(int(ds.get("SamplesPerPixel") or 1), 1)
    allocated = int(ds.get("BitsAllocated") or 16)
    sample_bytes = 2 if photometric == "PALETTE COLOR" else max(-(-allocated // 8), 1)
    check_budget(cols, rows, samples, sample_bytes, name, "DICOM")
    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    if tsyntax is not None and not tsyntax.is_transfer_syntax:
        raise UnsupportedImageError(f"{name}: DICOM transfer syntax UID {str(tsyntax)[:64]!r} is "
                                    "not a known transfer syntax; the file is corrupt")
    if tsyntax is not None and tsyntax.is_compressed:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError:
            raise UnsupportedImageError(f"{name}: DICOM transfer syntax {tsyntax.name} "
                                        f"({tsyntax}) cannot be decoded; re-export it "
                                        "uncompressed or as JPEG 2000") from None
        if not decoder.is_available:
            raise UnsupportedImageError(f"{name}: DICOM is compressed as {tsyntax.name} and no "
                                        f"decoder is installed; {_install_hint(tsyntax)}")
        _check_codestream(ds, rows, cols, name)
    try:
        arr = ds.pixel_array  # YBR is converted to RGB by pydicom here
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything; user gets one line
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ImageReadError(f"{name}: DICOM pixel data could not be decoded ({msg})") from None
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:  # the stored bytes are not needed any more: free them now
            del ds[keyword]
    if arr.shape not in ((rows, cols), (rows, cols, 3)):  # e.g. (frames, H, W) with no frame count
        shape = "×".join(str(n) for n in arr.shape)
        raise UnsupportedImageError(f"{name}: DICOM pixel data decodes to a {shape} array, not "
                                    f"one {rows}×{cols} image (grey or RGB): it holds several "
                                    "frames but NumberOfFrames is missing or 1; export a single "
                                    "frame as its own file")

    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim != 2:
            raise ImageReadError(f"{name}: DICOM is {photometric} but has {arr.shape[-1]} samples "
                                 "per pixel; the file is corrupt")
        out = _monochrome(arr, ds, name, warn)
        if not np.isfinite(out).all():  # e.g. RescaleSlope 0 with RescaleIntercept inf
            raise ImageReadError(f"{name}: DICOM pixel values are not finite after its rescale "
                                 "slope/intercept or LUTs; the file is corrupt")
        if photometric == "MONOCHROME1":
            np.subtract(np.float32(1.0), out, out=out)
        return out
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(arr, ds)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError) as exc:
            raise ImageReadError(f"{name}: DICOM is PALETTE COLOR but its colour palette (the "
                                 "Red/Green/Blue Palette Color Lookup Table descriptor and data) "
                                 f"is missing or invalid ({type(exc).__name__}); re-export it as "
                                 "MONOCHROME2 or RGB") from None
        warn.append("PALETTE COLOR converted to grayscale")
        return unit_gray(rgb, name, warn, order="rgb")
    if arr.ndim == 3 and arr.shape[2] == 3:  # RGB, YBR_* (already RGB), …
        bits = int(ds.get("BitsStored") or 8)
        return unit_gray(arr, name, warn, order="rgb", top=2**bits - 1)
    raise UnsupportedImageError(f"{name}: DICOM photometric interpretation {photometric} is not "
                                "supported; accepted: MONOCHROME1/2, RGB, YBR, PALETTE COLOR")


def _check_codestream(ds: Dataset, rows: int, cols: int, name: str) -> None:
    """The frame's codestream must claim Rows × Columns: a decoder allocates what the codestream
    says (a 1.3 KB file claiming 20000² took 2.1 GB before the shape check). An 8-bit DCT JPEG
    frame is also entropy-decoded strictly first: the plugins decode a cut stream grey."""
    from pydicom.encaps import generate_fragments

    from bmd_edge.stream_checks import STRICT_JPEG_SOF, check_jpeg_stream, codestream_size

    data = ds.get("PixelData")
    if not isinstance(data, (bytes, bytearray)) or data[:4] != b"\xfe\xff\x00\xe0":
        return  # not encapsulated as expected: the decoder reports it
    pos = 8 + struct.unpack("<I", data[4:8])[0]  # skip the Basic Offset Table item
    if data[pos:pos + 4] != b"\xfe\xff\x00\xe0":
        return
    (length,) = struct.unpack("<I", data[pos + 4:pos + 8])
    claimed = codestream_size(bytes(data[pos + 8:pos + 8 + min(length, 65536)]))
    if claimed is None:
        return
    width, height, _components, precision, marker = claimed
    if (width, height) != (cols, rows):
        raise ImageReadError(f"{name}: DICOM's compressed frame claims {width}×{height} px but "
                             f"its Rows/Columns say {cols}×{rows}; the file is corrupt or "
                             "hostile")
    if marker in STRICT_JPEG_SOF and precision == 8:
        try:  # one frame (NumberOfFrames is 1 here): all fragments are its codestream
            frame = b"".join(generate_fragments(bytes(data[pos:])))
        except Exception:  # noqa: BLE001 - malformed items: the decoder reports them
            return
        check_jpeg_stream(frame, f"{name}: DICOM frame")


def _monochrome(arr: np.ndarray, ds: Dataset, name: str, warn: list[str]) -> np.ndarray:
    """Modality LUT, then VOI LUT or window, else the stored range: display values in [0, 1].

    Applied a strip of rows at a time (`map_strips`): pydicom's LUT functions work in float64,
    which for a whole 100 MP image would be 0.8 GB per temporary.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    if np.issubdtype(arr.dtype, np.floating):  # Float Pixel Data: no LUTs apply
        return unit_gray(arr, name, warn)
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") and voi[0].get("LUTData") is not None:
        entries, first = int(voi[0].LUTDescriptor[0]) or 65536, int(voi[0].LUTDescriptor[1])
        table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds)
        lo, hi = float(table.min()), float(table.max())
        if hi > lo:
            def voi_lut(block: np.ndarray) -> np.ndarray:
                values = np.rint(apply_modality_lut(block, ds)).astype(np.int64)
                out = apply_voi(values, ds)
                return ((out.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)

            return map_strips(arr, voi_lut)
        warn.append("VOI LUT is constant; ignored")
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            with np.errstate(over="ignore"):  # the range probe saturates a sigmoid on purpose
                lo, hi = apply_windowing(np.array([-1e15, 1e15]), ds)
            if hi != lo:
                def window(block: np.ndarray) -> np.ndarray:
                    values = apply_modality_lut(block, ds).astype(np.float64)
                    out = apply_windowing(values, ds)
                    return ((out - lo) / (hi - lo)).clip(0.0, 1.0).astype(np.float32)

                return map_strips(arr, window)
        except (ValueError, TypeError, IndexError):
            pass
        warn.append("DICOM window is invalid; ignored (full stored range used)")
    # No VOI: scale by the range the stored bits can hold (after the modality LUT), like a PNG is
    # divided by its bit-depth maximum, so the same pixels give the same result in either file.
    lo, hi = _stored_range(ds)

    def stored(block: np.ndarray) -> np.ndarray:
        values = apply_modality_lut(block, ds).astype(np.float64)
        return ((values - lo) / (hi - lo)).clip(0.0, 1.0).astype(np.float32)

    return map_strips(arr, stored)


def _stored_range(ds: Dataset) -> tuple[float, float]:
    """Smallest and largest modality value the stored bits allow (signed or not)."""
    from pydicom.pixels import apply_modality_lut

    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    probe = np.arange(lo, hi + 1, dtype=np.int64) if bits <= 16 else np.array([lo, hi])
    mapped = apply_modality_lut(probe, ds)
    lo_m, hi_m = float(mapped.min()), float(mapped.max())
    return (lo_m, hi_m) if hi_m > lo_m else (lo_m, lo_m + 1.0)


def _sop_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    return getattr(uid, "name", None) or str(uid or "unknown")


def _text(ds: Dataset, keyword: str) -> str | None:
    """A tag as a stripped string, or None when absent or blank."""
    from pydicom.multival import MultiValue

    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _age_years(ds: Dataset) -> int | None:
    """Completed years from PatientAge ("072Y", "0900M", "999W") or, failing that, from the
    birth date to the acquisition date. Whole years only: a fractional age printed beside the
    study date would give back the birth date to within days."""
    age = _text(ds, "PatientAge")
    if age and (m := re.fullmatch(r"(\d{1,3})\s*([DWMY])", age.upper())):
        n, unit = int(m.group(1)), m.group(2)
        if unit == "Y":
            return n
        if unit == "M":
            return n // 12
        return int(n * _AGE_DAYS[unit] // 365.25)
    birth = _parse_date(_text(ds, "PatientBirthDate"))
    if birth is None:
        return None
    for tag in _DATE_TAGS:
        seen = _parse_date(_text(ds, tag))
        if seen is not None and seen >= birth:
            return seen.year - birth.year - ((seen.month, seen.day) < (birth.month, birth.day))
    return None


def _parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """PixelSpacing, else ImagerPixelSpacing; None when missing, zero or malformed."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = (float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return (row, col)
    return None


def _info(ds: Dataset) -> ImageInfo:
    side = _text(ds, "ImageLaterality") or _text(ds, "Laterality")
    sex = (_text(ds, "PatientSex") or "").upper()
    bits = ds.get("BitsStored")
    return ImageInfo(
        format="dicom",
        bits_stored=int(bits) if bits else None,
        age_years=_age_years(ds),
        sex=sex if sex in ("F", "M") else None,
        pixel_spacing_mm=_spacing(ds),
        laterality=_SIDES.get((side or "").upper()),
        view=_text(ds, "ViewPosition"),
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        study_description=_text(ds, "StudyDescription"),
        patient_ids={k: v for k in IDENTIFYING_TAGS if (v := _text(ds, k)) is not None},
    )
