"""`bmd-edge evaluate --model BUNDLE`: score a bundle variant torch-free; one error path."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from bmd_edge.cli import app
from bmd_edge.runtime.tiny import write_tiny_bundle
from corpus.make_bad_inputs import hip_like
from test_predict_cli import BLOCK_TORCH

@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evalb")
    bundle = write_tiny_bundle(root / "tiny", size=32)
    rows = []
    for i in range(8):
        name = f"c{i}.png"
        cv2.imwrite(str(root / name), np.round(hip_like(64, 56, i) * 255).astype("u1"))
        rows.append(f"{name},{62 + 3 * i},{'FM'[i % 2]},{0.70 + 0.04 * i:.2f}\n")
    (root / "m.csv").write_text("image,age_xray,sex,fn_bmd\n" + "".join(rows))
    return bundle, root / "m.csv"


def test_evaluate_a_bundle_torch_free(setup: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, manifest = setup
    out = tmp_path / "eval"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "evaluate", "--model", str(bundle),
                        "--manifest", str(manifest), "--out", str(out), "--backend",
                        "onnxruntime"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert {"metrics.json", "subgroups.csv", "predictions.csv", "scatter.png",
            "bland_altman.png", "roc.png"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "metrics.json").read_text())
    assert report["variant"] == "onnx-int8" and report["n"] == 8
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    pred = np.array([float(row["onnx-int8"]) for row in rows])
    truth = np.array([float(row["fn_bmd"]) for row in rows])
    assert report["metrics"]["onnx-int8"]["mae"] == pytest.approx(np.abs(pred - truth).mean(),
                                                                  abs=1e-4)
    # The same numbers `predict` prints for one of the images.
    one = CliRunner().invoke(app, ["predict", str(manifest.parent / rows[3]["image"]), "--age",
                                   "71", "--sex", "M", "--model", str(bundle), "--backend",
                                   "onnxruntime", "--json"])
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["bmd_gcm2"] == pytest.approx(pred[3], abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "export/model_int8.onnx"], "part of a bundle, not a PyTorch checkpoint"),
    ([], "give exactly one of --checkpoint"),
    (["--model", "/no/such/bundle"], "does not exist"),
])
def test_evaluate_errors_are_one_line(setup: tuple[Path, Path], args: list[str],
                                      message: str) -> None:
    _, manifest = setup
    res = CliRunner().invoke(app, ["evaluate", "--manifest", str(manifest), *args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1


def test_an_unexpected_exception_is_one_internal_error_line(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Anything that is not a BmdEdgeError is a bug: one line, exit 1, no traceback."""
    import bmd_edge.bundle as bundle_mod

    def boom(*a: object, **k: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.delenv("BMD_EDGE_DEBUG", raising=False)
    monkeypatch.setattr(bundle_mod.Bundle, "load", boom)
    res = CliRunner().invoke(app, ["info"])
    assert res.exit_code == 1
    assert res.stderr.startswith("internal error: ZeroDivisionError: a bug")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.output


def test_warnings_are_records_that_read_as_text(setup: tuple[Path, Path]) -> None:
    from bmd_edge.runtime.predictor import Predictor

    bundle, manifest = setup
    p = Predictor.load(bundle, backend="onnxruntime", threads=1)
    res = p.predict(manifest.parent / "c0.png", age=70, sex="F", height_cm=160, weight_kg=61)
    (w,) = [w for w in res.warnings if getattr(w, "code", "") == "derived"]
    assert (w.field, w.value) == ("bmi", "23.8") and str(w).startswith("bmi derived")
    assert json.loads(json.dumps(res.to_dict()))["warnings"] == [str(x) for x in res.warnings]
