"""The hip locator: letterbox/decode maths by hand, augmentation labels, a tiny trained locator
exported to ONNX and OpenVINO (same hips from both), thread safety, torch-free runtime import."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from bmd_edge.errors import BundleError, InputError
from bmd_edge.locate import Locator, LocatorSpec
from bmd_edge.locate.data import Augment, HipLabel, Sample, render, targets
from bmd_edge.locate.decode import decode
from bmd_edge.locate.letterbox import letterbox, window
from bmd_edge.locate.spec import GEOMETRY
from bmd_edge.runtime.backends import SessionConfig

SPEC = LocatorSpec(size=64, stride=8)


def toy_film(side: str, cx: float, cy: float, r: float, h: int = 80, w: int = 100) -> Sample:
    """A bright disc (head) with a thick bar (neck + shaft) running down to the `side`."""
    img = np.full((h, w), 0.2, np.float32)
    sx = -1.0 if side == "left" else 1.0
    neck = (cx + sx * 2.2 * r, cy + 2.2 * r)
    cv2.line(img, (round(cx), round(cy)), (round(neck[0]), round(neck[1])), 0.7, max(2, round(r)))
    cv2.line(img, (round(neck[0]), round(neck[1])), (round(neck[0]), h), 0.7, max(2, round(r)))
    cv2.circle(img, (round(cx), round(cy)), round(r), 1.0, -1)
    roi = ((cx + neck[0]) / 2, (cy + neck[1]) / 2)
    hip = HipLabel((cx, cy), r, neck, roi, r * 0.6, r * 1.5)
    return Sample(window(img, SPEC).astype(np.float16), (hip,), True,
                  f"toy/{side}_{cx:.0f}_{cy:.0f}")


def test_letterbox_maps_points_back_to_the_original() -> None:
    img = np.random.default_rng(0).random((50, 200)).astype(np.float32)
    x, box = letterbox(img, SPEC)
    assert x.shape == (1, 1, 64, 64)
    assert box.scale == pytest.approx(64 / 200)
    assert box.pad_x == 0 and box.pad_y == pytest.approx((64 - 16) // 2)
    # the pad is standardised black; the film occupies rows pad_y .. pad_y + 16
    assert np.allclose(x[0, 0, :int(box.pad_y)], (0 - SPEC.mean) / SPEC.std)
    assert box.to_original(32.0, box.pad_y + 8.0) == pytest.approx((32.5 / 0.32 - 0.5, 8.5 / 0.32 - 0.5))


def test_decode_reads_a_hand_made_output_in_original_pixels() -> None:
    g = SPEC.grid
    heat = np.zeros((2, g, g), np.float32)
    geom = np.zeros((len(GEOMETRY), g, g), np.float32)
    heat[1, 3, 5] = 0.9                    # image-right hip at cell (row 3, col 5)
    heat[0, 6, 1] = 0.2                    # below threshold: not a hip
    geom[:, 3, 5] = (0.25, 0.5, 4 / 64, 8 / 64, 8 / 64, 4 / 64, 4 / 64, 3 / 64, 6 / 64)
    img = np.zeros((100, 200), np.float32)
    _, box = letterbox(img, SPEC)          # scale 0.32, pad_y 16
    res = decode(heat, geom, np.array([[0.8]]), box, SPEC, threshold=0.3)
    assert res.is_hip_score == pytest.approx(0.8)
    assert len(res.hips) == 1 and res.hip("left") is None
    hip = res.hip("right")
    hx, hy = (5.25 * 8 + 0.5) / 0.32 - 0.5, (3.5 * 8 - 16 + 0.5) / 0.32 - 0.5   # by hand
    assert hip.head_xy == pytest.approx((hx, hy))
    assert hip.head_r == pytest.approx(4 / 0.32)
    assert hip.neck_xy == pytest.approx((hx + 8 / 0.32, hy + 8 / 0.32))
    assert hip.neck_angle_deg == pytest.approx(45.0) and hip.roi_angle_deg == pytest.approx(45.0)
    assert hip.roi_xy == pytest.approx((hx + 4 / 0.32, hy + 4 / 0.32))
    assert (hip.roi_len, hip.roi_width) == pytest.approx((3 / 0.32, 6 / 0.32))
    assert hip.confidence == pytest.approx(0.9)
    assert hip.neck_points_outward and hip.side_if_standard == "left"


def test_mirror_swaps_the_side_and_moves_the_head() -> None:
    film = toy_film("left", 60, 30, 8)
    plain = Augment.none()
    mirrored = dataclasses.replace(plain, mirror=1.0)
    img0, hips0 = render(film, SPEC, plain, np.random.default_rng(0))
    img1, hips1 = render(film, SPEC, mirrored, np.random.default_rng(0))
    assert [s for s, _ in hips0] == ["left"] and [s for s, _ in hips1] == ["right"]
    assert hips1[0][1].head[0] == pytest.approx(63 - hips0[0][1].head[0])
    assert np.allclose(img1, img0[:, ::-1], atol=1e-5)


def test_targets_put_the_peak_and_geometry_at_the_head() -> None:
    hip = HipLabel((21.0, 43.0), 6.0, (30.0, 50.0), (25.0, 46.0), 4.0, 9.0)
    heat, geom, mask = targets([("right", hip)], SPEC)
    assert heat[0].max() == 0.0 and heat[1, 5, 2] == 1.0
    assert mask.sum() == 9 and mask[5, 2] == 1.0
    assert geom[:2, 5, 2] == pytest.approx((21 / 8 - 2, 43 / 8 - 5))
    assert geom[3, 5, 2] == pytest.approx(9 / 64)


def test_close_ups_keep_a_whole_head_up_to_a_quarter_of_the_frame() -> None:
    film = toy_film("right", 40, 30, 5)
    aug = dataclasses.replace(Augment.none(), close_up=1.0, max_head_frac=0.25)
    fracs = []
    for seed in range(30):
        _, hips = render(film, SPEC, aug, np.random.default_rng(seed))
        assert len(hips) == 1 and hips[0][0] == "right"
        hp = hips[0][1]
        assert hp.head_r <= hp.head[0] + 1e-6 and hp.head[0] + hp.head_r <= 64 + 1e-6
        assert hp.head_r <= hp.head[1] + 1e-6 and hp.head[1] + hp.head_r <= 64 + 1e-6
        fracs.append(hp.head_r / 64)
    # plain fit gives 5 · 64/100 = 3.2 px (5 %); close-ups span up to 25 %
    assert min(fracs) >= 0.05 - 1e-6 and max(fracs) <= 0.25 + 1e-6 and max(fracs) > 0.15


def test_domain_randomisation_keeps_the_letterbox_black_and_the_labels_true() -> None:
    film = toy_film("left", 60, 30, 8)
    lo, hi = (0 - SPEC.mean) / SPEC.std, (1 - SPEC.mean) / SPEC.std
    bars = 0
    for seed in range(40):
        img, hips = render(film, SPEC, dataclasses.replace(Augment(), aspect=1.0),
                           np.random.default_rng(seed))
        assert img.shape == (64, 64) and np.isfinite(img).all()
        assert img.min() >= lo - 1e-5 and img.max() <= hi + 1e-5
        # a non-square field of view: whole black rows or columns on two opposite sides
        black = np.isclose(img, lo)
        bars += bool(black.all(axis=0)[[0, -1]].all() or black.all(axis=1)[[0, -1]].all())
        for side, hp in hips:
            assert side == ("left" if hp.neck[0] < hp.head[0] else "right")
    assert bars == 40


def test_photometric_off_only_rewindows() -> None:
    from bmd_edge.locate.randomize import Photometric, perturb

    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 0.8, (32, 32)).astype(np.float32)
    content = np.zeros((32, 32), bool)
    content[:, 4:28] = True
    out = perturb(img, content, Photometric.off(), rng)
    assert (out[~content] == 0).all()
    ref = img[content]
    lo, hi = np.percentile(ref, (1, 99))
    assert out[content] == pytest.approx(np.clip((ref - lo) / (hi - lo), 0, 1), abs=1e-5)


def test_bad_inputs_are_refused(tmp_path) -> None:
    with pytest.raises(BundleError):
        Locator(tmp_path / "missing.onnx")
    with pytest.raises(InputError):
        letterbox(np.zeros((4, 100), np.float32), SPEC)
    with pytest.raises(BundleError):
        LocatorSpec(size=100, stride=8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny locator trained on toy films until it finds their heads, exported both ways."""
    torch = pytest.importorskip("torch")
    from bmd_edge.locate.export import export_locator
    from bmd_edge.locate.model import LocatorNetConfig
    from bmd_edge.locate.train import TrainConfig, train

    rng = np.random.default_rng(1)
    films = [toy_film(side, rng.uniform(30, 70), rng.uniform(15, 35), rng.uniform(6, 9))
             for side in ("left", "right") for _ in range(12)]
    films = [f for pair in zip(films[:12], films[12:]) for f in pair]   # alternate sides
    out = tmp_path_factory.mktemp("locator")
    cfg = TrainConfig(epochs=30, batch=8, lr=1e-2, val_frac=0.2, threads=1,
                      net=LocatorNetConfig(width=8, head=16))
    torch.manual_seed(0)
    # the toy task learns geometry, not robustness: no augmentation keeps it to seconds
    net, _ = train(films, out, SPEC, cfg, log=lambda *_: None, aug=Augment.none())
    onnx_path, xml_path = export_locator(net, SPEC, out)
    return net, onnx_path, xml_path, films


def test_trained_tiny_locator_finds_the_toy_heads_and_sides(exported) -> None:
    _, onnx_path, _, films = exported
    loc = Locator(onnx_path, threshold=0.2)
    assert loc.spec == SPEC                       # read back from the file's metadata
    hits = 0
    for film in films:
        res = loc.locate(film.pixels.astype(np.float32))
        truth = film.hips[0]
        side = "left" if truth.neck[0] < truth.head[0] else "right"
        hip = res.hip(side)
        hits += hip is not None and math.dist(hip.head_xy, truth.head) < 0.06 * 100
    assert hits >= 0.8 * len(films)


def test_onnx_and_openvino_give_the_same_hips(exported) -> None:
    _, onnx_path, xml_path, films = exported
    ort = Locator(onnx_path, SessionConfig(backend="onnxruntime"), threshold=0.05)
    ov = Locator(xml_path, SessionConfig(backend="openvino"), threshold=0.05)
    assert ov.spec == ort.spec == SPEC
    for film in films[:6]:
        img = film.pixels.astype(np.float32)
        (a, _), (b, _) = ort.raw(img), ov.raw(img)
        for x, y in zip(a, b):
            assert np.allclose(x, y, atol=1e-4)
        ra, rb = ort.locate(img), ov.locate(img)
        assert [h.side_in_image for h in ra.hips] == [h.side_in_image for h in rb.hips]
        for ha, hb in zip(ra.hips, rb.hips):
            assert ha.head_xy == pytest.approx(hb.head_xy, abs=1e-2)


def test_flip_averaged_export_equals_the_mean_of_film_and_mirror(exported, tmp_path) -> None:
    from bmd_edge.locate.export import export_locator

    net, onnx_path, _, films = exported
    _, tta_xml = export_locator(net, SPEC, tmp_path, stem="tta", flip_average=True)
    plain, tta = Locator(onnx_path), Locator(tta_xml)
    for film in films[:4]:
        img = film.pixels.astype(np.float32)
        (h1, _, c1), _ = plain.raw(img)
        (h2, _, c2), _ = plain.raw(np.ascontiguousarray(img[:, ::-1]))
        (h, _, c), _ = tta.raw(img)
        # an 80×100 film fills the input's width, so mirroring the film mirrors the input
        assert np.allclose(h, 0.5 * (h1 + h2[:, ::-1, :, ::-1]), atol=1e-4)
        assert np.allclose(c, 0.5 * (c1 + c2), atol=1e-5)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_one_locator_serves_many_threads(exported, backend: str) -> None:
    _, onnx_path, xml_path, films = exported
    loc = Locator(xml_path if backend == "openvino" else onnx_path,
                  SessionConfig(backend=backend, threads=1), threshold=0.05)
    imgs = [f.pixels.astype(np.float32) for f in films[:8]] * 4
    alone = [loc.locate(i) for i in imgs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(loc.locate, imgs))
    assert together == alone


def test_runtime_imports_without_torch() -> None:
    code = ("import sys; import bmd_edge.locate as L; import bmd_edge.locate.metrics; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(L.Locator.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Locator"


def test_metrics_count_found_heads_sides_and_refusals() -> None:
    from bmd_edge.locate.decode import FoundHip, LocateResult
    from bmd_edge.locate.metrics import choose_threshold, evaluate

    films = [toy_film("left", 60, 30, 8), toy_film("right", 40, 30, 8)]
    other = Sample(np.zeros((80, 100), np.float16), (), False, "toy/other")

    def hip(side: str, x: float, y: float) -> FoundHip:
        return FoundHip(side, (x, y), 8.0, (x, y + 10), 90.0, (x, y + 5), 5.0, 12.0, 90.0, 0.9)

    answers = {  # what the "locator" says for each film (looked up by the film's pixels)
        id(films[0]): LocateResult(0.9, (hip("left", 63, 34),)),     # found, 5 px off, right side
        id(films[1]): LocateResult(0.8, (hip("left", 40, 30), hip("right", 10, 70))),  # wrong
        id(other): LocateResult(0.5, ()),
    }
    by_bytes = {s.pixels.tobytes(): answers[id(s)] for s in (*films, other)}
    m = evaluate(lambda img: by_bytes[img.astype(np.float16).tobytes()], [*films, other],
                 threshold=0.7)
    assert (m.n_hip_films, m.n_other_films, m.n_heads) == (2, 1, 2)
    assert m.head_found == 1.0 and m.side_correct == 0.5
    assert m.centre_err_median_pct == pytest.approx((5.0 + 0.0) / 2)   # % of 100 px width
    assert m.false_hips_on_hip_films == 0.5
    assert m.hip_films_accepted == 1.0 and m.other_films_refused == 1.0
    assert choose_threshold([0.1 * k for k in range(1, 11)], keep=0.9) == pytest.approx(0.19)


def test_balance_repeats_negatives_to_the_asked_share() -> None:
    pytest.importorskip("torch")
    from bmd_edge.locate.train import balance, split

    pos = [toy_film("left", 50, 30, 8) for _ in range(7)]
    neg = [Sample(np.zeros((8, 8), np.float16), (), False, "neg/x")]
    out = balance(pos + neg, 0.3)
    assert sum(not s.is_hip for s in out) == 3 and len(out) == 10
    tr, va = split(pos + neg * 4, 0.25)
    assert len(va) == 2 + 1 and len(tr) == 5 + 3


def test_reference_heads_are_read_and_scored_in_percent_of_the_width(tmp_path) -> None:
    from bmd_edge.locate.decode import FoundHip, LocateResult
    from bmd_edge.locate.metrics import load_reference_heads, reference_errors

    csv_path = tmp_path / "heads.csv"
    csv_path.write_text(
        "file,side_in_image,head_x_frac,head_y_frac,head_r_frac,age_group,view,mark_quality,notes\n"
        "hip/a.jpg,left,0.25,0.5,0.05,adult,AP pelvis,clear,\n"
        "hip/a.jpg,right,0.75,0.5,0.05,adult,AP pelvis,faint,\"x, y\"\n")
    refs = load_reference_heads(csv_path)["hip/a.jpg"]
    assert [(r.side_in_image, r.x_frac, r.quality) for r in refs] == [
        ("left", 0.25, "clear"), ("right", 0.75, "faint")]

    def hip(side: str, x: float, y: float) -> FoundHip:
        return FoundHip(side, (x, y), 8.0, (x, y + 10), 90.0, (x, y + 5), 5.0, 12.0, 90.0, 0.9)

    # 400 × 200 film: left head at (100, 100), right at (300, 100)
    res = LocateResult(0.9, (hip("left", 104, 103), hip("left", 290, 100)))
    (_, e1, s1), (_, e2, s2) = reference_errors(res, refs, 400, 200)
    assert e1 == pytest.approx(100 * 5 / 400) and s1
    assert e2 == pytest.approx(100 * 10 / 400) and not s2      # found, but named the other side
    assert reference_errors(LocateResult(0.9, ()), refs, 400, 200)[0][1] is None


def test_flip_averaging_maps_the_mirror_back_onto_the_film() -> None:
    torch = pytest.importorskip("torch")
    from bmd_edge.locate.model import FlipAveraged, LocatorNet, LocatorNetConfig

    # the mirror's training targets, mapped back, are the film's own targets
    hip = HipLabel((21.3, 43.0), 6.0, (30.0, 50.0), (25.0, 46.0), 4.0, 9.0)
    m = 63.0 - np.array([0.0])
    mir = HipLabel((m[0] - 21.3, 43.0), 6.0, (m[0] - 30.0, 50.0), (m[0] - 25.0, 46.0), 4.0, 9.0)
    _, geom, mask = targets([("right", hip)], SPEC)
    _, geom_m, _ = targets([("left", mir)], SPEC)
    net = LocatorNet(LocatorNetConfig(width=4, head=8)).eval()
    tta = FlipAveraged(net, SPEC.stride)
    back = (torch.flip(torch.from_numpy(geom_m)[None], dims=[3]) * tta.gk + tta.gb)[0].numpy()
    assert mask.sum() == 9
    assert np.allclose(back[:, mask > 0], geom[:, mask > 0], atol=1e-5)
    # and the averaged network is itself mirror-equivariant
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        h, g, c = tta(x)
        hf, gf, cf = tta(torch.flip(x, dims=[3]))
    assert torch.allclose(torch.flip(hf, dims=[3])[:, [1, 0]], h, atol=1e-6)
    assert torch.allclose(torch.flip(gf, dims=[3]) * tta.gk + tta.gb, g, atol=1e-5)
    assert torch.allclose(cf, c, atol=1e-6)


def test_checkpoint_averaging_takes_the_mean_of_the_weights(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from bmd_edge.locate.model import LocatorNet, LocatorNetConfig
    from bmd_edge.locate.swa import average_checkpoints

    cfg = LocatorNetConfig(width=4, head=8)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = LocatorNet(cfg)
        paths.append(tmp_path / f"e{seed}.pt")
        torch.save({"model": net.state_dict(), "spec": SPEC.to_dict(), "net": cfg.to_dict(),
                    "config": {}, "metrics": {}, "epoch": seed}, paths[-1])
    a, b = (torch.load(p, weights_only=True)["model"] for p in paths)
    avg = average_checkpoints(paths)
    assert torch.allclose(avg["model"]["heat.weight"], (a["heat.weight"] + b["heat.weight"]) / 2)
    assert avg["epoch"] == 1 and not torch.equal(a["heat.weight"], b["heat.weight"])
    LocatorNet(cfg).load_state_dict(avg["model"])           # loads as a plain checkpoint
    torch.save({"model": a, "spec": SPEC.to_dict(), "net": {"width": 8, "head": 8},
                "config": {}, "metrics": {}, "epoch": 2}, tmp_path / "other.pt")
    with pytest.raises(ValueError):
        average_checkpoints([paths[0], tmp_path / "other.pt"])
