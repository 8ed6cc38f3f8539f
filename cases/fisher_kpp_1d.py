r"""Fisher-KPP u_t = 0.01 u_xx + 5u(1 - u) on [0, 1] x [0, 0.5], u_x = 0 at both ends.

u(x, 0) = 0.1 + 0.2(1 - cos 2πx): logistic growth toward u = 1, fastest where u is near 1/2,
smoothed by diffusion. The cheap nonlinear case of the hard-constraint method (issue 17):

    pdeml train fisher_kpp_1d --out runs/fisher                         # PINN (soft constraints)
    pdeml train fisher_kpp_1d --constraint moe:4 --out runs/fisher-moe  # hard constraint, 4 experts

Truth: the method of lines, second-order differences on ``n`` nodes (mirror ghost nodes for the
Neumann ends), integrated by scipy's BDF at rtol 1e-10; its own error, against twice the nodes,
is below 1e-5 at n = 801 (tested, second order).
"""

from functools import lru_cache

import numpy as np
import torch

import pdeml as pl

D, R, T = 0.01, 5.0, 0.5


def initial(x):
    s = x[:, :1] if isinstance(x, torch.Tensor) else x
    lib = torch if isinstance(s, torch.Tensor) else np
    return 0.1 + 0.2 * (1 - lib.cos(2 * np.pi * s))


def pde(x, u):
    return u.dt() - D * u.d2("x") - R * u.value * (1 - u.value)


@lru_cache(maxsize=4)
def method_of_lines(n: int = 801, times: int = 51):
    """``(x (n,), t (times,), u (times, n))`` on the uniform grid x_j = j/(n-1)."""
    from scipy.integrate import solve_ivp

    x = np.linspace(0, 1, n)
    h = x[1] - x[0]

    def rhs(_, u):
        up = np.concatenate([u[1:2], u, u[-2:-1]])  # mirror ghosts: u_x = 0
        return D * (up[2:] - 2 * u + up[:-2]) / h**2 + R * u * (1 - u)

    t = np.linspace(0, T, times)
    sol = solve_ivp(
        rhs,
        (0, T),
        initial(x),
        method="BDF",
        t_eval=t,
        rtol=1e-10,
        atol=1e-12,
        jac_sparsity=_tridiagonal(n),
    )
    return x, t, sol.y.T


def _tridiagonal(n):
    from scipy.sparse import diags

    return diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], shape=(n, n))


def reference(n: int = 801, times: int = 51):
    x, t, u = method_of_lines(n, times)
    X, Tt = np.meshgrid(x[::8], t, indexing="ij")
    return np.stack([X.ravel(), Tt.ravel()], 1), u[:, ::8].T.reshape(-1, 1)


problem = pl.Problem(
    geometry=pl.geometry.Interval(0, 1),
    time=(0, T),
    pde=pde,
    conditions=[pl.Neumann(0.0), pl.Initial(initial)],
    reference=reference(),
)
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(width=32, depth=3), sampler=pl.samplers.Uniform(2000, 200, 200, every=100)),
    steps=3000,
    optimizer=pl.Adam(2e-3, decay=0.5, decay_every=1000),
    weights={"initial": 10.0},
)
