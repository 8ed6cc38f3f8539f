r"""Wave equation u_tt = c² u_xx on [0, 1] x [0, 1], c = 1, fixed ends, initial shape *and*
velocity.

Exact solution (two standing waves):
:math:`u = \sin(\pi x)\cos(c\pi t) + \tfrac12\sin(3\pi x)\sin(3c\pi t)`, so
:math:`u(x, 0) = \sin\pi x` and :math:`u_t(x, 0) = \tfrac32 c\pi\sin 3\pi x`. The initial
velocity is a condition on a derivative of the initial slice, ``pl.Initial(v, order=1)``:
without it the problem has infinitely many solutions (any velocity), and a PINN trained
without it learns the wrong one (the sin(3πx) wave never appears). Raissi et al. 2019 and
DeepXDE's wave example state the same problem with an ``OperatorBC``; ``pl.Operator`` is
that general form.

Measured (one CPU thread, the defaults: 4000 Adam + 2000 L-BFGS, 150 s): relative L2 2.2e-2.
With the Dirichlet term unweighted and 1000 L-BFGS iterations it stopped at 8.0e-2 (its loss
dominated the end of training).
"""

import math

import torch

import pdeml as pl

C = 1.0


def exact(x):
    s, t = x[:, 0:1], x[:, 1:2]
    return torch.sin(math.pi * s) * torch.cos(C * math.pi * t) + 0.5 * torch.sin(
        3 * math.pi * s
    ) * torch.sin(3 * C * math.pi * t)


def velocity(x):
    return 1.5 * C * math.pi * torch.sin(3 * math.pi * x[:, 0:1])


def pde(x, u):
    return u.d2("t") - C**2 * u.d2("x")


problem = pl.Problem(
    geometry=pl.geometry.Interval(0, 1),
    time=(0, 1),
    pde=pde,
    exact=exact,
    conditions=[
        pl.Dirichlet(0.0),
        pl.Initial(exact),
        pl.Initial(velocity, order=1, name="velocity"),
    ],
)
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(width=48, depth=4), sampler=pl.samplers.Uniform(2000, 200, 400, every=100)),
    steps=4000,
    optimizer=pl.Adam(2e-3, decay=0.5, decay_every=1500),
    lbfgs_steps=2000,
    weights={"initial": 10.0, "velocity": 1.0, "dirichlet": 10.0},
    eval_every=100,
)
