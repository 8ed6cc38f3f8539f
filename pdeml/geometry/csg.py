r"""Constructive solid geometry: union, intersection, difference.

SDFs combine by :math:`\min` / :math:`\max`: union :math:`\min(a,b)`, intersection
:math:`\max(a,b)`, difference :math:`\max(a,-b)`. For exact inputs the result has the exact
zero set and sign, and :math:`|{\rm sdf}|` is a **lower bound** of the true distance
(exact outside a union and inside an intersection/difference). Lower bounds compose, so any
CSG tree of pdeml primitives gives a conservative distance: safe for walk-on-spheres steps and
a valid (if not unit-gradient) factor for hard constraints.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validate import fail
from ._dde import dde
from .base import AbstractGeometry


def _pair(a, b, op):
    for name, g in (("a", a), ("b", b)):
        if not isinstance(g, AbstractGeometry):
            fail(
                name,
                g,
                f"is not a pdeml geometry (needed by {op})",
                "build both from pdeml.geometry",
            )
    if a.dim != b.dim:
        fail(
            "b.dim",
            b.dim,
            f"differs from a.dim={a.dim} in {op}",
            "combine geometries of one dimension",
        )


class _Binary(AbstractGeometry):
    """A CSG node over ``a`` and ``b``: deepxde's geometry for sampling, a min/max SDF."""

    sdf_exact = False
    _dde_class: str

    def __init__(self, a, b):
        _pair(a, b, type(self).__name__)
        self.a, self.b, self.dim = a, b, a.dim
        self._dde = getattr(dde().csg, self._dde_class)(a._dde, b._dde)
        _check_not_empty(self)

    #: the sign of ``b``'s outward normal on this node's boundary (a difference's hole: -1)
    _b_sign = 1.0

    def _normal_fallback(self, x: np.ndarray) -> np.ndarray:
        """Each point's normal from the operand whose boundary it lies on (the smaller |SDF|),
        used where deepxde has none for an operand (an ellipse)."""
        t = torch.as_tensor(x, dtype=torch.float64)
        on_b = (self.b.sdf(t).abs() < self.a.sdf(t).abs()).numpy()
        out = np.empty_like(x, dtype=float)
        if (~on_b).any():
            out[~on_b] = self.a.boundary_normal(x[~on_b])
        if on_b.any():
            out[on_b] = self._b_sign * self.b.boundary_normal(x[on_b])
        return out


def _check_not_empty(g, probes: int = 20_000):
    """Sampling an empty domain would loop forever (deepxde redraws until it has enough points):
    an empty bounding box, or no inside point among ``probes`` Halton points of it, is an error."""
    lo, hi = g.bbox
    inside = 0
    if np.all(hi > lo):
        from scipy.stats import qmc

        x = lo + (hi - lo) * qmc.Halton(g.dim, scramble=False).random(probes)
        inside = int(g.inside(x).sum())
    if inside == 0:
        fail(
            type(g).__name__,
            f"of a {type(g.a).__name__} and a {type(g.b).__name__}",
            "is empty (or thinner than 1/20000 of its bounding box: no point could be sampled in "
            "it)",
            "check the operands' positions: an intersection of disjoint shapes, or a difference "
            "that "
            "removes everything, has no points",
            ValueError,
        )


class Union(_Binary):
    """Points in ``a`` or ``b`` (``a | b``)."""

    _dde_class = "CSGUnion"

    def sdf(self, x):
        return torch.minimum(self.a.sdf(x), self.b.sdf(x))


class Intersection(_Binary):
    """Points in both ``a`` and ``b`` (``a & b``)."""

    _dde_class = "CSGIntersection"

    def sdf(self, x):
        return torch.maximum(self.a.sdf(x), self.b.sdf(x))


class Difference(_Binary):
    """Points in ``a`` and not in ``b`` (``a - b``)."""

    _dde_class = "CSGDifference"
    _b_sign = -1.0  # on the hole's rim the domain's outward normal points into the hole

    def sdf(self, x):
        return torch.maximum(self.a.sdf(x), -self.b.sdf(x))
