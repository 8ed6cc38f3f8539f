r"""Poisson -Δu = 1 on the L-shaped domain, u = 0 on the boundary (FD reference).

Domain: DeepXDE's L-shape, the square [-1, 1]^2 without the quadrant x > 0, y > 0. The exact
solution has an r^{2/3} singularity at the re-entrant corner. Truth: the 5-point finite
difference solution on a 2/256 grid (second order away from the corner), solved with scipy.
"""

from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

import pdeml as pl

VERTICES = [(0, 0), (1, 0), (1, -1), (-1, -1), (-1, 1), (0, 1)]


@lru_cache(maxsize=2)
def fd_reference(n: int = 256):
    """5-point FD solution at the interior grid nodes: ``(points (M, 2), values (M, 1))``."""
    h = 2.0 / n
    s = np.linspace(-1, 1, n + 1)
    X, Y = np.meshgrid(s, s, indexing="ij")
    inner = (np.abs(X) < 1 - 1e-12) & (np.abs(Y) < 1 - 1e-12) & ~((X > -1e-12) & (Y > -1e-12))
    idx = -np.ones(X.shape, dtype=np.int64)
    idx[inner] = np.arange(inner.sum())
    rows, cols, vals = [], [], []
    I, J = np.nonzero(inner)
    k = idx[I, J]
    rows.append(k), cols.append(k), vals.append(np.full(len(k), 4.0 / h**2))
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb = idx[I + di, J + dj]
        ok = nb >= 0
        rows.append(k[ok]), cols.append(nb[ok]), vals.append(np.full(ok.sum(), -1.0 / h**2))
    A = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(k), len(k))
    )
    u = spsolve(A, np.ones(len(k)))
    return np.stack([X[inner], Y[inner]], 1), u[:, None]


geometry = pl.geometry.Polygon(VERTICES)
# structured: a PINN reads it as the residual -lap u - 1, walk-on-spheres (`pdeml solve`) reads f =
# 1
problem = pl.Problem(
    geometry=geometry,
    pde=pl.pde.Poisson(source=1.0),
    conditions=[pl.Dirichlet(0.0)],
    reference=fd_reference(),
)
# The r^{2/3} corner singularity is what limits accuracy: the boundary term is weighted x10
# so the corner is pinned, and L-BFGS does most of the work (see docs/pinn.md).
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(width=50, depth=4), sampler=pl.samplers.Uniform(2000, 400, every=100)),
    steps=3000,
    optimizer=pl.Adam(2e-3, decay=0.5, decay_every=1000),
    lbfgs_steps=2500,
    weights={"dirichlet": 10.0},
)
