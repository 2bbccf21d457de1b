"""Quantization pieces: BN folding, PTQ save/load round trip, calibration sampling, int8 folding math."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bmd_edge.compress.calibration import select_calibration, split_heldout, strata_of  # noqa: E402
from bmd_edge.compress.conformal import conformal_halfwidth  # noqa: E402
from bmd_edge.compress.onnx_int8 import quantize_linear  # noqa: E402
from bmd_edge.errors import InputError  # noqa: E402


def _tiny():
    from bmd_edge.model import build_model
    from bmd_edge.training.config import resolve_config

    torch.manual_seed(0)
    return build_model(resolve_config("tiny").model_config()).eval()


def _batches(n: int = 3, b: int = 4) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(b, 1, 64, 64, generator=g), torch.randn(b, 10, generator=g),
             (torch.rand(b, 10, generator=g) > 0.3).float()) for _ in range(n)]


def test_fold_batchnorm_removes_every_bn_and_keeps_outputs() -> None:
    from bmd_edge.compress.quantize import fold_batchnorm

    model = _tiny()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = _batches(1)[0]
    with torch.no_grad():
        before = model(*x)[0]
    assert fold_batchnorm(model, x) == n_bn > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(model(*x)[0], before, atol=1e-5)


def test_ptq_checkpoint_round_trip_gives_identical_outputs(tmp_path) -> None:
    from bmd_edge.compress.pipeline import _build
    from bmd_edge.compress.quantize import (QuantizeConfig, fold_batchnorm, load_quantized, ptq,
                                            save_quantized)

    model = _tiny()
    batches = _batches()
    fold_batchnorm(model, batches[0])
    q = ptq(model, batches, QuantizeConfig(subset_size=3, qat_epochs=0))
    from bmd_edge.training.config import resolve_config

    base = {"format": "bmd-edge-checkpoint/1",
            "model_config": resolve_config("tiny").model_config().to_dict()}
    save_quantized(tmp_path / "q.pt", q, base, QuantizeConfig(qat_epochs=0), {})
    again, ck = load_quantized(tmp_path / "q.pt", _build, batches[0])
    with torch.no_grad():
        for x in batches:
            a, b = q(*x), again(*x)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # The head Linear was kept float: no quantizer on its input or weight (SmoothQuant's float
    # scale may still sit there).
    import json

    hooks = json.loads(ck["nncf_config"])["compression_state"]
    on_head = [h["module_cls_name"] for h in hooks
               if any("head/net/4/linear" in n for n in h["hook_names_in_model"])]
    assert on_head and not any(c.endswith("Quantizer") for c in on_head)


def test_load_quantized_refuses_a_plain_checkpoint(tmp_path) -> None:
    from bmd_edge.compress.quantize import load_quantized
    from bmd_edge.errors import BundleError

    torch.save({"format": "bmd-edge-checkpoint/1"}, tmp_path / "x.pt")
    with pytest.raises(BundleError, match="expected bmd-edge-qat/1"):
        load_quantized(tmp_path / "x.pt", lambda ck: None, ())


def _cases(labels, sexes):
    return [SimpleNamespace(fn_bmd=y, line=i + 2, record=SimpleNamespace(values={"sex": s}))
            for i, (y, s) in enumerate(zip(labels, sexes))]


def test_calibration_subset_is_stratified_by_bmd_and_sex() -> None:
    rng = np.random.default_rng(0)
    labels = rng.uniform(0.5, 1.2, 200)
    sexes = ["F" if i % 4 else "M" for i in range(200)]  # 150 F, 50 M
    cases = _cases(labels, sexes)
    idx = select_calibration(cases, 40, seed=1)
    assert len(idx) == 40 == len(set(idx))
    st = strata_of(cases)
    counts = np.bincount(st[idx], minlength=8)
    # 8 strata (4 BMD bins × 2 sexes); proportional: F strata ~7-8 each, M strata ~2-3 each.
    assert counts.min() >= 2 and sum(counts[1::2]) == 30
    assert select_calibration(cases, 40, seed=1) == idx  # reproducible
    assert select_calibration(cases[:10], 40) == list(range(10))


def test_split_heldout_interleaves_by_rank() -> None:
    cal, test = split_heldout(6, [0.9, 0.5, 0.7, 1.1, 0.6, 0.8])
    # ranks: 0.5(1) 0.6(4) 0.7(2) 0.8(5) 0.9(0) 1.1(3) → even ranks 1,2,0; odd ranks 4,5,3
    assert cal == [0, 1, 2] and test == [3, 4, 5]
    with pytest.raises(InputError, match="at least 4"):
        split_heldout(3, [1, 2, 3])


def test_conformal_halfwidth_hand_computed() -> None:
    y = np.arange(10) * 0.0
    p = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10])
    iv = conformal_halfwidth(y, p, 0.8)  # rank ceil(11 * 0.8) = 9 → 9th smallest residual
    assert iv.halfwidth_gcm2 == pytest.approx(0.09) and iv.n_calibration == 10
    with pytest.raises(InputError, match="too few"):
        conformal_halfwidth(y[:5], p[:5], 0.9)


def test_quantize_linear_matches_onnx_semantics() -> None:
    w = np.array([[0.5, -0.26, 1.0], [0.25, 0.0, -2.0]], dtype=np.float32)
    q = quantize_linear(w, np.array([0.01, 0.01], dtype=np.float32), np.zeros(2, np.int8), 0)
    # 0.5/0.01=50, -0.26/0.01=-26, 1/0.01=100; -2/0.01=-200 saturates to -128.
    assert q.dtype == np.int8 and q.tolist() == [[50, -26, 100], [25, 0, -128]]
    half = quantize_linear(np.array([0.5, 1.5, 2.5], np.float32), np.float32(1.0), np.uint8(0), 1)
    assert half.tolist() == [0, 2, 2]  # round half to even, like ONNX QuantizeLinear
