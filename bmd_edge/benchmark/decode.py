"""Decode + preprocess rows: what an end-to-end call costs before the model even runs.

A 2048² 16-bit DICOM can take longer to decode and window than the int8 network takes to run,
so the table explains end-to-end latency with one row per input format and size: 8-bit PNG,
16-bit PNG, JPEG (quality 95) and uncompressed 16-bit DICOM, each timed through
`bmd_edge.image_io.read_image` + `bmd_edge.preprocess.preprocess` (the code `predict` runs).
The test images are written here (a smooth radiograph-like phantom with noise), not shipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("png8", "png16", "jpeg", "dicom")


def phantom(size: int, seed: int = 0) -> np.ndarray:
    """float32 size×size in [0,1]: soft-tissue gradient, a bright femur-like blob, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.25 + 0.2 * yy
    img += 0.4 * np.exp(-(((xx - 0.45) / 0.12) ** 2 + ((yy - 0.35) / 0.12) ** 2))
    img += 0.3 * np.exp(-(((xx - 0.5 - 0.3 * (yy - 0.5)) / 0.06) ** 2)) * (yy > 0.4)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def write_format(fmt: str, pixels: np.ndarray, out: Path) -> Path:
    """Write `pixels` as `fmt`; returns the file."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    n = pixels.shape[0]
    if fmt == "png8":
        path = out / f"img_{n}_8bit.png"
        cv2.imwrite(str(path), np.round(pixels * 255).astype(np.uint8))
    elif fmt == "png16":
        path = out / f"img_{n}_16bit.png"
        cv2.imwrite(str(path), np.round(pixels * 65535).astype(np.uint16))
    elif fmt == "jpeg":
        path = out / f"img_{n}.jpg"
        cv2.imwrite(str(path), np.round(pixels * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    elif fmt == "dicom":
        path = out / f"img_{n}.dcm"
        _write_dicom(path, np.round(pixels * 4095).astype(np.uint16))
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return path


def _write_dicom(path: Path, arr: np.ndarray) -> None:
    """A minimal uncompressed 12-bit-in-16 DX DICOM (explicit VR little endian)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")   # Digital X-Ray, presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientSex, ds.PatientAge = "DX", "F", "070Y"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.15, 0.15]
    ds.PixelData = arr.astype("<u2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def measure_decode(spec: Any, sizes: tuple[int, ...], out: Path, runs: int = 10,
                   budget_s: float = 2.0) -> list[dict]:
    """Median read_image and preprocess times per (format, size); failures keep their row.

    At most `runs` repetitions, fewer (but at least 3) once a row has used `budget_s`.
    """
    from bmd_edge.image_io import read_image
    from bmd_edge.preprocess import preprocess

    rows: list[dict] = []
    for size in sizes:
        pixels = phantom(size)
        for fmt in FORMATS:
            row: dict[str, Any] = {"format": fmt, "size": size}
            try:
                path = write_format(fmt, pixels, out)
                row["file_kb"] = path.stat().st_size / 1024
                read_t, prep_t = [], []
                start = time.perf_counter()
                for i in range(max(1, runs)):
                    if i >= 3 and time.perf_counter() - start > budget_s:
                        break
                    t0 = time.perf_counter()
                    rad = read_image(path)
                    t1 = time.perf_counter()
                    preprocess(rad.pixels, spec)
                    t2 = time.perf_counter()
                    read_t.append((t1 - t0) * 1e3)
                    prep_t.append((t2 - t1) * 1e3)
                row.update(status="ok", read_ms=float(np.median(read_t)),
                           preprocess_ms=float(np.median(prep_t)),
                           total_ms=float(np.median(np.add(read_t, prep_t))), runs=len(read_t))
            except Exception as err:  # noqa: BLE001 - a decoder problem is a row, not a crash
                row.update(status="failed", reason=f"{type(err).__name__}: {str(err)[:160]}")
            rows.append(row)
    return rows
