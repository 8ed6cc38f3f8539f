r"""Gaussian random fields on the periodic unit square (inputs of operator-learning families).

A zero-mean field with covariance operator :math:`C = \sigma^2(-\Delta + \tau^2)^{-\alpha}`
has, in the orthonormal Fourier basis :math:`e_m(x) = e^{2\pi i m\cdot x}`, independent
coefficients of variance :math:`\lambda_m = \sigma^2 (4\pi^2|m|^2 + \tau^2)^{-\alpha}`. On an
n x n grid we draw white noise :math:`z` (unit variance per point), and set
:math:`\hat w_m = n\sqrt{\lambda_m}\,\hat z_m` (numpy's unnormalized FFT: :math:`E|\hat z_m|^2 =
n^2`),
:math:`\hat w_0 = 0`; then :math:`E|\hat w_m|^2/n^4 = \lambda_m` (tested). With
:math:`\alpha = 2.5, \tau = 7, \sigma = \tau^{\alpha - 1}` these are the initial vorticities of Li
et al.'s Navier-Stokes data (ICLR 2021).
"""

from __future__ import annotations

import math

import torch

from ._validate import fail, finite_scalar, positive_int


def grf_spectrum(
    n: int, alpha: float, tau: float, sigma: float, dtype=torch.float64, device="cpu"
) -> torch.Tensor:
    """:math:`\\lambda_m` on the ``fft2`` grid (n, n), with :math:`\\lambda_0 = 0` (zero mean)."""
    m = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)
    k2 = 4 * math.pi**2 * (m[:, None] ** 2 + m[None, :] ** 2)
    lam = sigma**2 * (k2 + tau**2) ** (-alpha)
    lam[0, 0] = 0
    return lam


def gaussian_random_field(
    n: int,
    count: int,
    *,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    dtype=torch.float64,
    device="cpu",
) -> torch.Tensor:
    """``count`` independent fields on the n x n grid ``x_i = i/n`` (first axis x), shape
    (count, n, n). ``sigma`` defaults to :math:`\\tau^{\\alpha - 1}`. The noise is drawn on the
    CPU from ``generator`` (reproducible on any device), then moved.

    Example:
        >>> w0 = gaussian_random_field(64, 8, generator=torch.Generator().manual_seed(0))
    """
    n, count = positive_int("n", n), positive_int("count", count)
    alpha, tau = finite_scalar("alpha", alpha), finite_scalar("tau", tau)
    if alpha <= 0 or tau <= 0:
        fail("(alpha, tau)", (alpha, tau), "must be positive", "pass e.g. alpha=2.5, tau=7")
    sigma = tau ** (alpha - 1) if sigma is None else finite_scalar("sigma", sigma)
    z = torch.randn(count, n, n, generator=generator, dtype=dtype).to(device)
    lam = grf_spectrum(n, alpha, tau, sigma, dtype, device)
    return torch.fft.ifft2(n * lam.sqrt() * torch.fft.fft2(z)).real
