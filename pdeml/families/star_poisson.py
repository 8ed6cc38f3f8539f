r"""WoS-NO's family: Poisson problems on random star-shaped domains.

.. math:: -\Delta u = f \text{ in } \Omega_c, \qquad u = g \text{ on } \partial\Omega_c,

with :math:`\partial\Omega_c = \{r(\theta)(\cos\theta, \sin\theta)\}`,
:math:`r(\theta) = 1 + c_1\cos 4\theta + c_2\cos 8\theta`, :math:`c \sim U(-0.2, 0.2)^2`;
:math:`f(x) = \sum_{i=1}^2 \beta_i e^{-|x - \mu_i|^2}`, :math:`\mu_i, \beta_i \sim N(0, 1)`;
:math:`g(\theta) = b_0 + \tfrac14(b_1\cos\theta + b_2\sin\theta + b_3\cos 2\theta + b_4\sin
2\theta)`,
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
from pdeml._validate import fail, positive_int
from pdeml.family import AbstractFamily


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
        return b[0] + 0.25 * (
            b[1] * lib.cos(t) + b[2] * lib.sin(t) + b[3] * lib.cos(2 * t) + b[4] * lib.sin(2 * t)
        )

    def geometry(self, vertices: int = 512) -> pl.geometry.Polygon:
        t = 2 * np.pi * np.arange(vertices) / vertices
        r = self.radius(t)
        return pl.geometry.Polygon(np.stack([r * np.cos(t), r * np.sin(t)], 1))

    def problem(self, vertices: int = 512) -> pl.Problem:
        return pl.Problem(
            geometry=self.geometry(vertices),
            pde=pl.pde.Poisson(source=self.source),
            conditions=[pl.Dirichlet(self.boundary)],
        )

    def fem(self, refinements: int = 5):
        """The P2 finite-element solution: a function of points (N, 2) -> (N,) (numpy)."""
        from skfem import Basis, ElementTriP2, LinearForm, MeshTri, condense, solve
        from skfem.models.poisson import laplace

        refinements = positive_int("refinements", refinements)
        disk = MeshTri.init_circle(refinements)
        p = disk.p
        theta = np.arctan2(p[1], p[0])
        mesh = MeshTri(p * self.radius(theta)[None], disk.t)  # radial map onto the star
        basis = Basis(mesh, ElementTriP2())
        A = laplace.assemble(basis)

        @LinearForm
        def load(v, w):
            return (
                self.source(np.stack([w.x[0], w.x[1]], -1).reshape(-1, 2)).reshape(w.x[0].shape) * v
            )

        rhs = load.assemble(basis)
        dofs = basis.get_dofs().all()
        locs = basis.doflocs[:, dofs].T
        # the P2 edge-midpoint dofs of the boundary sit on chords: evaluate g by angle (exact on the
        # star)
        u = np.zeros(basis.N)
        u[dofs] = self.boundary(locs)
        u = solve(*condense(A, rhs, x=u, D=dofs))

        # the mesh's boundary is the star's chords: a point of the star outside them (within the
        # chords' sagitta, about 1e-4 here) is read where its ray meets the chord, an O(sagitta)
        # move
        ring = np.unique(mesh.boundary_nodes())
        ring = ring[np.argsort(np.arctan2(mesh.p[1, ring], mesh.p[0, ring]))]
        va, vb = mesh.p[:, ring].T, np.roll(mesh.p[:, ring].T, -1, axis=0)
        angles = np.arctan2(va[:, 1], va[:, 0])

        def at(x):
            x = np.array(x, dtype=float).reshape(-1, 2)
            t = np.arctan2(x[:, 1], x[:, 0])
            outside = np.linalg.norm(x, axis=1) > self.radius(t) * (1 + 1e-9)
            if outside.any():
                fail(
                    "x",
                    f"{int(outside.sum())} points outside the star (first {x[outside][0]})",
                    "have no finite-element value",
                    "pass points inside the domain",
                )
            k = (np.searchsorted(angles, t, side="right") - 1) % len(va)  # the chord below angle t
            a, b = va[k], vb[k]
            d = np.stack([np.cos(t), np.sin(t)], 1)
            chord = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) / (
                d[:, 0] * (b - a)[:, 1] - d[:, 1] * (b - a)[:, 0]
            )
            r = np.linalg.norm(x, axis=1)
            x = np.where((r > chord * (1 - 1e-9))[:, None], d * chord[:, None] * (1 - 1e-9), x)
            return basis.probes(x.T) @ u

        at.mesh = mesh
        return at

    def vector(self) -> np.ndarray:
        """The draw as 13 numbers (c, mu, beta, b), as a dataset stores it."""
        return np.concatenate([self.c, self.mu.ravel(), self.beta, self.b])

    @classmethod
    def from_vector(cls, v) -> StarProblem:
        v = np.asarray(v, dtype=float)
        if v.shape != (13,):
            fail(
                "v",
                v.shape,
                "is not a star draw's 13 numbers (c, mu, beta, b)",
                "pass StarProblem.vector()",
            )
        return cls(c=v[:2], mu=v[2:6].reshape(2, 2), beta=v[6:8], b=v[8:])

    def inside(self, x) -> np.ndarray:
        """Whether points ``x`` (N, 2) lie strictly inside the star."""
        x = np.asarray(x, dtype=float)
        return np.linalg.norm(x, axis=1) < self.radius(np.arctan2(x[:, 1], x[:, 0]))


def draw(rng: np.random.Generator) -> StarProblem:
    """One draw of the family; its numbers are rounded to float32 (as a dataset stores them), so a
    draw and its stored copy are the same problem."""
    v = np.concatenate(
        [rng.uniform(-0.2, 0.2, 2), rng.normal(size=4), rng.normal(size=2), rng.uniform(-1, 1, 5)]
    )
    return StarProblem.from_vector(v.astype(np.float32).astype(float))


#: the operators' grid covers [-HALF, HALF]² (every star lies within r <= 1.4)
HALF = 1.5


def grid(n: int) -> np.ndarray:
    """The cell centres (n, n, 2) of an n x n grid on [-HALF, HALF]², indexed [i (x), j (y)]."""
    c = -HALF + (np.arange(positive_int("n", n)) + 0.5) * (2 * HALF / n)
    return np.stack(np.meshgrid(c, c, indexing="ij"), -1)


def grid_features(star: StarProblem, n: int, vertices: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """WoS-NO's per-point inputs on the grid, ``(3, n, n)``: g at the nearest boundary point, the
    signed distance to the boundary (positive inside), and f; and the inside mask ``(n, n)``."""
    from pdeml.solvers.wos import _closest_boundary

    x = torch.as_tensor(grid(n).reshape(-1, 2))
    geom = star.geometry(vertices)
    dist = -geom.sdf(x).reshape(-1)
    near = _closest_boundary(x, lambda y: -geom.sdf(y).reshape(-1))
    inside = star.inside(x.numpy())
    dist = torch.where(
        torch.as_tensor(inside), dist.detach().abs(), -dist.detach().abs()
    )  # the exact star's side
    feats = torch.stack([star.boundary(near), dist, star.source(x)])
    return feats.reshape(3, n, n).numpy(), inside.reshape(n, n)


@dataclass(frozen=True)
class StarFamily(AbstractFamily):
    """The star family on an n x n grid: per sample the features (:func:`grid_features`), the
    inside mask, the finite-element truth at the inside cell centres (0 outside) and the draw's
    13 numbers. ``pdeml data`` writes it; WoS-NO itself trains on walks and needs only the
    test draws' truth."""

    n: int = 32
    fem_refinements: int = 5

    def __post_init__(self):
        positive_int("n", self.n)
        positive_int("fem_refinements", self.fem_refinements)

    def shapes(self):
        n = self.n
        return {"features": (3, n, n), "inside": (n, n), "u": (n, n), "params": (13,)}

    # ---- what a domain-family operator (operators.wosno) asks of its family
    half = HALF

    def draw(self, rng: np.random.Generator) -> StarProblem:
        return draw(rng)

    def grid(self) -> np.ndarray:
        return grid(self.n)

    def features(self, star: StarProblem) -> tuple[np.ndarray, np.ndarray]:
        return grid_features(star, self.n)

    def truth(self, star: StarProblem, inside: np.ndarray) -> np.ndarray:
        """The finite-element solution at the inside cell centres, 0 outside (n, n)."""
        u = np.zeros((self.n, self.n))
        u[inside] = star.fem(self.fem_refinements)(grid(self.n)[inside])
        return u

    def wos_problem(self, star: StarProblem, vertices: int = 256) -> pl.Problem:
        """The draw as a problem walk-on-spheres solves (its boundary a 256-gon: its chords lie
        within 1e-3 of the star, the size of the stopping shell)."""
        return star.problem(vertices)

    @staticmethod
    def boundary_samples(params: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` boundary points per draw (B, k, 2) at equispaced angles and g there (B, k), from
        the draws' numbers ``params`` (B, 13), in torch (dtype and device of ``params``)."""
        t = torch.arange(k, dtype=params.dtype, device=params.device) * (2 * np.pi / k)
        c, b = params[:, :2, None], params[:, 8:, None]
        r = 1 + c[:, 0] * torch.cos(4 * t) + c[:, 1] * torch.cos(8 * t)
        x = torch.stack([r * torch.cos(t), r * torch.sin(t)], -1)
        g = b[:, 0] + 0.25 * (
            b[:, 1] * torch.cos(t)
            + b[:, 2] * torch.sin(t)
            + b[:, 3] * torch.cos(2 * t)
            + b[:, 4] * torch.sin(2 * t)
        )
        return x, g

    def sample(self, star: StarProblem) -> dict[str, np.ndarray]:
        feats, inside = self.features(star)
        return {
            "features": feats,
            "inside": inside.astype(float),
            "u": self.truth(star, inside),
            "params": star.vector(),
        }

    def generate(self, count, generator, device="cpu"):
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        samples = [self.sample(draw(rng)) for _ in range(positive_int("count", count))]
        return {k: torch.as_tensor(np.stack([s[k] for s in samples])) for k in self.shapes()}

    def __repr__(self):
        return f"StarFamily(n={self.n}, fem_refinements={self.fem_refinements})"


def interior_points(
    star: StarProblem, n: int, rng: np.random.Generator, margin: float = 0.02
) -> np.ndarray:
    """``n`` points uniform in the star, at least ``margin`` (relative radius) from the boundary."""
    out = []
    while sum(len(o) for o in out) < n:
        x = rng.uniform(-1.4, 1.4, (4 * n, 2))
        r, t = np.linalg.norm(x, axis=1), np.arctan2(x[:, 1], x[:, 0])
        out.append(x[r < (1 - margin) * star.radius(t)])
    return np.concatenate(out)[:n]


__all__ = ["HALF", "StarFamily", "StarProblem", "draw", "grid", "grid_features", "interior_points"]
