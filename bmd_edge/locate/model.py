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


class FlipAveraged(nn.Module):
    """Test-time mirror averaging inside the graph: the net sees the film and its mirror image,
    and the mirror's outputs are mapped back (side channels swapped, x offsets and horizontal
    vectors reflected) and averaged in. Same inputs/outputs as LocatorNet, twice the compute;
    what one view misreads (an iliac wing, a marker) the other rarely repeats at the same place."""

    def __init__(self, net: LocatorNet, stride: int) -> None:
        super().__init__()
        self.net = net
        k = torch.ones(len(GEOMETRY))
        b = torch.zeros(len(GEOMETRY))
        for name in ("neck_dx", "roi_dx"):
            k[GEOMETRY.index(name)] = -1.0
        # a head at input x sits at S-1-x in the mirror: cell offsets map as off → 1 - 1/stride - off
        k[GEOMETRY.index("off_x")] = -1.0
        b[GEOMETRY.index("off_x")] = 1.0 - 1.0 / stride
        self.register_buffer("gk", k.view(1, -1, 1, 1))
        self.register_buffer("gb", b.view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1, g1, c1 = self.net(image)
        h2, g2, c2 = self.net(torch.flip(image, dims=[3]))
        h2 = torch.flip(h2, dims=[3])[:, [1, 0]]
        g2 = torch.flip(g2, dims=[3]) * self.gk + self.gb
        return 0.5 * (h1 + h2), 0.5 * (g1 + g2), 0.5 * (c1 + c2)
