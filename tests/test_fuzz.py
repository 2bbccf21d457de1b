"""Property-based fuzzing: hostile bytes, tags, fields and CSV text raise only bmd-edge errors.

The promise under test: whatever a user hands the readers, the outcome is either a valid result
or one of `bmd_edge.errors` (which the CLI turns into one line) — never a numpy/cv2/pydicom
exception, never a hang, never NaN pixels. Profiles (selected with $HYPOTHESIS_PROFILE):
- "ci" (default): 200 examples per test, no deadline (2 shared cores);
- "long": $FUZZ_LONG_EXAMPLES (default 5000) per test, used by benchmarks/fuzz_long.py.
The profile is applied per test (`settings(parent=...)`), so other modules keep their settings.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bmd_edge.errors import BmdEdgeError, ManifestError, MetadataError
from corpus.make_bad_inputs import dicom, hip_like, jpeg, png, tiff, u8, u16

# building hostile DICOMs makes pydicom warn about the values we chose on purpose
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_HC = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=_HC,
                          print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("FUZZ_LONG_EXAMPLES", "5000")),
                          deadline=None, suppress_health_check=_HC, print_blob=True)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci")
                               if os.environ.get("HYPOTHESIS_PROFILE") in ("ci", "long") else "ci")


def fuzz(**kw: object):  # noqa: ANN201 - a decorator
    """`settings` from the active profile (plus overrides) for one test."""
    return settings(PROFILE, **kw)


def _one_line(err: BaseException) -> None:
    msg = str(err)
    assert msg and "\n" not in msg, f"error message must be one line: {msg!r}"


# Bugs this file found (all fixed; each keeps a regression test at the end of the file):
# image_io._tiff_header OverflowError on a BigTIFF offset >= 2**63; dicom_io._pixels ValueError
# on PALETTE COLOR without a LUT, and a 3-D array from frame-less multi-frame pixel data;
# dicom_io.decode_dicom NotImplementedError from a lazily read corrupt VR. No bug is tolerated.


def check_decode(data: bytes) -> None:
    """The reader's contract on any bytes: a valid Radiograph or a one-line bmd-edge error."""
    from bmd_edge.image_io import MIN_SIDE, decode_image_bytes

    try:
        r = decode_image_bytes(data, "fuzz")
    except BmdEdgeError as err:
        _one_line(err)
        return
    px = r.pixels
    assert px.dtype == np.float32 and px.ndim == 2 and min(px.shape) >= MIN_SIDE
    assert np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0
    assert all(isinstance(w, str) and "\n" not in w for w in r.warnings)


# --- seeds: small valid files of every format the reader accepts ------------------------------

_G = hip_like(40, 36)
SEEDS: dict[str, bytes] = {
    "png8": png(u8(_G)),
    "png16": png(u16(_G)),
    "png_rgba": png(np.dstack([u8(_G)] * 3 + [np.full(_G.shape, 200, np.uint8)])),
    "jpeg": jpeg(u8(_G)),
    "jpeg_prog": jpeg(u8(_G), progressive=True),
    "tiff16": tiff(u16(_G)),
    "tiff_float": tiff(_G.astype(np.float32)),
    "dcm8": dicom(u8(_G), PatientAge="070Y", PatientSex="F"),
    "dcm12_window": dicom(np.round(_G * 4095).astype(np.uint16), bits=12, WindowCenter=2000,
                          WindowWidth=3000),
    "dcm_mono1": dicom(u8(_G), photometric="MONOCHROME1"),
    "dcm_raw": dicom(u8(_G), preamble=False),
}


def test_seeds_decode() -> None:
    """Every seed is a valid file (so mutations start from the real parsers' happy path)."""
    from bmd_edge.image_io import decode_image_bytes

    for name, data in SEEDS.items():
        assert decode_image_bytes(data, name).pixels.shape == (40, 36), name


@fuzz()
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\x89PNG\r\n\x1a\n")
@example(b"\xff\xd8\xff")
@example(b"II*\x00")
@example(b"\0" * 128 + b"DICM")
def test_random_bytes(data: bytes) -> None:
    check_decode(data)


MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"II+\x00",
          b"\0" * 128 + b"DICM", b"\x08\x00\x05\x00CS", b"\x02\x00\x00\x00UL"]


@fuzz()
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_magic_then_garbage(magic: bytes, tail: bytes) -> None:
    check_decode(magic + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid seed with 1-4 edits: byte flips, overwrites, cuts, inserts, duplicated slices."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "dup", "int"]))
        n = len(data)
        if n == 0:
            break
        i = draw(st.integers(0, n - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i:i + 4] = draw(st.binary(min_size=1, max_size=4))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 64))]
        elif op == "dup":
            data[i:i] = data[i:i + draw(st.integers(1, 256))]
        else:  # a header-sized integer written big- or little-endian: sizes, offsets, lengths
            value = draw(st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 100_000]))
            data[i:i + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
    return bytes(data)


@fuzz()
@given(mutated())
def test_mutated_valid_files(data: bytes) -> None:
    check_decode(data)


# --- DICOM: random values in the tags that steer the pixel pipeline ---------------------------

_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.sampled_from([0.0, -1.0, 1e-30, 1e30, 4096.0]))


@st.composite
def dicom_tags(draw: st.DrawFn) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("f.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    rows, cols = draw(st.integers(0, 80)), draw(st.integers(0, 80))
    spp = draw(st.sampled_from([1, 3, 4, 0]))
    alloc = draw(st.sampled_from([1, 8, 16, 32, 12]))
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = rows, cols, spp, alloc
    ds.BitsStored = draw(st.integers(1, 33))
    ds.HighBit = max(0, min(int(ds.BitsStored) - 1, 65535))
    ds.PixelRepresentation = draw(st.sampled_from([0, 1]))
    ds.PhotometricInterpretation = draw(st.one_of(
        st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422",
                         "PALETTE COLOR", "HSV", ""]),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_ 0123456789", max_size=16)))
    if spp == 3:
        ds.PlanarConfiguration = draw(st.sampled_from([0, 1]))
    if draw(st.booleans()):
        ds.RescaleSlope = draw(_FLOATS)
        ds.RescaleIntercept = draw(_FLOATS)
    if draw(st.booleans()):
        ds.WindowCenter = draw(_FLOATS)
        ds.WindowWidth = draw(_FLOATS)
        if draw(st.booleans()):
            ds.VOILUTFunction = draw(st.sampled_from(["LINEAR", "SIGMOID", "LINEAR_EXACT", "X"]))
    if draw(st.booleans()):
        ds.NumberOfFrames = draw(st.integers(0, 3))
    if draw(st.booleans()):
        ds.PixelSpacing = [draw(_FLOATS), draw(_FLOATS)]
    if draw(st.booleans()):
        ds.PatientAge = draw(st.text(max_size=6))
    expected = rows * cols * max(spp, 1) * max(alloc, 8) // 8
    size = draw(st.sampled_from([expected, expected + 1, max(expected - 1, 0), 0, 7]))
    ds.PixelData = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=False, implicit_vr=False, little_endian=True)
    except (ValueError, TypeError, OverflowError, struct_error()):
        assume(False)  # pydicom cannot even write it: not a file anyone will hand us
    return buf.getvalue()


def struct_error() -> type[Exception]:
    import struct

    return struct.error


@fuzz(max_examples=max(1, PROFILE.max_examples // 2))  # ~0.1 s each: half the budget
@given(dicom_tags())
def test_dicom_tag_values(data: bytes) -> None:
    check_decode(data)


# --- clinical metadata -------------------------------------------------------------------------

_KEYS = st.one_of(st.sampled_from(["age_xray", "age_bmd", "sex", "height_cm", "weight_kg", "bmi",
                                   "alcohol_units_week", "activity_score", "diet_score",
                                   "smoking", "age", "height", "weight", "alcohol", "Age ",
                                   "SEX"]),
                  st.text(max_size=8))
_VALUES = st.one_of(st.none(), st.floats(), st.integers(-10**20, 10**20), st.booleans(),
                    st.text(max_size=12), st.sampled_from(["F", "m", "female", "never", "ex",
                                                           " 70 ", "7,5", "1e3", "nan", "-0"]),
                    st.lists(st.integers(), max_size=2), st.just(np.float32(70)))


@fuzz()
@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_parse_record(raw: dict) -> None:
    from bmd_edge.schema import FIELDS_BY_NAME, encode, parse_record

    try:
        rec = parse_record(raw)
    except MetadataError as err:
        _one_line(err)
        return
    for name, value in rec.values.items():
        f = FIELDS_BY_NAME[name]
        if value is None:
            continue
        if f.kind == "categorical":
            assert value in f.choices
        else:
            assert isinstance(value, float) and f.low <= value <= f.high
    values, present = encode(rec)
    assert np.isfinite(values).all() and set(np.unique(present)) <= {0.0, 1.0}
    assert np.all(values[present == 0] == 0)


# --- manifests -------------------------------------------------------------------------------

_CELLS = st.one_of(st.sampled_from(["a.png", "../x.png", "/etc/passwd", "C:\\x.png", "", "70",
                                    "F", "X", "nan", "1e309", "0.85", "left", "train", "\"",
                                    "a,b", "a\nb", "\x00", "é"]),
                   st.text(max_size=10))
_HEADERS = st.lists(st.sampled_from(["image", "age_xray", "sex", "fn_bmd", "side", "select",
                                     "split", "patient_id", "weight_kg", "bmi", "IMAGE ", "",
                                     "junk"]), min_size=0, max_size=6)


@st.composite
def manifest_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:  # sometimes: raw bytes, any encoding
        return draw(st.binary(max_size=512))
    header = draw(_HEADERS)
    rows = draw(st.lists(st.lists(_CELLS, min_size=0, max_size=len(header) + 1), max_size=6))
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    w.writerow(header)
    w.writerows(rows)
    text = buf.getvalue()
    if draw(st.booleans()):  # break the quoting on purpose
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(['"', '\x00', '\ufeff', '"\n"'])) + text[i:]
    return text.encode("utf-8")


@fuzz()
@given(manifest_bytes(), st.booleans())
def test_read_manifest(data: bytes, require_label: bool) -> None:
    from bmd_edge.manifest import read_manifest

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "a.png").write_bytes(SEEDS["png8"])
        path = Path(d) / "m.csv"
        path.write_bytes(data)
        try:
            man = read_manifest(path, require_label=require_label)
        except ManifestError as err:
            _one_line(err)
            return
        for p in man.problems:
            assert p.line >= 1 and "\n" not in p.message
        for c in man.cases:
            assert c.image.is_relative_to(Path(d).resolve()) and c.image.is_file()
            assert c.fn_bmd is None or 0.2 <= c.fn_bmd <= 2.0
            assert not require_label or c.fn_bmd is not None


# --- preprocessing on arbitrary arrays ----------------------------------------------------------


@fuzz()
@given(st.integers(1, 70), st.integers(1, 70), st.sampled_from(["letterbox", "stretch",
                                                              "center-crop"]),
       st.sampled_from([None, "left", "right"]), st.sampled_from([None, "left", "right"]),
       st.sampled_from(["uniform", "const", "nan", "huge", "int16"]), st.integers(0, 2**16))
def test_preprocess_arbitrary_arrays(h: int, w: int, resize: str, side: str | None,
                                     select: str | None, kind: str, seed: int) -> None:
    from bmd_edge.errors import InputError
    from bmd_edge.preprocess import PreprocessSpec, preprocess

    rng = np.random.default_rng(seed)
    px = {"uniform": lambda: rng.random((h, w)), "const": lambda: np.full((h, w), 0.3),
          "nan": lambda: np.where(rng.random((h, w)) < 0.1, np.nan, rng.random((h, w))),
          "huge": lambda: rng.random((h, w)) * 1e38,
          "int16": lambda: rng.integers(-2**15, 2**15, (h, w)).astype(np.int16)}[kind]()
    spec = PreprocessSpec(size=16, resize=resize)
    try:
        out = preprocess(px, spec, side=side, select=select)
    except InputError as err:
        _one_line(err)
        return
    assert out.shape == (1, 16, 16) and out.dtype == np.float32
    assert np.isfinite(out).all()
    lo, hi = (0 - spec.mean) / spec.std, (1 - spec.mean) / spec.std
    assert out.min() >= lo - 1e-5 and out.max() <= hi + 1e-5
    assert not math.isnan(float(out.sum()))


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_truncation_point_of_a_seed_is_handled(name: str) -> None:
    """Exhaustive, not random: every 97th cut of every seed (a download cut off anywhere)."""
    data = SEEDS[name]
    for cut in range(0, len(data), 97):
        check_decode(data[:cut])


# --- regression tests for the bugs this file found (fixed) -------------------------------------


def _pixels_dicom(**kw: object) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("f.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    for k, v in kw.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def _refused(data: bytes, pattern: str) -> str:
    """The decoder must refuse `data` with a one-line ImageReadError matching `pattern`."""
    from bmd_edge.errors import ImageReadError
    from bmd_edge.image_io import decode_image_bytes

    with pytest.raises(ImageReadError, match=pattern) as info:
        decode_image_bytes(data, "regress")
    _one_line(info.value)
    return str(info.value)


def test_bigtiff_huge_ifd_offset_is_an_image_error() -> None:
    """Was OverflowError from struct.unpack_from (offset >= 2**63)."""
    _refused(b"II+\x00" + b"\x00" * 4 + (2**63).to_bytes(8, "little"),
             r"regress: TIFF is truncated or corrupt")


def test_palette_without_lut_is_an_image_error() -> None:
    """Was pydicom's ValueError from apply_color_lut."""
    _refused(_pixels_dicom(PhotometricInterpretation="PALETTE COLOR", BitsAllocated=8,
                           BitsStored=8, HighBit=7, PixelData=bytes(32 * 32)),
             r"PALETTE COLOR but its colour palette .* is missing or invalid")


def test_frameless_multiframe_bytes_are_refused() -> None:
    """1-bit 32×32 pixels in 1024 bytes = 8 frames, no NumberOfFrames: was an 8×32×32 array."""
    _refused(_pixels_dicom(PhotometricInterpretation="MONOCHROME2", BitsAllocated=1,
                           BitsStored=1, HighBit=0, PixelData=bytes(1024)),
             r"decodes to a 8×32×32 array, not one 32×32 image .*NumberOfFrames is missing")


def test_frameless_multiframe_colour_bytes_are_refused() -> None:
    """The colour variant: 2 frames of 32×32×3 without NumberOfFrames was a 4-D array."""
    _refused(_pixels_dicom(PhotometricInterpretation="RGB", SamplesPerPixel=3,
                           PlanarConfiguration=0, BitsAllocated=8, BitsStored=8, HighBit=7,
                           PixelData=bytes(2 * 32 * 32 * 3)),
             r"decodes to a 2×32×32×3 array, not one 32×32 image")


def test_corrupt_vr_is_an_image_error() -> None:
    """Was NotImplementedError on pydicom's lazy first read of the element (after dcmread)."""
    seed = dicom(None, PatientAge="070Y")  # no pixel data: the SOP class tag is dropped
    data = seed.replace(b"\x08\x00\x16\x00UI", b"\x08\x00\x16\x00TI", 1)
    assert data != seed
    _refused(data, r"no pixel data \(SOP class unknown\)")


def test_corrupt_vr_in_a_pixel_tag_refuses_and_elsewhere_warns() -> None:
    """A corrupt element that defines the pixels refuses the file; an unused one is dropped."""
    from bmd_edge.image_io import decode_image_bytes

    seed = dicom(u8(hip_like(40, 36)), PatientAge="070Y", PatientSex="F")
    bits = b"\x28\x00\x01\x01US"  # (0028,0101) BitsStored
    assert seed.count(bits) == 1
    _refused(seed.replace(bits, b"\x28\x00\x01\x01TI"),
             r"DICOM element \(0028,0101\) is corrupt \(NotImplementedError\)")
    modality = b"\x08\x00\x60\x00CS"  # (0008,0060) Modality: never needed for the pixels
    assert seed.count(modality) == 1
    r = decode_image_bytes(seed.replace(modality, b"\x08\x00\x60\x00TI"), "regress")
    ref = decode_image_bytes(seed, "regress")
    assert np.array_equal(r.pixels, ref.pixels) and r.info.age_years == 70.0
    assert r.info.modality is None and ref.info.modality == "DX"
    assert r.warnings == ("DICOM element (0008,0060) is corrupt (NotImplementedError); ignored",)
