r"""A family of diffusion–sorption problems over initial conditions (the PI-HC-MoE paper's operator
setting): the equation, boundary conditions and constants of the case ``diffusion_sorption_1d``
(its docstring explains the physics), defined here, and initial conditions

.. math:: u_0(x) = (1 - x)\,(e^{-a x} + c\,x), \qquad a \sim U(2, 8),\ c \sim U(0, 1),

which meet u(0) = 1 and, to 5e-4, the outflow condition at x = 1. (PDEBench draws constants in
[0, 0.2], which meet neither; here the initial data are smooth and compatible, so the error
measures the operator, not a corner layer.) Solutions live on an ``nx`` x ``nt`` grid of nodes
over [0, 1] x [0, 500 s], both ends included; the truth is the method of lines on
10 (nx - 1) + 1 nodes read at the grid's nodes.
"""

from __future__ import annotations

import dataclasses
import functools
from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch

import pdeml as pl
from pdeml._validate import positive_int
from pdeml.family import AbstractFamily

PHI, RHO_S, K_F, N_F, D, T = 0.29, 2880.0, 3.5e-4, 0.874, 5e-4, 500.0
C = (1 - PHI) / PHI * RHO_S * K_F * N_F  # R = 1 + C (s(u) + FLOOR)^(n_f - 1)
FLOOR, SHARPNESS = 1e-2, 100.0


def retardation(u):
    """R(u), for torch tensors and numpy arrays (smooth in u; the case diffusion_sorption_1d
    explains the floor)."""
    if isinstance(u, torch.Tensor):
        return 1 + C * (torch.nn.functional.softplus(u, beta=SHARPNESS) + FLOOR) ** (N_F - 1)
    return 1 + C * (np.logaddexp(0, SHARPNESS * u) / SHARPNESS + FLOOR) ** (N_F - 1)


def initial(x):
    s = x[:, :1] if isinstance(x, torch.Tensor) else x
    lib = torch if isinstance(s, torch.Tensor) else np
    return (1 - s) * lib.exp(-5 * s)


def pde(x, u):
    return T * (u.dt() - D / retardation(u.value) * u.d2("x"))


def solve(u0, n: int, t: np.ndarray) -> np.ndarray:
    """u (len(t), n) on the uniform grid x_j = j/(n-1) from the initial values ``u0`` (n,) by the
    method of lines (BDF, rtol 1e-10)."""
    from scipy.integrate import solve_ivp
    from scipy.sparse import diags

    h = 1.0 / (n - 1)

    def rhs(_, v):  # v = u_1 .. u_{n-1}; u_0 = 1
        u = np.concatenate([[1.0], v])
        ghost = u[-2] - 2 * h * u[-1] / D  # (ghost - u_{n-2}) / 2h = u_x(1) = -u(1) / D
        up = np.concatenate([u, [ghost]])
        return D / retardation(v) * (up[2:] - 2 * v + up[:-2]) / h**2

    m = n - 1
    sol = solve_ivp(
        rhs,
        (0, float(t[-1])),
        np.asarray(u0, float)[1:],
        method="BDF",
        t_eval=t,
        rtol=1e-10,
        atol=1e-12,
        jac_sparsity=diags([np.ones(m - 1), np.ones(m), np.ones(m - 1)], [-1, 0, 1], shape=(m, m)),
    )
    if not sol.success:
        raise RuntimeError(f"diffusion-sorption truth: {sol.message}")
    return np.concatenate([np.ones((len(t), 1)), sol.y.T], 1)


@lru_cache(maxsize=4)
def method_of_lines(n: int = 801, times: int = 51):
    """``(x (n,), t (times,), u (times, n))`` on the uniform grid x_j = j/(n-1)."""
    x, t = np.linspace(0, 1, n), np.linspace(0, T, times)
    return x, t, solve(initial(x), n, t)


def reference(n: int = 801, times: int = 51):
    x, t, u = method_of_lines(n, times)
    X, Tt = np.meshgrid(x[::8], t, indexing="ij")
    return np.stack([X.ravel(), Tt.ravel()], 1), u[:, ::8].T.reshape(-1, 1)


def _left(x):
    return x[:, 0] < 0.5


def _right(x):
    return x[:, 0] > 0.5


def problem(reference=None) -> pl.Problem:
    """The one diffusion–sorption problem: the equation, u(0, t) = 1 ("left"), the outflow condition
    u(1, t) = -D u_x(1, t) ("right") and the initial condition :func:`initial`; ``reference``
    (points, values) gives its error metric (:func:`reference` computes it)."""
    return pl.Problem(
        geometry=pl.geometry.Interval(0, 1),
        time=(0, T),
        pde=pde,
        conditions=[
            pl.Dirichlet(1.0, on=_left, name="left"),
            pl.Operator(_outflow, on=_right, name="right"),
            pl.Initial(initial),
        ],
        reference=reference,
    )


def _outflow(x, u):
    return u.value + D * u.d("x")


@dataclasses.dataclass(frozen=True)
class SorptionFamily(AbstractFamily):
    """Diffusion–sorption over initial conditions on an ``nx`` x ``nt`` node grid."""

    nx: int = 64
    nt: int = 32

    #: the (x, t) box the grids span
    extent: ClassVar[tuple] = ((0.0, 1.0), (0.0, T))

    def __post_init__(self):
        positive_int("nx", self.nx)
        positive_int("nt", self.nt)

    @functools.cached_property
    def problem(self):
        """The equation and the boundary conditions (its Initial is replaced per draw)."""
        return problem()

    def shapes(self):
        return {"u0": (self.nx,), "u": (self.nx, self.nt)}

    def grid(self) -> np.ndarray:
        """Node coordinates (nx, nt, 2): (x, t)."""
        x, t = np.linspace(0, 1, self.nx), np.linspace(0, T, self.nt)
        return np.stack(np.meshgrid(x, t, indexing="ij"), -1)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Parameters (a, c) of one initial condition."""
        return np.array([rng.uniform(2, 8), rng.uniform(0, 1)])

    @staticmethod
    def initial(params: np.ndarray, x: np.ndarray) -> np.ndarray:
        a, c = params
        return (1 - x) * (np.exp(-a * x) + c * x)

    def initial_values(self, params: np.ndarray) -> np.ndarray:
        """u0 at the grid's x nodes, (nx,)."""
        return self.initial(params, np.linspace(0, 1, self.nx))

    def truth(self, params: np.ndarray, refine: int = 10) -> np.ndarray:
        """u (nx, nt) at the grid's nodes."""
        n = refine * (self.nx - 1) + 1
        u = solve(self.initial(params, np.linspace(0, 1, n)), n, np.linspace(0, T, self.nt))
        return u[:, ::refine].T

    def generate(self, count, generator, device="cpu"):
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        params = [self.draw(rng) for _ in range(count)]
        return {
            "u0": torch.as_tensor(
                np.stack([self.initial_values(p) for p in params]), device=device
            ),
            "u": torch.as_tensor(np.stack([self.truth(p) for p in params]), device=device),
        }

    def __repr__(self):
        return f"SorptionFamily(nx={self.nx}, nt={self.nt})"
