r"""WoS-NO's family (issue 16): Poisson problems on random star-shaped domains.

.. math:: -\Delta u = f \text{ in } \Omega_c, \qquad u = g \text{ on } \partial\Omega_c,

with :math:`\partial\Omega_c = \{r(\theta)(\cos\theta, \sin\theta)\}`,
:math:`r(\theta) = 1 + c_1\cos 4\theta + c_2\cos 8\theta`, :math:`c \sim U(-0.2, 0.2)^2`;
:math:`f(x) = \sum_{i=1}^2 \beta_i e^{-|x - \mu_i|^2}`, :math:`\mu_i, \beta_i \sim N(0, 1)`;
:math:`g(\theta) = b_0 + \tfrac14(b_1\cos\theta + b_2\sin\theta + b_3\cos 2\theta + b_4\sin 2\theta)`,
:math:`b \sim U(-1, 1)^5` (the setting of the WoS-NO paper).

Each draw is a :class:`StarProblem`: its polygon geometry (the boundary sampled at ``vertices``
angles), its structured PDE (``pl.pde.Poisson``), its Dirichlet data, and a reference solution
that is not walk-on-spheres: P2 finite elements (scikit-fem) on the unit disk's mesh mapped
radially onto the star, whose own error is measured by refinement (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import pdeml as pl
from pdeml._validate import positive_int


@dataclass(frozen=True)
class StarProblem:
    """One draw: shape coefficients ``c`` (2,), source centers ``mu`` (2, 2) and weights
    ``beta`` (2,), boundary coefficients ``b`` (5,)."""

    c: np.ndarray
    mu: np.ndarray
    beta: np.ndarray
    b: np.ndarray

    def radius(self, theta):
        return 1 + self.c[0] * np.cos(4 * theta) + self.c[1] * np.cos(8 * theta)

    def source(self, x):
        """f at points ``x`` (N, 2), torch or numpy (the type of ``x``)."""
        lib = torch if isinstance(x, torch.Tensor) else np
        mu = torch.as_tensor(self.mu, dtype=x.dtype, device=x.device) if lib is torch else self.mu
        return sum(float(self.beta[i]) * lib.exp(-((x - mu[i]) ** 2).sum(1)) for i in range(2))

    def boundary(self, x):
        """g at points ``x`` (N, 2) by their angle, torch or numpy."""
        lib = torch if isinstance(x, torch.Tensor) else np
        t = lib.arctan2(x[:, 1], x[:, 0])
        b = self.b
        return b[0] + 0.25 * (b[1] * lib.cos(t) + b[2] * lib.sin(t) + b[3] * lib.cos(2 * t) + b[4] * lib.sin(2 * t))

    def geometry(self, vertices: int = 512) -> pl.geometry.Polygon:
        t = 2 * np.pi * np.arange(vertices) / vertices
        r = self.radius(t)
        return pl.geometry.Polygon(np.stack([r * np.cos(t), r * np.sin(t)], 1))

    def problem(self, vertices: int = 512) -> pl.Problem:
        return pl.Problem(geometry=self.geometry(vertices), pde=pl.pde.Poisson(source=self.source),
                          conditions=[pl.Dirichlet(self.boundary)])

    def fem(self, refinements: int = 5):
        """The P2 finite-element solution: a function of points (N, 2) -> (N,) (numpy)."""
        from skfem import Basis, ElementTriP2, LinearForm, MeshTri, condense, solve
        from skfem.models.poisson import laplace
        refinements = positive_int("refinements", refinements)
        disk = MeshTri.init_circle(refinements)
        p = disk.p
        theta = np.arctan2(p[1], p[0])
        mesh = MeshTri(p * self.radius(theta)[None], disk.t)          # radial map onto the star
        basis = Basis(mesh, ElementTriP2())
        A = laplace.assemble(basis)

        @LinearForm
        def load(v, w):
            return self.source(np.stack([w.x[0], w.x[1]], -1).reshape(-1, 2)).reshape(w.x[0].shape) * v

        rhs = load.assemble(basis)
        dofs = basis.get_dofs().all()
        locs = basis.doflocs[:, dofs].T
        # the P2 edge-midpoint dofs of the boundary sit on chords: evaluate g by angle (exact on the star)
        u = np.zeros(basis.N)
        u[dofs] = self.boundary(locs)
        u = solve(*condense(A, rhs, x=u, D=dofs))

        def at(x):
            x = np.asarray(x, dtype=float)
            return basis.probes(x.T) @ u
        at.mesh = mesh
        return at


def draw(rng: np.random.Generator) -> StarProblem:
    return StarProblem(c=rng.uniform(-0.2, 0.2, 2), mu=rng.normal(size=(2, 2)), beta=rng.normal(size=2),
                       b=rng.uniform(-1, 1, 5))


def interior_points(star: StarProblem, n: int, rng: np.random.Generator, margin: float = 0.02) -> np.ndarray:
    """``n`` points uniform in the star, at least ``margin`` (relative radius) from the boundary."""
    out = []
    while sum(len(o) for o in out) < n:
        x = rng.uniform(-1.4, 1.4, (4 * n, 2))
        r, t = np.linalg.norm(x, axis=1), np.arctan2(x[:, 1], x[:, 0])
        out.append(x[r < (1 - margin) * star.radius(t)])
    return np.concatenate(out)[:n]


__all__ = ["StarProblem", "draw", "interior_points"]
