"""Spectral convolution against a direct DFT, and the layer as a map of functions."""
import itertools
import math

import numpy as np
import pytest
import torch

from operators.fno import SpectralConv


def _direct(x, weight, modes):
    """The layer written out: coefficients by the DFT sum, each kept mode multiplied by its
    matrix, the real field summed back (rfft's half spectrum: ky > 0 counts twice)."""
    B, C, nx, ny = x.shape
    X = np.arange(nx)[:, None] / nx
    Y = np.arange(ny)[None, :] / ny
    out = np.zeros((B, weight.shape[2], nx, ny))
    mx, my = modes
    for corner, kxs in ((0, range(0, mx)), (1, range(-mx, 0))):
        for kx, ky in itertools.product(kxs, range(0, my)):
            phase = np.exp(-2j * math.pi * (kx * X + ky * Y))
            coef = (x * phase).sum(axis=(-2, -1)) / (nx * ny)              # (B, C)
            col = kx if kx >= 0 else kx + mx                               # index inside the corner block
            yk = coef @ weight[corner, :, :, col, ky]                      # (B, C_out)
            wave = np.exp(2j * math.pi * (kx * X + ky * Y))
            out += (1 if ky == 0 else 2) * np.real(yk[:, :, None, None] * wave)
    return out


def test_spectral_convolution_matches_the_direct_dft():
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, (3, 2)).double()
    x = torch.randn(2, 2, 8, 6, dtype=torch.float64)
    ours = conv(x).detach().numpy()
    ref = _direct(x.numpy(), conv.weight.detach().numpy().astype(np.complex128), (3, 2))
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_a_band_limited_function_is_mapped_to_the_same_function_on_any_grid():
    torch.manual_seed(1)
    conv = SpectralConv(1, 1, (4, 4, 3)).double()

    def field(n, nt):
        s, st = torch.arange(n, dtype=torch.float64) / n, torch.arange(nt, dtype=torch.float64) / nt
        x, y, t = torch.meshgrid(s, s, st, indexing="ij")
        return (torch.sin(2 * math.pi * (x + 2 * y)) * torch.cos(2 * math.pi * t)
                + torch.cos(2 * math.pi * 3 * y))[None, None]

    coarse = conv(field(16, 8))
    fine = conv(field(32, 16))
    on_fine = conv(field(16, 8), out_shape=(32, 32, 16))                   # coarse input, fine output
    assert torch.allclose(fine[..., ::2, ::2, ::2], coarse, atol=1e-12)
    assert torch.allclose(on_fine, fine, atol=1e-12)
    with pytest.raises(ValueError, match="modes"):
        conv(field(6, 8))
