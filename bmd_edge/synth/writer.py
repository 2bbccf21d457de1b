"""Write a synthetic cohort to disk: 16-bit PNGs (+ DICOM), manifest.csv and oracle.csv.

Every case draws all its randomness from `np.random.default_rng([seed, index])`, so a case's
bytes depend only on (seed, index, size, view) — not on how many worker processes ran or in
which order chunks finished. Files are written to a temporary name and renamed, so an interrupted
run never leaves half a file; the two CSVs are written last, so an interrupted run has no manifest.
"""

from __future__ import annotations

import csv
import io
import os
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.synth.anatomy import bone_quality, sample_hip
from bmd_edge.synth.cohort import Subject, sample_subject
from bmd_edge.synth.render import FOV_MM, render, sample_acquisition, sample_body

FIELD_NAMES = ("age_xray", "age_bmd", "sex", "height_cm", "weight_kg", "bmi",
               "alcohol_units_week", "activity_score", "diet_score", "smoking")  # schema order
MANIFEST_COLUMNS = ("image", *FIELD_NAMES, "fn_bmd", "patient_id", "side")
VIEWS = ("hip", "pelvis")


def case_name(index: int) -> str:
    return f"case_{index:05d}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary sibling, then rename: readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_case(seed: int, index: int, size: int, view: str) -> tuple[np.ndarray, Subject,
                                                                    dict[str, object]]:
    """Draw and render one case: (uint16 image, subject, oracle row)."""
    rng = np.random.default_rng([seed, index])
    subj = sample_subject(rng, index)
    label_hip = sample_hip(rng, sex=subj.sex, height_cm=subj.height_cm, bmd=subj.true_bmd)
    other_hip = sample_hip(rng, sex=subj.sex, height_cm=subj.height_cm, bmd=subj.other_bmd)
    body = sample_body(rng, sex=subj.sex, bmi=subj.bmi)
    acq = sample_acquisition(rng)
    if view == "hip":
        # Render every hip as a right hip; a left hip is its mirror image (the "flip" nuisance).
        img = render((label_hip, label_hip), body, acq, size=size, view="hip",
                     flip=subj.side == "left", marker="L" if subj.side == "left" else "R")
    else:
        hips = (label_hip, other_hip) if subj.side == "right" else (other_hip, label_hip)
        img = render(hips, body, acq, size=size, view="pelvis", marker="R")
    q = bone_quality(subj.true_bmd)
    oracle: dict[str, object] = {
        "patient_id": patient_id(index), "image": f"images/{case_name(index)}.png",
        "view": view, "side": subj.side, "true_bmd": subj.true_bmd,
        "other_side_bmd": subj.other_bmd, "fn_bmd": subj.fn_bmd,
        "label_noise": subj.label_noise, "individual_component": subj.individual,
        "cortex_neck_mm": q["cortex_neck"], "cortex_shaft_mm": q["cortex_shaft"],
        "bvtv": q["bvtv"], "tensile_retention": q["tensile"],
        "head_radius_mm": label_hip.head_r, "neck_shaft_deg": label_hip.neck_shaft_deg,
        "neck_width_mm": 2 * label_hip.neck_r,
        "soft_tissue_ap_mm": body.ap_mm, "hip_half_width_mm": body.half_width_mm,
        "thigh_ap_mm": body.thigh_mm, "gas_pockets": len(body.gas),
        "exposure_quanta": acq.photons, "bone_contrast": acq.bone_contrast,
        "soft_mu_per_mm": acq.soft_mu, "scatter_ratio": acq.spr, "gamma": acq.gamma,
        "window_shift": acq.window_shift, "sharpen": acq.sharpen, "blur_px": acq.blur_px,
        "rotation_deg": acq.rotation_deg, "scale": acq.scale, "shift_x_mm": acq.shift_mm[0],
        "shift_y_mm": acq.shift_mm[1], "collimation_ltrb": "/".join(
            f"{c:.3f}" for c in acq.collimation),
        "shutter": "white" if acq.shutter_white else "black",
        "pixel_spacing_mm": FOV_MM[view] / size * acq.scale,
    }
    oracle = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in oracle.items()}
    return img, subj, oracle


def patient_id(index: int) -> str:
    return f"SYNTH-{index:05d}"


def manifest_row(subj: Subject) -> dict[str, object]:
    row: dict[str, object] = {"image": f"images/{case_name(subj.index)}.png"}
    row.update({name: getattr(subj, name) for name in FIELD_NAMES})
    row.update(fn_bmd=f"{subj.fn_bmd:.3f}", patient_id=patient_id(subj.index), side=subj.side)
    return row


def encode_png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV always encodes uint16 PNG
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_dicom(img: np.ndarray, subj: Subject, *, seed: int, view: str,
                 spacing_mm: float) -> bytes:
    """A minimal, valid DX 'for presentation' object; UIDs derive from (seed, index)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    def uid(kind: str) -> UID:
        return generate_uid(entropy_srcs=["bmd-edge-synth", kind, str(seed), view,
                                          str(subj.index)])

    sop_class = UID("1.2.840.10008.5.1.4.1.1.1.1")   # DX Image Storage, For Presentation
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.PatientName = f"SYNTH^{subj.index:05d}"
    ds.PatientID = patient_id(subj.index)
    ds.PatientAge = f"{int(subj.age_xray):03d}Y"
    ds.PatientSex = subj.sex
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "HIP" if view == "hip" else "PELVIS"
    ds.ViewPosition = "AP"
    ds.ImageLaterality = ("L" if subj.side == "left" else "R") if view == "hip" else "B"
    ds.PixelSpacing = [f"{spacing_mm:.4f}", f"{spacing_mm:.4f}"]
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.WindowCenter, ds.WindowWidth = 32768, 65536
    ds.PixelData = np.ascontiguousarray(img, dtype="<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _write_chunk(args: tuple[int, list[int], int, str, bool, str]) -> list[tuple[dict, dict]]:
    """Worker: render and write a chunk of cases; return their manifest and oracle rows."""
    seed, indices, size, view, dicom, out = args
    import cv2

    cv2.setNumThreads(1)   # one process per core already; avoid oversubscription
    root = Path(out)
    rows = []
    for i in indices:
        img, subj, oracle = make_case(seed, i, size, view)
        write_atomic(root / "images" / f"{case_name(i)}.png", encode_png(img))
        if dicom:
            write_atomic(root / "dicom" / f"{case_name(i)}.dcm",
                         encode_dicom(img, subj, seed=seed, view=view,
                                      spacing_mm=FOV_MM[view] / size))
        rows.append((manifest_row(subj), oracle))
    return rows


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode("utf-8"))


def generate_cohort(n: int, out: str | Path, *, seed: int = 0, size: int = 256,
                    dicom: bool = False, view: str = "hip", workers: int | None = None,
                    progress: Callable[[int], None] | None = None) -> Path:
    """Generate n cases into `out`; return the manifest path. `progress(k)` gets cases done."""
    if n < 1 or n > 1_000_000:
        raise InputError(f"n = {n} cases is not accepted; give 1 to 1000000")
    if not 32 <= size <= 4096:
        raise InputError(f"size = {size} px is not accepted; give 32 to 4096")
    if view not in VIEWS:
        raise InputError(f"view = {view!r} is not accepted; give one of {', '.join(VIEWS)}")
    if workers is not None and workers < 1:
        raise InputError(f"workers = {workers} is not accepted; give 1 or more")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(f"out = {str(root)!r} is a file; give a folder to write the cohort into")
    (root / "images").mkdir(parents=True, exist_ok=True)
    if dicom:
        (root / "dicom").mkdir(exist_ok=True)
    workers = min(workers or os.cpu_count() or 1, n)
    chunk = max(1, min(16, n // (workers * 4) or 1))
    jobs = [(seed, list(range(s, min(s + chunk, n))), size, view, dicom, str(root))
            for s in range(0, n, chunk)]
    results: list[tuple[dict, dict]] = []
    if workers == 1:
        for job in jobs:
            results.extend(_write_chunk(job))
            if progress:
                progress(len(results))
    else:
        # forkserver, not fork: a forked child of a process that already used OpenCV's thread
        # pool can deadlock inside cv2 (seen in the test suite and in `train --synth`).
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for rows in pool.map(_write_chunk, jobs):
                results.extend(rows)
                if progress:
                    progress(len(results))
    manifest = root / "manifest.csv"
    _write_csv(root / "oracle.csv", list(results[0][1]), [o for _, o in results])
    _write_csv(manifest, list(MANIFEST_COLUMNS), [m for m, _ in results])
    return manifest
