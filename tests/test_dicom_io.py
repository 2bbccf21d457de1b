"""dicom_io: photometric handling, LUTs and windows, decoders, tags, identifiers kept private."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import warnings
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, get_decoder

from bmd_edge.errors import ImageReadError, UnsupportedImageError
from bmd_edge.image_io import decode_image_bytes, read_image

LUMA = np.array([0.299, 0.587, 0.114])


def _raw(path: Path | str) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, written out by hand, output in [0, 1]."""
    c, w = center - 0.5, width - 1
    return np.clip((values - c) / w + 0.5, 0.0, 1.0)


def _years(born: date, seen: date) -> float:
    return round((seen - born).days / 365.25, 3)


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


# --- every real-world DICOM ---------------------------------------------------------------------

SHAPES = {  # (rows, cols) or None where the file must be refused
    "224_DDH_115.dcm": (224, 224),
    "331_DDH_115.dcm": (331, 331),
    "CT_small.dcm": (128, 128),
    "JPGExtended.dcm": (1024, 256),
    "MR2_J2KI.dcm": (1024, 1024),
    "MR_small.dcm": (64, 64),
    "MR_small_jp2klossless.dcm": (64, 64),
    "RG1_J2KI.dcm": (1955, 1841),
    "RG3_J2KR.dcm": (1760, 1760),
    "examples_palette.dcm": (350, 800),
    "examples_ybr_color.dcm": None,  # 30 frames: refused by rule (one radiograph = one frame)
    "vlut_04.dcm": (512, 512),
}


def test_every_realworld_dicom_is_listed(realworld_dir: Path) -> None:
    assert sorted(p.name for p in (realworld_dir / "dicom").glob("*.dcm")) == sorted(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_realworld_dicom_reads_or_is_refused(realworld_dir: Path, name: str) -> None:
    path = realworld_dir / "dicom" / name
    if SHAPES[name] is None:
        with pytest.raises(UnsupportedImageError, match="DICOM has 30 frames; expected a single"):
            read_image(path)
        return
    rad = read_image(path)
    assert rad.pixels.shape == SHAPES[name] and rad.pixels.dtype == np.float32
    assert 0.0 <= rad.pixels.min() < rad.pixels.max() <= 1.0
    assert rad.info.format == "dicom"


def test_rg1_monochrome1_windowed_and_inverted(realworld_dir: Path) -> None:
    path = realworld_dir / "dicom" / "RG1_J2KI.dcm"
    rad = read_image(path)
    expected = 1.0 - _linear_window(_raw(path).astype(np.float64), 15000, 30000)
    assert np.abs(rad.pixels - expected).max() < 1e-5
    p, (h, w) = rad.pixels, rad.pixels.shape
    mediastinum = p[h // 4:3 * h // 4, int(0.45 * w):int(0.55 * w)].mean()
    lungs = (p[h // 4:3 * h // 4, int(0.2 * w):int(0.35 * w)].mean()
             + p[h // 4:3 * h // 4, int(0.65 * w):int(0.8 * w)].mean()) / 2
    assert mediastinum > lungs + 0.1  # bone/soft tissue bright, air-filled lungs dark
    i = rad.info
    assert (i.pixel_spacing_mm, i.sex, i.view, i.modality) == (None, "F", "PA", "CR")  # 0\0
    assert i.age_years == int(_years(date(1940, 3, 5), date(2004, 8, 26))) == 64
    assert i.bits_stored == 15


def test_rg3_monochrome1_leg_brighter_than_air(realworld_dir: Path) -> None:
    rad = read_image(realworld_dir / "dicom" / "RG3_J2KR.dcm")
    p, (h, w) = rad.pixels, rad.pixels.shape
    band = slice(h // 4, 3 * h // 4)
    leg = p[band, int(0.45 * w):int(0.55 * w)].mean()
    air = (p[band, int(0.30 * w):int(0.35 * w)].mean()
           + p[band, int(0.65 * w):int(0.70 * w)].mean()) / 2
    assert leg > 0.4 and air < 0.25
    assert (rad.info.laterality, rad.info.view, rad.info.pixel_spacing_mm) == ("right", "AP", None)


def test_mr2_fractional_rescale_then_window(realworld_dir: Path) -> None:
    path = realworld_dir / "dicom" / "MR2_J2KI.dcm"
    rad = read_image(path)
    values = _raw(path) * 3.774114 + 0.000061
    assert np.abs(rad.pixels - _linear_window(values, 1000, 2000)).max() < 1e-5
    assert rad.info.pixel_spacing_mm == (0.195313, 0.195313)
    assert rad.info.age_years == int(_years(date(1950, 1, 12), date(2004, 8, 26)))


def test_ct_small_signed_rescale_over_stored_range(realworld_dir: Path) -> None:
    path = realworld_dir / "dicom" / "CT_small.dcm"
    raw = _raw(path)
    assert raw.dtype == np.int16  # signed storage
    rad = read_image(path)
    # HU = raw - 1024; no window, so the signed 16-bit range [-32768, 32767] (in HU) maps to [0, 1].
    expected = ((raw.astype(np.float64) - 1024) - (-32768 - 1024)) / 65535
    assert np.abs(rad.pixels - expected).max() < 1e-6
    assert rad.info.age_years == 0.0  # the file says "000Y"; the schema judges plausibility


def test_mr_small_window_and_lossless_j2k_copy(realworld_dir: Path) -> None:
    path = realworld_dir / "dicom" / "MR_small.dcm"
    rad = read_image(path)
    assert np.abs(rad.pixels - _linear_window(_raw(path).astype(float), 600, 1600)).max() < 1e-6
    j2k = read_image(realworld_dir / "dicom" / "MR_small_jp2klossless.dcm")
    assert np.array_equal(j2k.pixels, rad.pixels)


def test_vlut_04_uses_its_voi_lut(realworld_dir: Path) -> None:
    path = realworld_dir / "dicom" / "vlut_04.dcm"
    ds = pydicom.dcmread(path)
    item = ds.VOILUTSequence[0]
    entries, first, _ = item.LUTDescriptor
    lut = np.asarray(item.LUTData, dtype=np.float64)
    index = np.clip(ds.pixel_array.astype(np.int64) - first, 0, entries - 1)
    expected = (lut[index] - lut.min()) / (lut.max() - lut.min())
    rad = read_image(path)
    assert np.abs(rad.pixels - expected).max() < 1e-6
    # vlut_04's LUT happens to be linear; swap in a gamma curve to see it is really applied.
    gamma = np.rint(65535 * (np.arange(256) / 255) ** 2).astype(np.uint16)
    item.LUTData = [int(v) for v in gamma]
    rad = decode_image_bytes(_bytes(ds))
    assert np.abs(rad.pixels - (ds.pixel_array / 255.0) ** 2).max() < 1e-4


def test_jpeg_extended_12bit(realworld_dir: Path) -> None:
    path = realworld_dir / "dicom" / "JPGExtended.dcm"
    raw = _raw(path)  # decoded by pylibjpeg-libjpeg (Pillow cannot do 12-bit JPEG)
    assert raw.max() > 255  # really more than 8 bits of data
    rad = read_image(path)
    assert rad.info.bits_stored == 12
    assert np.abs(rad.pixels - raw / 4095.0).max() < 1e-6


def test_rgb_dicoms_match_their_source_jpegs(realworld_dir: Path) -> None:
    native = read_image(realworld_dir / "dicom" / "224_DDH_115.dcm").pixels
    assert np.abs(native - read_image(realworld_dir / "hip" / "224_DDH_115.jpg").pixels).max() <= 1 / 255
    j2k = read_image(realworld_dir / "dicom" / "331_DDH_115.dcm")
    diff = np.abs(j2k.pixels - read_image(realworld_dir / "hip" / "331_DDH_115.jpg").pixels)
    assert diff.mean() < 0.01 and diff.max() < 0.05  # lossy J2K of the same picture
    assert j2k.info.modality == "DX" and j2k.info.pixel_spacing_mm == (1.0, 1.0)


def test_palette_colour(realworld_dir: Path) -> None:
    path = realworld_dir / "dicom" / "examples_palette.dcm"
    ds = pydicom.dcmread(path)
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64) / 65535  # 16-bit LUT entries
    rad = read_image(path)
    assert "PALETTE COLOR converted to grayscale" in rad.warnings
    assert np.abs(rad.pixels - rgb @ LUMA).max() < 1e-5


# --- pydicom's bundled files and other writers --------------------------------------------------


def test_single_frame_ybr_converted_to_grey() -> None:
    path = get_testdata_file("SC_ybr_full_422_uncompressed.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    rgb = ds.pixel_array.astype(np.float64) / 255  # pydicom converts YBR → RGB
    rad = read_image(path)
    assert rad.warnings[0].startswith("RGB converted to grayscale")
    assert np.abs(rad.pixels - rgb @ LUMA).max() < 1e-5


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
             "MR_small_jpeg_ls_lossless.dcm"])
def test_other_encodings_of_mr_small_agree(name: str) -> None:
    reference = read_image(get_testdata_file("MR_small.dcm")).pixels
    assert np.array_equal(read_image(get_testdata_file(name)).pixels, reference)


def test_deflated_transfer_syntax() -> None:
    path = get_testdata_file("image_dfl.dcm")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == uid.DeflatedExplicitVRLittleEndian
    rad = read_image(path)
    assert rad.pixels.shape == (512, 512) and rad.pixels.max() > rad.pixels.min()


def test_dicom_without_preamble_or_file_meta() -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.preamble = None
    del ds.file_meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert buf.getvalue()[128:132] != b"DICM"
    rad = decode_image_bytes(buf.getvalue())
    assert np.array_equal(rad.pixels, read_image(get_testdata_file("MR_small.dcm")).pixels)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("MR_truncated.dcm", ImageReadError, "pixel data could not be decoded"),
        ("reportsi.dcm", ImageReadError, "no pixel data .*Basic Text SR Storage"),
        ("SC_rgb_rle_2frame.dcm", UnsupportedImageError, "2 frames"),
        ("SC_rgb_small_odd.dcm", ImageReadError, "3×3 px; need at least 32×32"),
    ],
)
def test_bundled_files_refused_clearly(name: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        read_image(get_testdata_file(name))


def test_truncated_and_oversized_dicom() -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    with pytest.raises(ImageReadError, match="DICOM"):
        decode_image_bytes(data[:1000])
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 30000  # header claims 900 MP; the guard must act before decoding
    with pytest.raises(ImageReadError, match="30000×30000 px"):
        decode_image_bytes(_bytes(ds))


def _img2dcm(tmp_path: Path, arr: np.ndarray) -> tuple[Path, Path]:
    exe = shutil.which("img2dcm")
    if exe is None:
        pytest.skip("DCMTK img2dcm not installed (apt-get install dcmtk)")
    jpg, dcm = tmp_path / "in.jpg", tmp_path / "out.dcm"
    assert cv2.imwrite(str(jpg), arr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    subprocess.run([exe, str(jpg), str(dcm)], check=True, capture_output=True, timeout=60)
    return jpg, dcm


def test_dcmtk_img2dcm_grey(tmp_path: Path) -> None:
    grey = (np.add.outer(np.arange(48), np.arange(64)) * 2).astype(np.uint8)
    jpg, dcm = _img2dcm(tmp_path, grey)
    assert pydicom.dcmread(dcm).file_meta.TransferSyntaxUID == uid.JPEGBaseline8Bit
    rad = read_image(dcm)
    assert rad.warnings == () and rad.info.modality is None  # img2dcm writes no Modality
    assert np.abs(rad.pixels - grey / 255).max() <= 3 / 255
    assert np.abs(rad.pixels - read_image(jpg).pixels).max() <= 2 / 255


def test_dcmtk_img2dcm_colour(tmp_path: Path) -> None:
    grey = (np.add.outer(np.arange(48), np.arange(64)) * 2).astype(np.uint8)
    jpg, dcm = _img2dcm(tmp_path, np.dstack([grey, 255 - grey, grey // 2]))
    assert pydicom.dcmread(dcm).PhotometricInterpretation == "YBR_FULL_422"
    rad = read_image(dcm)
    assert rad.warnings[0].startswith("RGB converted to grayscale")
    assert np.abs(rad.pixels - read_image(jpg).pixels).max() <= 3 / 255


# --- missing decoders ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "syntax", "package"),
    [
        ("MR_small_jp2klossless.dcm", uid.JPEG2000Lossless, "pylibjpeg-openjpeg"),
        ("JPGExtended.dcm", uid.JPEGExtended12Bit, "pylibjpeg-libjpeg"),
    ],
)
def test_missing_decoder_names_the_package(
    realworld_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, syntax: str, package: str
) -> None:
    decoder = get_decoder(syntax)
    assert decoder.is_available
    monkeypatch.setattr(decoder, "_available", {})  # pydicom's own plugin registry: none left
    with pytest.raises(UnsupportedImageError) as err:
        read_image(realworld_dir / "dicom" / name)
    message = str(err.value)
    assert uid.UID(syntax).name in message and f"pip install pylibjpeg {package}" in message


# --- tags ---------------------------------------------------------------------------------------


def _tagged(**tags: object) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for keyword in ("PatientAge", "PatientBirthDate", "StudyDate", "AcquisitionDate",
                    "ContentDate", "SeriesDate", "PixelSpacing"):
        if keyword in ds:
            delattr(ds, keyword)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the test writes bad tags on purpose
@pytest.mark.parametrize(
    ("tags", "age"),
    [
        ({"PatientAge": "072Y"}, 72),
        ({"PatientAge": "006M"}, 0),
        ({"PatientAge": "899M"}, 74),  # 74 years 11 months: completed years, never rounded up
        ({"PatientAge": "999W"}, 19),  # 19.15 years
        ({"PatientAge": "026W"}, 0),
        ({"PatientBirthDate": "19500601", "StudyDate": "20200601"}, 70),  # the birthday itself
        ({"PatientBirthDate": "19500601", "StudyDate": "20200531"}, 69),  # the day before
        ({"PatientBirthDate": "19520229", "StudyDate": "20260228"}, 73),  # leap-day birthday
        ({"PatientBirthDate": "19520314", "StudyDate": "20260601"}, 74),  # not 74.22...
        ({"PatientBirthDate": "19500601", "AcquisitionDate": "20100101"}, 59),
        ({"PatientBirthDate": "19500601"}, None),  # no date to measure against
        ({"PatientAge": "seventy"}, None),
    ],
)
def test_age(tags: dict[str, str], age: int | None) -> None:
    """Derived ages are whole (completed) years: a fraction next to the study date would give
    back the birth date to within days (PHI by arithmetic)."""
    got = decode_image_bytes(_bytes(_tagged(**tags))).info.age_years
    assert got == age and (got is None or float(got).is_integer())


def test_sex_side_view_spacing() -> None:
    ds = _tagged(PatientSex="M", Laterality="L", ViewPosition="AP", Modality="DX",
                 PixelSpacing=[0, 0], ImagerPixelSpacing=[0.15, 0.16])
    info = decode_image_bytes(_bytes(ds)).info
    assert (info.sex, info.laterality, info.view, info.modality) == ("M", "left", "AP", "DX")
    assert info.pixel_spacing_mm == (0.15, 0.16)  # zero PixelSpacing skipped
    ds = _tagged(PatientSex="O", ImageLaterality="R", Laterality="L")
    info = decode_image_bytes(_bytes(ds)).info
    assert (info.sex, info.laterality, info.pixel_spacing_mm) == (None, "right", None)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_identifiers_kept_apart_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    # An invalid DA: pydicom's reader warns and logs, quoting the value (a birth date).
    ds = _tagged(PatientName="Doe^Jane", PatientID="ID-98765", PatientBirthDate="1947-11-03",
                 OtherPatientIDs=["OLD-111", "OLD-222"], AccessionNumber="ACC-555",
                 InstitutionName="St Example Hospital", StudyDate="20200101")
    data = _bytes(ds)
    caplog.clear()  # only what happens while reading counts
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rad = decode_image_bytes(data, name="case.dcm")
    assert rad.info.patient_ids == {
        "PatientName": "Doe^Jane", "PatientID": "ID-98765", "PatientBirthDate": "1947-11-03",
        "OtherPatientIDs": "OLD-111\\OLD-222", "AccessionNumber": "ACC-555",
        "InstitutionName": "St Example Hospital"}
    seen = " ".join([caplog.text, repr(rad), *rad.warnings, *(str(w.message) for w in caught)])
    for secret in ("Doe", "98765", "1947", "OLD-111", "ACC-555", "Example Hospital"):
        assert secret not in seen


# --- issue #12: bombs inside the container, corrupt values, strips ------------------------------


def test_deflate_bomb_refused_before_pydicom_inflates(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MB deflated file can inflate to 1 GiB; pydicom would inflate it whole in memory."""
    from corpus.make_bad_inputs import dicom_deflate_bomb

    from bmd_edge.image_io import MAX_FILE_BYTES

    data = dicom_deflate_bomb(MAX_FILE_BYTES + (1 << 20))
    assert len(data) < 2_000_000

    def no_parse(*_a: object, **_k: object) -> None:
        raise AssertionError("pydicom.dcmread was called; the inflation budget should refuse")

    monkeypatch.setattr(pydicom, "dcmread", no_parse)
    with pytest.raises(ImageReadError, match=r"deflated data inflates to more than 302 MB"):
        decode_image_bytes(data, name="bomb.dcm")
    monkeypatch.undo()
    small = dicom_deflate_bomb(1000)  # the same construction, small: a valid file that reads
    assert decode_image_bytes(small).pixels.shape == (64, 56)


@pytest.mark.parametrize("codestream", ["jpeg", "j2k"])
def test_codestream_claiming_another_size_is_refused_before_decoding(
        codestream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder allocates what the codestream claims: 20000² from a 1.3 KB file took 2.1 GB."""
    from corpus.make_bad_inputs import dicom, encaps, hip_like, j2k_claiming, jpeg_claiming, u8

    frame = jpeg_claiming(20_000, 20_000) if codestream == "jpeg" else j2k_claiming(20_000)
    ts = "1.2.840.10008.1.2.4.50" if codestream == "jpeg" else "1.2.840.10008.1.2.4.90"
    data = dicom(u8(hip_like()), ts=ts, pixel_data=encaps([frame]))
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(
        lambda self: (_ for _ in ()).throw(AssertionError("decoded"))))
    with pytest.raises(ImageReadError, match=r"compressed frame claims 20000×20000 px but its "
                                             r"Rows/Columns say 56×64"):
        decode_image_bytes(data)


def test_pixel_values_that_are_not_finite_are_refused() -> None:
    ds = _tagged(RescaleSlope=0, RescaleIntercept="inf")
    with pytest.raises(ImageReadError, match="not finite after its rescale"):
        decode_image_bytes(_bytes(ds))


def test_monochrome_with_three_samples_is_refused() -> None:
    from corpus.make_bad_inputs import dicom, hip_like, u8

    data = dicom(np.dstack([u8(hip_like())] * 3), photometric="MONOCHROME2")
    with pytest.raises(ImageReadError, match="MONOCHROME2 but has 3 samples per pixel"):
        decode_image_bytes(data)


def test_lut_pipeline_by_strips_equals_whole_image(realworld_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Modality LUT + window applied a strip at a time gives the whole-image result."""
    from bmd_edge import pixel_scale

    for name in ("MR2_J2KI.dcm", "CT_small.dcm"):
        whole = read_image(realworld_dir / "dicom" / name).pixels
        monkeypatch.setattr(pixel_scale, "STRIP_PIXELS", 1000)
        np.testing.assert_array_equal(read_image(realworld_dir / "dicom" / name).pixels, whole)
        monkeypatch.undo()
