r"""Exact derivatives by reverse-mode automatic differentiation.

First derivatives: one backward pass :math:`\nabla u = \partial u/\partial x` per output
component, cached. Second derivatives: Hessian rows :math:`\partial (\partial_i u)/\partial x`,
one backward pass each, cached, so ``d2(i, j)``, ``d2(j, i)`` and ``laplacian()`` share work:
a Laplacian in :math:`d` dimensions costs :math:`d` row passes, and a later ``d2(i, i)`` is free.
"""

from __future__ import annotations

import dataclasses

import torch

from .base import AbstractEstimator
from .base import grad_of as _grad


@dataclasses.dataclass(frozen=True)
class Autograd(AbstractEstimator):
    """Exact autograd derivatives with cached gradients and Hessian rows.

    Example:
        >>> est = Autograd()   # the default of every backend
    """

    def grad(self, run, field):
        key = ("grad", field.component)
        cache = field._cache
        if key not in cache:
            cache[key] = _grad(field._full_value, field.x)
        return cache[key]

    def hessian_row(self, run, field, i: int) -> torch.Tensor:
        key = ("hrow", field.component, i)
        cache = field._cache
        if key not in cache:
            cache[key] = _grad(self.grad(run, field)[:, i : i + 1], field.x)
        return cache[key]

    def d2(self, run, field, i, j):
        cache = field._cache
        if ("hrow", field.component, i) not in cache and ("hrow", field.component, j) in cache:
            i, j = j, i
        return self.hessian_row(run, field, i)[:, j : j + 1]

    def laplacian(self, run, field, dims):
        return sum(self.hessian_row(run, field, i)[:, i : i + 1] for i in dims)
