"""XAttn-BMD and baselines: shapes, masking, attention, torchvision weights, ONNX and NNCF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bmd_edge.errors import BundleError, InputError
from bmd_edge.model import (
    FUSIONS,
    INPUT_NAMES,
    OUTPUT_NAMES,
    VARIANTS,
    ModelConfig,
    build_model,
    count_parameters,
    create_resnet,
    load_torchvision_weights,
)
from bmd_edge.model.config import ARCHS

S = 64  # tiny images keep the suite fast
F = 10


def tiny_cfg(fusion: str = "xattn", **kw: object) -> ModelConfig:
    return ModelConfig(arch="resnet10t", fusion=fusion, d_model=32, width=8, image_size=S, **kw)


def inputs(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 1, S, S, generator=g)
    values = torch.randn(batch, F, generator=g)
    present = torch.ones(batch, F)
    return image, values, present


def tiny_model(fusion: str = "xattn", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_cfg(fusion)).eval()


def test_every_arch_has_a_variant() -> None:
    assert set(ARCHS) <= set(VARIANTS)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_output_shapes_and_units(fusion: str) -> None:
    model = tiny_model(fusion)
    model.set_label_scale(0.8, 0.12)
    image, values, present = inputs(batch=3)
    with torch.no_grad():
        bmd, attn = model(image, values, present)
        z, attn2 = model.forward_standardised(image, values, present)
    assert bmd.shape == (3,) and attn.shape == (3, F)
    assert torch.isfinite(bmd).all() and torch.isfinite(attn).all()
    # the label buffers turn standardised predictions into g/cm2
    torch.testing.assert_close(bmd, z * 0.12 + 0.8)
    torch.testing.assert_close(attn, attn2)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_missing_field_value_is_ignored_and_gets_zero_attention(fusion: str) -> None:
    model = tiny_model(fusion)
    image, values, present = inputs(batch=2)
    present[:, 3] = 0.0
    present[1, 7] = 0.0
    changed = values.clone()
    changed[:, 3] = 123.0
    changed[1, 7] = float("nan")  # even a NaN placeholder cannot leak
    with torch.no_grad():
        bmd_a, attn_a = model(image, values, present)
        bmd_b, attn_b = model(image, changed, present)
    assert torch.equal(bmd_a, bmd_b)
    assert torch.equal(attn_a, attn_b)
    assert attn_a[0, 3].item() == 0.0 and attn_a[1, 3].item() == 0.0 and attn_a[1, 7].item() == 0.0
    # a present field's value does matter (for variants that read metadata)
    if fusion != "image":
        other = values.clone()
        other[:, 0] += 2.0
        with torch.no_grad():
            assert not torch.equal(model(image, other, present)[0], bmd_a)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_attention_sums_to_one_over_present_fields(fusion: str) -> None:
    model = tiny_model(fusion)
    image, values, present = inputs(batch=4)
    present[0, :5] = 0.0
    present[1, 9] = 0.0
    present[3, :] = 0.0  # nothing known: all-zero attention, finite BMD
    with torch.no_grad():
        bmd, attn = model(image, values, present)
    sums = attn.sum(dim=1)
    torch.testing.assert_close(sums[:3], torch.ones(3), atol=1e-5, rtol=0)
    assert torch.all(attn[3] == 0.0)
    assert torch.isfinite(bmd).all()
    assert torch.all(attn[present == 0] == 0.0)
    assert torch.all(attn >= 0)


def test_baseline_attention_is_uniform_over_present_fields() -> None:
    model = tiny_model("concat")
    image, values, present = inputs(batch=1)
    present[0, [1, 4]] = 0.0
    with torch.no_grad():
        _, attn = model(image, values, present)
    expected = torch.full((1, F), 1.0 / 8.0)
    expected[0, [1, 4]] = 0.0
    torch.testing.assert_close(attn, expected)


def test_xattn_attention_follows_the_layer_weights() -> None:
    """Per-field attention is the layer-weighted mix: forcing one layer reproduces that layer."""
    model = tiny_model("xattn")
    image, values, present = inputs(batch=2)
    with torch.no_grad():
        _, mixed = model(image, values, present)
        model.layer_logits.copy_(torch.tensor([0.0, 0.0, 50.0]))
        _, last = model(image, values, present)
    assert not torch.allclose(mixed, last)  # each layer attends differently
    torch.testing.assert_close(last.sum(dim=1), torch.ones(2), atol=1e-5, rtol=0)


def test_meta_baseline_has_no_cnn_and_image_does_not_matter() -> None:
    model = tiny_model("meta")
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    image, values, present = inputs(batch=2)
    with torch.no_grad():
        a = model(image, values, present)[0]
        b = model(torch.zeros_like(image), values, present)[0]
    assert torch.equal(a, b)


def test_other_input_size_interpolates_position_embedding() -> None:
    model = tiny_model("xattn")
    image = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        bmd, _ = model(image, torch.zeros(2, F), torch.ones(2, F))
    assert bmd.shape == (2,) and torch.isfinite(bmd).all()


def test_unknown_names_fail_loudly() -> None:
    with pytest.raises(InputError, match="resnet34"):
        ModelConfig(arch="resnet999")
    with pytest.raises(InputError, match="concat"):
        ModelConfig(fusion="sum")
    with pytest.raises(InputError, match="n_heads"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(InputError, match="resnet18"):
        create_resnet("vgg16")
    with pytest.raises(InputError, match="unknown model_config keys"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "depth": 3})


def test_config_round_trips_through_dict() -> None:
    cfg = tiny_cfg("concat", label_mean=0.9)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def _torchvision_style_state(arch: str, width: int, seed: int) -> dict[str, torch.Tensor]:
    """A state dict named like torchvision's resnet: 3-channel stem plus fc (built from ours)."""
    torch.manual_seed(seed)
    rgb = create_resnet(arch, width=width, in_chans=3)
    for m in rgb.modules():  # non-trivial BN statistics so the comparison means something
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    state = dict(rgb.state_dict())
    state["fc.weight"] = torch.randn(1000, rgb.num_features)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_torchvision_names_state_dict_loads(tmp_path: Path) -> None:
    state = _torchvision_style_state("resnet10t", 8, seed=1)
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer4.0.bn2.bias"):
        assert key in state
    path = tmp_path / "resnet10t-tv.pth"
    torch.save(state, path)

    gray = create_resnet("resnet10t", width=8).eval()
    ignored = load_torchvision_weights(gray, path)
    assert ignored == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(gray.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(gray.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])

    # a gray image seen by the RGB network as R=G=B gives the same features
    rgb = create_resnet("resnet10t", width=8, in_chans=3).eval()
    rgb.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    x = torch.rand(2, 1, S, S)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)

    # the same file loads into a full model's image encoder
    model = tiny_model("xattn")
    load_torchvision_weights(model, path)
    torch.testing.assert_close(model.image_encoder.backbone.layer1[0].conv1.weight,
                               state["layer1.0.conv1.weight"])


def test_torchvision_weights_of_the_wrong_variant_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r10-w16.pth"
    torch.save(_torchvision_style_state("resnet10t", 16, seed=2), path)
    with pytest.raises(BundleError, match="shape"):
        load_torchvision_weights(create_resnet("resnet10t", width=8), path)
    with pytest.raises(BundleError, match="missing"):
        load_torchvision_weights(create_resnet("resnet18", width=16), path)
    with pytest.raises(InputError, match="image encoder"):
        load_torchvision_weights(tiny_model("meta"), path)
    with pytest.raises(BundleError, match="not found"):
        load_torchvision_weights(create_resnet("resnet10t", width=8), tmp_path / "nope.pth")


def test_parameter_count_grows_with_the_variant() -> None:
    small = count_parameters(build_model(ModelConfig(arch="resnet18", d_model=64)))
    large = count_parameters(build_model(ModelConfig(arch="resnet34", d_model=64)))
    # resnet34 adds (1+2+4+1) BasicBlocks of widths 64/128/256/512 over resnet18
    extra = sum(n * (2 * 9 * c * c + 4 * c) for n, c in [(1, 64), (2, 128), (4, 256), (1, 512)])
    assert large - small == extra


@pytest.mark.parametrize("fusion", FUSIONS)
def test_onnx_export_dynamic_batch_matches_torch(fusion: str, tmp_path: Path) -> None:
    import onnxruntime
    model = tiny_model(fusion)
    image, values, present = inputs(batch=2)
    path = tmp_path / f"{fusion}.onnx"
    torch.onnx.export(
        model, (image, values, present), str(path),
        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
        dynamic_axes={name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES},
        opset_version=17, dynamo=False,
    )
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(INPUT_NAMES)
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    image5, values5, present5 = inputs(batch=5, seed=3)  # a batch size never traced
    present5[1, 2] = 0.0
    present5[4, :] = 0.0
    bmd, attn = sess.run(None, {"image": image5.numpy(), "values": values5.numpy(),
                                "present": present5.numpy()})
    with torch.no_grad():
        ref_bmd, ref_attn = model(image5, values5, present5)
    np.testing.assert_allclose(bmd, ref_bmd.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(attn, ref_attn.numpy(), atol=1e-5, rtol=0)
    assert attn[1, 2] == 0.0 and np.all(attn[4] == 0.0)


def test_nncf_quantizes_the_xattn_model() -> None:
    import nncf
    model = tiny_model("xattn")
    calib = [inputs(batch=1, seed=s) for s in range(4)]
    quantized = nncf.quantize(model, nncf.Dataset(calib, lambda item: item), subset_size=4)
    names = {type(m).__name__ for m in quantized.modules()}
    assert any(n.endswith("Quantizer") for n in names), names
    image, values, present = inputs(batch=2, seed=9)
    present[0, 5] = 0.0
    with torch.no_grad():
        ref, _ = tiny_model("xattn")(image, values, present)
        bmd, attn = quantized(image, values, present)
    assert torch.isfinite(bmd).all()
    assert attn[0, 5].item() == 0.0  # masking survives quantization
    assert torch.max(torch.abs(bmd - ref)).item() < 0.05  # g/cm2: int8 stays close to fp32
