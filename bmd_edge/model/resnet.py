"""A small ResNet written in the package, with torchvision-compatible parameter names.

Why our own: a 1-channel stem (radiographs are grayscale), a width knob for tiny test models,
and no torchvision dependency. Variants are data (timm style); parameter names match
torchvision (conv1, bn1, layer1.0.conv1, ..., downsample.0/1) so ImageNet weights load with
`load_torchvision_weights`, which sums the RGB stem filters into one channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bmd_edge.errors import BundleError, InputError


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projected) shortcut, as in torchvision."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


# Variants as data: name -> ResNet kwargs. resnet10t is our tiny test/debug variant.
VARIANTS: dict[str, dict[str, Any]] = {
    "resnet34": {"block": BasicBlock, "layers": (3, 4, 6, 3), "width": 64},
    "resnet18": {"block": BasicBlock, "layers": (2, 2, 2, 2), "width": 64},
    "resnet10t": {"block": BasicBlock, "layers": (1, 1, 1, 1), "width": 16},
}


class ResNet(nn.Module):
    """ResNet trunk (no classifier): image (B, C, S, S) -> feature map (B, 8*width, S/32, S/32)."""

    def __init__(
        self,
        block: type[BasicBlock],
        layers: tuple[int, ...],
        width: int = 64,
        in_chans: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [block(inplanes, planes, stride)]
            blocks += [block(planes, planes) for _ in range(n_blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes * block.expansion
        self.num_features = inplanes  # channels of the last feature map
        self.n_stages = len(layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w, S/4, S/4)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x  # (B, num_features, S/32, S/32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def create_resnet(name: str, *, width: int | None = None, in_chans: int = 1) -> ResNet:
    """Build a named variant; fails loudly on an unknown name instead of guessing."""
    if name not in VARIANTS:
        raise InputError(f"unknown ResNet variant {name!r}; choose one of {', '.join(VARIANTS)}")
    kwargs = dict(VARIANTS[name])
    if width is not None:
        kwargs["width"] = width
    return ResNet(in_chans=in_chans, **kwargs)


def _find_resnet(model: nn.Module) -> ResNet:
    if isinstance(model, ResNet):
        return model
    encoder = getattr(model, "image_encoder", None)
    backbone = getattr(encoder, "backbone", None)
    if isinstance(backbone, ResNet):
        return backbone
    raise InputError(
        f"{type(model).__name__} has no ResNet image encoder to load weights into; "
        "pass a ResNet or a model with an image encoder (not fusion='meta')"
    )


def load_torchvision_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a torchvision ResNet state dict file into our ResNet (or a model's image encoder).

    The RGB stem filters are summed into one channel (a gray image seen as R=G=B gives the same
    response); `fc.*` is ignored because we have our own head. Returns the ignored keys.
    Every other key must match by name and shape, otherwise BundleError names the first mismatch.
    A bmd-edge checkpoint (best.pt) works too: its `image_encoder.backbone.*` weights are used,
    so a fused model can start from an image-only model the way the paper starts from ImageNet.
    """
    net = _find_resnet(model)
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"pretrained weights file not found: {path}; pass a torchvision .pth file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(f"cannot read pretrained weights {path}: {first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BundleError(f"pretrained weights {path} hold a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    prefix = "image_encoder.backbone."
    if any(k.startswith(prefix) for k in state):  # a bmd-edge checkpoint's state dict
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    ignored = sorted(k for k in state if k.startswith("fc."))
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    stem = state.get("conv1.weight")
    in_chans = net.conv1.weight.shape[1]
    if isinstance(stem, torch.Tensor) and stem.ndim == 4 and stem.shape[1] != in_chans:
        if in_chans != 1:
            raise BundleError(f"stem has {stem.shape[1]} channels; expected {in_chans} or 3->1")
        state["conv1.weight"] = stem.sum(dim=1, keepdim=True)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise BundleError(
            f"pretrained weights {path.name} do not fit this ResNet: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}; use the matching variant (e.g. resnet34 weights for resnet34)"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise BundleError(
                f"pretrained weight {key} has shape {tuple(state[key].shape)}, "
                f"this ResNet needs {tuple(value.shape)}; check the variant and width"
            )
    net.load_state_dict(state, strict=True)
    return ignored
