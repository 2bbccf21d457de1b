"""DICOM → `Radiograph`: pixels the way a radiologist's viewer would show them, plus the tags
the model can use (age, sex, spacing, side) and the identifying ones kept apart, never logged.

Why not just `ds.pixel_array`: stored values are not display values. We apply the modality LUT
(rescale slope/intercept), then the VOI LUT or the window the modality chose, and invert
MONOCHROME1 so bone is bright everywhere. Multi-frame objects (cine, ultrasound loops) are
refused: a radiograph is one frame, and guessing which frame the user meant is worse than asking.
Compressed transfer syntaxes decode when a pydicom plugin is installed; otherwise the error says
which package to install.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np

from bmd_edge.errors import ImageReadError, UnsupportedImageError
from bmd_edge.image_io import ImageInfo, Radiograph, check_dimensions, scale_float, to_gray

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag

# Tags that identify a person. They go to ImageInfo.patient_ids (repr=False), never into a
# message or a warning.
IDENTIFYING_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                    "AccessionNumber", "InstitutionName")
_DATE_TAGS = ("StudyDate", "AcquisitionDate", "ContentDate", "SeriesDate")  # in this order
_AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
_SIDES = {"L": "left", "R": "right"}


def _install_hint(uid: str) -> str:
    """The pip line that brings a decoder for this transfer syntax."""
    from pydicom import uid as u

    if uid in u.JPEG2000TransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-openjpeg"
    if uid in u.JPEGTransferSyntaxes or uid in u.JPEGLSTransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-libjpeg"
    return "pip install 'bmd-edge[dicom]'"


def decode_dicom(data: bytes, name: str = "<bytes>") -> Radiograph:
    """Decode one single-frame DICOM image; see the module docstring for the pixel pipeline."""
    import pydicom

    # pydicom's warnings and log lines can quote tag values (names, IDs): keep them all in.
    logger = logging.getLogger("pydicom")
    was_disabled, logger.disabled = logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)  # force: no-preamble files
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
    try:
        arr = ds.pixel_array  # YBR is converted to RGB by pydicom here
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything; user gets one line
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ImageReadError(f"{name}: DICOM pixel data could not be decoded ({msg})") from None
    if arr.shape not in ((rows, cols), (rows, cols, 3)):  # e.g. (frames, H, W) with no frame count
        shape = "×".join(str(n) for n in arr.shape)
        raise UnsupportedImageError(f"{name}: DICOM pixel data decodes to a {shape} array, not "
                                    f"one {rows}×{cols} image (grey or RGB): it holds several "
                                    "frames but NumberOfFrames is missing or 1; export a single "
                                    "frame as its own file")

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        out = _monochrome(arr, ds, name, warn)
        return (1.0 - out) if photometric == "MONOCHROME1" else out
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(arr, ds)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError) as exc:
            raise ImageReadError(f"{name}: DICOM is PALETTE COLOR but its colour palette (the "
                                 "Red/Green/Blue Palette Color Lookup Table descriptor and data) "
                                 f"is missing or invalid ({type(exc).__name__}); re-export it as "
                                 "MONOCHROME2 or RGB") from None
        warn.append("PALETTE COLOR converted to grayscale")
        top = np.iinfo(rgb.dtype).max if np.issubdtype(rgb.dtype, np.integer) else 1.0
        return to_gray(rgb.astype(np.float32) / np.float32(top), warn, order="rgb")
    if arr.ndim == 3 and arr.shape[2] == 3:  # RGB, YBR_* (already RGB), …
        bits = int(ds.get("BitsStored") or 8)
        return to_gray(arr.astype(np.float32) / np.float32(2**bits - 1), warn, order="rgb")
    raise UnsupportedImageError(f"{name}: DICOM photometric interpretation {photometric} is not "
                                "supported; accepted: MONOCHROME1/2, RGB, YBR, PALETTE COLOR")


def _monochrome(arr: np.ndarray, ds: Dataset, name: str, warn: list[str]) -> np.ndarray:
    """Modality LUT, then VOI LUT or window, else the stored range: display values in [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    if np.issubdtype(arr.dtype, np.floating):  # Float Pixel Data: no LUTs apply
        return scale_float(arr, name, warn)
    values = apply_modality_lut(arr, ds)
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") and voi[0].get("LUTData") is not None:
        entries, first = int(voi[0].LUTDescriptor[0]) or 65536, int(voi[0].LUTDescriptor[1])
        table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds)
        lo, hi = float(table.min()), float(table.max())
        if hi > lo:
            out = apply_voi(np.rint(values).astype(np.int64), ds)
            return ((out.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        warn.append("VOI LUT is constant; ignored")
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            out = apply_windowing(values.astype(np.float64), ds)
            with np.errstate(over="ignore"):  # the range probe saturates a sigmoid on purpose
                lo, hi = apply_windowing(np.array([-1e15, 1e15]), ds)
            if hi != lo:
                return ((out - lo) / (hi - lo)).clip(0.0, 1.0).astype(np.float32)
        except (ValueError, TypeError, IndexError):
            pass
        warn.append("DICOM window is invalid; ignored (full stored range used)")
    # No VOI: scale by the range the stored bits can hold (after the modality LUT), like a PNG is
    # divided by its bit-depth maximum, so the same pixels give the same result in either file.
    lo, hi = _stored_range(ds)
    return ((values.astype(np.float64) - lo) / (hi - lo)).clip(0.0, 1.0).astype(np.float32)


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


def _age_years(ds: Dataset) -> float | None:
    """PatientAge ("072Y", "006M", ...) or, failing that, birth date → acquisition date."""
    age = _text(ds, "PatientAge")
    if age and (m := re.fullmatch(r"(\d{1,3})\s*([DWMY])", age.upper())):
        return round(int(m.group(1)) * _AGE_UNITS[m.group(2)], 3)
    birth = _parse_date(_text(ds, "PatientBirthDate"))
    if birth is None:
        return None
    for tag in _DATE_TAGS:
        seen = _parse_date(_text(ds, tag))
        if seen is not None and seen >= birth:
            return round((seen - birth).days / 365.25, 3)
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
        patient_ids={k: v for k in IDENTIFYING_TAGS if (v := _text(ds, k)) is not None},
    )
