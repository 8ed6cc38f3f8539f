"""First-order optimizers as objects with readable hyperparameters; ``build`` makes the torch
optimizer. They are the settings of a :class:`pdeml.steppers.FirstOrder` phase; L-BFGS and
ENGD are steppers of their own (:mod:`pdeml.steppers`, :mod:`pdeml.gauss_newton`)."""
from __future__ import annotations

import abc

import torch

from ._validate import fail, finite_scalar, positive_int

__all__ = ["AbstractOptimizer", "Adam", "SGD", "OPTIMIZERS", "make_optimizer"]


class AbstractOptimizer(abc.ABC):
    r"""A first-order optimizer's settings: a learning rate with step decay :math:`\eta_k = \eta\,\gamma^{k/K}` (k counts the
    phase's steps)."""

    def __init__(self, lr: float = 1e-3, *, decay: float = 1.0, decay_every: int = 1000):
        self.lr = finite_scalar("lr", lr)
        if self.lr <= 0:
            fail("lr", lr, "must be positive", "pass e.g. 1e-3")
        self.decay = finite_scalar("decay", decay)
        if not 0 < self.decay <= 1:
            fail("decay", decay, "must be in (0, 1]", "pass e.g. 0.9 (or 1 for a constant rate)")
        self.decay_every = positive_int("decay_every", decay_every)

    def lr_at(self, step: int) -> float:
        return self.lr * self.decay ** (step / self.decay_every)

    @abc.abstractmethod
    def build(self, params) -> torch.optim.Optimizer:
        """The torch optimizer over ``params``."""

    def __repr__(self):
        return f"{type(self).__name__}({self.lr}, decay={self.decay}, decay_every={self.decay_every})"


class Adam(AbstractOptimizer):
    r"""Adam (Kingma & Ba 2015) with step decay :math:`\eta_k = \eta\,\gamma^{k/K}`.

    Example:
        >>> Adam(1e-3, decay=0.9, decay_every=1000)
    """

    def __init__(self, lr: float = 1e-3, *, decay: float = 1.0, decay_every: int = 1000,
                 betas=(0.9, 0.999)):
        super().__init__(lr, decay=decay, decay_every=decay_every)
        self.betas = tuple(finite_scalar("betas", b) for b in betas)

    def build(self, params):
        """torch's Adam, fused into one kernel per step where torch supports it (CPU and CUDA
        floating-point parameters): the same update, a third of the optimizer's time."""
        params = list(params)
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, fused=fused or None)


class SGD(AbstractOptimizer):
    r"""Plain gradient descent :math:`\theta \leftarrow \theta - \eta_k d` with step decay; the
    partner of combiners that keep their own moments (M-ConFIG).

    Example:
        >>> SGD(1e-3)
    """

    def build(self, params):
        return torch.optim.SGD(list(params), lr=self.lr)


def _carry(cls):
    """``--optimizer adam|sgd``: the new optimizer keeps the case's learning rate and decay."""
    def make(current):
        keep = {k: getattr(current, k) for k in ("lr", "decay", "decay_every") if hasattr(current, k)}
        return cls(keep.pop("lr", 1e-3), **keep)
    return make


def _engd(**kw):
    def make(current):
        from .gauss_newton import ENGD
        return ENGD(**kw)
    return make


#: CLI names -> the first phase's optimizer, made from the case's current one
OPTIMIZERS = {"adam": _carry(Adam), "sgd": _carry(SGD), "engd": _engd(), "engd-cg": _engd(solver="cg")}


def make_optimizer(spec, current=None):
    """An optimizer object from an object, or a name in :data:`OPTIMIZERS` (which keeps the
    learning rate and decay of ``current`` where both have one)."""
    if not isinstance(spec, str):
        return spec
    if spec not in OPTIMIZERS:
        fail("optimizer", spec, "is not an optimizer", f"use one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[spec](current)
