r"""Poisson -Δu = 2π² sin(πx) sin(πy) on [0, 1]², u = 0 on the boundary: the ENGD benchmark.

Exact solution u = sin(πx) sin(πy). The setting of Müller & Zeinhofer (ICML 2023): a 2 → 64 → 1
tanh network (257 parameters), 900 interior and 120 boundary points (fixed), float64. Their
RMS errors: ENGD 6.2e-8, Hessian-free 3.2e-7, Adam 9.4e-5, L-BFGS 1.8e-4. The case trains with
ENGD by default (``--optimizer engd``); ``--optimizer adam --steps 20000`` is the baseline.
"""

import math

import torch

import pdeml as pl


def exact(x):
    return torch.sin(math.pi * x[:, :1]) * torch.sin(math.pi * x[:, 1:2])


# -lap u = 2 pi^2 u_exact: a structured PDE, so `pdeml solve poisson_sin_2d --method wos` reads f
# too
pde = pl.pde.Poisson(source=lambda x: 2 * math.pi**2 * exact(x))

problem = pl.Problem(
    geometry=pl.geometry.Rectangle([0, 0], [1, 1]),
    pde=pde,
    conditions=[pl.Dirichlet(0.0)],
    exact=exact,
)
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(width=64, depth=1), sampler=pl.samplers.Uniform(900, 120)),
    optimizer=pl.ENGD(),
    steps=500,
    dtype="float64",
    eval_every=50,
    checkpoint_every=100,
    export_resolution=64,
)
