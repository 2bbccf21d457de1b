"""examples/cpp: the C++ embedding builds against the openvino wheel's runtime, gives the Python
runtime's BMD within 1e-3 g/cm² on 20 images, and refuses a bundle whose digests do not match.

Needs cmake and g++ (on the CI machine); a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from bmd_edge.bundle import default_bundle_path
from bmd_edge.runtime.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE_GCM2 = 1e-3


@pytest.fixture(scope="module")
def cpp_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Configure and build examples/cpp once (about 40 s on two cores)."""
    import openvino

    build = tmp_path_factory.mktemp("cpp-build")
    ov_cmake = Path(openvino.__file__).parent / "cmake"
    subprocess.run(["cmake", "-S", str(ROOT / "examples" / "cpp"), "-B", str(build),
                    f"-DOpenVINO_DIR={ov_cmake}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    exe = build / "bmd_edge_cpp"
    assert exe.is_file()
    return exe


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """20 synthetic hips as 16-bit PNG (for Python) and PGM (for C++), half cut to odd shapes
    so the non-integer INTER_AREA path and letterbox padding are exercised too."""
    from bmd_edge.synth import generate_cohort

    out = tmp_path_factory.mktemp("cpp-cohort")
    manifest = generate_cohort(20, out, seed=11, size=192, workers=1)
    rows = list(csv.DictReader(manifest.open()))
    rng = np.random.default_rng(0)
    cases = []
    for i, r in enumerate(rows):
        arr = cv2.imread(str(out / r["image"]), cv2.IMREAD_UNCHANGED)
        assert arr.dtype == np.uint16
        if i % 2:
            h, w = arr.shape
            ch, cw = int(rng.integers(h // 2, h)), int(rng.integers(w // 2, w))
            arr = np.ascontiguousarray(arr[:ch, :cw])
        png, pgm = out / f"c{i:02d}.png", out / f"c{i:02d}.pgm"
        assert cv2.imwrite(str(png), arr) and cv2.imwrite(str(pgm), arr)
        side = r["side"] if i % 3 else ("left" if r["side"] == "right" else "right")
        cases.append({"png": str(png), "pgm": str(pgm), "age": r["age_xray"], "sex": r["sex"],
                      "side": side})
    return cases


def _run_cpp(exe: Path, bundle: Path, cases: list[dict[str, str]],
             dump_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One process for all cases (the model compiles once); options precede each image."""
    args = [str(exe), "--bundle", str(bundle)]
    for i, case in enumerate(cases):
        args += ["--age", case["age"], "--sex", case["sex"], "--side", case["side"]]
        if dump_dir is not None:
            args += ["--dump-input", str(dump_dir / f"{i}.f32")]
        args.append(case["pgm"])
    return subprocess.run(args, check=False, capture_output=True, text=True)


def test_cpp_bmd_and_input_equal_python_runtime(cpp_binary: Path, cohort: list[dict[str, str]],
                                                tmp_path: Path) -> None:
    predictor = Predictor.load(None)
    res = _run_cpp(cpp_binary, default_bundle_path(), cohort, dump_dir=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(cohort)
    size = predictor.spec.size
    bmd_diffs, input_diffs, bmds = [], [], []
    for i, (case, line) in enumerate(zip(cohort, lines)):
        prepared = predictor.prepare(case["png"], age=float(case["age"]), sex=case["sex"],
                                     side=case["side"])
        py = predictor.infer([prepared])[0].bmd_gcm2
        cpp_input = np.fromfile(tmp_path / f"{i}.f32", dtype=np.float32).reshape(1, size, size)
        input_diffs.append(float(np.abs(cpp_input - prepared.image).max()))
        cpp = float(line.split("\t")[-1])
        bmd_diffs.append(abs(cpp - py))
        bmds.append(py)
    print(f"C++ vs Python on {len(cohort)} images: largest |BMD difference| "
          f"{max(bmd_diffs):.2e} g/cm², largest preprocessed-input difference "
          f"{max(input_diffs):.2e}")
    assert max(input_diffs) < 1e-4          # the preprocessing is reproduced, not approximated
    assert max(bmd_diffs) <= TOLERANCE_GCM2
    assert np.std(bmds) > 0.01               # real, differing results, not one constant


def test_cpp_refuses_tampered_bundle(cpp_binary: Path, cohort: list[dict[str, str]],
                                     tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    weights = bundle / "model_int8.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    res = _run_cpp(cpp_binary, bundle, cohort[:1])
    assert res.returncode == 2
    assert res.stderr.startswith("error: checksum mismatch for file model_int8.bin")
    assert res.stdout == ""
