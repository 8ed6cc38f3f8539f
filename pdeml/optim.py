"""Optimizers as objects with readable hyperparameters; ``build`` makes the torch optimizer."""
from __future__ import annotations

import torch

from ._validate import fail, finite_scalar, positive_int
from .gauss_newton import ENGD

__all__ = ["Adam", "SGD", "LBFGS", "ENGD", "OPTIMIZERS", "make_optimizer"]


class Adam:
    r"""Adam (Kingma & Ba 2015) with step decay :math:`\eta_k = \eta\,\gamma^{k/K}`.

    Example:
        >>> Adam(1e-3, decay=0.9, decay_every=1000)
    """

    def __init__(self, lr: float = 1e-3, *, decay: float = 1.0, decay_every: int = 1000,
                 betas=(0.9, 0.999)):
        self.lr = finite_scalar("lr", lr)
        if self.lr <= 0:
            fail("lr", lr, "must be positive", "pass e.g. 1e-3")
        self.decay = finite_scalar("decay", decay)
        if not 0 < self.decay <= 1:
            fail("decay", decay, "must be in (0, 1]", "pass e.g. 0.9 (or 1 for a constant rate)")
        self.decay_every = positive_int("decay_every", decay_every)
        self.betas = tuple(betas)

    def lr_at(self, step: int) -> float:
        return self.lr * self.decay ** (step / self.decay_every)

    def build(self, params):
        """torch's Adam, fused into one kernel per step where torch supports it (CPU and CUDA
        floating-point parameters): the same update, a third of the optimizer's time."""
        params = list(params)
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, fused=fused or None)

    def __repr__(self):
        return f"Adam({self.lr}, decay={self.decay}, decay_every={self.decay_every})"


class SGD(Adam):
    r"""Plain gradient descent :math:`\theta \leftarrow \theta - \eta_k d` with the same step decay
    as :class:`Adam`; the partner of combiners that keep their own moments (M-ConFIG).

    Example:
        >>> SGD(1e-3)
    """

    def build(self, params):
        return torch.optim.SGD(list(params), lr=self.lr)

    def __repr__(self):
        return f"SGD({self.lr}, decay={self.decay}, decay_every={self.decay_every})"


class LBFGS:
    """L-BFGS with strong-Wolfe line search, one iteration per training step.

    torch's defaults stop L-BFGS early when the loss change falls below ``tolerance_change``
    (1e-9) or the gradient below ``tolerance_grad`` (1e-7); in float32 that ends runs after
    one or two iterations (the DeepXDE reports #1819, #1977). We call ``step`` once per
    training step with ``max_iter=1`` and tolerances at zero, so the iteration count is
    exactly ``steps`` unless the line search can make no progress at all: after ``patience``
    iterations in a row that leave every parameter unchanged (the loss is at its floating-point
    floor, or the gradient is exactly zero) the stage ends early, with a warning, instead of
    spending line-search evaluations on nothing (on Allen-Cahn a stalled iteration took 0.32 s,
    a productive one 0.14 s).
    """

    def __init__(self, steps: int = 1000, *, lr: float = 1.0, history_size: int = 50,
                 patience: int = 20):
        self.steps = positive_int("lbfgs steps", steps)
        self.lr = finite_scalar("lr", lr)
        self.history_size = positive_int("history_size", history_size)
        self.patience = positive_int("patience", patience)

    def build(self, params):
        return torch.optim.LBFGS(params, lr=self.lr, max_iter=1, max_eval=25,
                                 history_size=self.history_size, tolerance_grad=0.0,
                                 tolerance_change=0.0, line_search_fn="strong_wolfe")

    def __repr__(self):
        return f"LBFGS({self.steps})"


#: CLI names -> first-order-phase optimizers built from a case's lr and decay
OPTIMIZERS = {"adam": Adam, "sgd": SGD,
              "engd": lambda lr=None, **kw: ENGD(), "engd-cg": lambda lr=None, **kw: ENGD(solver="cg")}


def make_optimizer(spec, lr: float, decay: float = 1.0, decay_every: int = 1000):
    """An optimizer object from an object or a name in :data:`OPTIMIZERS`."""
    if spec is not None and not isinstance(spec, str):
        return spec
    name = spec or "adam"
    if name not in OPTIMIZERS:
        fail("optimizer", spec, "is not an optimizer", f"use one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](lr, decay=decay, decay_every=decay_every)
