r"""Constructive solid geometry: union, intersection, difference.

SDFs combine by :math:`\min` / :math:`\max`: union :math:`\min(a,b)`, intersection
:math:`\max(a,b)`, difference :math:`\max(a,-b)`. For exact inputs the result has the exact
zero set and sign, and :math:`|{\rm sdf}|` is a **lower bound** of the true distance
(exact outside a union and inside an intersection/difference). Lower bounds compose, so any
CSG tree of pdeml primitives gives a conservative distance: safe for walk-on-spheres steps and
a valid (if not unit-gradient) factor for hard constraints.
"""
from __future__ import annotations

import torch

from .._validate import fail
from ._dde import dde
from .base import AbstractGeometry


def _pair(a, b, op):
    for name, g in (("a", a), ("b", b)):
        if not isinstance(g, AbstractGeometry):
            fail(name, g, f"is not a pdeml geometry (needed by {op})", "build both from pdeml.geometry")
    if a.dim != b.dim:
        fail("b.dim", b.dim, f"differs from a.dim={a.dim} in {op}", "combine geometries of one dimension")


class Union(AbstractGeometry):
    """Points in ``a`` or ``b`` (``a | b``)."""

    sdf_exact = False

    def __init__(self, a, b):
        _pair(a, b, "Union")
        self.a, self.b, self.dim = a, b, a.dim
        self._dde = dde().csg.CSGUnion(a._dde, b._dde)

    def sdf(self, x):
        return torch.minimum(self.a.sdf(x), self.b.sdf(x))


class Intersection(AbstractGeometry):
    """Points in both ``a`` and ``b`` (``a & b``)."""

    sdf_exact = False

    def __init__(self, a, b):
        _pair(a, b, "Intersection")
        self.a, self.b, self.dim = a, b, a.dim
        self._dde = dde().csg.CSGIntersection(a._dde, b._dde)

    def sdf(self, x):
        return torch.maximum(self.a.sdf(x), self.b.sdf(x))


class Difference(AbstractGeometry):
    """Points in ``a`` and not in ``b`` (``a - b``)."""

    sdf_exact = False

    def __init__(self, a, b):
        _pair(a, b, "Difference")
        self.a, self.b, self.dim = a, b, a.dim
        self._dde = dde().csg.CSGDifference(a._dde, b._dde)

    def sdf(self, x):
        return torch.maximum(self.a.sdf(x), -self.b.sdf(x))
