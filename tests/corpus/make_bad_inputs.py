"""Generate the bad-input corpus: the files users really hand us, each with the outcome we promise.

Usage:  python tests/corpus/make_bad_inputs.py OUT_DIR
writes the corpus files under OUT_DIR and OUT_DIR/expected.csv (one row per case). Nothing is
checked in: every file is made here from a few lines of numpy/PIL/pydicom, so a reader can see
exactly what is wrong with each one. `tests/test_bad_inputs.py` runs every case through the real
`bmd-edge predict` and checks the promise:

- refused:   exit 2, exactly one stderr line "error: ..." matching `pattern`, nothing written;
- processed: exit 0, a finite BMD, no warnings;
- warned:    exit 0, a finite BMD and a warning matching `pattern`;
- batch:     every bad row reported (each failure matches `pattern`), every good row processed,
             exit 0 unless --strict, results file complete.
`known_issue` names a case that does not keep its promise yet (the test marks it xfail).
`group` tags the hostile cases of issue #12 by class: empty or repeated values, resource bombs
(run under a 1.5 GB address-space limit; `benchmarks/bombs.py` records their RSS and time),
one-line output (native library messages, control characters, huge values) and PHI by
arithmetic. A target starting with "=" is passed literally (not under the corpus folder).
Bombs cost milliseconds to make: a GB of zeros is deflated as one 1 MB block compressed once
and repeated (a full flush resets the compressor, so every copy is byte-identical), and a 3 GB
file is sparse.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import sys
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REFUSED, PROCESSED, WARNED = "refused", "processed", "warned"
BASE = ("--age", "70", "--sex", "F")  # the facts every single-image case gives


@dataclass(frozen=True)
class CorpusCase:
    """One input and the outcome bmd-edge promises for it."""

    name: str                  # unique id
    mode: str                  # "single" (IMAGE is a file) | "batch" (a folder or manifest, --out)
    target: str                # IMAGE argument, relative to the corpus folder ("" = none given)
    args: tuple[str, ...]      # CLI options after IMAGE (the harness adds --model and --json)
    expect: str                # refused | processed | warned
    pattern: str = ""          # regex: the error line / a warning / every failed batch row
    exit_code: int = 0         # expected exit status
    n_ok: int | None = None    # batch: rows with status ok
    n_failed: int | None = None  # batch: rows with status failed
    note: str = ""             # the real-world mistake this stands for
    known_issue: str = ""      # "<module>: <bug>" while the promise is not kept yet
    group: str = ""            # issue class: "empty-repeated" | "bomb" | "one-line" | "phi"


# --- pixel and file builders -------------------------------------------------------------------


def hip_like(h: int = 64, w: int = 56, seed: int = 0) -> np.ndarray:
    """A toy hip (head, neck, shaft, socket; runtime/toy.py) that the tiny bundle's trained
    locator finds and the quality gate passes; float in [0, 1]. Odd seeds show the hip with its
    shaft on the image-right."""
    from bmd_edge.runtime.toy import toy_hip_film

    return toy_hip_film(h, w, side=("left", "right")[seed % 2], seed=seed)[0].astype(np.float64)


def u8(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255).astype(np.uint8)


def u16(img: np.ndarray) -> np.ndarray:
    return np.round(img * 65535).astype(np.uint16)


def png(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def pil_bytes(img: object, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)  # type: ignore[attr-defined]
    return buf.getvalue()


def jpeg(arr: np.ndarray, **kw: object) -> bytes:
    from PIL import Image

    return pil_bytes(Image.fromarray(arr), "JPEG", quality=95, **kw)


def tiff(arr: np.ndarray, pages: int = 1) -> bytes:
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        for _ in range(pages):
            tw.write(arr)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) whose IHDR claims width×height 8-bit grey, tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A valid small JPEG whose frame header is patched to claim width×height."""
    data = bytearray(jpeg(u8(hip_like())))
    i = 2
    while True:  # walk the marker segments to the SOF
        marker, (length,) = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])
        if marker in (0xC0, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length


PHI = {"PatientName": "Corpus^Patient", "PatientID": "MRN-CORPUS-0001",
       "PatientBirthDate": "19500101"}


def dicom(pixels: np.ndarray | None, *, photometric: str = "MONOCHROME2", bits: int = 8,
          signed: bool = False, frames: int = 1, ts: str = "1.2.840.10008.1.2.1",
          preamble: bool = True, pixel_data: bytes | None = None, **tags: object) -> bytes:
    """A DICOM file in memory. `pixels`: H×W (or H×W×3) integers; None = no pixel data at all."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(sorted(tags.items()))])
    meta.TransferSyntaxUID = UID(ts)
    ds = FileDataset("corpus.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    # A UID pydicom does not know is treated as a private compressed syntax (encapsulated).
    encapsulated = not UID(ts).is_transfer_syntax or UID(ts).is_compressed
    if pixels is not None:
        arr = np.asarray(pixels)
        ds.Rows, ds.Columns = arr.shape[:2]
        ds.SamplesPerPixel = 3 if arr.ndim == 3 else 1
        if arr.ndim == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 8 if bits <= 8 else 16
        ds.BitsStored, ds.HighBit = bits, bits - 1
        ds.PixelRepresentation = int(signed)
        if frames != 1:
            ds.NumberOfFrames = frames
            arr = np.stack([arr] * frames)
        dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[
            (ds.BitsAllocated, signed)]
        raw = arr.astype(dtype).tobytes()
        if pixel_data is not None:
            raw = pixel_data
        elif encapsulated:
            raw = encapsulate([b"\xff\x4f\xff\x51" + b"garbage" * 20])  # not a real codestream
        ds.PixelData = raw
        if encapsulated:
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
    for k, v in {**PHI, **tags}.items():  # after the pixels: a tag may override (Rows=0)
        if v is not None:
            setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False, implicit_vr=False, little_endian=True)
    out = buf.getvalue()
    return out if preamble else out[132:]  # raw ACR-NEMA style: no preamble, no "DICM"


# --- the cases ---------------------------------------------------------------------------------


def _single(name: str, data: bytes | None, suffix: str, expect: str, pattern: str = "",
            args: tuple[str, ...] = BASE, note: str = "", known_issue: str = "",
            target: str | None = None) -> tuple[CorpusCase, dict[str, bytes]]:
    rel = target if target is not None else f"single/{name}{suffix}"
    files = {rel: data} if data is not None else {}
    code = 2 if expect == REFUSED else 0
    return CorpusCase(name, "single", rel, tuple(args), expect, pattern, code, note=note,
                      known_issue=known_issue), files


def image_cases() -> list[tuple[CorpusCase, dict[str, bytes]]]:
    from PIL import Image

    g = hip_like()
    gn = (g - g.min()) / (g.max() - g.min())  # exactly [0, 1]
    with_nan = g.astype(np.float32)
    with_nan[:4, :4] = np.nan
    good_png = png(u8(g))
    good_jpg = jpeg(u8(g))
    dcm_ok = dicom(u8(g), PatientAge="070Y", PatientSex="F")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    colour = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgba = np.dstack([u8(g)] * 3 + [np.full(g.shape, 255, np.uint8)])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° CW to display
    rot_src = np.rot90(u8(hip_like(64, 48)), 1)  # stored so that the EXIF rotation restores it
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    tr_idat = bytearray(good_png)
    cut = tr_idat.find(b"IDAT") + 20
    del tr_idat[cut:cut + 40]  # IDAT damaged but IEND kept: headers pass, decoding must fail
    return [
        _single("zero_png", b"", ".png", REFUSED, r"empty \(0 bytes\)", note="zero-byte file"),
        _single("zero_jpg", b"", ".jpg", REFUSED, r"empty \(0 bytes\)"),
        _single("zero_dcm", b"", ".dcm", REFUSED, r"empty \(0 bytes\)"),
        _single("trunc_png", good_png[: len(good_png) // 2], ".png", REFUSED, r"PNG is truncated",
                note="download cut off"),
        _single("damaged_idat_png", bytes(tr_idat), ".png", REFUSED,
                r"could not be decoded|corrupt|truncated"),
        _single("trunc_jpg", good_jpg[: len(good_jpg) * 6 // 10], ".jpg", REFUSED,
                r"JPEG is truncated"),
        _single("trunc_dcm", dcm_ok[: len(dcm_ok) // 2], ".dcm", REFUSED,
                r"DICOM .*(truncated|corrupt|could not be decoded)"),
        _single("text_as_png", b"patient list\nname,age\n", ".png", REFUSED,
                r"looks like a text file.*accepted formats: PNG, JPEG, TIFF, DICOM"),
        _single("pdf_as_png", pdf, ".png", REFUSED, r"looks like a PDF document.*accepted"),
        _single("html_as_jpg", b"<!DOCTYPE html><html>404</html>", ".jpg", REFUSED,
                r"HTML page.*accepted"),
        _single("gif_as_png", b"GIF89a" + b"\0" * 40, ".png", REFUSED, r"GIF image.*accepted"),
        _single("zip_as_dcm", b"PK\x03\x04" + b"\0" * 60, ".dcm", REFUSED, r"ZIP archive"),
        _single("one_pixel", png(np.array([[128]], np.uint8)), ".png", REFUSED,
                r"1×1 px; need at least 32×32", note="tracking pixel"),
        _single("strip_8x8000", png(np.full((8, 8000), 128, np.uint8)), ".png", REFUSED,
                r"8000×8 px; need at least"),
        _single("strip_40x8000", png(u8(hip_like(40, 8000))), ".png", REFUSED,
                r"aspect 200\.0:1.*within 8:1"),
        _single("wide_64x400", png(u8(hip_like(64, 400))), ".png", REFUSED,
                r"no (hip|femoral head) found", note="passes the reader and the quality gate, "
                "refused by the hip locator (a 6:1 strip is no hip film)"),
        _single("bomb_png", png_bomb(100_000, 100_000), ".png", REFUSED,
                r"100000×100000 px .*limit is 100 megapixels", note="decompression bomb"),
        _single("bomb_jpg", jpeg_claiming(65_000, 65_000), ".jpg", REFUSED,
                r"65000×65000 px .*limit"),
        _single("jpeg_named_png", good_jpg, ".png", PROCESSED, note="content decides, not suffix"),
        _single("grey_png", good_png, ".png", PROCESSED),
        _single("rgba_png", png(rgba), ".png", WARNED, r"alpha channel dropped"),
        _single("palette_png", pil_bytes(Image.fromarray(u8(g)).convert("P"), "PNG"), ".png",
                PROCESSED, note="grey palette: R=G=B"),
        _single("cmyk_jpg", pil_bytes(Image.fromarray(u8(g)).convert("CMYK"), "JPEG",
                                      quality=95), ".jpg", PROCESSED, note="CMYK JPEG"),
        _single("progressive_jpg", jpeg(u8(g), progressive=True), ".jpg", PROCESSED),
        _single("exif_rotated_jpg", pil_bytes(Image.fromarray(rot_src), "JPEG", quality=95,
                                              exif=exif), ".jpg", PROCESSED),
        _single("png16", png(u16(g)), ".png", PROCESSED, note="16-bit PNG"),
        _single("tiff16", tiff(u16(g)), ".tif", PROCESSED),
        _single("tiff_float01", tiff(g.astype(np.float32)), ".tif", PROCESSED),
        _single("tiff_float_hu", tiff((gn * 4000 - 1000).astype(np.float32)), ".tif", WARNED,
                r"float pixel values span \[-1000, 3000\]; scaled to \[0, 1\]"),
        _single("tiff_float_nan", tiff(with_nan), ".tif",
                WARNED, r"^16 NaN/infinite pixels set to the image minimum"),
        _single("tiff_all_nan", tiff(np.full((64, 64), np.nan, np.float32)), ".tif", REFUSED,
                r"every pixel is NaN or infinite"),
        _single("tiff_multipage", tiff(u16(g), pages=2), ".tif", WARNED,
                r"multi-page TIFF: only the first page"),
        _single("rgb_colour_photo", png(colour), ".png", REFUSED,
                r"not a hip/pelvis radiograph: .*colour image.*--force"),
        _single("blank_png", png(np.full((64, 64), 90, np.uint8)), ".png", REFUSED,
                r"blank or near-constant image"),
        _single("noise_png", png(noise), ".png", REFUSED, r"looks like noise"),
        _single("noise_forced", png(noise), ".png", WARNED,
                r"quality gate overridden with --force", args=BASE + ("--force",)),
        _single("missing_file", None, ".png", REFUSED, r"does not exist",
                target="single/no_such_file.png"),
        _single("folder_without_out", None, "", REFUSED, r"batch mode needs --out",
                target="single"),
        _single("out_with_single", good_png, ".png", REFUSED, r"--out is for batch mode",
                args=BASE + ("--out", "{tmp}/results.csv")),
        _single("report_not_png", good_png, ".png", REFUSED, r"must end in \.png",
                args=BASE + ("--report", "{tmp}/report.txt")),
    ]


def dicom_cases() -> list[tuple[CorpusCase, dict[str, bytes]]]:
    g = hip_like()
    px8, px12 = u8(g), np.round(g * 4095).astype(np.uint16)
    col = np.dstack([px8] * 3)
    ok = {"PatientAge": "070Y", "PatientSex": "F"}
    none = ()  # no CLI facts: the DICOM must supply them
    return [
        _single("dcm_ok", dicom(px8, **ok), ".dcm", PROCESSED, args=none,
                note="age and sex from tags"),
        _single("dcm_no_pixels", dicom(None, **ok), ".dcm", REFUSED,
                r"DICOM file has no pixel data", args=none, note="a structured report"),
        _single("dcm_mpeg2", dicom(px8, ts="1.2.840.10008.1.2.4.100", **ok), ".dcm", REFUSED,
                r"transfer syntax MPEG2.*cannot be decoded", args=none),
        _single("dcm_unknown_ts", dicom(px8, ts="1.2.826.0.1.3680043.2.1143.99", **ok), ".dcm",
                REFUSED, r"transfer syntax", args=none,
                note="a private/unknown transfer syntax UID"),
        _single("dcm_j2k_garbage", dicom(px8, ts="1.2.840.10008.1.2.4.90", **ok), ".dcm",
                REFUSED, r"DICOM pixel data could not be decoded", args=none),
        _single("dcm_short_pixels", dicom(px8, pixel_data=px8.tobytes()[:1000], **ok), ".dcm",
                REFUSED, r"DICOM pixel data could not be decoded", args=none),
        _single("dcm_rows_zero", dicom(px8, pixel_data=px8.tobytes(), Rows=0, **ok), ".dcm",
                REFUSED, r"size of \d+×0 px; the file is corrupt", args=none),
        _single("dcm_monochrome1", dicom(255 - px8, photometric="MONOCHROME1", **ok), ".dcm",
                PROCESSED, args=none),
        _single("dcm_spacing_zero", dicom(px8, PixelSpacing=[0, 0], **ok), ".dcm", PROCESSED,
                args=none),
        _single("dcm_spacing_missing", dicom(px8, **ok), ".dcm", PROCESSED, args=none),
        _single("dcm_multiframe", dicom(px8, frames=3, **ok), ".dcm", REFUSED,
                r"DICOM has 3 frames; expected a single-frame", args=none),
        _single("dcm_rgb_grey", dicom(col, photometric="RGB", **ok), ".dcm", PROCESSED,
                args=none, note="grey content stored as RGB"),
        _single("dcm_rgb_colour", dicom(np.random.default_rng(2).integers(
            0, 256, (64, 64, 3)), photometric="RGB", **ok), ".dcm", REFUSED,
            r"colour image", args=none),
        _single("dcm_12bit_window", dicom(px12, bits=12, WindowCenter=2048, WindowWidth=4096,
                                          **ok), ".dcm", PROCESSED, args=none),
        _single("dcm_signed_rescale", dicom((px12.astype(np.int32) - 2048).astype(np.int16),
                                            bits=12, signed=True, RescaleSlope=1,
                                            RescaleIntercept=-1024, **ok), ".dcm", PROCESSED,
                args=none),
        _single("dcm_bad_window", dicom(px8, WindowCenter=128, WindowWidth=0, **ok), ".dcm",
                WARNED, r"window is invalid", args=none),
        _single("dcm_no_preamble", dicom(px8, preamble=False, **ok), ".dcm", PROCESSED,
                args=none, note="ACR-NEMA style, no 128-byte preamble"),
        _single("dcm_age_conflict", dicom(px8, PatientAge="072Y", PatientSex="F"), ".dcm",
                WARNED, r"age 60 given differs from the image's DICOM age 72; using 60",
                args=("--age", "60"), note="command line wins"),
        _single("dcm_sex_conflict", dicom(px8, PatientAge="072Y", PatientSex="M"), ".dcm",
                WARNED, r"sex F given differs from the image's DICOM sex M; using F",
                args=("--sex", "F")),
        _single("dcm_no_age", dicom(px8, PatientSex="F"), ".dcm", REFUSED, r"age is required",
                args=none),
        _single("dcm_age_200", dicom(px8, PatientAge="200Y", PatientSex="F"), ".dcm", REFUSED,
                r"age_xray = 200 is outside the accepted range 18 to 110 years", args=none),
    ]


def metadata_cases() -> list[tuple[CorpusCase, dict[str, bytes]]]:
    rel = "single/meta_good.png"
    data = {rel: png(u8(hip_like()))}
    out: list[tuple[CorpusCase, dict[str, bytes]]] = []

    def add(name: str, args: tuple[str, ...], expect: str, pattern: str = "",
            known_issue: str = "") -> None:
        out.append(_single(name, None, "", expect, pattern, args, target=rel,
                           known_issue=known_issue))

    add("age_nan", ("--age", "nan", "--sex", "F"), REFUSED, r"age_xray = nan is not a finite")
    add("age_inf", ("--age", "inf", "--sex", "F"), REFUSED, r"age_xray = inf is not a finite")
    add("age_negative", ("--age=-5", "--sex", "F"), REFUSED, r"age_xray = -5 is negative")
    add("age_200", ("--age", "200", "--sex", "F"), REFUSED,
        r"age_xray = 200 is outside .*implausible")
    add("age_child", ("--age", "10", "--sex", "F"), REFUSED, r"adults")
    add("height_metres", BASE + ("--height-cm", "1.7"), REFUSED, r"height_cm = 1\.7 .*metres")
    add("weight_grams", BASE + ("--weight-kg", "70000"), REFUSED, r"weight_kg = 70000 .*grams")
    add("weight_pounds", BASE + ("--weight-kg", "300"), REFUSED, r"pounds")
    add("bmi_mismatch", BASE + ("--height-cm", "170", "--weight-kg", "70", "--bmi", "30"),
        REFUSED, r"bmi = 30 does not match")
    add("activity_0_100", BASE + ("--activity", "55"), REFUSED, r"0-100 score")
    add("alcohol_absurd", BASE + ("--alcohol", "5000"), REFUSED, r"alcohol_units_week = 5000")
    add("sex_x", ("--age", "70", "--sex", "X"), REFUSED, r"sex = 'X' is not an accepted value")
    add("sex_female_word", ("--age", "70", "--sex", "female"), PROCESSED)
    add("bmi_derived", BASE + ("--height-cm", "170", "--weight-kg", "70"), WARNED,
        r"bmi derived from height and weight: 24\.2")
    add("no_sex", ("--age", "70"), REFUSED, r"sex is required")
    add("age_text", ("--age", "abc", "--sex", "F"), REFUSED, r"'--age'.*valid number")
    add("smoking_typo", BASE + ("--smoking", "sometimes"), REFUSED,
        r"'--smoking'.*'sometimes' is not one of 'never', 'former', 'current'")
    add("threads_zero", BASE + ("--threads", "0"), REFUSED,
        r"'--threads'.*greater than or equal to 1")
    add("select_and_side", BASE + ("--select", "right"), PROCESSED)  # the toy hip is a right hip
    out[0] = (out[0][0], data)  # the shared image travels with the first case
    return out


def _manifest(rows: list[list[str]], header: tuple[str, ...] = ("image", "age_xray", "sex")
              ) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def batch_cases() -> list[tuple[CorpusCase, dict[str, bytes]]]:
    img = png(u8(hip_like()))
    out: list[tuple[CorpusCase, dict[str, bytes]]] = []

    def add(name: str, files: dict[str, bytes], expect: str, pattern: str = "",
            n_ok: int | None = None, n_failed: int | None = None, args: tuple[str, ...] = (),
            code: int | None = None, target: str = "manifest.csv", note: str = "",
            folder: str | None = None) -> None:
        folder = folder or name
        rel = {f"batch/{folder}/{k}": v for k, v in files.items()}
        code = code if code is not None else (2 if expect == REFUSED else 0)
        out.append((CorpusCase(name, "batch", f"batch/{folder}/{target}".rstrip("/"), args,
                               expect, pattern, code, n_ok, n_failed, note), rel))

    two = {"a.png": img, "b.png": img}
    ok_rows = [["a.png", "70", "F"], ["b.png", "66", "M"]]
    add("man_no_image_column", {**two, "manifest.csv": _manifest(ok_rows, ("file", "age", "sex"))},
        REFUSED, r"required column 'image' is missing")
    add("man_repeated_column", {**two, "manifest.csv": _manifest(
        [r + ["F"] for r in ok_rows], ("image", "age_xray", "sex", "sex"))},
        REFUSED, r"repeats column\(s\) sex")
    add("man_empty", {"manifest.csv": b""}, REFUSED, r"is empty; expected a header")
    add("man_latin1", {**two, "manifest.csv": _manifest(ok_rows) + "c.png,70,F,José\n"
                       .encode("latin-1")}, REFUSED, r"line 4 is not valid UTF-8 \(byte 0xe9\)")
    add("man_duplicate_image", {**two, "manifest.csv": _manifest(ok_rows + [["a.png", "71", "F"]])},
        PROCESSED, r"listed twice \(first on line 2\)", 2, 1)
    add("man_duplicate_patient", {**two, "manifest.csv": _manifest(
        [r + ["P1"] for r in ok_rows], ("image", "age_xray", "sex", "patient_id"))},
        PROCESSED, "", 2, 0, note="several images of one patient are allowed")
    add("man_parent_escape", {**two, "manifest.csv": _manifest(
        ok_rows + [["../../../../../../etc/passwd", "70", "F"]])}, PROCESSED,
        r"resolves outside the manifest's folder", 2, 1)
    add("man_absolute", {**two, "manifest.csv": _manifest(ok_rows + [["/etc/passwd", "70", "F"]])},
        PROCESSED, r"is an absolute path", 2, 1)
    add("man_windows_absolute", {**two, "manifest.csv": _manifest(
        ok_rows + [["C:\\Windows\\x.png", "70", "F"]])}, PROCESSED, r"is an absolute path", 2, 1)
    add("man_symlink_out", {**two, "manifest.csv": _manifest(ok_rows + [["link.png", "70", "F"]]),
                            "@link.png": b"../../outside/secret.png"},
        PROCESSED, r"resolves outside the manifest's folder", 2, 1,
        note="symlink to a file outside the folder")
    add("man_bad_cells", {**two, "c.png": img, "d.png": img, "manifest.csv": _manifest(
        ok_rows + [["c.png", "200", "F"], ["d.png", "70", "X"], ["e.png", "70"],
                   ["missing.png", "70", "F"]])}, PROCESSED,
        r"age_xray = 200|sex = 'X'|row has 2 cells|not found", 2, 4)
    add("man_corrupt_image", {**two, "bad.png": b"", "txt.png": b"hello",
                              "manifest.csv": _manifest(ok_rows + [["bad.png", "70", "F"],
                                                                   ["txt.png", "70", "F"]])},
        PROCESSED, r"empty \(0 bytes\)|text file", 2, 2)
    add("folder_mixed", {"a.png": img, "b.jpg": jpeg(u8(hip_like())), "c.tif": tiff(u8(hip_like())),
                         "zero.png": b"", "note.png": b"not an image", "doc.dcm": b"%PDF-1.4"},
        PROCESSED, r"empty|text file|PDF", 3, 3, args=BASE, target="")
    add("folder_no_images", {"readme.txt": b"nothing here"}, REFUSED, r"holds no image files",
        args=BASE, target="")
    add("out_is_folder", {**two, "manifest.csv": _manifest(ok_rows)}, REFUSED,
        r"is a folder; give a file name", args=("--out", "{tmp}"))

    # 1,000 rows, 10 of them bad in ten different ways; good rows are distinct files.
    files: dict[str, bytes] = {f"img/{i:04d}.png": img for i in range(990)}
    files.update({"img/zero.png": b"", "img/text.png": b"a,b\n"})
    files.update({f"img/b{k}.png": img for k in range(4)})  # good files, bad rows
    rows = [[f"img/{i:04d}.png", str(60 + i % 30), "FM"[i % 2]] for i in range(990)]
    bad = [["img/zero.png", "70", "F"], ["img/text.png", "70", "F"],
           ["img/0001.png", "70", "F"],            # listed twice
           ["img/missing.png", "70", "F"], ["../escape.png", "70", "F"], ["/etc/passwd", "70", "F"],
           ["img/b0.png", "200", "F"], ["img/b1.png", "70", "X"],
           ["img/b2.png", "7o", "F"], ["img/b3.png", "70"]]
    for k, b in enumerate(bad):  # spread the bad rows through the file
        rows.insert(100 * k + 50, b)
    big = _manifest(rows)
    files["manifest.csv"] = big
    add("man_1000_rows", files, PROCESSED, r".", 990, 10, note="10 bad rows in 1,000")
    add("man_1000_rows_strict", {}, PROCESSED, r".", 990, 10, args=("--strict",), code=1,
        folder="man_1000_rows", note="--strict: same run, exit 1")
    return out


# --- hostile inputs (issue #12): empty/repeated values, bombs, one-line output, PHI ------------


class Sparse(bytes):
    """File content followed by a hole up to `size` bytes: a sparse file, no disk used."""

    size: int = 0


def sparse(head: bytes, size: int) -> Sparse:
    out = Sparse(head)
    out.size = size
    return out


FIFO = b"\x00<fifo>"  # file content marker: make a named pipe instead of a file


def _zero_unit(block: int = 1 << 20) -> bytes:
    """`block` zero bytes as raw deflate, ending in a full flush (byte-aligned, state reset)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(b"\0" * block) + c.flush(zlib.Z_FULL_FLUSH)


def deflate_raw(parts: list[bytes | int]) -> bytes:
    """Raw deflate of `parts` in order; an int stands for that many zero bytes, written as a
    pre-compressed 1 MiB block repeated (so 1 GiB of zeros costs one 1 MiB compression)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit, out = _zero_unit(), []
    for part in parts:
        if isinstance(part, int):
            reps, rest = divmod(part, 1 << 20)
            out.append(c.flush(zlib.Z_FULL_FLUSH))  # reset: the units follow a clean state
            out.append(unit * reps)
            out.append(c.compress(b"\0" * rest))
        else:
            out.append(c.compress(part))
    out.append(c.flush())
    return b"".join(out)


def zlib_zeros(n: int) -> bytes:
    """A zlib stream of n zero bytes (header + raw deflate + Adler-32 of n zeros)."""
    adler = ((n % 65521) << 16) | 1  # Adler-32 of zeros: A stays 1, B counts the bytes
    return b"\x78\xda" + deflate_raw([n]) + struct.pack(">I", adler)


def png_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(k, b) for k, b in chunks)


def png_parts(data: bytes) -> tuple[bytes, bytes]:
    """(IHDR body, inflated image data) of a PNG made by `png`."""
    pos, ihdr, idat = 8, b"", b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        ihdr = body if kind == b"IHDR" else ihdr
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    return ihdr, zlib.decompress(idat)


def png_rgba16_bomb(side: int) -> bytes:
    """A valid side×side RGBA 16-bit PNG of zeros: 8 bytes a pixel decoded, ~1 KB a megabyte."""
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return png_with([(b"IHDR", ihdr), (b"IDAT", zlib_zeros(side * (1 + side * 8))),
                     (b"IEND", b"")])


def tiff_rgba16_bomb(side: int) -> bytes:
    """A side×side RGBA 16-bit TIFF, one deflate-compressed strip of zeros."""
    data = zlib_zeros(side * side * 8)
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 4, 146), (259, 3, 1, 8),
               (262, 3, 1, 2), (273, 4, 1, 154), (277, 3, 1, 4), (278, 4, 1, side),
               (279, 4, 1, len(data)), (284, 3, 1, 1), (338, 3, 1, 2)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, typ, count, value) if typ == 4 or count > 1
        else struct.pack("<HHIHH", tag, typ, count, value, 0)
        for tag, typ, count, value in entries) + struct.pack("<I", 0)
    head = b"II*\x00" + struct.pack("<I", 8) + ifd
    assert len(head) == 146
    return head + struct.pack("<4H", 16, 16, 16, 16) + data


def j2k_claiming(side: int) -> bytes:
    """A JPEG 2000 codestream header claiming side×side 8-bit grey, then nothing useful."""
    siz = struct.pack(">HHIIIIIIIIHBBB", 41, 0, side, side, 0, 0, side, side, 0, 0, 1, 7, 1, 1)
    cod = struct.pack(">HBBHBBBBBB", 12, 0, 0, 1, 0, 5, 4, 4, 0, 0)
    qcd = struct.pack(">HB", 4, 0x40) + b"\x48"
    return (b"\xff\x4f\xff\x51" + siz + b"\xff\x52" + cod + b"\xff\x5c" + qcd
            + b"\xff\x90" + struct.pack(">HHIBB", 10, 0, 0, 0, 1) + b"\xff\x93" + b"\x00" * 64
            + b"\xff\xd9")


def dicom_deflate_bomb(inflated: int) -> bytes:
    """A Deflated Explicit VR Little Endian DICOM (~1 KB per inflated MB) whose dataset holds
    a private OB element of `inflated` zero bytes before a valid small image."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    base = pydicom.dcmread(io.BytesIO(dicom(u8(hip_like()), PatientAge="070Y",
                                            PatientSex="F")), force=True)
    low, high = Dataset(), Dataset()
    for elem in base:
        (low if elem.tag.group <= 8 else high).add(elem)

    def encoded(ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds)
        return fp.getvalue()

    meta = FileMetaDataset()
    for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"):
        setattr(meta, k, getattr(base.file_meta, k))
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4) + b"BOMB"
    big = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, inflated)
    return (b"\0" * 128 + b"DICM" + fp.getvalue()
            + deflate_raw([encoded(low), creator + big, inflated, encoded(high)]))


def jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan (SOS marker to the next SOS or EOI) of a progressive JPEG."""
    starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xda"]
    ends = starts[1:] + [data.rfind(b"\xff\xd9")]
    return list(zip(starts, ends))


def hostile_cases() -> list[tuple[CorpusCase, dict[str, bytes]]]:
    """Issue #12, classes 2, 3, 7 and 8: each refused for its own reason, or processed silently."""
    from PIL import Image  # noqa: F401 - pil_bytes needs it

    g = hip_like()
    px8 = u8(g)
    ok = {"PatientAge": "070Y", "PatientSex": "F"}
    good_png, good_jpg = png(px8), jpeg(px8)
    prog = jpeg(u8(hip_like(256, 224)), progressive=True)
    (s0, s1) = jpeg_scans(prog)[1]
    ihdr, raw = png_parts(good_png)
    bad_filter = bytearray(raw)
    bad_filter[0] = 5  # row 0's filter type: only 0-4 exist
    crc = bytearray(png_with([(b"IHDR", ihdr), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")]))
    at = crc.find(b"IDAT")
    crc[at + 4 + struct.unpack(">I", crc[at - 4:at])[0]] ^= 0xFF
    sos = good_jpg.find(b"\xff\xda")
    mid = (sos + good_jpg.rfind(b"\xff\xd9")) // 2  # inside the entropy-coded data
    out: list[tuple[CorpusCase, dict[str, bytes]]] = []

    def add(group: str, name: str, data: bytes | None, suffix: str, expect: str,
            pattern: str = "", args: tuple[str, ...] = BASE, note: str = "",
            target: str | None = None) -> None:
        case, files = _single(name, data, suffix, expect, pattern, args, note, target=target)
        out.append((CorpusCase(**{**asdict(case), "args": case.args, "group": group}), files))

    # 2. Empty or repeated values: an explicit empty value is an error, never "missing".
    e = "empty-repeated"
    add(e, "sex_empty", good_png, ".png", REFUSED, r"--sex has an empty value",
        ("--age", "70", "--sex", ""), note="--sex \"$SEX\" with SEX unset")
    add(e, "sex_blank", good_png, ".png", REFUSED, r"--sex has a blank value '  '",
        ("--age", "70", "--sex", "  "))
    add(e, "age_empty", good_png, ".png", REFUSED, r"--age has an empty value",
        ("--age", "", "--sex", "F"))
    add(e, "smoking_empty", good_png, ".png", REFUSED, r"--smoking has an empty value",
        BASE + ("--smoking", ""))
    add(e, "report_empty", good_png, ".png", REFUSED, r"--report has an empty value",
        BASE + ("--report", ""))
    add(e, "image_empty", None, "", REFUSED, r"IMAGE has an empty value", BASE, target="=")
    add(e, "sex_repeated", good_png, ".png", REFUSED, r"--sex is given more than once",
        ("--age", "70", "--sex", "F", "--sex", "M"), note="click keeps the last silently")
    add(e, "age_repeated", good_png, ".png", REFUSED, r"--age is given more than once",
        ("--age", "70", "--age", "71", "--sex", "F"))
    add(e, "side_repeated", good_png, ".png", REFUSED, r"--side is given more than once",
        BASE + ("--side", "left", "--side", "right"))
    add(e, "flag_repeated", good_png, ".png", REFUSED, r"--force is given more than once",
        BASE + ("--force", "--force"))
    add(e, "dcm_sex_empty", dicom(px8, **ok), ".dcm", REFUSED, r"--sex has an empty value",
        ("--sex", ""), note="used to override the DICOM's PatientSex with 'missing'")

    # 3. Resource bombs: refused from headers and budgets, before the allocation.
    b = "bomb"
    add(b, "dcm_jpeg_claims_20000", dicom(px8, ts="1.2.840.10008.1.2.4.50", pixel_data=encaps(
        [jpeg_claiming(20_000, 20_000)]), **ok), ".dcm", REFUSED,
        r"compressed frame claims 20000×20000 px but its Rows/Columns say 56×64", (),
        note="1.3 KB; the decoder allocated 2.1 GB before the shape check")
    add(b, "dcm_jpeg_claims_60000", dicom(px8, ts="1.2.840.10008.1.2.4.50", pixel_data=encaps(
        [jpeg_claiming(60_000, 60_000)]), **ok), ".dcm", REFUSED,
        r"compressed frame claims 60000×60000 px", ())
    add(b, "dcm_j2k_claims_60000", dicom(px8, ts="1.2.840.10008.1.2.4.90", pixel_data=encaps(
        [j2k_claiming(60_000)]), **ok), ".dcm", REFUSED,
        r"compressed frame claims 60000×60000 px", ())
    add(b, "dcm_deflate_1gib", dicom_deflate_bomb(1 << 30), ".dcm", REFUSED,
        r"deflated data inflates to more than \d+ MB", (), note="1 MB file, 1 GiB inflated")
    add(b, "dcm_rgb16_9000", dicom(px8, Rows=9000, Columns=9000, SamplesPerPixel=3,
                                   BitsAllocated=16, BitsStored=16, HighBit=15,
                                   PhotometricInterpretation="RGB", PlanarConfiguration=0, **ok),
        ".dcm", REFUSED, r"DICOM image would decode to 486 MB", ())
    add(b, "png_rgba16_10000", png_rgba16_bomb(10_000), ".png", REFUSED,
        r"PNG image would decode to 800 MB \(10000×10000 px × 4 channels × 2 byte\)",
        note="778 KB; 81 MP passed the pixel guard")
    add(b, "tiff_rgba16_10000", tiff_rgba16_bomb(10_000), ".tif", REFUSED,
        r"TIFF image would decode to 800 MB")
    add(b, "file_3gb", sparse(good_png, 3_000_000_000), ".png", REFUSED,
        r"file is 3,000 MB, larger than the \d+ MB limit", note="sparse: read whole before")
    add(b, "dev_zero", None, ".png", REFUSED, r"/dev/zero is a character device, not an image",
        target="=/dev/zero", note="grew until killed")
    add(b, "fifo", FIFO, ".png", REFUSED, r"is a named pipe \(FIFO\), not an image",
        note="hung forever")
    add(b, "jpeg_repeated_scan", prog[:s1] + prog[s0:s1] + prog[s1:], ".jpg", REFUSED,
        r"JPEG data is corrupt \(Inconsistent progression sequence",
        note="decoded with a libjpeg warning to an osteoporotic BMD")
    add(b, "jpeg_cut_eoi", good_jpg[: len(good_jpg) * 6 // 10] + b"\xff\xd9", ".jpg", REFUSED,
        r"JPEG data is corrupt \(Corrupt JPEG data: premature end of data segment\)",
        note="cut short, end marker appended: used to decode grey")
    add(b, "dcm_jpeg_cut_eoi", dicom(px8, ts="1.2.840.10008.1.2.4.50", pixel_data=encaps(
        [good_jpg[: len(good_jpg) * 6 // 10] + b"\xff\xd9"]), **ok), ".dcm", REFUSED,
        r"DICOM frame: JPEG data is corrupt \(Corrupt JPEG data: premature end", (),
        note="the DICOM JPEG plugin decoded it grey")
    add(b, "jpeg_stray_sof", good_jpg[:mid] + b"\xff\xc0" + good_jpg[mid:], ".jpg", REFUSED,
        r"JPEG data is corrupt \(Invalid JPEG file structure: two SOF markers\)",
        note="a frame header inside the image data")
    add(b, "png_overlong_idat", png_with([(b"IHDR", ihdr), (b"IDAT", zlib.compress(
        raw + b"\0" * 100_000)), (b"IEND", b"")]), ".png", REFUSED,
        r"image data is longer than its header's size says", note="libpng: Too much image data")

    # 7. One line means one line: native messages captured, controls escaped, values cut.
    o = "one-line"
    add(o, "png_bad_filter", png_with([(b"IHDR", ihdr), (b"IDAT", zlib.compress(
        bytes(bad_filter))), (b"IEND", b"")]), ".png", REFUSED,
        r"PNG is corrupt \(row 0 has filter type 5; valid 0-4\)",
        note="libpng printed 'bad adaptive filter value' first")
    add(o, "png_crc_error", bytes(crc), ".png", REFUSED, r"CRC error in its IDAT chunk")
    add(o, "png_bad_iccp", png_with([(b"IHDR", ihdr), (b"iCCP", b"icc\0\0" + zlib.compress(
        b"not a profile")), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")]), ".png", PROCESSED,
        note="libpng warned 'iCCP: too short' on stderr")
    add(o, "png_bad_ztxt", png_with([(b"IHDR", ihdr), (b"zTXt", b"c\0\0garbage"),
                                     (b"IDAT", zlib.compress(raw)), (b"IEND", b"")]), ".png",
        PROCESSED, note="libpng warned 'zTXt: too short'")
    add(o, "path_newline", b"patient list\n", ".png", REFUSED,
        r"new\\x0aline\.png: looks like a text file", target="single/new\nline.png")
    add(o, "path_ansi", b"patient list\n", ".png", REFUSED,
        r"\\x1b\[31mred\.png: looks like a text file", target="single/\x1b[31mred.png",
        note="a terminal escape in a file name")
    add(o, "long_sex_value", good_png, ".png", REFUSED,
        r"--sex has a value of 100,000 characters", ("--age", "70", "--sex", "F" * 100_000))
    add(o, "long_smoking_value", good_png, ".png", REFUSED,
        r"--smoking has a value of 100,000 characters", BASE + ("--smoking", "x" * 100_000))
    add(o, "long_path", None, "", REFUSED, r"IMAGE has a value of 100,000 characters",
        target="=" + "d/" * 50_000)

    # 8. PHI by arithmetic: ages derived from tags are whole years.
    f = "phi"
    born = {"PatientBirthDate": "19520314", "StudyDate": "20260601", "PatientSex": "F"}
    add(f, "dcm_birth_date_conflict", dicom(px8, **born), ".dcm", WARNED,
        r"age 60 given differs from the image's DICOM age 74; using 60$", ("--age", "60"),
        note="used to print 74.2149..., the birth date to within days")
    add(f, "dcm_birth_date_only", dicom(px8, **born), ".dcm", PROCESSED, "", (),
        note="inputs.age_xray must be 74, not 74.2")
    add(f, "dcm_age_months", dicom(px8, PatientAge="899M", PatientSex="F"), ".dcm", WARNED,
        r"DICOM age 74; using 60$", ("--age", "60"), note="74 years 11 months")
    add(f, "dcm_age_weeks", dicom(px8, PatientAge="999W", PatientSex="F"), ".dcm", WARNED,
        r"DICOM age 19; using 60$", ("--age", "60"))
    return out


def encaps(frames: list[bytes]) -> bytes:
    from pydicom.encaps import encapsulate

    return encapsulate(frames)


def all_cases() -> list[tuple[CorpusCase, dict[str, bytes]]]:
    return image_cases() + dicom_cases() + metadata_cases() + batch_cases() + hostile_cases()


def write_corpus(out: str | Path, pairs: list[tuple[CorpusCase, dict[str, bytes]]] | None = None
                 ) -> list[CorpusCase]:
    """Write every corpus file under `out` and `out/expected.csv`; return the cases.

    `pairs` (from `all_cases()`) saves generating the bytes twice when the caller has them.
    """
    import os

    out = Path(out)
    cases: list[CorpusCase] = []
    for case, files in pairs if pairs is not None else all_cases():
        for rel, data in files.items():
            name = Path(rel)
            if name.name.startswith("@"):  # a symlink: the content is its target
                link = out / name.with_name(name.name[1:])
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    os.symlink(data.decode(), link)
                target = (link.parent / data.decode()).resolve()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(png(u8(hip_like())))  # a real image, just out of bounds
                continue
            p = out / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if data == FIFO:
                if not p.exists():
                    os.mkfifo(p)
                continue
            p.write_bytes(data)
            if isinstance(data, Sparse):
                with open(p, "r+b") as fh:
                    fh.truncate(data.size)
        if not case.target.startswith("="):
            (out / case.target).parent.mkdir(parents=True, exist_ok=True)
        cases.append(case)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    with open(out / "expected.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(asdict(cases[0])))
        w.writeheader()
        for c in cases:
            row = asdict(c)
            row["args"] = json.dumps(list(c.args))
            w.writerow(row)
    return cases


def read_expected(path: str | Path) -> list[CorpusCase]:
    """The cases back from expected.csv (what a test or another tool reads)."""
    def opt(x: str) -> int | None:
        return int(x) if x else None

    with open(path, newline="", encoding="utf-8") as fh:
        return [CorpusCase(r["name"], r["mode"], r["target"], tuple(json.loads(r["args"])),
                           r["expect"], r["pattern"], int(r["exit_code"]), opt(r["n_ok"]),
                           opt(r["n_failed"]), r["note"], r["known_issue"], r.get("group", ""))
                for r in csv.DictReader(fh)]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_bad_inputs.py OUT_DIR")
    made = write_corpus(sys.argv[1])
    kinds = {k: sum(c.expect == k for c in made) for k in (REFUSED, PROCESSED, WARNED)}
    print(f"{len(made)} cases written to {sys.argv[1]} ({kinds})")
