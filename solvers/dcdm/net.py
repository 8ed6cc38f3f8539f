r"""The DCDM direction network: fully convolutional, U-Net-like, 2-D or 3-D.

Kaneda, Akar, Chen, Kala, Hyde, Teran, "A deep conjugate direction method for iteratively
solving linear systems", ICML 2023. Layout (``c`` channels, default 16, 3^d kernels, padding 1):
a linear first convolution 1 -> c; two conv+ELU layers at full resolution; average-pool by 2,
two conv+ELU layers; upsample back, add the full-resolution skip, two conv+ELU layers; a linear
1x1 head c -> 1, all without biases (the unit-norm input is scaled by sqrt(#cells) so its
entries are O(1)). Being convolutional, a network trained on one grid runs on any other. The
output is multiplied by the fluid mask (directions live on fluid cells).
"""

from __future__ import annotations

import torch
from torch import nn

from pdeml._validate import fail, positive_int


class DirectionNet(nn.Module):
    """q = f(r): (B, *grid) -> (B, *grid), zero in solid cells.

    Args:
        dim: 2 or 3. channels: feature channels. levels: down-sampling stages (4: a 64^2 grid
            is seen down to 4^2 cells, so the receptive field covers it; fewer stall DCDM).
    """

    def __init__(self, dim: int = 2, channels: int = 16, levels: int = 4):
        super().__init__()
        if dim not in (2, 3):
            fail("dim", dim, "is not supported", "pass 2 or 3")
        self.dim = dim
        self.channels = positive_int("channels", channels)
        self.levels = positive_int("levels", levels)
        self.trained_on: tuple | None = None  # the training grid's shape (set by train / load)
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        c = self.channels

        def layer(a, b, k=3):  # no biases: a constant field would swamp a unit residual
            return conv(a, b, k, padding=k // 2, bias=False)

        self.first = layer(1, c)
        self.down = nn.ModuleList(
            nn.ModuleList([layer(c, c), layer(c, c)]) for _ in range(self.levels + 1)
        )
        self.up = nn.ModuleList(
            nn.ModuleList([layer(c, c), layer(c, c)]) for _ in range(self.levels)
        )
        self.head = layer(c, 1, 1)
        self.act = nn.ELU()
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if dim == 2 else nn.AvgPool3d(2, ceil_mode=True)

    def _block(self, pair, h):
        return self.act(pair[1](self.act(pair[0](h))))

    def forward(self, r: torch.Tensor, fluid: torch.Tensor) -> torch.Tensor:
        """``r``: (B, *grid) residuals of unit norm; they are rescaled to O(1) entries first."""
        side = min(fluid.shape)
        for _ in range(self.levels):
            if side < 2:
                fail(
                    "fluid",
                    f"grid {tuple(fluid.shape)}",
                    f"is too small for the network's {self.levels} pooling levels",
                    f"use sides of at least {2 ** (self.levels - 1) + 1}, a network with "
                    "fewer levels, or solve(..., multilevel=...) no smaller than the training "
                    "grid's side",
                )
            side = (side + 1) // 2
        scale = fluid.sum().to(r.dtype).sqrt()
        h = self.first((r * scale).unsqueeze(1))
        skips = []
        for k, pair in enumerate(self.down):
            if k:
                skips.append(h)
                h = self.pool(h)
            h = self._block(pair, h)
        for pair, skip in zip(self.up, reversed(skips)):
            h = nn.functional.interpolate(h, size=skip.shape[2:], mode="nearest") + skip
            h = self._block(pair, h)
        return self.head(h).squeeze(1) * fluid.to(r.dtype)

    def extra_repr(self):
        return f"dim={self.dim}, channels={self.channels}, levels={self.levels}"
