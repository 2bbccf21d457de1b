"""The locator network (torch; training only): a small stride-8 CNN, ~0.5 M parameters.

image (B,1,S,S) → stem s2 → s4 → s8 (c3) → s16 (c4) → s32 (c5)
  heads at stride 8: [c3, upsampled c4] → heatmap (B,2,G,G) sigmoid, geometry (B,9,G,G)
  global: pooled c5 → is_hip (B,1) sigmoid
c4/c5 see the whole 128-px film, which the side channels (where is the shaft?) and the
hip-film score need. Sigmoids are inside the graph so the runtime decodes probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bmd_edge.locate.spec import GEOMETRY, SIDES


@dataclass(frozen=True)
class LocatorNetConfig:
    width: int = 16            # stem channels; stages use width × (1, 2, 4, 8, 8)
    head: int = 64             # channels of the stride-8 head

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Stage(nn.Sequential):
    """Downsample by 2, then one residual-free 3×3 conv: plain and quantisation-friendly."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv(cin, cout, 2), _conv(cout, cout))


class LocatorNet(nn.Module):
    def __init__(self, cfg: LocatorNetConfig = LocatorNetConfig()) -> None:
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.s1 = _conv(1, w, 2)                      # stride 2
        self.s2 = _Stage(w, 2 * w)                    # stride 4
        self.s3 = _Stage(2 * w, 4 * w)                # stride 8
        self.s4 = _Stage(4 * w, 8 * w)                # stride 16
        self.s5 = _Stage(8 * w, 8 * w)                # stride 32
        self.fuse = nn.Sequential(_conv(12 * w, cfg.head), _conv(cfg.head, cfg.head))
        self.heat = nn.Conv2d(cfg.head, len(SIDES), 1)
        self.geom = nn.Conv2d(cfg.head, len(GEOMETRY), 1)
        self.cls = nn.Linear(8 * w, 1)
        nn.init.constant_(self.heat.bias, -4.0)       # rare positives: start near "no hip"

    def logits(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pre-sigmoid outputs, for numerically stable training losses."""
        c3 = self.s3(self.s2(self.s1(image)))         # (B, 4w, G, G)
        c4 = self.s4(c3)                              # (B, 8w, G/2, G/2)
        c5 = self.s5(c4)                              # (B, 8w, G/4, G/4)
        up = F.interpolate(c4, scale_factor=2.0, mode="nearest")
        f = self.fuse(torch.cat([c3, up], dim=1))     # (B, head, G, G)
        return self.heat(f), self.geom(f), self.cls(c5.mean(dim=(2, 3)))  # (B,2,G,G) (B,9,G,G) (B,1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heat, geom, cls = self.logits(image)
        return torch.sigmoid(heat), geom, torch.sigmoid(cls)
