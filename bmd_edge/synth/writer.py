"""Write a synthetic cohort to disk: 16-bit PNGs (+ DICOM), manifest.csv and oracle.csv.

Every case draws all its randomness from `np.random.default_rng([seed, index])`, so a case's
bytes depend only on (seed, index, size, view) — not on how many worker processes ran or in
which order chunks finished. Files are written to a temporary name and renamed, so an interrupted
run never leaves half a file; the two CSVs are written last, so an interrupted run has no manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from bmd_edge.errors import InputError
from bmd_edge.synth.anatomy import HipShape, bone_quality, sample_hip
from bmd_edge.synth.cohort import Subject, sample_subject
from bmd_edge.synth.materials import MaterialMaps
from bmd_edge.synth.physics import Acquisition, expose, sample_acquisition
from bmd_edge.synth.render import (
    Body,
    HipLabel,
    Metal,
    Pose,
    hip_maps,
    sample_body,
    sample_metal,
    sample_pose,
)

FIELD_NAMES = ("age_xray", "age_bmd", "sex", "height_cm", "weight_kg", "bmi",
               "alcohol_units_week", "activity_score", "diet_score", "smoking")  # schema order
MANIFEST_COLUMNS = ("image", *FIELD_NAMES, "fn_bmd", "patient_id", "side", "select")
VIEWS = ("hip", "pelvis")


def case_name(index: int) -> str:
    return f"case_{index:05d}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary sibling, then rename: readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


LANDMARK_COLUMNS = ("image", "view", "metal", "metal_side", "pixel_spacing_mm",
                    *(f"{side}_{k}" for side in ("right", "left")
                      for k in ("head_x", "head_y", "head_r", "neck_x", "neck_y", "roi_x",
                                "roi_y", "roi_len", "roi_width", "roi_angle_deg")))


def landmark_row(image: str, view: str, labels: dict[str, object],
                 px_mm: float) -> dict[str, object]:
    """One landmarks.csv row: every hip in the image, in output pixels (x = column, y = row)."""
    row: dict[str, object] = {k: "" for k in LANDMARK_COLUMNS}
    row.update(image=image, view=view, metal=labels["metal"], metal_side=labels["metal_side"],
               pixel_spacing_mm=round(px_mm, 5))
    for lab in labels["hips"]:  # type: ignore[attr-defined]
        assert isinstance(lab, HipLabel)
        for k in ("head_x", "head_y", "head_r", "neck_x", "neck_y", "roi_x", "roi_y", "roi_len",
                  "roi_width", "roi_angle_deg"):
            row[f"{lab.side}_{k}"] = round(float(getattr(lab, k)), 2)
    return row


@dataclass
class CaseDraw:
    """Everything drawn for one case before the pixels: useful to tests and figures."""

    subj: Subject
    label_hip: HipShape
    other_hip: HipShape
    body: Body
    pose: Pose
    metal: Metal
    acq: Acquisition
    maps: MaterialMaps
    rng: np.random.Generator       # positioned where the physics draws its noise


def draw_case(seed: int, index: int, size: int, view: str) -> CaseDraw:
    """Draw one case's person, anatomy, acquisition and material maps (no physics yet)."""
    rng = np.random.default_rng([seed, index])
    subj = sample_subject(rng, index)
    label_hip = sample_hip(rng, sex=subj.sex, height_cm=subj.height_cm, bmd=subj.visible_bmd,
                           age=subj.age_xray)
    other_hip = sample_hip(rng, sex=subj.sex, height_cm=subj.height_cm,
                           bmd=subj.other_visible_bmd, age=subj.age_xray)
    body = sample_body(rng, sex=subj.sex, bmi=subj.bmi)
    pose = sample_pose(rng)
    metal = sample_metal(rng, view=view, label_side=subj.side)
    acq = sample_acquisition(rng, view=view)
    # Technologists put the lead marker on the patient's side of the part: a pelvis view's "R"
    # and a right hip's "R" at the image's left (patient's right), a left hip's "L" at its right.
    right_side = view == "pelvis" or subj.side == "right"
    acq = dataclasses.replace(acq, marker_corner=(acq.marker_corner // 2) * 2
                              + (0 if right_side else 1))
    if view == "hip":
        # Render every hip as a right hip; a left hip is its mirror image (the "flip" nuisance).
        maps = hip_maps((label_hip, label_hip), body, pose, size=size, view="hip",
                        flip=subj.side == "left", marker="L" if subj.side == "left" else "R",
                        label_side=subj.side)
    else:
        hips = (label_hip, other_hip) if subj.side == "right" else (other_hip, label_hip)
        maps = hip_maps(hips, body, pose, size=size, view="pelvis", marker="R", metal=metal)
    return CaseDraw(subj, label_hip, other_hip, body, pose, metal, acq, maps, rng)


def make_case(seed: int, index: int, size: int, view: str
              ) -> tuple[np.ndarray, Subject, dict[str, object], dict[str, object]]:
    """Draw and render one case: (uint16 image, subject, oracle row, landmarks row)."""
    d = draw_case(seed, index, size, view)
    subj, label_hip, body, pose, metal, acq, maps, rng = (d.subj, d.label_hip, d.body, d.pose,
                                                         d.metal, d.acq, d.maps, d.rng)
    img = np.round(expose(maps, acq, rng) * np.float32(65535.0)).astype(np.uint16)
    # CR readers often store MONOCHROME1 (a DICOM-level choice; the PNG is always bone bright).
    mono1 = acq.detector == "CR" and rng.random() < 0.6
    q = bone_quality(subj.visible_bmd)
    image = f"images/{case_name(index)}.png"
    landmarks = landmark_row(image, view, maps.labels, maps.px_mm)
    oracle: dict[str, object] = {
        "patient_id": patient_id(index), "image": image,
        "view": view, "side": subj.side, "true_bmd": subj.true_bmd,
        "visible_bmd": subj.visible_bmd, "micro_component": subj.micro,
        "other_side_bmd": subj.other_bmd, "fn_bmd": subj.fn_bmd,
        "label_noise": subj.label_noise, "individual_component": subj.individual,
        "cortex_neck_mm": q["cortex_neck"], "cortex_shaft_mm": q["cortex_shaft"],
        "bvtv": q["bvtv"], "tensile_retention": q["tensile"],
        "head_radius_mm": label_hip.head_r, "neck_shaft_deg": label_hip.neck_shaft_deg,
        "neck_width_mm": 2 * label_hip.neck_r, "neck_len_mm": label_hip.neck_len,
        "leg_rotation_deg": label_hip.leg_rot_deg, "abduction_deg": label_hip.abduction_deg,
        "pelvic_tilt": label_hip.pelvic_tilt,
        "soft_tissue_ap_mm": body.ap_mm, "hip_half_width_mm": body.half_width_mm,
        "thigh_ap_mm": body.thigh_mm, "fat_fraction": body.fat_fraction,
        "gas_pockets": len(body.gas), "metal": metal.kind, "metal_side": metal.side,
        "kvp": acq.kvp, "filtration_mm_al": acq.filtration_mm_al,
        "exposure_quanta": acq.quanta_mm2, "grid": int(acq.grid), "detector": acq.detector,
        "scatter_ratio_20cm": acq.spr_20cm, "blur_mm": acq.blur_mm,
        "electronic_noise": acq.electronic_noise, "heel_angle_deg": acq.heel_angle_deg,
        "heel_strength": acq.heel_strength, "window_lo_pct": acq.window_lo_pct,
        "window_hi_pct": acq.window_hi_pct,
        "edge_gains": "/".join(f"{g:.3f}" for g in acq.edge_gains), "drc": acq.drc,
        "lut_slope": acq.lut_slope, "gamma": acq.lut_gamma,
        "rotation_deg": pose.rotation_deg, "scale": pose.scale, "shift_x_mm": pose.shift_mm[0],
        "shift_y_mm": pose.shift_mm[1], "collimation_ltrb": "/".join(
            f"{c:.3f}" for c in acq.collimation),
        "shutter": "white" if acq.shutter_white else "black",
        "photometric": "MONOCHROME1" if mono1 else "MONOCHROME2",
        "pixel_spacing_mm": maps.px_mm, "patient_mm_per_px": maps.labels["patient_mm_per_px"],
    }
    oracle.update({k: v for k, v in landmarks.items() if k not in ("image", "view", "metal",
                                                                     "metal_side",
                                                                     "pixel_spacing_mm")})
    oracle = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in oracle.items()}
    return img, subj, oracle, landmarks


def patient_id(index: int) -> str:
    return f"SYNTH-{index:05d}"


def manifest_row(subj: Subject, view: str = "hip") -> dict[str, object]:
    """Manifest row; a pelvis view names the labelled hip in `select` (crop it, then predict)."""
    row: dict[str, object] = {"image": f"images/{case_name(subj.index)}.png"}
    row.update({name: getattr(subj, name) for name in FIELD_NAMES})
    row.update(fn_bmd=f"{subj.fn_bmd:.3f}", patient_id=patient_id(subj.index), side=subj.side,
               select=subj.side if view == "pelvis" else "")
    return row


def encode_png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV always encodes uint16 PNG
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_dicom(img: np.ndarray, subj: Subject, *, seed: int, view: str,
                 spacing_mm: float, photometric: str = "MONOCHROME2") -> bytes:
    """A minimal, valid DX 'for presentation' object; UIDs derive from (seed, index).

    MONOCHROME1 (many CR readers store it: high values dark) inverts the stored values, so a
    reader that honours the tag shows the same picture as the PNG; the window spans the range.
    """
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
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.WindowCenter, ds.WindowWidth = 32768, 65536
    stored = (np.uint16(65535) - img) if photometric == "MONOCHROME1" else img
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _write_chunk(args: tuple[int, list[int], int, str, bool, str]
                 ) -> list[tuple[dict, dict, dict]]:
    """Worker: render and write a chunk of cases; return their manifest and oracle rows."""
    seed, indices, size, view, dicom, out = args
    import cv2

    cv2.setNumThreads(1)   # one process per core already; avoid oversubscription
    root = Path(out)
    rows = []
    for i in indices:
        img, subj, oracle, landmarks = make_case(seed, i, size, view)
        write_atomic(root / "images" / f"{case_name(i)}.png", encode_png(img))
        if dicom:
            write_atomic(root / "dicom" / f"{case_name(i)}.dcm",
                         encode_dicom(img, subj, seed=seed, view=view,
                                      spacing_mm=float(oracle["pixel_spacing_mm"]),
                                      photometric=str(oracle["photometric"])))
        rows.append((manifest_row(subj, view), oracle, landmarks))
    return rows


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode("utf-8"))


T = TypeVar("T")  # one job of a writer's chunk function
R = TypeVar("R")  # one row it returns


def run_chunks(write_chunk: Callable[[T], list[R]], jobs: list[T], workers: int,
               progress: Callable[[int], None] | None = None) -> list[R]:
    """Every job's rows in job order, in-process for one worker, else in a process pool.

    forkserver, not fork: a forked child of a process that already used OpenCV's thread pool
    can deadlock inside cv2 (seen in the test suite and in `train --synth`).
    """
    rows: list[R] = []
    if workers == 1:
        for job in jobs:
            rows.extend(write_chunk(job))
            if progress:
                progress(len(rows))
        return rows
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for part in pool.map(write_chunk, jobs):
            rows.extend(part)
            if progress:
                progress(len(rows))
    return rows


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
    results: list[tuple[dict, dict, dict]] = run_chunks(_write_chunk, jobs, workers, progress)
    manifest = root / "manifest.csv"
    _write_csv(root / "oracle.csv", list(results[0][1]), [o for _, o, _ in results])
    _write_csv(root / "landmarks.csv", list(LANDMARK_COLUMNS), [lm for _, _, lm in results])
    _write_csv(manifest, list(MANIFEST_COLUMNS), [m for m, _, _ in results])
    return manifest
