"""Read a radiograph file (PNG, JPEG, TIFF, DICOM) into float32 pixels in [0, 1], torch-free.

Why this module exists: users hand us whatever their PACS or phone exported. We decide the format
from the first bytes (never the suffix), refuse decompression bombs and truncated files *before*
decoding, and turn every bit depth / colour layout into one convention: a float32 H×W array in
[0, 1] where 1 is the most attenuating (bone bright). Anything we changed on the way (colour
dropped, float range rescaled) is reported in `Radiograph.warnings`. DICOM lives in `dicom_io`.

Resource budget, so no single file can take the process past ~1.5 GB or a few seconds: only
regular files are opened (a FIFO would hang, /dev/zero never ends); the type is sniffed from the
first 4 KB; files over MAX_FILE_BYTES are refused before being read; and what a header says the
decoder will allocate (width × height × channels × bytes per sample) must fit MAX_DECODED_BYTES.
Compressed streams are checked before decoding (`stream_checks`), and the float conversion runs
a strip of rows at a time (`pixel_scale`).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bmd_edge.errors import ImageReadError, InputError, UnsupportedImageError, shown
from bmd_edge.pixel_scale import unit_gray

ACCEPTED = "PNG, JPEG, TIFF, DICOM"
MAX_PIXELS = 100_000_000  # decompression-bomb guard: a 100 MP float32 image is already 400 MB
MAX_DECODED_BYTES = 256 * 2**20  # width × height × channels × bytes/sample a decoder may allocate
MAX_FILE_BYTES = MAX_DECODED_BYTES + 32 * 2**20  # an uncompressed 256 MB image plus its headers
SNIFF_BYTES = 4096  # the format is decided from this prefix; nothing more is read before that
PATH_SHOWN = 300  # characters of a path echoed in a message
MAX_SIDE = 20_000  # no detector is larger; bigger claims are corrupt or hostile
MIN_SIDE = 32  # below this there is no hip to see (icons, thumbnails, 1×1 tracking pixels)
MAX_ASPECT = 8.0  # a hip/pelvis view is roughly square; 8:1 is a strip, not a radiograph


@dataclass(frozen=True)
class ImageInfo:
    """What the file says about itself; None wherever it says nothing."""

    format: str  # "png" | "jpeg" | "tiff" | "dicom": what the bytes are, not the suffix
    bits_stored: int | None = None  # bit depth per sample as stored (8, 12, 16, 32 for float)
    age_years: float | None = None  # completed years: DICOM PatientAge, or birth → study date
    sex: str | None = None  # "F" | "M" (DICOM PatientSex; "O" and blanks become None)
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, col); None when absent or zero
    laterality: str | None = None  # "left" | "right" from ImageLaterality / Laterality
    view: str | None = None  # e.g. "AP" (ViewPosition)
    modality: str | None = None  # e.g. "DX", "CR"
    body_part: str | None = None  # DICOM BodyPartExamined, e.g. "HIP", "KNEE" (evidence: #15)
    study_description: str | None = None  # DICOM StudyDescription (read for body-part words)
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
    name = shown(p, PATH_SHOWN)
    with _open_regular(p, name) as fh:
        check_file_size(os.fstat(fh.fileno()).st_size, name)
        head = fh.read(SNIFF_BYTES)
        fmt = sniff_format(head, name)
        if fmt == "dicom":
            from bmd_edge.dicom_io import decode_dicom  # pydicom is imported only for DICOM input

            fh.seek(0)
            return decode_dicom(fh, name)  # pydicom reads the file itself: no second copy
        data = head + _read_at_most(fh, MAX_FILE_BYTES + 1 - len(head), name)
    check_file_size(len(data), name)  # the file grew after we looked at its size
    return _decode_raster(data, fmt, name)


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _open_regular(p: Path, name: str) -> BinaryIO:
    """Open `p` for reading only if it is a regular file: a FIFO would block forever and a
    device such as /dev/zero never ends. Opened non-blocking and checked again after opening,
    so swapping the file for a FIFO in between does not hang us either."""
    try:
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(f"{name} is a directory; expected an image file ({ACCEPTED})")
        _check_regular(st.st_mode, name)
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {name}") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        _check_regular(os.fstat(fd).st_mode, name)
    except ImageReadError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_regular(mode: int, name: str) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
    raise ImageReadError(f"{name} is {kind}, not an image file; give a regular file "
                         f"({ACCEPTED})")


def _read_at_most(fh: BinaryIO, limit: int, name: str) -> bytes:
    try:
        return fh.read(limit)
    except OSError as exc:
        raise ImageReadError(f"cannot read {name}: {exc.strerror or exc}") from None


def check_file_size(size: int, name: str) -> None:
    """Refuse a file too large to be one radiograph, before it is read."""
    if size > MAX_FILE_BYTES:
        raise ImageReadError(f"{name}: file is {size / 1e6:,.0f} MB, larger than the "
                             f"{MAX_FILE_BYTES / 1e6:.0f} MB limit for one radiograph")


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> Radiograph:
    """Decode an in-memory image (e.g. an upload); `name` only labels error messages."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"decode_image_bytes needs bytes, got {type(data).__name__}")
    name = shown(name, PATH_SHOWN)
    check_file_size(len(data), name)
    data = bytes(data)
    fmt = sniff_format(data[:SNIFF_BYTES], name)
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
        if b"\x00" in head:  # NUL is valid UTF-8 but never in text
            raise UnicodeDecodeError("utf-8", head, 0, 1, "NUL byte")
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


def check_budget(width: int, height: int, channels: int, sample_bytes: int, name: str,
                 fmt: str) -> None:
    """Refuse an image whose decoded samples would exceed MAX_DECODED_BYTES (bomb guard).

    Counting pixels is not enough: a 10000² RGBA 16-bit PNG has as many pixels as a 10000² grey
    8-bit one but decodes to eight times the bytes (800 MB from a 778 KB file).
    """
    decoded = width * height * channels * sample_bytes
    if decoded > MAX_DECODED_BYTES:
        layout = f"{channels} channel{'s' if channels > 1 else ''} × {sample_bytes} byte"
        raise ImageReadError(f"{name}: {fmt} image would decode to {decoded / 1e6:,.0f} MB "
                             f"({width}×{height} px × {layout}); the limit is "
                             f"{MAX_DECODED_BYTES / 1e6:.0f} MB")


# --- cheap header parsing: size and bit depth without decoding pixels -----------------------


@dataclass(frozen=True)
class _Header:
    width: int  # px
    height: int  # px
    bits: int  # bits per sample as stored
    note: str | None = None  # something worth a warning (e.g. extra TIFF pages)
    channels: int = 1  # channels OpenCV will decode to (alpha and palettes counted as 4)
    sample_bytes: int = 1  # bytes per decoded sample


def _png_header(data: bytes, name: str) -> _Header:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageReadError(f"{name}: PNG is truncated or corrupt (no IHDR chunk)")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if data.find(b"\x00\x00\x00\x00IEND", 33) < 0:
        raise ImageReadError(f"{name}: PNG is truncated (no IEND chunk); re-export the image")
    channels = {0: 1, 2: 3}.get(colour, 4)  # palette, grey+alpha, RGBA: up to BGRA
    if channels < 4 and b"tRNS" in data[:data.find(b"IDAT")]:
        channels = 4  # a transparent colour becomes an alpha channel
    return _Header(width, height, 8 if colour == 3 else depth, None, channels,
                   2 if depth == 16 else 1)


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
    width, height, precision = sof
    return _Header(width, height, precision, None, 3, 2 if precision > 8 else 1)  # IMREAD_COLOR


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
    samples = max(tags.get(277, [1])[0], 1)
    bits = max(tags.get(258, [1]) or [1])
    return _Header(tags[256][0], tags[257][0], tags.get(258, [1])[0], note,
                   4 if samples == 2 else samples, max(-(-bits // 8), 1))


# --- decoding ---------------------------------------------------------------------------------


def _decode_raster(data: bytes, fmt: str, name: str) -> Radiograph:
    """PNG/JPEG/TIFF via OpenCV, after the header and stream checks; package convention out."""
    import cv2

    from bmd_edge.stream_checks import check_jpeg_stream, check_png

    header = {"png": _png_header, "jpeg": _jpeg_header, "tiff": _tiff_header}[fmt](data, name)
    check_dimensions(header.width, header.height, name, fmt.upper())
    check_budget(header.width, header.height, header.channels, header.sample_bytes, name,
                 fmt.upper())
    if fmt == "png":
        data = check_png(data, name)  # rebuilt from its critical chunks: libpng stays silent
    elif fmt == "jpeg":
        check_jpeg_stream(data, name)  # a damaged stream is refused, not decoded grey
    # JPEG: IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED ignores it) and turns
    # CMYK/YCCK into BGR. PNG/TIFF: IMREAD_UNCHANGED keeps 16-bit, float and alpha.
    flags = cv2.IMREAD_COLOR if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    if fmt == "jpeg" and header.bits > 8:
        flags |= cv2.IMREAD_ANYDEPTH
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        arr = None
    del data
    if arr is None or arr.size == 0:
        raise ImageReadError(f"{name}: {fmt.upper()} could not be decoded (corrupt or an "
                             "unusual encoding); re-export it as PNG or DICOM")
    warnings: list[str] = [header.note] if header.note else []
    if arr.ndim == 3 and arr.shape[2] == 3 and _grey_planes(arr):
        arr = arr[:, :, 0]  # a grey image stored as colour: skip float colour maths (2048² JPEG)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UnsupportedImageError(f"{name}: {fmt.upper()} sample type {arr.dtype} is not "
                                    "supported; accepted: 8/16-bit integer or float")
    top = 2**header.bits - 1 if fmt == "jpeg" and header.bits > 8 else None  # 12-bit in uint16
    pixels = unit_gray(arr, name, warnings, order="bgr", top=top)
    info = ImageInfo(format=fmt, bits_stored=header.bits)
    return Radiograph(pixels=pixels, info=info, warnings=tuple(warnings))


def _grey_planes(arr: np.ndarray) -> bool:
    """True when the three colour planes are identical (R=G=B), checked on the raw samples."""
    return bool(np.array_equal(arr[:, :, 0], arr[:, :, 1])
                and np.array_equal(arr[:, :, 0], arr[:, :, 2]))
