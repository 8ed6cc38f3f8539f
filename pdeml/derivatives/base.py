"""The seam between case files and derivative computation."""
from __future__ import annotations

import abc

import torch


class AbstractEstimator(abc.ABC):
    """Computes the derivatives a :class:`~pdeml.field.Field` is asked for.

    Case files only talk to ``Field``; swapping the estimator (exact autograd here; SDGD and
    Taylor-mode STDE later) never changes them. Estimators declare their theory as data so
    tests can measure it: ``unbiased`` (expectation equals the exact operator) and
    ``exact`` (no sampling at all).

    Every method receives the field and returns a column (N, 1) for one output component.
    ``field._cache`` is a dict shared by all components of one network evaluation, where
    an estimator may keep intermediate results (gradients, Hessian rows).
    """

    exact: bool = True
    unbiased: bool = True

    @abc.abstractmethod
    def grad(self, field) -> torch.Tensor:
        """Full input gradient (N, n_inputs)."""

    @abc.abstractmethod
    def d2(self, field, i: int, j: int) -> torch.Tensor:
        """Second derivative d^2 u / dx_i dx_j, (N, 1)."""

    @abc.abstractmethod
    def laplacian(self, field, dims: tuple[int, ...]) -> torch.Tensor:
        """Sum of d^2 u / dx_i^2 over ``dims`` (the spatial inputs), (N, 1)."""

    def state_dict(self) -> dict:
        return {}
