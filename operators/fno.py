r"""Fourier neural operator layers (Li, Kovachki, Azizzadenesheli, Liu, Bhattacharya, Stuart,
Anandkumar, "Fourier neural operator for parametric partial differential equations", ICLR 2021).

A spectral convolution acts on a function sampled on a periodic grid, channels first,
:math:`v(x) \in \mathbb R^{C}`:

.. math:: (\mathcal K v)(x) = \mathcal F^{-1}\big(R_k\,\hat v(k)\big)(x), \qquad
          \hat v(k) = \frac1{|G|}\sum_{x\in G} v(x) e^{-2\pi i k\cdot x}

with one complex matrix :math:`R_k \in \mathbb C^{C_{out}\times C_{in}}` per kept Fourier mode
and :math:`R_k = 0` elsewhere. The kept modes are the lowest ``modes[j]`` (positive and
negative) along every axis but the last, and the lowest ``modes[-1]`` along the last, where
``rfftn`` keeps only non-negative frequencies: :math:`2^{d-1}` corner blocks. The transforms use
the "forward" normalization (the forward FFT divides by the grid size), so :math:`\hat v(k)`
are the function's Fourier coefficients whatever the grid: the layer maps functions, and its
output can be evaluated on a grid of another size (``out_shape``) exactly.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from pdeml._validate import fail, positive_int


class SpectralConv(nn.Module):
    """Spectral convolution over the last ``len(modes)`` axes of (B, C_in, *grid).

    Args:
        in_channels, out_channels: C_in, C_out.
        modes: kept modes per axis, e.g. ``(12, 12)`` or ``(12, 12, 5)``.

    Example:
        >>> conv = SpectralConv(20, 20, (12, 12))
        >>> y = conv(torch.randn(4, 20, 64, 64))                      # (4, 20, 64, 64)
        >>> # the same function, on a finer grid
        >>> y2 = conv(torch.randn(4, 20, 64, 64), out_shape=(128, 128))
    """

    def __init__(self, in_channels: int, out_channels: int, modes, *, bias: float = 0.0):
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        self.out_channels = positive_int("out_channels", out_channels)
        self.modes = tuple(positive_int("modes", m) for m in modes)
        if not self.modes:
            fail("modes", modes, "is empty", "pass one mode count per axis, e.g. (12, 12)")
        self.corners = list(itertools.product((1, -1), repeat=len(self.modes) - 1))
        self.weight = nn.Parameter(
            torch.empty(
                len(self.corners), in_channels, out_channels, *self.modes, dtype=torch.cfloat
            )
        )
        # ``bias`` > 0: a learned complex source per kept mode and output channel, scaled by it
        # (ST-FNO's "spectral bias"); 0: none
        self.bias_scale = float(bias)
        self.bias = (
            nn.Parameter(
                torch.zeros(len(self.corners), out_channels, *self.modes, dtype=torch.cfloat)
            )
            if bias
            else None
        )
        self.reset_parameters()

    def reset_parameters(self):
        scale = 1.0 / (self.in_channels * self.out_channels)
        with torch.no_grad():
            self.weight.copy_(
                scale
                * torch.complex(
                    torch.rand_like(self.weight.real), torch.rand_like(self.weight.real)
                )
            )

    def _blocks(self, shape):
        """Index tuples of the kept corner blocks in an rfftn array of grid ``shape``."""
        d = len(self.modes)
        for j, (m, n) in enumerate(zip(self.modes, shape)):
            limit = n // 2 + 1 if j == d - 1 else n // 2
            if m > limit:
                fail(
                    "modes",
                    self.modes,
                    f"exceed what a grid of {tuple(shape)} holds along axis {j} ({limit})",
                    f"use a finer grid or at most {limit} modes there",
                )
        for signs in self.corners:
            idx = tuple(
                slice(0, m) if s > 0 else slice(-m, None) for s, m in zip(signs, self.modes[:-1])
            )
            yield idx + (slice(0, self.modes[-1]),)

    def forward(self, x: torch.Tensor, out_shape=None) -> torch.Tensor:
        d = len(self.modes)
        grid = tuple(x.shape[-d:])
        out_shape = grid if out_shape is None else tuple(out_shape)
        dims = tuple(range(-d, 0))
        xh = torch.fft.rfftn(x, dim=dims, norm="forward")
        spec = out_shape[:-1] + (out_shape[-1] // 2 + 1,)
        out = torch.zeros(x.shape[0], self.out_channels, *spec, dtype=xh.dtype, device=x.device)
        # all corner blocks in one contraction: a third faster than one einsum per block
        blocks = torch.stack(
            [xh[(..., *src)] for src in self._blocks(grid)], dim=1
        )  # (B, corners, C_in, *modes)
        ys = torch.einsum("bci...,cio...->bco...", blocks, self.weight.to(xh.dtype))
        if self.bias is not None:
            ys = ys + self.bias_scale * self.bias.to(xh.dtype)
        for c, dst in enumerate(self._blocks(out_shape)):
            out[(..., *dst)] = ys[:, c]
        return torch.fft.irfftn(out, s=out_shape, dim=dims, norm="forward")

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"


class FNO(nn.Module):
    r"""A Fourier neural operator on a d-dimensional grid: lift, ``layers`` Fourier layers, project.

    .. math:: v_0 = P(a, x), \quad v_{l+1} = \sigma(\mathcal K_l v_l + W_l v_l), \quad u = Q(v_L)

    with :math:`P` a pointwise linear lift of the input channels and the grid coordinates
    :math:`x \in [0, 1)^d`, :math:`\mathcal K_l` a :class:`SpectralConv`, :math:`W_l` a pointwise
    linear skip, :math:`\sigma` = GELU (none after the last layer) and :math:`Q` a pointwise
    two-layer projection (width -> 128 -> out). ``padding[j]`` zeros are appended along axis j
    before the Fourier layers and cropped after, for axes that are not periodic (time in an
    FNO over (x, y, t)). The output is on the input's grid; a finer input grid gives the same
    operator at a finer resolution (tested).

    Args:
        in_channels, out_channels: channels of the input and output functions.
        modes: Fourier modes per axis, e.g. ``(12, 12, 5)``.
        width: channels of the Fourier layers. layers: their number.
        padding: zeros appended per axis (default none).

    Example:
        >>> model = FNO(10, 1, modes=(12, 12, 12), width=20, padding=(0, 0, 6))   # FNO-3d
        >>> model(torch.randn(2, 10, 32, 32, 20)).shape      # (B, 10, x, y, t) -> (B, 1, x, y, t)
        torch.Size([2, 1, 32, 32, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes,
        *,
        width: int = 20,
        layers: int = 4,
        padding=None,
    ):
        super().__init__()
        self.modes = tuple(modes)
        d = len(self.modes)
        self.width, self.layers = positive_int("width", width), positive_int("layers", layers)
        self.padding = tuple(padding) if padding is not None else (0,) * d
        if len(self.padding) != d or any(p < 0 for p in self.padding):
            fail(
                "padding",
                padding,
                f"must give {d} non-negative sizes",
                f"pass e.g. {(0,) * (d - 1) + (6,)}",
            )
        self.lift = nn.Linear(positive_int("in_channels", in_channels) + d, self.width)
        self.spectral = nn.ModuleList(
            SpectralConv(self.width, self.width, self.modes) for _ in range(layers)
        )
        self.skip = nn.ModuleList(nn.Linear(self.width, self.width) for _ in range(layers))
        self.project = nn.Sequential(
            nn.Linear(self.width, 128),
            nn.GELU(),
            nn.Linear(128, positive_int("out_channels", out_channels)),
        )

    @staticmethod
    def _channels_last(layer, v):
        return layer(v.movedim(1, -1)).movedim(-1, 1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """``a`` (B, in_channels, *grid) -> (B, out_channels, *grid), on any grid the modes fit."""
        d = len(self.modes)
        grid = tuple(a.shape[-d:])
        coords = torch.meshgrid(
            *[torch.arange(n, dtype=a.dtype, device=a.device) / n for n in grid], indexing="ij"
        )
        coords = torch.stack(coords).expand(a.shape[0], d, *grid)
        v = self._channels_last(self.lift, torch.cat([a, coords], dim=1))
        v = nn.functional.pad(v, [q for p in reversed(self.padding) for q in (0, p)])
        for i, (k, w) in enumerate(zip(self.spectral, self.skip)):
            v = k(v) + self._channels_last(w, v)
            if i < self.layers - 1:
                v = nn.functional.gelu(v)
        v = v[(..., *[slice(0, n) for n in grid])]
        return self._channels_last(self.project, v)
