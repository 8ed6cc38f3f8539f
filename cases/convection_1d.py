r"""Convection u_t + β u_x = 0 on [0, 2π) x [0, 1], u(x, 0) = sin x, periodic in x (--beta, default 30).

Exact solution :math:`u = \sin(x - \beta t)`. The classic propagation failure: with uniform
points a PINN learns u ≈ 0 away from t = 0 for large β; R3 / causal R3 sampling fixes it
(``pdeml train convection_1d --sampler r3``). Daw et al., ICML 2023; Krishnapriyan et al.,
"Characterizing possible failure modes in physics-informed neural networks", NeurIPS 2021.
"""
import math

import torch

import pdeml as pl


def make(beta: float = 30.0):
    if not beta > 0:
        raise ValueError(f"beta={beta!r} must be positive. Fix: pass e.g. --beta 30")

    def pde(x, u):
        return u.dt() + beta * u.d("x")

    def exact(x):
        return torch.sin(x[:, 0:1] - beta * x[:, 1:2])

    problem = pl.Problem(geometry=pl.geometry.Interval(0, 2 * math.pi), time=(0, 1), pde=pde,
                         conditions=[pl.Initial(lambda x: torch.sin(x[:, 0:1])), pl.Periodic(0)],
                         exact=exact)
    return pl.Case(problem=problem, model=pl.nn.MLP(width=50, depth=4), steps=20000, lr=1e-3,
                   lr_decay=0.9, lr_decay_every=2000, n_domain=1000, n_boundary=100, n_initial=200,
                   weights={"initial": 10.0}, eval_every=500, checkpoint_every=5000,
                   options={"beta": beta})


case = make()
