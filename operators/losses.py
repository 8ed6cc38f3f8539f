r"""Losses of operator learning: relative L2 on data, and the negative-Sobolev residual norm.

**H⁻¹ residual** (Cao, Brarda, Li, Xi, "Spectral-Refiner: accurate fine-tuning of
spatiotemporal Fourier neural operator for turbulent flows", ICLR 2025): for a residual
:math:`R(x, t)` on the periodic unit square sampled at times :math:`t_j` spaced :math:`\Delta t`,

.. math:: \|R\|^2_{L^2(0,T;H^{-1})} \approx \Delta t\sum_j\sum_k
          \frac{|\hat R_k(t_j)|^2}{\alpha + 4\pi^2|k|^2}, \qquad \alpha = 10^{-1.5},

with :math:`\hat R_k` the Fourier coefficients (:math:`\hat R_k = \frac1{n^2}\sum_x R(x)e^{-2\pi
ik\cdot x}`,
so Parseval holds: :math:`\int|R|^2 = \sum_k|\hat R_k|^2`). The weight is
:math:`(\alpha + 4\pi^2|k|^2)^{-1}`, the H⁻¹ norm. (The published code takes a square root of
the weight and then the power, which gives :math:`H^{-1/2}` for "order -1"; we do not.)
"""

from __future__ import annotations

import math

import torch

from pdeml._validate import finite_scalar

ALPHA = 10**-1.5


def h_minus_one_squared(residual: torch.Tensor, dt: float, alpha: float = ALPHA) -> torch.Tensor:
    """:math:`\\|R\\|^2_{L^2(0,T;H^{-1})}` per sample of ``residual`` (B, T, n, n): shape (B,)."""
    dt, alpha = finite_scalar("dt", dt), finite_scalar("alpha", alpha)
    n = residual.shape[-1]
    rh = torch.fft.rfft2(residual, norm="forward")
    m = torch.fft.fftfreq(n, d=1.0 / n, dtype=residual.dtype, device=residual.device)
    my = torch.fft.rfftfreq(n, d=1.0 / n, dtype=residual.dtype, device=residual.device)
    weight = 1.0 / (alpha + 4 * math.pi**2 * (m[:, None] ** 2 + my[None, :] ** 2))
    half = torch.full_like(my, 2.0)  # rfft's half spectrum: k_y > 0 stands for +-k_y
    half[0] = 1.0
    if n % 2 == 0:
        half[-1] = 1.0  # the Nyquist column appears once
    return dt * ((rh.abs() ** 2) * weight * half).sum(dim=(-1, -2, -3))


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over samples of :math:`\\lVert p - t\\rVert_2 / \\lVert t\\rVert_2` (the FNO training
    loss)."""
    diff = (pred - target).flatten(1).norm(dim=1)
    return (diff / target.flatten(1).norm(dim=1).clamp_min(torch.finfo(target.dtype).tiny)).mean()


def relative_residual(
    family, inputs: torch.Tensor, pred: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    r"""The physics term of operator training: the H⁻¹ norm of the equation's residual of the
    predicted trajectory (the last input frame in front), relative to that of the target's time
    derivative, averaged over samples:

    .. math:: \frac{\|R(w_{T_{in}}, \hat w_1, \dots)\|_{L^2(H^{-1})}}{\|\partial_t
              w\|_{L^2(H^{-1})}}.

    Dimensionless, like the relative L2 data loss. ``family.residual(trajectory)`` is the case's
    one residual definition (``cases/_navier_stokes.py``); on the solver's own trajectories this
    is the time discretization's error only."""
    dt = family.frame_dt
    r = family.residual(torch.cat([inputs[:, -1:], pred], dim=1))
    full = torch.cat([inputs[:, -1:], target], dim=1)
    scale = h_minus_one_squared((full[:, 2:] - full[:, :-2]) / (2 * dt), dt).sqrt()
    return (
        h_minus_one_squared(r, dt).sqrt() / scale.clamp_min(torch.finfo(scale.dtype).tiny)
    ).mean()
