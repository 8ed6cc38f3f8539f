r"""Loss-term combiners: per-term losses in, one descent direction out.

The seam for gradient-combination methods (ConFIG, PCGrad, ... in the optimizer layer):
``backward`` receives the named per-term losses and the trainable parameters and must leave
the combined gradient in ``p.grad``. ``total`` gives the scalar objective for line searches.
"""
from __future__ import annotations

import abc

import torch

from ._validate import fail, finite_scalar


class AbstractCombiner(abc.ABC):
    def check(self, names) -> None:
        """Validate against the backend's term names before training (default: nothing)."""
    @abc.abstractmethod
    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar objective (used by L-BFGS and for reporting)."""

    @abc.abstractmethod
    def backward(self, losses: dict[str, torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
        """Fill ``p.grad`` for ``params``; return the scalar objective."""


class Sum(AbstractCombiner):
    r"""Weighted sum :math:`L = \sum_k w_k L_k` (weights default to 1).

    Example:
        >>> Sum({"dirichlet": 10.0})
    """

    def __init__(self, weights: dict | None = None):
        self.weights = {k: finite_scalar(f"weights[{k!r}]", v) for k, v in (weights or {}).items()}

    def check(self, names):
        unknown = set(self.weights) - set(names)
        if unknown:
            fail("weights", self.weights, f"names unknown loss terms {sorted(unknown)}",
                 f"use the problem's terms {list(names)}")

    def total(self, losses):
        return sum(self.weights.get(k, 1.0) * v for k, v in losses.items())

    def backward(self, losses, params):
        total = self.total(losses)
        total.backward()
        return total

    def __repr__(self):
        return f"Sum({self.weights})"
