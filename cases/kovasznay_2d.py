r"""Kovasznay flow: steady incompressible Navier-Stokes on [-0.5, 1] x [-0.5, 1.5], Re = 20.

.. math:: (\mathbf u\cdot\nabla)\mathbf u + \nabla p - \nu\Delta\mathbf u = 0, \qquad
          \nabla\cdot\mathbf u = 0,

:math:`\nu = 1/Re`. Exact solution (Kovasznay 1948), :math:`\lambda = \frac{1}{2\nu} -
\sqrt{\frac{1}{4\nu^2} + 4\pi^2}`:
:math:`u = 1 - e^{\lambda x}\cos 2\pi y`, :math:`v = \frac{\lambda}{2\pi} e^{\lambda x}\sin 2\pi y`,
:math:`p = \frac12(1 - e^{2\lambda x})`; velocity (and, to fix the constant, pressure) on the
boundary from it. Three PDE residuals plus three boundary terms: the multi-term setting where
ConFIG (``--combiner config``) is compared with the weighted sum (Liu, Chu, Thuerey, ICLR 2025).
"""

import math

import torch

import pdeml as pl

RE = 20.0
NU = 1.0 / RE
LAM = 1 / (2 * NU) - math.sqrt(1 / (4 * NU**2) + 4 * math.pi**2)


def exact(x):
    ex = torch.exp(LAM * x[:, :1])
    y = 2 * math.pi * x[:, 1:2]
    return torch.cat(
        [1 - ex * torch.cos(y), LAM / (2 * math.pi) * ex * torch.sin(y), 0.5 * (1 - ex**2)], 1
    )


def pde(x, f):
    u, v, p = f["u"], f["v"], f["p"]
    mom_x = u.value * u.d("x") + v.value * u.d("y") + p.d("x") - NU * u.laplacian()
    mom_y = u.value * v.d("x") + v.value * v.d("y") + p.d("y") - NU * v.laplacian()
    return mom_x, mom_y, u.d("x") + v.d("y")


problem = pl.Problem(
    geometry=pl.geometry.Rectangle([-0.5, -0.5], [1.0, 1.5]),
    pde=pde,
    outputs=("u", "v", "p"),
    conditions=[
        pl.Dirichlet(lambda x, i=i: exact(x)[:, i : i + 1], component=i, name=n)
        for i, n in enumerate(("u_wall", "v_wall", "p_wall"))
    ],
    exact=exact,
)
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(width=50, depth=4), sampler=pl.samplers.Uniform(2000, 200)),
    steps=5000,
    optimizer=pl.Adam(1e-3),
    eval_every=250,
    checkpoint_every=2500,
)
