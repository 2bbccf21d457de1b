"""Shift detection and Mondrian intervals (bmd_edge/reliability) on real sessions and bundles.

The end-to-end tests calibrate the tiny bundle (real OpenVINO/ORT graph with an `embedding`
output) on small synthetic cohorts written as 16-bit PNGs, then predict clean, shifted and far
shifted films through the real Predictor and CLI.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bmd_edge.errors import BundleError, QualityGateError
from bmd_edge.reliability import fit
from bmd_edge.reliability.quality import QUALITY_NAMES, quality_features
from bmd_edge.reliability.section import Reliability
from bmd_edge.runtime.tiny import tiny_signing_key, write_tiny_bundle

SIZE = 48


def _film(rng: np.random.Generator, h: int = 64, w: int = 56) -> np.ndarray:
    """A toy hip (runtime/toy.py: the tiny bundle's locator finds it) with mild noise."""
    from bmd_edge.runtime.toy import toy_hip_film

    img = toy_hip_film(h, w, side=("left", "right")[int(rng.integers(2))],
                       seed=int(rng.integers(1 << 30)))[0]
    img = img + rng.normal(0, 0.004, img.shape).astype(np.float32)
    return np.clip(img, 0.01, 0.99).astype(np.float32)


def _cohort(folder: Path, n: int, seed: int) -> Path:
    """n films + manifest.csv; the label is the tiny model's own output plus noise whose size
    depends on sex (σ 0.02 for F, 0.06 for M): a pooled interval cannot fit both."""
    from bmd_edge.runtime.tiny import tiny_reference
    from bmd_edge.schema import encode, parse_record

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        img = _film(rng)
        name = f"images/c{k:04d}.png"
        cv2.imwrite(str(folder / name), np.round(img * 65535).astype(np.uint16))
        sex, age = "FM"[k % 2], float(rng.integers(55, 90))
        rec = parse_record({"age_xray": age, "age_bmd": age, "sex": sex})
        v, p = encode(rec)
        from bmd_edge.preprocess import PreprocessSpec, preprocess

        x = preprocess(img, PreprocessSpec(size=SIZE))[None]
        pred = float(tiny_reference(x, v[None], p[None])[0][0])
        y = pred + rng.normal(0, 0.02 if sex == "F" else 0.06)
        rows.append({"image": name, "age_xray": age, "age_bmd": age, "sex": sex,
                     "fn_bmd": round(y, 4), "side": "", "select": ""})
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from bmd_edge.reliability.build import calibrate

    root = tmp_path_factory.mktemp("rel")
    bundle = write_tiny_bundle(root / "bundle", size=SIZE)
    stats = _cohort(root / "stats", 150, 1)
    cal = _cohort(root / "cal", 240, 2)
    test = _cohort(root / "test", 200, 3)
    key, _ = tiny_signing_key(root / "key")
    meta, summary = calibrate(bundle, [stats], [cal], sign_key=key, log=lambda _: None)
    return {"bundle": bundle, "meta": meta, "summary": summary, "test": test, "root": root}


def test_quality_features_move_with_noise_gamma_and_mirror() -> None:
    from bmd_edge.preprocess import PreprocessSpec, preprocess

    spec = PreprocessSpec(size=SIZE)
    rng = np.random.default_rng(0)
    img = _film(rng)
    img[:, :20] *= 0.5                                 # a layout that is not left-right symmetric
    x = preprocess(img, spec)
    template = np.clip(x[0] * spec.std + spec.mean, 0, 1)
    f = dict(zip(QUALITY_NAMES, quality_features(x, img, mean=0.5, std=0.25, template=template)))
    noisy = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1).astype(np.float32)
    fn = dict(zip(QUALITY_NAMES, quality_features(preprocess(noisy, spec), noisy, mean=0.5,
                                                  std=0.25, template=template)))
    gam = img ** 0.8
    fg = dict(zip(QUALITY_NAMES, quality_features(preprocess(gam, spec), gam, mean=0.5,
                                                  std=0.25, template=template)))
    flip = img[:, ::-1].copy()
    ff = dict(zip(QUALITY_NAMES, quality_features(preprocess(flip, spec), flip, mean=0.5,
                                                  std=0.25, template=template)))
    assert fn["hf_noise"] > f["hf_noise"] + 1.0        # log σ of the finest band: noise is seen
    assert fg["q25"] != pytest.approx(f["q25"], abs=0.01)   # the intensity curve moved
    assert f["template_r"] == pytest.approx(1.0, abs=1e-4) and f["mirror_r"] < 0
    assert ff["mirror_r"] > 0 > f["mirror_r"]          # a mirrored film correlates with the mirror
    white = np.clip(img * 3, 0, 1)
    fw = dict(zip(QUALITY_NAMES, quality_features(preprocess(white, spec), white, mean=0.5,
                                                  std=0.25)))
    assert fw["raw_white"] > f["raw_white"] + 1.0      # log10 share of saturated pixels


def test_mondrian_holds_coverage_per_cell_where_pooled_does_not() -> None:
    rng = np.random.default_rng(0)

    def draw(n: int) -> tuple[np.ndarray, ...]:
        sex = rng.choice(["F", "M"], n)
        view = rng.choice(["hip", "pelvis"], n)
        pred = rng.normal(0.85, 0.12, n)
        sd = np.where(sex == "F", 0.03, 0.08) * np.where(view == "pelvis", 1.5, 1.0)
        return pred + rng.normal(0, 1, n) * sd, pred, sex, view

    y, pred, sex, view = draw(6000)
    m = fit.fit_mondrian(y, pred, sex, view, 0.9)
    assert len(m.cells) == 12
    y2, p2, s2, v2 = draw(12000)
    hw = np.array([m.halfwidth(p, s, v)[0] for p, s, v in zip(p2, s2, v2)])
    covered = np.abs(y2 - p2) <= hw
    pooled = np.abs(y2 - p2) <= m.fallback_halfwidth_gcm2
    for s in ("F", "M"):
        for v in ("hip", "pelvis"):
            cell = (s2 == s) & (v2 == v)
            assert 0.87 <= covered[cell].mean() <= 0.93, (s, v, covered[cell].mean())
    assert pooled[(s2 == "M") & (v2 == "pelvis")].mean() < 0.8   # the pooled width fails here


def test_flag_threshold_flags_at_most_5_percent_of_fresh_clean_cases() -> None:
    rng = np.random.default_rng(1)
    clean = rng.chisquare(8, 2000) ** 0.5
    flag, refuse = fit.thresholds(clean, 0.045, 2.0)
    fresh = rng.chisquare(8, 20000) ** 0.5
    assert 0.03 <= float(np.mean(fresh > flag)) <= 0.05
    assert refuse >= 2 * clean.max() and float(np.mean(fresh > refuse)) == 0.0


def test_section_round_trip_and_bad_values_name_their_key(calibrated: dict) -> None:
    d = calibrated["meta"].reliability.to_dict()
    assert Reliability.from_dict(d).to_dict() == d
    assert {c["n"] >= 30 for c in d["intervals"]["cells"]} == {True}
    bad = json.loads(json.dumps(d))
    bad["shift"]["refuse_threshold"] = bad["shift"]["flag_threshold"] / 2
    with pytest.raises(BundleError, match="reliability.shift.refuse_threshold"):
        Reliability.from_dict(bad)
    assert d["shift"]["views"] == ["hip"]              # the statistics set held hips only
    bad = json.loads(json.dumps(d))
    bad["shift"]["views"] = ["hip", "knee"]
    with pytest.raises(BundleError, match=r"reliability.shift.views\[1\]"):
        Reliability.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["intervals"]["cells"].append(dict(bad["intervals"]["cells"][0]))
    with pytest.raises(BundleError, match="appears twice"):
        Reliability.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["intervals"]["cells"][0]["halfwidth_gcm2"] = -0.1
    with pytest.raises(BundleError, match=r"cells\[0\].halfwidth_gcm2"):
        Reliability.from_dict(bad)


def test_calibrated_bundle_flags_a_shift_widens_and_refuses_a_far_one(calibrated: dict) -> None:
    from bmd_edge.runtime.predictor import Predictor

    s = calibrated["summary"]
    assert s["clean_flagged_calibration"] <= 0.05
    with open(calibrated["test"], encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    root = calibrated["test"].parent
    for backend in ("openvino", "onnxruntime"):
        p = Predictor.load(calibrated["bundle"], backend=backend)
        preds = [p.predict(root / r["image"], age=float(r["age_xray"]), sex=r["sex"])
                 for r in rows]
        flagged = np.mean([q.flagged for q in preds])
        assert flagged <= 0.10, flagged                # fresh clean cases: rarely flagged
        y = np.array([float(r["fn_bmd"]) for r in rows])
        lo = np.array([q.interval[0] for q in preds])
        hi = np.array([q.interval[1] for q in preds])
        assert 0.8 <= np.mean((y >= lo) & (y <= hi)) <= 0.98
        widths = {q.interval_cell.split("/")[0]: q.interval[1] - q.interval[0] for q in preds}
        assert widths["M"] > 1.8 * widths["F"]         # Mondrian: men's cells are wider
        img = cv2.imread(str(root / rows[0]["image"]), cv2.IMREAD_UNCHANGED) / 65535.0
        clean = p.predict(img.astype(np.float32), age=70, sex="F")
        rng = np.random.default_rng(5)
        noisy = np.clip(img + rng.normal(0, 0.006, img.shape), 0, 1).astype(np.float32)
        q = p.predict(noisy, age=70, sex="F")
        assert q.flagged and q.shift_score > clean.shift_score
        assert any(getattr(w, "code", "") == "shift-flagged" for w in q.warnings)
        assert (q.interval[1] - q.interval[0]) > (clean.interval[1] - clean.interval[0])
        assert q.to_dict()["reliability"]["flagged"] is True
        wild = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1).astype(np.float32)
        with pytest.raises(QualityGateError, match="refused"):
            p.predict(wild, age=70, sex="F")
        forced = p.predict(wild, age=70, sex="F", force=True)
        assert forced.flagged and "refuse limit: forced" in " ".join(forced.warnings)
        half = p.predict(img.astype(np.float32), age=70, sex="F", select="left", force=True)
        assert half.flagged and any(getattr(w, "field", "") == "view" for w in half.warnings)
        both = p.infer_each([p.prepare(img.astype(np.float32), age=70, sex="F"),
                             p.prepare(wild, age=70, sex="F")])   # one refusal, one result
        assert not isinstance(both[0], Exception) and isinstance(both[1], QualityGateError)


def test_cli_json_and_batch_csv_carry_the_flag(calibrated: dict, tmp_path: Path) -> None:
    from tests.cli_run import run_main

    img = cv2.imread(str(calibrated["test"].parent / "images" / "c0000.png"),
                     cv2.IMREAD_UNCHANGED) / 65535.0
    rng = np.random.default_rng(7)
    folder = tmp_path / "in"
    folder.mkdir()
    noisy = np.clip(img + rng.normal(0, 0.006, img.shape), 0, 1)
    cv2.imwrite(str(folder / "noisy.png"), np.round(noisy * 65535).astype(np.uint16))
    wild = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)
    cv2.imwrite(str(folder / "wild.png"), np.round(wild * 65535).astype(np.uint16))
    b = str(calibrated["bundle"])
    code, out, err = run_main(["predict", str(folder / "noisy.png"), "--age", "70", "--sex", "F",
                               "--model", b, "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["reliability"]["flagged"] is True and any("FLAGGED" in w for w in d["warnings"])
    code, out, err = run_main(["predict", str(folder / "noisy.png"), "--age", "70", "--sex", "F",
                               "--model", b])
    assert code == 0 and "FLAGGED" in out
    code, out, err = run_main(["predict", str(folder / "wild.png"), "--age", "70", "--sex", "F",
                               "--model", b])
    assert code == 2 and err.startswith("error:") and "refused" in err and "Traceback" not in err
    code, out, err = run_main(["predict", str(folder), "--age", "70", "--sex", "F",
                               "--model", b, "--out", str(tmp_path / "r.csv")])
    with open(tmp_path / "r.csv", encoding="utf-8") as fh:
        rows = {r["source"]: r for r in csv.DictReader(fh)}
    assert rows["noisy.png"]["status"] == "ok" and "FLAGGED" in rows["noisy.png"]["warnings"]
    assert rows["wild.png"]["status"] == "failed" and "refused" in rows["wild.png"]["error"]


def test_tampered_statistics_file_is_refused(calibrated: dict, tmp_path: Path) -> None:
    import shutil

    from bmd_edge.runtime.predictor import Predictor

    copy = tmp_path / "b"
    shutil.copytree(calibrated["bundle"], copy)
    data = bytearray((copy / "reliability.npz").read_bytes())
    data[-10] ^= 1
    (copy / "reliability.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch for file reliability.npz"):
        Predictor.load(copy)
