"""Check compressed streams before a decoder sees them, so a damaged or hostile file is refused
by us, in one line, instead of being decoded wrong, printing to stderr or exhausting memory.

Why a module of its own: the decoders we use (OpenCV's libpng and libjpeg, pydicom's plugins)
have three failure modes the caller cannot see. They print warnings from C straight to fd 2
(`libpng error: bad adaptive filter value`, `Corrupt JPEG data: premature end of data segment`),
which the threads of a batch share, so stderr cannot be parsed back; they fill what they could not
decode with grey and return success (a JPEG cut short with an end marker appended); and they
allocate what the stream's own header claims before noticing it disagrees with the container.
So, before decoding:

- PNG: every critical chunk's CRC, then the image data inflated in 1 MB steps (never held whole)
  and checked against the header: exact length, a valid filter type on every row, a complete
  zlib stream. What OpenCV then decodes is rebuilt from the critical chunks only, so an
  ancillary chunk (a broken iCCP profile, text) cannot make libpng warn.
- JPEG: a full entropy decode by libjpeg-turbo through simplejpeg with `strict=True`, which
  raises on every libjpeg warning (corrupt data, premature end, inconsistent progression);
  decoded at 1/8 scale, so checking costs a fraction of the real decode.
- DICOM: the size a compressed frame's own codestream header claims (JPEG SOF, JPEG-LS SOF55,
  JPEG 2000 SIZ), and deflated datasets inflated under a byte budget.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

from bmd_edge.errors import ImageReadError, UnsupportedImageError

INFLATE_STEP = 1 << 20  # bytes inflated per step: a bomb is counted, never held
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")  # what OpenCV needs to decode
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel in the stored scanlines
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of the seven interlace passes


# --- PNG --------------------------------------------------------------------------------------


def _png_rows(width: int, height: int, depth: int, colour: int,
              interlaced: bool) -> list[tuple[int, int]]:
    """(row length incl. the filter byte, number of rows) of each pass, in stream order."""
    bits = _PNG_CHANNELS.get(colour, 1) * depth

    def row_len(w: int) -> int:
        return 1 + (w * bits + 7) // 8

    if not interlaced:
        return [(row_len(width), height)]
    passes = []
    for x0, y0, dx, dy in _ADAM7:
        w = (width - x0 + dx - 1) // dx if width > x0 else 0
        h = (height - y0 + dy - 1) // dy if height > y0 else 0
        if w and h:
            passes.append((row_len(w), h))
    return passes


def check_png(data: bytes, name: str) -> bytes:
    """Verify a PNG's critical chunks and image data; return it rebuilt from critical chunks."""
    corrupt = f"{name}: PNG is corrupt"
    pos, idat_done = len(_PNG_SIGNATURE), False
    kept: list[bytes | memoryview] = [_PNG_SIGNATURE]
    idat: list[memoryview] = []
    ihdr: bytes | None = None
    view = memoryview(data)
    while True:
        if pos + 12 > len(data):
            raise ImageReadError(f"{name}: PNG is truncated (no IEND chunk); re-export the image")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data) or not kind.isalpha():
            raise ImageReadError(f"{name}: PNG is truncated or corrupt (chunk at byte {pos} "
                                 "runs past the end of the file); re-export the image")
        body = view[pos + 8:pos + 8 + length]
        critical = kind[:1].isupper()
        if critical or kind in _PNG_KEEP:
            (crc,) = struct.unpack(">I", data[end - 4:end])
            if zlib.crc32(body, zlib.crc32(kind)) != crc:
                raise ImageReadError(f"{corrupt} (CRC error in its {kind.decode()} chunk); "
                                     "re-export the image")
            if kind not in _PNG_KEEP:
                raise UnsupportedImageError(f"{name}: PNG has an unknown critical chunk "
                                            f"{kind.decode('ascii', 'replace')!r}; re-export it")
            if kind == b"IDAT":
                if idat_done:
                    raise ImageReadError(f"{corrupt} (its image data chunks are not "
                                         "consecutive); re-export the image")
                idat.append(body)
            elif idat:
                idat_done = True
            if kind == b"IHDR":
                ihdr = bytes(body)
            kept.append(view[pos:end])
        pos = end
        if kind == b"IEND":
            break
    if ihdr is None or len(ihdr) != 13 or not idat:
        raise ImageReadError(f"{corrupt} (missing IHDR or image data); re-export the image")
    width, height, depth, colour, _comp, _filt, interlace = struct.unpack(">IIBBBBB", ihdr)
    _check_png_data(idat, _png_rows(width, height, depth, colour, interlace == 1), name)
    return b"".join(kept)


def _check_png_data(idat: list[memoryview], passes: list[tuple[int, int]], name: str) -> None:
    """Inflate IDAT in steps; every row's filter byte must be 0-4 and the length exact."""
    layout, at = [], 0  # (first byte of the pass, row length, rows)
    for length, rows in passes:
        layout.append((at, length, rows))
        at += length * rows
    expected = at
    inflater = zlib.decompressobj()
    done = 0  # bytes inflated so far

    def check_filters(chunk: bytes, offset: int) -> None:
        buf = np.frombuffer(chunk, np.uint8)
        for start, length, rows in layout:
            lo = max(0, -(-(offset - start) // length))  # first row starting in this chunk
            hi = min(rows, (offset + len(buf) - start + length - 1) // length)
            if lo >= hi:
                continue
            where = start + length * np.arange(lo, hi) - offset
            bad = np.flatnonzero(buf[where] > 4)
            if bad.size:
                raise ImageReadError(f"{name}: PNG is corrupt (row {lo + int(bad[0])} has filter "
                                     f"type {int(buf[where[bad[0]]])}; valid 0-4); re-export it")

    try:
        for body in idat:
            pending = bytes(body)
            while pending and not inflater.eof:
                out = inflater.decompress(pending, INFLATE_STEP)
                pending = inflater.unconsumed_tail
                if done + len(out) > expected:
                    raise ImageReadError(f"{name}: PNG is corrupt (its image data is longer "
                                         "than its header's size says); re-export the image")
                check_filters(out, done)
                done += len(out)
            if inflater.eof:
                break
        tail = inflater.flush()  # output zlib still holds (bounded by the window, 32 KB)
        if done + len(tail) > expected:
            raise ImageReadError(f"{name}: PNG is corrupt (its image data is longer than its "
                                 "header's size says); re-export the image")
        check_filters(tail, done)
        done += len(tail)
    except zlib.error as exc:
        raise ImageReadError(f"{name}: PNG is corrupt (its compressed image data is damaged: "
                             f"{exc}); re-export the image") from None
    if done < expected:
        raise ImageReadError(f"{name}: PNG is truncated (image data ends after {done:,} of "
                             f"{expected:,} bytes); re-export the image")
    if not inflater.eof or inflater.unused_data:
        raise ImageReadError(f"{name}: PNG is corrupt (its compressed image data does not end "
                             "where the image does); re-export the image")


# --- JPEG -------------------------------------------------------------------------------------


def check_jpeg_stream(data: bytes, name: str) -> None:
    """Entropy-decode the whole stream with libjpeg-turbo, strict: any libjpeg warning refuses.

    OpenCV's libjpeg decodes a damaged stream "successfully", filling the rest with grey, and only
    prints a warning on fd 2. simplejpeg's strict mode turns that warning into an exception we
    can read. Decoded at 1/8 scale (every coefficient is still entropy-decoded).
    """
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a core dependency
        from bmd_edge.errors import DependencyError

        raise DependencyError("simplejpeg is not installed; run `pip install simplejpeg` "
                              "(bmd-edge checks every JPEG with it before decoding)") from None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8, strict=True)
    except (ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        if reason.lower().startswith("unsupported jpeg"):
            raise UnsupportedImageError(f"{name}: JPEG uses a feature we cannot check "
                                        f"({reason}); re-export it as PNG or DICOM") from None
        raise ImageReadError(f"{name}: JPEG data is corrupt ({reason}); re-export the "
                             "image") from None


# --- codestreams inside DICOM -----------------------------------------------------------------

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
             0xF7}  # 0xF7: JPEG-LS SOF55


STRICT_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC9, 0xCA}  # DCT frames libjpeg-turbo decodes (8-bit)


def codestream_size(fragment: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, components, precision, frame marker) a JPEG / JPEG-LS / JPEG 2000
    codestream's header claims (marker 0x51 for J2K's SIZ), or None when the fragment holds no
    such header (RLE, an unknown codec, garbage the decoder will report)."""
    if fragment[:2] == b"\xff\xd8":  # JPEG, JPEG-LS: walk markers to the frame header
        i = 2
        while i + 4 <= len(fragment):
            if fragment[i] != 0xFF:
                return None
            marker = fragment[i + 1]
            if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
                i += 1 if marker == 0xFF else 2
                continue
            if marker == 0xDA:
                return None
            if marker in _JPEG_SOF and i + 10 <= len(fragment):
                precision, height, width, comps = struct.unpack(">BHHB", fragment[i + 4:i + 10])
                return width, height, comps, precision, marker
            i += 2 + struct.unpack(">H", fragment[i + 2:i + 4])[0]
        return None
    at = fragment.find(b"\xff\x4f\xff\x51", 0, 4096)  # J2K: SOC then SIZ (also inside a JP2)
    if at >= 0 and at + 43 <= len(fragment):
        (lsiz,) = struct.unpack(">H", fragment[at + 4:at + 6])
        xsiz, ysiz, x0, y0 = struct.unpack(">IIII", fragment[at + 8:at + 24])
        comps, ssiz = struct.unpack(">HB", fragment[at + 40:at + 43])
        if lsiz == 38 + 3 * comps and xsiz > x0 and ysiz > y0:  # else garbage: decoder reports
            return xsiz - x0, ysiz - y0, comps, (ssiz & 0x7F) + 1, 0x51
    return None


# --- bounded inflation ------------------------------------------------------------------------


def inflated_size(fp: BinaryIO, limit: int, name: str) -> int:
    """Bytes a raw deflate stream from `fp` inflates to; ImageReadError past `limit`.

    pydicom inflates a Deflated Explicit VR Little Endian dataset whole, in memory, before any
    element is read: a 1 MB file can hold 1 GiB. Counting it here in 1 MB steps costs no memory.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while not inflater.eof:
            chunk = inflater.unconsumed_tail or fp.read(INFLATE_STEP)
            if not chunk:
                break
            total += len(inflater.decompress(chunk, INFLATE_STEP))
            if total > limit:
                raise ImageReadError(f"{name}: DICOM's deflated data inflates to more than "
                                     f"{limit / 1e6:.0f} MB; the limit is {limit / 1e6:.0f} MB "
                                     "(a decompression bomb or a corrupt file)")
    except zlib.error as exc:
        raise ImageReadError(f"{name}: DICOM's deflated data is corrupt ({exc}); "
                             "re-export it") from None
    return total
