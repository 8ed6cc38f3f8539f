r"""Viscous Burgers u_t + u u_x = (0.01/π) u_xx on [-1, 1] x [0, 1], u(x,0) = -sin(πx), u(±1,t) = 0.

Truth: the Cole-Hopf solution
:math:`u = -\frac{\int \sin\pi(x-\eta)\, f(x-\eta)\, e^{-\eta^2/4\nu t} d\eta}{\int f(x-\eta)\, e^{-\eta^2/4\nu t} d\eta}`,
:math:`f(y) = e^{-\cos(\pi y)/2\pi\nu}`, evaluated with Gauss-Hermite quadrature (η = √(4νt) z)
in log-sum-exp form; 1D heat-kernel integrals of this kind converge exponentially in the node
count (the tests compare 200 against 400 nodes).
"""
import math
from functools import lru_cache

import numpy as np
import torch

import pdeml as pl

NU = 0.01 / math.pi


def cole_hopf(x: np.ndarray, t: np.ndarray, nodes: int = 200) -> np.ndarray:
    """Cole-Hopf solution at points (x, t) (t > 0; t = 0 returns the initial condition)."""
    z, w = np.polynomial.hermite.hermgauss(nodes)
    x, t = np.asarray(x, float)[:, None], np.asarray(t, float)[:, None]
    y = x - np.sqrt(4 * NU * np.maximum(t, 1e-300)) * z[None]
    logf = -np.cos(np.pi * y) / (2 * np.pi * NU) + np.log(w)[None]
    logf -= logf.max(axis=1, keepdims=True)
    e = np.exp(logf)
    u = -(np.sin(np.pi * y) * e).sum(1) / e.sum(1)
    return np.where(t[:, 0] > 0, u, -np.sin(np.pi * x[:, 0]))


@lru_cache(maxsize=2)
def reference(nx: int = 256, nt: int = 101):
    x, t = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(0, 1, nt), indexing="ij")
    pts = np.stack([x.ravel(), t.ravel()], 1)
    return pts, cole_hopf(pts[:, 0], pts[:, 1])[:, None]


def initial(x):
    return -torch.sin(math.pi * x[:, 0:1])


def pde(x, u):
    return u.dt() + u.value * u.d("x") - NU * u.d2("x")


problem = pl.Problem(geometry=pl.geometry.Interval(-1, 1), time=(0, 1), pde=pde,
                     conditions=[pl.Dirichlet(0.0), pl.Initial(initial)],
                     reference=reference())
case = pl.Case(problem=problem, model=pl.nn.MLP(width=32, depth=4), steps=6000, lr=2e-3,
               lr_decay=0.5, lr_decay_every=2000, n_domain=3000, n_boundary=200, n_initial=300,
               resample_every=100, lbfgs_steps=3000, weights={"initial": 10.0, "dirichlet": 10.0})
