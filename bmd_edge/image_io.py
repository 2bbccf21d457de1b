"""Read a radiograph file (PNG, JPEG, TIFF, DICOM) into float32 pixels in [0, 1], torch-free.

Why this module exists: users hand us whatever their PACS or phone exported. We decide the format
from the bytes (never the suffix), refuse decompression bombs and truncated files *before*
decoding, and turn every bit depth / colour layout into one convention: a float32 H×W array in
[0, 1] where 1 is the most attenuating (bone bright). Anything we changed on the way (colour
dropped, float range rescaled) is reported in `Radiograph.warnings`. DICOM lives in `dicom_io`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bmd_edge.errors import ImageReadError, UnsupportedImageError
from bmd_edge.warn import Warn

ACCEPTED = "PNG, JPEG, TIFF, DICOM"
MAX_PIXELS = 100_000_000  # decompression-bomb guard: a 100 MP float32 image is already 400 MB
MAX_SIDE = 20_000  # no detector is larger; bigger claims are corrupt or hostile
MIN_SIDE = 32  # below this there is no hip to see (icons, thumbnails, 1×1 tracking pixels)
MAX_ASPECT = 8.0  # a hip/pelvis view is roughly square; 8:1 is a strip, not a radiograph
COLOUR_TOLERANCE = 8 / 255  # channel spread below this is JPEG chroma noise, not real colour

# Luma weights (ITU-R BT.601), the same ones OpenCV's cvtColor uses.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageInfo:
    """What the file says about itself; None wherever it says nothing."""

    format: str  # "png" | "jpeg" | "tiff" | "dicom": what the bytes are, not the suffix
    bits_stored: int | None = None  # bit depth per sample as stored (8, 12, 16, 32 for float)
    age_years: float | None = None  # DICOM PatientAge, or birth date → study date
    sex: str | None = None  # "F" | "M" (DICOM PatientSex; "O" and blanks become None)
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, col); None when absent or zero
    laterality: str | None = None  # "left" | "right" from ImageLaterality / Laterality
    view: str | None = None  # e.g. "AP" (ViewPosition)
    modality: str | None = None  # e.g. "DX", "CR"
    # Identifying tags (PatientName, PatientID, ...). repr=False so they never reach a log line.
    patient_ids: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Radiograph:
    """Decoded pixels plus what the file said and what we had to change to read it."""

    pixels: np.ndarray  # float32 H×W in [0, 1], 1 = most attenuating (bone bright)
    info: ImageInfo  # tags and format facts
    warnings: tuple[str, ...] = ()  # e.g. "RGB converted to grayscale (colour in 3.1% of pixels)"


def read_image(path: str | Path) -> Radiograph:
    """Read an image file; the format is decided from its content, not its name."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {p}") from None
    except IsADirectoryError:
        raise ImageReadError(f"{p} is a directory; expected an image file ({ACCEPTED})") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read {p}: {exc.strerror or exc}") from None
    return decode_image_bytes(data, name=str(p))


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> Radiograph:
    """Decode an in-memory image (e.g. an upload); `name` only labels error messages."""
    data = bytes(data)
    fmt = sniff_format(data, name)
    if fmt == "dicom":
        from bmd_edge.dicom_io import decode_dicom  # pydicom is imported only for DICOM input

        return decode_dicom(data, name)
    return _decode_raster(data, fmt, name)


def sniff_format(data: bytes, name: str = "<bytes>") -> str:
    """Return "png" | "jpeg" | "tiff" | "dicom" from magic bytes, or raise naming what it is."""
    if not data:
        raise ImageReadError(f"{name}: file is empty (0 bytes); expected an image ({ACCEPTED})")
    if data[128:132] == b"DICM":  # first: a DICOM preamble may itself hold a TIFF header
        return "dicom"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if _raw_dicom(data):  # old ACR-NEMA style: no preamble, the dataset starts at byte 0
        return "dicom"
    what = _describe(data)
    raise UnsupportedImageError(f"{name}: looks like {what}, not a supported image; "
                                f"accepted formats: {ACCEPTED}")


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 file (wrap it in DICOM or convert to PNG)"),
    (b"\xffO\xffQ", "a raw JPEG 2000 codestream"),
    (b"PK\x03\x04", "a ZIP archive (unpack it first)"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
    (b"\xd0\xcf\x11\xe0", "a Microsoft Office document"),
)


def _raw_dicom(data: bytes) -> bool:
    """A dataset without preamble starts with a group 0002/0008 tag and, if explicit, a VR."""
    if len(data) < 8 or data[:2] not in (b"\x02\x00", b"\x08\x00", b"\x00\x08"):
        return False
    vr = data[4:6]
    explicit = vr.isalpha() and vr.isupper()
    implicit_length = struct.unpack("<I", data[4:8])[0] < 1024
    return explicit or implicit_length


def _describe(data: bytes) -> str:
    """Name what a non-image file most likely is, so the user knows what they passed."""
    for magic, what in _SIGNATURES:
        if data.startswith(magic):
            return what
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIF/AVIF image"
    head = data[:512].lstrip()
    if head[:5].lower() in (b"<!doc", b"<html"):
        return "an HTML page (a download that failed?)"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "an unknown binary file"


def check_dimensions(width: int, height: int, name: str, fmt: str) -> None:
    """Refuse sizes that are no radiograph, before any pixel is decoded (bomb guard)."""
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{name}: {fmt} header gives a size of {width}×{height} px; "
                             "the file is corrupt")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageReadError(f"{name}: image is {width}×{height} px; "
                             f"need at least {MIN_SIDE}×{MIN_SIDE}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageReadError(f"{name}: image is {width}×{height} px "
                             f"({width * height / 1e6:.0f} megapixels); the limit is "
                             f"{MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE} px per side")
    aspect = max(width, height) / min(width, height)
    if aspect > MAX_ASPECT:
        raise ImageReadError(f"{name}: image is {width}×{height} px (aspect {aspect:.1f}:1); "
                             f"a radiograph must be within {MAX_ASPECT:.0f}:1")


# --- cheap header parsing: size and bit depth without decoding pixels -----------------------


@dataclass(frozen=True)
class _Header:
    width: int  # px
    height: int  # px
    bits: int  # bits per sample as stored
    note: str | None = None  # something worth a warning (e.g. extra TIFF pages)


def _png_header(data: bytes, name: str) -> _Header:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageReadError(f"{name}: PNG is truncated or corrupt (no IHDR chunk)")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if data.find(b"\x00\x00\x00\x00IEND", 33) < 0:
        raise ImageReadError(f"{name}: PNG is truncated (no IEND chunk); re-export the image")
    return _Header(width, height, 8 if colour == 3 else depth)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(data: bytes, name: str) -> _Header:
    i, sof = 2, None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageReadError(f"{name}: JPEG is corrupt (bad marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xDA:  # start of scan: headers are over
            break
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _JPEG_SOF and i + 9 <= len(data):
            precision, height, width = struct.unpack(">BHH", data[i + 4:i + 9])
            sof = (width, height, precision)
        i += 2 + length
    else:
        raise ImageReadError(f"{name}: JPEG is truncated (ends before the image data)")
    if sof is None:
        raise ImageReadError(f"{name}: JPEG is corrupt (no frame header before the image data)")
    # In entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so FFD9 after
    # the first scan can only be the end-of-image marker: its absence means truncation.
    if data.find(b"\xff\xd9", i) < 0:
        raise ImageReadError(f"{name}: JPEG is truncated (no end-of-image marker); "
                             "re-export the image")
    return _Header(*sof)


_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8 (BigTIFF)


def _tiff_header(data: bytes, name: str) -> _Header:
    corrupt = ImageReadError(f"{name}: TIFF is truncated or corrupt (bad directory)")
    bo = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        ifd = struct.unpack(bo + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
        count_fmt, entry_size, inline = ("Q", 20, 8) if big else ("H", 12, 4)
        (n,) = struct.unpack_from(bo + count_fmt, data, ifd)
        start = ifd + struct.calcsize(count_fmt)
        tags: dict[int, list[int]] = {}
        for k in range(n):
            at = start + k * entry_size
            tag, typ = struct.unpack_from(bo + "HH", data, at)
            (count,) = struct.unpack_from(bo + ("Q" if big else "I"), data, at + 4)
            code = _TIFF_TYPES.get(typ)
            if code is None or count > 1_000_000:
                continue
            size = struct.calcsize(code) * count
            where = at + (12 if big else 8)
            if size > inline:
                (where,) = struct.unpack_from(bo + ("Q" if big else "I"), data, where)
            tags[tag] = list(struct.unpack_from(f"{bo}{count}{code}", data, where))
        (next_ifd,) = struct.unpack_from(bo + ("Q" if big else "I"), data, start + n * entry_size)
    except (struct.error, OverflowError):  # OverflowError: a BigTIFF offset >= 2**63
        raise corrupt from None
    if 256 not in tags or 257 not in tags:
        raise corrupt
    offsets, counts = tags.get(273, tags.get(324, [])), tags.get(279, tags.get(325, []))
    if any(o + c > len(data) for o, c in zip(offsets, counts)) or not offsets:
        raise ImageReadError(f"{name}: TIFF is truncated (image data runs past the end of the "
                             "file); re-export the image")
    note = "multi-page TIFF: only the first page was read" if next_ifd else None
    return _Header(tags[256][0], tags[257][0], tags.get(258, [1])[0], note)


# --- decoding ---------------------------------------------------------------------------------


def _decode_raster(data: bytes, fmt: str, name: str) -> Radiograph:
    """PNG/JPEG/TIFF via OpenCV, after the header checks; output in the package convention."""
    import cv2

    header = {"png": _png_header, "jpeg": _jpeg_header, "tiff": _tiff_header}[fmt](data, name)
    check_dimensions(header.width, header.height, name, fmt.upper())
    # JPEG: IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED ignores it) and turns
    # CMYK/YCCK into BGR. PNG/TIFF: IMREAD_UNCHANGED keeps 16-bit, float and alpha.
    flags = cv2.IMREAD_COLOR if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    if fmt == "jpeg" and header.bits > 8:
        flags |= cv2.IMREAD_ANYDEPTH
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ImageReadError(f"{name}: {fmt.upper()} could not be decoded (corrupt or an "
                             "unusual encoding); re-export it as PNG or DICOM")
    warnings: list[str] = [header.note] if header.note else []
    if arr.ndim == 3 and arr.shape[2] == 3 and _grey_planes(arr):
        arr = arr[:, :, 0]  # a grey image stored as colour: skip float colour maths (2048² JPEG)
    pixels = _to_unit(arr, header.bits, fmt, name, warnings)
    pixels = to_gray(pixels, warnings, order="bgr")
    info = ImageInfo(format=fmt, bits_stored=header.bits)
    return Radiograph(pixels=pixels, info=info, warnings=tuple(warnings))


def _grey_planes(arr: np.ndarray) -> bool:
    """True when the three colour planes are identical (R=G=B), checked on the raw samples."""
    return bool(np.array_equal(arr[:, :, 0], arr[:, :, 1])
                and np.array_equal(arr[:, :, 0], arr[:, :, 2]))


def _to_unit(arr: np.ndarray, bits: int, fmt: str, name: str, warnings: list[str]) -> np.ndarray:
    """Scale any sample type to float32 in [0, 1]: integers by their bit-depth maximum."""
    if np.issubdtype(arr.dtype, np.floating):
        return scale_float(arr, name, warnings)
    if not np.issubdtype(arr.dtype, np.integer):
        raise UnsupportedImageError(f"{name}: {fmt.upper()} sample type {arr.dtype} is not "
                                    "supported; accepted: 8/16-bit integer or float")
    info = np.iinfo(arr.dtype)
    if info.min < 0:  # signed TIFF: keep order, shift the type's range onto [0, 1]
        return ((arr.astype(np.float64) - info.min) / (info.max - info.min)).astype(np.float32)
    top = 2**bits - 1 if fmt == "jpeg" and bits > 8 else info.max  # 12-bit JPEG in uint16
    return (arr.astype(np.float32) / np.float32(top)).clip(0.0, 1.0)


def scale_float(arr: np.ndarray, name: str, warnings: list[str]) -> np.ndarray:
    """Float samples: keep them when already in [0, 1], else min-max scale with a warning."""
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        raise ImageReadError(f"{name}: every pixel is NaN or infinite; expected finite values")
    if not finite.all():
        warnings.append(f"{int((~finite).sum())} NaN/infinite pixels set to the image minimum")
        arr = np.where(finite, arr, arr[finite].min())
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        warnings.append(f"float pixel values span [{lo:.4g}, {hi:.4g}]; scaled to [0, 1]")
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return arr.astype(np.float32)


def to_gray(arr: np.ndarray, warnings: list[str], *, order: str = "rgb") -> np.ndarray:
    """Collapse channels to one: alpha dropped, grey-looking colour silently, real colour with
    a warning that says how much of the image was coloured (the quality gate reads it)."""
    if arr.ndim == 2:
        return np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise UnsupportedImageError(f"image has shape {arr.shape}; expected H×W grey, RGB or "
                                    "RGBA")
    channels = arr.shape[2]
    if channels in (2, 4):
        warnings.append("alpha channel dropped")
        arr = arr[:, :, : channels - 1]
    if arr.shape[2] == 1:
        return np.ascontiguousarray(arr[:, :, 0], dtype=np.float32)
    # per-plane max/min: numpy's reduction over a length-3 last axis is ~50x slower
    c0, c1, c2 = arr[:, :, 0], arr[:, :, 1], arr[:, :, 2]
    spread = np.maximum(np.maximum(c0, c1), c2) - np.minimum(np.minimum(c0, c1), c2)
    if not spread.any():  # R=G=B: a grey image stored as colour; keep the exact values
        return np.ascontiguousarray(arr[:, :, 0], dtype=np.float32)
    weights = _LUMA_RGB if order == "rgb" else _LUMA_RGB[::-1]
    gray = (arr.astype(np.float32) @ weights).clip(0.0, 1.0)
    coloured = float((spread > COLOUR_TOLERANCE).mean())
    if coloured > 0:
        warnings.append(Warn("colour-converted", "image", f"{coloured:.6f}",
                             f"RGB converted to grayscale (colour in {100 * coloured:.2f}% "
                             "of pixels)"))
    return np.ascontiguousarray(gray, dtype=np.float32)
