r"""Shared pieces of the high-dimensional ball cases (STDE / SDGD benchmarks).

Two-body exact solution on the unit ball :math:`B^D`, zero on the sphere:

.. math:: u = (1 - \lVert x\rVert^2)\, g, \quad g = \sum_{i=1}^{D-1} c_i \sin\theta_i,\quad
          \theta_i = x_i + \cos x_{i+1} + x_{i+1}\cos x_i,\quad c_i \sim N(0, 1).

Its Laplacian in closed form, with :math:`b = 1 - \lVert x\rVert^2`:
:math:`\Delta u = -2D g - 4 x\cdot\nabla g + b\,\Delta g`, where per term
:math:`\partial_{x_i}\theta_i = 1 - x_{i+1}\sin x_i`, :math:`\partial_{x_{i+1}}\theta_i = \cos x_i -
\sin x_{i+1}`,
:math:`\partial^2_{x_i}\theta_i = -x_{i+1}\cos x_i`, :math:`\partial^2_{x_{i+1}}\theta_i = -\cos
x_{i+1}`, and
:math:`\partial^2 \sin\theta = \cos\theta\,\partial^2\theta - \sin\theta\,(\partial\theta)^2`.
Shi et al. (STDE, NeurIPS 2024) and Hu et al. (SDGD, Neural Networks 2024).
"""

from __future__ import annotations

import numpy as np
import torch

import pdeml as pl
from pdeml.samplers import Uniform
from pdeml.solvers import PINN


def coefficients(dim: int, seed: int) -> torch.Tensor:
    """:math:`c_i \\sim N(0, 1)`, i = 1..D-1, from the case seed (float64)."""
    return torch.as_tensor(np.random.default_rng(seed).standard_normal(dim - 1))


def two_body(x: torch.Tensor, c: torch.Tensor):
    """``(u, laplacian u)`` of the exact solution at points ``x`` (N, D), columns (N, 1)."""
    c = c.to(x.dtype).to(x.device)
    cx, sx = torch.cos(x), torch.sin(x)  # each trig value once: x_i appears in two terms
    a, b_ = x[:, :-1], x[:, 1:]
    ca, cb, sa, sb = cx[:, :-1], cx[:, 1:], sx[:, :-1], sx[:, 1:]
    th = a + cb + b_ * ca
    s, co = torch.sin(th), torch.cos(th)
    da, db = 1 - b_ * sa, ca - sb
    daa, dbb = -b_ * ca, -cb
    g = (c * s).sum(1, keepdim=True)
    x_grad_g = (c * co * (a * da + b_ * db)).sum(1, keepdim=True)
    lap_g = (c * (co * (daa + dbb) - s * (da**2 + db**2))).sum(1, keepdim=True)
    b = 1 - x.pow(2).sum(1, keepdim=True)
    return b * g, -2 * x.shape[1] * g - 4 * x_grad_g + b * lap_g


NONLINEAR = {
    "poisson": lambda u: torch.zeros_like(u),
    "allen_cahn": lambda u: u - u**3,
    "sine_gordon": torch.sin,
}


def make_case(kind: str, dim: int, seed: int) -> pl.Case:
    r""":math:`\Delta u + N(u) = f` on the unit ball in ``dim`` dimensions, u = 0 on the sphere,
    f from the exact two-body solution; hard constraint :math:`(1-\lVert
    x\rVert^2)\,\mathrm{MLP}(x)`."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim={dim!r} must be an integer >= 2. Fix: pass e.g. --dim 100")
    c = coefficients(dim, seed)
    nonlinear = NONLINEAR[kind]

    def exact(x):
        return two_body(x, c)[0]

    def forcing(x):
        u, lap = two_body(x, c)
        return lap + nonlinear(u)

    def pde(x, u):
        return u.laplacian() + nonlinear(u.value) - forcing(x)

    problem = pl.Problem(
        geometry=pl.geometry.Hypersphere(np.zeros(dim), 1.0),
        pde=pde,
        conditions=[pl.Dirichlet(0.0)],
        exact=exact,
    )
    method = PINN(
        pl.nn.MLP(width=128, depth=4),
        estimator=pl.derivatives.STDE(16),
        hard_dirichlet=True,
        sampler=Uniform(100, 1, every=1),
    )
    return pl.Case(
        problem,
        method,
        steps=10000,
        optimizer=pl.Adam(1e-3, decay=0.5, decay_every=2500),
        eval_every=500,
        checkpoint_every=2500,
        export_resolution=64,
        options={"dim": dim, "case_seed": seed},
    )
