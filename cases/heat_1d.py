r"""Heat equation u_t = κ u_xx on [0, 1] x [0, 1], κ = 0.1, u = 0 at x = 0, 1 (exact solution).

u(x, t) = e^{-κπ²t} sin(πx) + ½ e^{-9κπ²t} sin(3πx): two Fourier modes decaying at their
own rates, which the initial condition u(x, 0) = sin(πx) + ½ sin(3πx) sets.
"""

import math

import torch

import pdeml as pl

KAPPA = 0.1


def exact(x):
    s, t = x[:, 0:1], x[:, 1:2]
    return torch.exp(-KAPPA * math.pi**2 * t) * torch.sin(math.pi * s) + 0.5 * torch.exp(
        -9 * KAPPA * math.pi**2 * t
    ) * torch.sin(3 * math.pi * s)


def pde(x, u):
    return u.dt() - KAPPA * u.d2("x")


problem = pl.Problem(
    geometry=pl.geometry.Interval(0, 1),
    time=(0, 1),
    pde=pde,
    conditions=[pl.Dirichlet(0.0), pl.Initial(exact)],
    exact=exact,
)
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(width=32, depth=3), sampler=pl.samplers.Uniform(1000, 100, 100, every=100)),
    steps=3000,
    optimizer=pl.Adam(2e-3, decay=0.5, decay_every=1000),
    lbfgs_steps=200,
)
