r"""ST-FNO: the spatiotemporal Fourier neural operator of Spectral-Refiner (Cao, Brarda, Li, Xi,
"Spectral-Refiner: accurate fine-tuning of spatiotemporal Fourier neural operator for turbulent
flows", ICLR 2025).

Time is an axis of the Fourier layers, not a stack of channels, so any number of input and
output frames works:

1. **Lift.** The input :math:`w(x, y, t)` on its :math:`T_{in}` frames is added to a positional
   encoding (the coordinates x, y, t and ``width`` time features
   :math:`e^{\beta t}\sin/\cos(\pi k t)`), normalized over channels, mapped pointwise to ``width``
   channels, and a spectral convolution over (x, y, t) evaluates it on ``latent_steps`` frames.
2. **Fourier layers** (``layers - 1``): :math:`v \leftarrow \sigma(\mathrm{MLP}(\mathcal K v) + W
v)`.
3. **Out.** A pointwise map to one channel; the last input frame is prepended along time, the
   sequence is zero-padded in time to twice its length (the transform must not treat it as
   periodic: anti-aliasing), and a spectral convolution with a learned spectral bias
   (strength ``delta``) evaluates it on a time grid long enough to return ``out_steps`` frames
   (irfftn with the new time length); the last ``out_steps`` are added to the last input frame
   (the skip).

The paper's code prepends the last two input frames; the issue's description (one) is what is
built here. Settings in the paper's code: modes 12, modes_t 5, width 20, 4 layers, 10 -> 40 steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pdeml._validate import positive_int

from .fno import SpectralConv


class STFNONet(nn.Module):
    """The network: (B, T_in, n, n) -> (B, out_steps, n, n).

    Example:
        >>> net = STFNONet(12, 5, width=20, layers=4, latent_steps=10, out_steps=40)
        >>> w = torch.randn(2, 10, 32, 32)               # (B, T_in, n, n)
        >>> net(w).shape                                 # net(w, out_steps=80) gives 80 frames
        torch.Size([2, 40, 32, 32])
    """

    def __init__(
        self,
        modes: int,
        modes_t: int,
        *,
        width: int = 20,
        layers: int = 4,
        latent_steps: int = 10,
        out_steps: int = 40,
        beta: float = -0.01,
        delta: float = 0.1,
        expansion: int = 128,
        max_steps: int = 100,
    ):
        super().__init__()
        self.width, self.layers = positive_int("width", width), positive_int("layers", layers)
        if layers < 2:
            raise ValueError(
                f"layers={layers!r} must be at least 2 (the lift holds one). Fix: pass e.g. 4"
            )
        self.latent_steps, self.out_steps = (
            positive_int("latent_steps", latent_steps),
            positive_int("out_steps", out_steps),
        )
        self.beta, self.max_steps = float(beta), positive_int("max_steps", max_steps)
        modes3 = (modes, modes, modes_t)
        self.norm = nn.GroupNorm(1, width + 3)
        self.lift = nn.Conv3d(width + 3, width, 1)
        self.lift_conv = SpectralConv(width, width, modes3)
        self.convs = nn.ModuleList(SpectralConv(width, width, modes3) for _ in range(layers - 1))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Conv3d(width, expansion, 1), nn.GELU(), nn.Conv3d(expansion, width, 1))
            for _ in range(layers - 1)
        )
        self.skips = nn.ModuleList(nn.Conv3d(width, width, 1) for _ in range(layers - 1))
        self.reduce = nn.Conv3d(width, 1, 1)
        self.out_conv = SpectralConv(1, 1, modes3, bias=delta)

    def encoding(self, nx: int, ny: int, nt: int, dtype, device) -> torch.Tensor:
        """(1, width + 3, nx, ny, nt): x, y, t and the time features e^{βt} sin/cos(π(k+1)t)."""
        gx = torch.arange(nx, dtype=dtype, device=device) / nx
        gy = torch.arange(ny, dtype=dtype, device=device) / ny
        gt = torch.arange(1, nt + 1, dtype=dtype, device=device) / self.max_steps
        X, Y, T = torch.meshgrid(gx, gy, gt, indexing="ij")
        feats = [X, Y, T]
        for k in range(self.width):
            basis = torch.sin if k % 2 == 0 else torch.cos
            feats.append(
                (torch.exp(self.beta * gt) * basis(math.pi * (k + 1) * gt)).expand(nx, ny, nt)
            )
        return torch.stack(feats)[None]

    def latent(self, w: torch.Tensor) -> torch.Tensor:
        """Everything before the output convolution: the last input frame followed by the
        reduced latent frames, zero-padded in time, (B, 1, n, n, 2 (1 + latent_steps)).
        Spectral-Refiner caches this and trains only the output convolution."""
        v = w.movedim(1, -1)[:, None]  # (B, 1, n, n, T_in)
        nx, ny, nt = v.shape[-3:]
        v = v + self.encoding(nx, ny, nt, v.dtype, v.device)
        v = self.lift_conv(self.lift(self.norm(v)), out_shape=(nx, ny, self.latent_steps))
        for conv, mlp, skip in zip(self.convs, self.mlps, self.skips):
            v = nn.functional.gelu(mlp(conv(v)) + skip(v))
        last = w[:, -1:].movedim(1, -1)[:, None]  # (B, 1, n, n, 1)
        v = torch.cat([last, self.reduce(v)], dim=-1)  # the last frame first
        return nn.functional.pad(v, (v.shape[-1], 0))  # zeros before: not periodic

    def head(
        self,
        latent: torch.Tensor,
        w: torch.Tensor,
        out_steps: int,
        conv: SpectralConv | None = None,
        substeps: int = 1,
    ):
        """The output convolution (``conv``, default this network's) on a cached ``latent``,
        plus the last input frame of ``w``: (B, out_steps, n, n).

        ``substeps`` > 1 samples the same output function ``substeps`` times per frame (the time
        axis is a Fourier axis, so this is exact trigonometric interpolation): (B, substeps *
        out_steps, n, n) at the times ``k / substeps`` frames after the last input frame, k = 1,
        2, ...; every ``substeps``-th is an output frame. Spectral-Refiner's residual is more
        accurate on that finer time grid."""
        conv = self.out_conv if conv is None else conv
        s = positive_int("substeps", substeps)
        nx, ny, length = latent.shape[-3], latent.shape[-2], latent.shape[-1] // 2
        v = conv(latent, out_shape=(nx, ny, s * (length + out_steps)))
        v = v[..., s * (length - 1) + 1 : s * (length + out_steps - 1) + 1]
        return v[:, 0].movedim(-1, 1) + w[:, -1:]

    def forward(self, w: torch.Tensor, out_steps: int | None = None) -> torch.Tensor:
        out_steps = self.out_steps if out_steps is None else positive_int("out_steps", out_steps)
        return self.head(self.latent(w), w, out_steps)
