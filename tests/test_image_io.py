"""image_io: content-based dispatch, size guards, bit depths, colour handling, real JPEGs."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from bmd_edge import image_io
from bmd_edge.errors import ImageReadError, UnsupportedImageError
from bmd_edge.image_io import ImageInfo, Radiograph, decode_image_bytes, read_image

# --- helpers ------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A syntactically complete PNG whose header claims a size its data does not have."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + _png_chunk(b"IEND", b""))


def _gradient(h: int = 48, w: int = 64, dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return (np.add.outer(np.arange(h), np.arange(w)) * top // (h + w - 2)).astype(dtype)


def _write(path: Path, arr: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), arr)
    return path


@pytest.fixture()
def no_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel decoding is attempted (guards must act on headers alone)."""

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("cv2.imdecode was called; the guard should have refused first")

    monkeypatch.setattr(cv2, "imdecode", boom)


# --- real-world JPEGs ---------------------------------------------------------------------------

# file: (height, width, carries real colour)
HIP = {
    "224_DDH_115.jpg": (224, 224, False),
    "331_DDH_1.jpg": (331, 331, False),
    "331_DDH_115.jpg": (331, 331, False),
    "331_DDH_138.jpg": (331, 331, False),
    "hip-fai-cam-morphology.jpg": (1356, 1535, False),  # progressive
    "hip-femoral-neck-stress-fracture.jpg": (309, 281, True),  # coloured arrow
    "hip-scfe-frog-leg.jpg": (768, 1024, False),  # single-channel L
    "hip-scfe.jpg": (621, 644, True),  # drawn colour inset
    "normal-hip.jpg": (1071, 1263, False),
    "normal-pediatric-pelvis-ap.jpg": (1023, 1271, False),
    "normal-pediatric-pelvis-frog-leg.jpg": (943, 1467, False),
    "normal-pelvis-ap.jpg": (2084, 2675, False),
}


def test_every_realworld_jpeg_is_listed(realworld_dir: Path) -> None:
    assert sorted(p.name for p in (realworld_dir / "hip").glob("*.jpg")) == sorted(HIP)


@pytest.mark.parametrize("name", sorted(HIP))
def test_realworld_jpeg(realworld_dir: Path, name: str) -> None:
    path = realworld_dir / "hip" / name
    rad = read_image(path)
    h, w, colour = HIP[name]
    assert rad.pixels.shape == (h, w) and rad.pixels.dtype == np.float32
    assert 0.0 <= rad.pixels.min() < rad.pixels.max() <= 1.0
    assert rad.info == ImageInfo(format="jpeg", bits_stored=8)
    colour_warnings = [m for m in rad.warnings if m.startswith("RGB converted to grayscale")]
    assert len(colour_warnings) == (1 if colour else 0), rad.warnings
    # An independent decoder (Pillow, ITU-R 601 luma) agrees to JPEG/rounding tolerance.
    reference = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
    assert np.abs(rad.pixels - reference).max() <= 3 / 255


# --- dispatch on content ------------------------------------------------------------------------


def test_png_named_jpg_is_read_as_png(tmp_path: Path) -> None:
    arr = _gradient()
    path = tmp_path / "x.png"
    _write(path, arr)
    renamed = path.rename(tmp_path / "scan.jpg")
    rad = read_image(renamed)
    assert rad.info.format == "png"
    assert np.array_equal(np.rint(rad.pixels * 255).astype(np.uint8), arr)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"patient list\nname,age\n", "a text file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF document"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "an HTML page"),
        (b"GIF89a" + bytes(40), "a GIF image"),
        (b"PK\x03\x04" + bytes(40), "a ZIP archive"),
    ],
)
def test_non_images_named_png_are_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(content)
    with pytest.raises(UnsupportedImageError) as err:
        read_image(path)
    assert expected in str(err.value)
    assert "PNG, JPEG, TIFF, DICOM" in str(err.value)


def test_bmp_is_refused_with_its_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "scan.bmp", _gradient())
    with pytest.raises(UnsupportedImageError, match="a BMP image"):
        read_image(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty \(0 bytes\)"):
        read_image(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_decode_bytes_matches_read_image(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.png", _gradient(dtype=np.uint16))
    a, b = read_image(path), decode_image_bytes(path.read_bytes(), name="upload")
    assert np.array_equal(a.pixels, b.pixels) and a.info == b.info


# --- size guards (before decoding) --------------------------------------------------------------


def test_tiny_image_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "pixel.png", np.zeros((1, 1), np.uint8))
    with pytest.raises(ImageReadError, match="image is 1×1 px; need at least 32×32"):
        read_image(path)


def test_png_bomb_refused_without_decoding(no_decode: None) -> None:
    with pytest.raises(ImageReadError, match="30000×30000 px .*limit is 100 megapixels"):
        decode_image_bytes(_png_claiming(30000, 30000))
    with pytest.raises(ImageReadError, match="20001×4000 px"):  # 80 MP but a side over 20000
        decode_image_bytes(_png_claiming(20001, 4000))


def test_jpeg_bomb_refused_without_decoding(no_decode: None) -> None:
    data = bytearray(cv2.imencode(".jpg", _gradient())[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)  # height, width
    with pytest.raises(ImageReadError, match="30000×30000 px"):
        decode_image_bytes(bytes(data))


def test_tiff_bomb_refused_without_decoding(tmp_path: Path, no_decode: None) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, _gradient())
    data = bytearray(path.read_bytes())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (n,) = struct.unpack_from("<H", data, ifd)
    for k in range(n):
        at = ifd + 2 + 12 * k
        tag, typ = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<H" if typ == 3 else "<I", data, at + 8, 30000)
    with pytest.raises(ImageReadError, match="30000×30000 px"):
        decode_image_bytes(bytes(data))


def test_extreme_aspect_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "strip.png", np.zeros((40, 400), np.uint8))
    with pytest.raises(ImageReadError, match=r"400×40 px \(aspect 10.0:1\).*8:1"):
        read_image(path)


# --- truncation ---------------------------------------------------------------------------------


def _noise(h: int = 64, w: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w), dtype=np.uint8)


def test_truncated_png(tmp_path: Path) -> None:
    data = cv2.imencode(".png", _noise())[1].tobytes()
    for cut in (len(data) - 12, len(data) // 2):  # IEND gone; half the image data gone
        with pytest.raises(ImageReadError, match="PNG is truncated"):
            decode_image_bytes(data[:cut])


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = cv2.imencode(".jpg", _noise())[1].tobytes()
    with pytest.raises(ImageReadError, match="JPEG is truncated"):
        decode_image_bytes(data[: len(data) * 2 // 3])  # mid-scan: libjpeg would pad with grey
    with pytest.raises(ImageReadError, match="JPEG is truncated"):
        decode_image_bytes(data[:300])  # inside the headers


def test_truncated_tiff(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, _noise().astype(np.uint16))
    data = path.read_bytes()
    with pytest.raises(ImageReadError, match="TIFF is truncated"):
        decode_image_bytes(data[: len(data) // 2])


# --- bit depths and sample types ----------------------------------------------------------------


def test_png_16bit_from_opencv_exact(tmp_path: Path) -> None:
    arr = _gradient(dtype=np.uint16)
    rad = read_image(_write(tmp_path / "a.png", arr))
    assert rad.info.bits_stored == 16 and rad.warnings == ()
    assert np.array_equal(np.rint(rad.pixels.astype(np.float64) * 65535), arr)


def test_png_16bit_from_pillow_exact(tmp_path: Path) -> None:
    arr = (_gradient(dtype=np.uint16) // 7 * 5).astype(np.uint16)
    path = tmp_path / "p.png"
    Image.fromarray(arr).save(path)
    assert path.read_bytes()[24] == 16  # Pillow really wrote a 16-bit PNG
    rad = read_image(path)
    assert np.array_equal(np.rint(rad.pixels.astype(np.float64) * 65535), arr)


def test_png_8bit_exact(tmp_path: Path) -> None:
    arr = _gradient()
    rad = read_image(_write(tmp_path / "a.png", arr))
    assert rad.info == ImageInfo(format="png", bits_stored=8)
    assert np.allclose(rad.pixels, arr / 255.0, atol=1e-7)


def test_tiff_16bit_from_tifffile_exact(tmp_path: Path) -> None:
    arr = _gradient(dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", arr)
    rad = read_image(tmp_path / "a.tif")
    assert rad.info == ImageInfo(format="tiff", bits_stored=16)
    assert np.array_equal(np.rint(rad.pixels.astype(np.float64) * 65535), arr)


def test_float_tiff_in_range_kept(tmp_path: Path) -> None:
    arr = (_gradient(dtype=np.uint16) / 65535).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr)
    rad = read_image(tmp_path / "f.tif")
    assert rad.info.bits_stored == 32 and rad.warnings == ()
    assert np.array_equal(rad.pixels, arr)


def test_float_tiff_out_of_range_scaled_with_warning(tmp_path: Path) -> None:
    arr = np.full((40, 40), 100.0, np.float32)
    arr[:, :20] = -300.0
    arr[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "f.tif", arr)
    rad = read_image(tmp_path / "f.tif")
    assert "1 NaN/infinite pixels set to the image minimum" in rad.warnings
    assert "float pixel values span [-300, 100]; scaled to [0, 1]" in rad.warnings
    assert rad.pixels[0, 0] == 0.0 and rad.pixels[5, 5] == 0.0 and rad.pixels[5, 30] == 1.0


def test_multipage_tiff_reads_first_page_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, np.full((40, 40), 10, np.uint8))
    tifffile.imwrite(path, np.full((40, 40), 200, np.uint8), append=True)
    rad = read_image(path)
    assert "multi-page TIFF: only the first page was read" in rad.warnings
    assert np.allclose(rad.pixels, 10 / 255)


# --- colour -------------------------------------------------------------------------------------


def test_rgba_alpha_dropped(tmp_path: Path) -> None:
    grey = _gradient()
    bgra = np.dstack([grey, grey, grey, np.full_like(grey, 128)])
    rad = read_image(_write(tmp_path / "a.png", bgra))
    assert rad.warnings == ("alpha channel dropped",)
    assert np.allclose(rad.pixels, grey / 255.0, atol=1e-7)


def test_rgb_colour_converted_with_warning(tmp_path: Path) -> None:
    bgr = np.zeros((40, 40, 3), np.uint8)
    bgr[:, :, 2] = 255  # pure red
    rad = read_image(_write(tmp_path / "red.png", bgr))
    assert rad.warnings == ("RGB converted to grayscale (colour in 100.00% of pixels)",)
    assert np.allclose(rad.pixels, 0.299, atol=1e-6)  # BT.601 luma of red


def test_grey_stored_as_rgb_is_silent_and_exact(tmp_path: Path) -> None:
    grey = _gradient(dtype=np.uint16)
    rad = read_image(_write(tmp_path / "g.png", np.dstack([grey] * 3)))
    assert rad.warnings == ()
    assert np.array_equal(np.rint(rad.pixels.astype(np.float64) * 65535), grey)


def test_palette_png(tmp_path: Path) -> None:
    grey = _gradient()
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")  # greyscale palette
    rad = read_image(tmp_path / "p.png")
    assert rad.warnings == () and rad.info.bits_stored == 8
    assert np.allclose(rad.pixels, grey / 255.0, atol=1e-7)
    colour = Image.new("P", (40, 40))
    colour.putpalette([0, 0, 255] + [0, 0, 0] * 255)  # index 0 = pure blue
    colour.save(tmp_path / "c.png")
    rad = read_image(tmp_path / "c.png")
    assert rad.warnings[0].startswith("RGB converted to grayscale")
    assert np.allclose(rad.pixels, 0.114, atol=1e-6)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).convert("CMYK").save(tmp_path / "c.jpg")
    rad = read_image(tmp_path / "c.jpg")
    assert rad.pixels.shape == (40, 40) and rad.warnings == ()
    assert np.abs(rad.pixels - 100 / 255).max() <= 3 / 255


def test_progressive_jpeg(tmp_path: Path) -> None:
    grey = _gradient()
    Image.fromarray(grey).save(tmp_path / "p.jpg", progressive=True, quality=95)
    assert b"\xff\xc2" in (tmp_path / "p.jpg").read_bytes()  # SOF2: really progressive
    rad = read_image(tmp_path / "p.jpg")
    assert np.abs(rad.pixels - grey / 255).max() <= 4 / 255


def test_jpeg_exif_orientation_applied(tmp_path: Path) -> None:
    grey = np.zeros((40, 80), np.uint8)
    grey[:, :10] = 255  # a bright stripe on the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(grey).save(tmp_path / "o.jpg", exif=exif, quality=95)
    rad = read_image(tmp_path / "o.jpg")
    assert rad.pixels.shape == (80, 40)  # rotated
    assert rad.pixels[:8].mean() > 0.9 and rad.pixels[14:].mean() < 0.1  # left edge → top


# --- corrupt input never escapes as anything but ImageReadError ----------------------------------


def _seed_files() -> dict[str, bytes]:
    from pydicom.data import get_testdata_file

    grey = _noise(40, 48)
    tif = io.BytesIO()
    tifffile.imwrite(tif, grey.astype(np.uint16))
    return {
        "png": cv2.imencode(".png", grey.astype(np.uint16) * 200)[1].tobytes(),
        "jpeg": cv2.imencode(".jpg", grey)[1].tobytes(),
        "tiff": tif.getvalue(),
        "dicom": Path(get_testdata_file("MR_small.dcm")).read_bytes(),
        "dicom-j2k": Path(get_testdata_file("MR_small_jp2klossless.dcm")).read_bytes(),
    }


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", ["png", "jpeg", "tiff", "dicom", "dicom-j2k"])
def test_mutated_files_fail_only_with_image_read_error(kind: str) -> None:
    data = _seed_files()[kind]
    rng = np.random.default_rng(7)
    for trial in range(60):
        mutated = bytearray(data)
        if trial % 3 == 0:
            mutated = mutated[: int(rng.integers(1, len(mutated)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                mutated[int(rng.integers(0, len(mutated)))] = int(rng.integers(0, 256))
        try:
            rad = decode_image_bytes(bytes(mutated))
        except ImageReadError:
            continue
        p = rad.pixels
        assert p.dtype == np.float32 and p.ndim == 2 and np.isfinite(p).all()
        assert 0.0 <= p.min() and p.max() <= 1.0


def test_corrupt_transfer_syntax_uid() -> None:
    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    bad = data.replace(b"1.2.840.10008.1.2.1", b"1.2.840.10008.9.9.9", 1)
    with pytest.raises(UnsupportedImageError, match="not a known transfer syntax"):
        decode_image_bytes(bad)


# --- contract details ---------------------------------------------------------------------------


def test_radiograph_contract(tmp_path: Path) -> None:
    rad = read_image(_write(tmp_path / "a.png", _gradient()))
    assert isinstance(rad, Radiograph) and isinstance(rad.warnings, tuple)
    assert rad.pixels.flags.c_contiguous
    with pytest.raises(AttributeError):
        rad.info.format = "dicom"  # type: ignore[misc]
    info = ImageInfo(format="dicom", patient_ids={"PatientName": "Doe^Jane"})
    assert "Doe" not in repr(info)


def test_image_io_and_dicom_io_never_import_torch(realworld_dir: Path, tmp_path: Path) -> None:
    png = _write(tmp_path / "a.png", _gradient())
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "from bmd_edge.image_io import read_image\n"
        f"read_image({str(png)!r}); read_image({str(realworld_dir / 'dicom' / 'CT_small.dcm')!r})\n"
        "import bmd_edge.dicom_io\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- issue #12: files that are not files, budgets, checked streams -----------------------------


def test_fifo_and_devices_are_refused_without_reading(tmp_path: Path) -> None:
    """A FIFO used to hang forever and /dev/zero to grow until killed: refused from stat()."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match=r"pipe\.png is a named pipe \(FIFO\), not an image"):
        read_image(fifo)
    with pytest.raises(ImageReadError, match="is a character device"):
        read_image("/dev/zero")
    link = tmp_path / "zero.dcm"
    link.symlink_to("/dev/zero")  # a link is followed: what it points at decides
    with pytest.raises(ImageReadError, match="is a character device"):
        read_image(link)


def test_huge_file_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over the limit is refused from its size, before a byte is read (the type is then
    sniffed from a 4 KB prefix, never from the whole file)."""
    path = tmp_path / "big.png"
    path.write_bytes(cv2.imencode(".png", _gradient())[1].tobytes())
    with open(path, "r+b") as fh:
        fh.truncate(image_io.MAX_FILE_BYTES + 1)  # sparse: no disk used
    reads: list[int] = []
    real_open = image_io._open_regular

    class Counting:
        def __init__(self, fh: io.BufferedReader) -> None:
            self.fh = fh

        def read(self, n: int = -1) -> bytes:
            reads.append(n)
            return self.fh.read(n)

        def __getattr__(self, attr: str) -> object:
            return getattr(self.fh, attr)

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

    monkeypatch.setattr(image_io, "_open_regular", lambda p, name: Counting(real_open(p, name)))
    with pytest.raises(ImageReadError, match=r"big\.png: file is \d+ MB, larger than the 302 MB"):
        read_image(path)
    assert reads == []  # refused from fstat alone: not one byte read
    with pytest.raises(ImageReadError, match="is a text file|larger than"):
        decode_image_bytes(b"x" * (image_io.MAX_FILE_BYTES + 1))


def test_decoded_bytes_budget_counts_channels_and_depth(no_decode: None) -> None:
    """81 MP passes the pixel guard, but as RGBA 16-bit it would decode to 648 MB."""
    ihdr = struct.pack(">IIBBBBB", 9000, 9000, 16, 6, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=r"would decode to 648 MB \(9000×9000 px × 4 "
                                             r"channels × 2 byte\); the limit is 268 MB"):
        decode_image_bytes(data)
    grey = struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)  # 81 MB: within the budget
    with pytest.raises(ImageReadError, match="PNG is truncated"):  # ...and then the data check
        decode_image_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", grey)
                           + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 10))
                           + _png_chunk(b"IEND", b""))


def _png_from(ihdr: bytes, raw: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + b"".join(_png_chunk(k, b) for k, b in extra)
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _adam7(img: np.ndarray) -> bytes:
    """Interlaced scanlines (filter 0) of an 8-bit grey image, built independently of the
    reader's own pass table: the seven Adam7 sub-images in order."""
    out = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                           (1, 0, 2, 2), (0, 1, 1, 2)):
        sub = img[y0::dy, x0::dx]
        if sub.size:
            out += b"".join(b"\x00" + row.tobytes() for row in sub)
    return out


def test_png_stream_check_accepts_every_layout(tmp_path: Path) -> None:
    """The row layout the checker expects matches libpng's: interlaced, 1/2/4-bit, palettes."""
    img = _gradient(45, 37)
    ihdr = struct.pack(">IIBBBBB", 37, 45, 8, 0, 0, 0, 1)  # Adam7 interlaced
    rad = decode_image_bytes(_png_from(ihdr, _adam7(img)))
    np.testing.assert_array_equal(rad.pixels, img.astype(np.float32) / 255)
    for mode, kw in (("1", {}), ("P", {"bits": 4}), ("P", {"bits": 2}), ("L", {}),
                     ("LA", {}), ("RGB", {}), ("I;16", {})):
        src = Image.fromarray(_gradient(40, 35)).convert(mode if mode != "I;16" else "I")
        if mode == "P":
            src = Image.fromarray(_gradient(40, 35)).convert("P", palette=Image.ADAPTIVE,
                                                             colors=2 ** kw["bits"])
        if mode == "I;16":
            src = Image.fromarray(_gradient(40, 35, np.uint16))
        buf = io.BytesIO()
        src.save(buf, "PNG", **kw)
        data = buf.getvalue()
        want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        got = decode_image_bytes(data, name=f"{mode}{kw}")
        assert got.pixels.shape == want.shape[:2], (mode, kw)


def test_png_stream_damage_is_refused_with_its_reason() -> None:
    img = _gradient(40, 40)
    ihdr = struct.pack(">IIBBBBB", 40, 40, 8, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + row.tobytes() for row in img)
    bad = bytearray(raw)
    bad[41 * 7] = 9  # row 7's filter byte
    with pytest.raises(ImageReadError, match=r"row 7 has filter type 9; valid 0-4"):
        decode_image_bytes(_png_from(ihdr, bytes(bad)))
    with pytest.raises(ImageReadError, match="longer than its header's size says"):
        decode_image_bytes(_png_from(ihdr, raw + b"\x00" * 41))
    with pytest.raises(ImageReadError, match=r"PNG is truncated \(image data ends after 1,599"):
        decode_image_bytes(_png_from(ihdr, raw[:-41]))
    crc = bytearray(_png_from(ihdr, raw))
    crc[crc.find(b"IEND") - 5] ^= 1  # the IDAT chunk's CRC
    with pytest.raises(ImageReadError, match="CRC error in its IDAT chunk"):
        decode_image_bytes(bytes(crc))
    with pytest.raises(UnsupportedImageError, match="unknown critical chunk 'ABCD'"):
        decode_image_bytes(_png_from(ihdr, raw, ((b"ABCD", b"x"),)))
    # a broken ancillary chunk is dropped before OpenCV sees it: decoded, nothing on stderr
    rad = decode_image_bytes(_png_from(ihdr, raw, ((b"iCCP", b"p\0\0broken"),)))
    np.testing.assert_array_equal(rad.pixels, img.astype(np.float32) / 255)


def _scans(data: bytes) -> list[tuple[int, int]]:
    starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xda"]
    return list(zip(starts, starts[1:] + [data.rfind(b"\xff\xd9")]))


def test_corrupt_jpeg_stream_is_refused_not_decoded_grey() -> None:
    """RELIABILITY's old known issue: a cut JPEG with EOI appended decoded with grey fill."""
    img = _gradient(96, 80)
    data = Image.fromarray(img)
    buf = io.BytesIO()
    data.save(buf, "JPEG", quality=95)
    good = buf.getvalue()
    with pytest.raises(ImageReadError, match=r"JPEG data is corrupt \(Corrupt JPEG data: "
                                             r"premature end of data segment\)"):
        decode_image_bytes(good[: len(good) * 6 // 10] + b"\xff\xd9")
    buf = io.BytesIO()
    data.save(buf, "JPEG", quality=95, progressive=True)
    prog = buf.getvalue()
    s0, s1 = _scans(prog)[1]
    with pytest.raises(ImageReadError, match="Inconsistent progression sequence"):
        decode_image_bytes(prog[:s1] + prog[s0:s1] + prog[s1:])
    assert np.abs(decode_image_bytes(prog).pixels - img / 255).max() < 0.05  # the real one reads


def test_conversion_by_strips_equals_whole_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip-wise conversion (bounded temporaries) gives the whole-image result exactly."""
    from bmd_edge import pixel_scale

    rng = np.random.default_rng(3)
    cases = {
        "u16": rng.integers(0, 65536, (70, 50), dtype=np.uint16),
        "i16": rng.integers(-32768, 32767, (70, 50), dtype=np.int16),
        "hu": (rng.random((70, 50)) * 4000 - 1000).astype(np.float32),
        "bgr": rng.integers(0, 256, (70, 50, 3), dtype=np.uint8),
        "bgra": rng.integers(0, 256, (70, 50, 4), dtype=np.uint8),
    }
    cases["hu"][5, 5] = np.nan
    whole = {k: pixel_scale.unit_gray(v, "x", [], order="bgr") for k, v in cases.items()}
    monkeypatch.setattr(pixel_scale, "STRIP_PIXELS", 7 * 50)  # 10 strips of 7 rows
    for k, v in cases.items():
        warnings: list[str] = []
        got = pixel_scale.unit_gray(v, "x", warnings, order="bgr")
        np.testing.assert_array_equal(got, whole[k], err_msg=k)
        assert got.dtype == np.float32 and 0.0 <= got.min() and got.max() <= 1.0
    hu = pixel_scale.unit_gray(cases["hu"], "x", warnings := [])
    assert warnings == ["1 NaN/infinite pixels set to the image minimum",
                        f"float pixel values span [{np.nanmin(cases['hu']):.4g}, "
                        f"{np.nanmax(cases['hu']):.4g}]; scaled to [0, 1]"]
    assert hu[5, 5] == 0.0
