"""The geometry contract: inside tests, normals, sampling (from deepxde) and a torch SDF."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

from .._validate import fail, positive_int
from ._dde import seeded

#: Sampling methods for interior and boundary points. ``random`` is pseudo-random, ``uniform``
#: an (approximately) equispaced set, the others quasi-random sequences.
METHODS = {
    "random": "pseudo",
    "uniform": "uniform",
    "sobol": "Sobol",
    "halton": "Halton",
    "lhs": "LHS",
    "hammersley": "Hammersley",
}


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class AbstractGeometry(abc.ABC):
    """A spatial domain.

    Point queries and sampling are delegated to a ``deepxde.geometry`` object (``_dde``);
    :meth:`sdf` is pdeml's own, written in torch so it can sit inside a differentiable output
    transform (hard constraints) and drive walk-on-spheres. Convention: ``sdf < 0`` inside,
    ``0`` on the boundary, ``> 0`` outside. ``sdf_exact`` says whether ``|sdf|`` is the true
    distance to the boundary or (CSG, ellipses) a lower bound of it.
    """

    dim: int
    sdf_exact: bool = True
    _dde: Any  # the deepxde geometry behind the queries

    @abc.abstractmethod
    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance (or a lower bound of it) of each row of ``x``; shape (N,)."""

    # ----------------------------------------------------------------- queries
    @property
    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._dde.bbox
        return np.asarray(lo, dtype=float).reshape(self.dim), np.asarray(hi, dtype=float).reshape(
            self.dim
        )

    def inside(self, x) -> np.ndarray:
        """Bool mask (N,): points inside or on the boundary."""
        return np.asarray(self._dde.inside(self._check_points(x)), dtype=bool)

    def on_boundary(self, x) -> np.ndarray:
        return np.asarray(self._dde.on_boundary(self._check_points(x)), dtype=bool)

    def boundary_normal(self, x) -> np.ndarray:
        """Outward unit normals (N, dim) at boundary points."""
        x = self._check_points(x)
        try:
            return np.asarray(self._dde.boundary_normal(x), dtype=float)
        except NotImplementedError:  # deepxde has none for this shape (an ellipse inside CSG)
            return self._normal_fallback(x)

    def _normal_fallback(self, x: np.ndarray) -> np.ndarray:
        fail(
            "geometry",
            type(self).__name__,
            "has no outward normal (Neumann and Robin conditions need one)",
            "use Dirichlet conditions on it, or a shape with normals (boxes, balls, ellipses, "
            "polygons, meshes and their CSG)",
            NotImplementedError,
        )

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Distance to the boundary inside the domain (``-sdf``), shape (N, 1)."""
        return -self.sdf(x)[:, None]

    def smooth_distance(self, x: torch.Tensor) -> torch.Tensor:
        """A distance-like factor (N, 1), zero on the boundary and positive inside, for hard
        constraints. Default ``-sdf`` (CSG, ellipses); boxes, balls and polygons override it with
        smooth approximate distance functions, because the kinks of ``min``-based SDFs along the
        medial axis put
        spurious jumps into the second derivatives a PDE residual sees."""
        return self.distance(x)

    def smooth_distance_jet(self, jet):
        """Taylor-mode jet of :meth:`smooth_distance` (generic nested-jvp rule; balls are exact)."""
        from ..derivatives import jets as J

        return J.function_jet(self.smooth_distance, [jet])

    # ---------------------------------------------------------------- sampling
    def sample_interior(
        self, n: int, rng: np.random.Generator, method: str = "random"
    ) -> np.ndarray:
        """``n`` points inside the domain, shape (n, dim), float64."""
        n = positive_int("n", n)
        m = self._method(method)
        with seeded(rng):
            if m == "uniform":
                x = self._dde.uniform_points(n, boundary=False)
            else:
                x = self._dde.random_points(n, random=m)
        return np.asarray(x, dtype=float)

    def sample_boundary(
        self, n: int, rng: np.random.Generator, method: str = "random"
    ) -> np.ndarray:
        """``n`` points on the boundary, shape (n, dim), float64."""
        n = positive_int("n", n)
        m = self._method(method)
        with seeded(rng):
            if m == "uniform":
                x = self._dde.uniform_boundary_points(n)
            else:
                x = self._dde.random_boundary_points(n, random=m)
        return np.asarray(x, dtype=float)

    # --------------------------------------------------------------------- CSG
    def __or__(self, other):
        from .csg import Union

        return Union(self, other)

    def __and__(self, other):
        from .csg import Intersection

        return Intersection(self, other)

    def __sub__(self, other):
        from .csg import Difference

        return Difference(self, other)

    # ----------------------------------------------------------------- helpers
    def _method(self, method: str) -> str:
        if method not in METHODS:
            fail("method", method, "is not a sampling method", f"use one of {sorted(METHODS)}")
        return METHODS[method]

    def _check_points(self, x) -> np.ndarray:
        x = _np(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            fail(
                "x",
                f"array of shape {x.shape}",
                f"does not hold {self.dim}-D points",
                f"pass an array of shape (N, {self.dim})",
            )
        return x

    def __repr__(self):
        return f"{type(self).__name__}(dim={self.dim})"
