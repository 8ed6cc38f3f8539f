"""First-order optimizers as objects with readable hyperparameters; ``build`` makes the torch
optimizer. They are the settings of a :class:`pdeml.steppers.FirstOrder` phase; L-BFGS and
ENGD are steppers of their own (:mod:`pdeml.steppers`, :mod:`pdeml.gauss_newton`)."""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import torch

from ._validate import fail, finite_scalar, positive_int
from .settings import frozen_set

#: torch's Adam epsilon (its default), which :meth:`Adam.update_` uses too
ADAM_EPS = 1e-8

__all__ = ["AbstractOptimizer", "AbstractSchedule", "Adam", "SGD", "OneCycle", "Cosine"]


class AbstractSchedule(abc.ABC):
    """A learning-rate schedule over a phase of K steps: the rate of step k is ``lr`` times
    :meth:`factor` (k, K)."""

    @abc.abstractmethod
    def factor(self, step: int, total: int) -> float:
        """The rate's factor at the phase's step ``step`` (from 0) of ``total``."""


@dataclasses.dataclass(frozen=True)
class Cosine(AbstractSchedule):
    r"""Cosine annealing to zero over a phase of K steps (Loshchilov & Hutter 2017, torch's
    ``CosineAnnealingLR`` with ``T_max = K``, ``eta_min = 0``):
    :math:`\eta_k = \eta\,(1 + \cos(\pi k / K)) / 2`. Spectral-Refiner fine-tunes with it.

    Example:
        >>> [round(pl.Cosine().factor(k, 4), 3) for k in range(4)]
        [1.0, 0.854, 0.5, 0.146]
    """

    def factor(self, step: int, total: int) -> float:
        import math

        return (1 + math.cos(math.pi * step / total)) / 2


@dataclasses.dataclass(frozen=True)
class OneCycle(AbstractSchedule):
    r"""The one-cycle schedule (Smith & Topin 2019) over a phase of K steps: from
    :math:`\eta/d` up to the peak :math:`\eta` in the first ``warmup`` fraction (cosine), then down
    to :math:`\eta/(d\,d_f)` (cosine). Defaults as torch's ``OneCycleLR``: d = 25, d_f = 1e4,
    warmup 0.3. Spectral-Refiner trains ST-FNO with Adam 1e-2 and this schedule.

    Example:
        >>> pl.Adam(1e-2, schedule=pl.OneCycle())
        Adam(0.01, schedule=OneCycle(0.3, 25.0, 10000.0))
    """

    warmup: float = 0.3
    div: float = 25.0
    final_div: float = 1e4

    def __post_init__(self):
        frozen_set(
            self,
            warmup=finite_scalar("warmup", self.warmup),
            div=finite_scalar("div", self.div),
            final_div=finite_scalar("final_div", self.final_div),
        )
        if not 0 < self.warmup < 1 or self.div < 1 or self.final_div < 1:
            fail(
                "OneCycle",
                (self.warmup, self.div, self.final_div),
                "needs 0 < warmup < 1 and div, final_div >= 1",
                "pass e.g. OneCycle(0.3, 25, 1e4)",
            )

    def factor(self, step: int, total: int) -> float:
        import math

        up = max(1.0, self.warmup * total - 1)  # the peak's step, as torch's OneCycleLR
        lo, end = 1 / self.div, 1 / (self.div * self.final_div)
        if step <= up:
            return lo + (1 - lo) * (1 - math.cos(math.pi * step / up)) / 2
        frac = min(1.0, (step - up) / max(1.0, total - 1 - up))
        return end + (1 - end) * (1 + math.cos(math.pi * frac)) / 2

    def __repr__(self):
        return f"OneCycle({self.warmup}, {self.div}, {self.final_div})"


@dataclasses.dataclass(frozen=True)
class AbstractOptimizer(abc.ABC):
    r"""A first-order optimizer's settings: a learning rate with step decay
    :math:`\eta_k = \eta\,\gamma^{k/K}` (k counts the phase's steps), or a ``schedule`` over the
    whole phase (:class:`OneCycle`, :class:`Cosine`) instead. A backend may scale the rate per
    parameter (:meth:`pdeml.backend.AbstractTrainable.lr_scales`). The settings are frozen;
    :meth:`build` makes the torch optimizer that holds a run's state."""

    lr: float = 1e-3
    _: dataclasses.KW_ONLY
    decay: float = 1.0
    decay_every: int = 1000
    schedule: AbstractSchedule | None = None

    def __post_init__(self):
        frozen_set(self, lr=finite_scalar("lr", self.lr))
        if self.lr <= 0:
            fail("lr", self.lr, "must be positive", "pass e.g. 1e-3")
        frozen_set(self, decay=finite_scalar("decay", self.decay))
        if not 0 < self.decay <= 1:
            fail(
                "decay",
                self.decay,
                "must be in (0, 1]",
                "pass e.g. 0.9 (or 1 for a constant rate)",
            )
        positive_int("decay_every", self.decay_every)
        if self.schedule is not None and not isinstance(self.schedule, AbstractSchedule):
            fail(
                "schedule",
                self.schedule,
                "is not a schedule",
                "pass pl.OneCycle(), pl.Cosine() or None (step decay)",
            )
        if self.schedule is not None and self.decay != 1:
            fail("decay", self.decay, "and a schedule would both set the rate", "use one of them")

    def lr_at(self, step: int, total: int | None = None) -> float:
        """The rate of the phase's step ``step`` of ``total`` (needed by a schedule)."""
        if self.schedule is not None:
            if total is None:
                fail(
                    "schedule", self.schedule, "needs the phase's length", "train through pdeml.fit"
                )
            return self.lr * self.schedule.factor(step, total)
        return self.lr * self.decay ** (step / self.decay_every)

    #: the update is tensor operations a compiled step can take in its graph (:meth:`update_`)
    compiles: ClassVar[bool] = False

    @abc.abstractmethod
    def build(self, params) -> torch.optim.Optimizer:
        """The torch optimizer over ``params``."""

    def state_tensors(self, opt: torch.optim.Optimizer) -> list:
        """Per parameter, the torch optimizer's state tensors :meth:`update_` changes in place."""
        raise NotImplementedError(f"{type(self).__name__} has no compiled update")

    def update_(
        self,
        params: list,
        grads: list,
        states: list,
        lr: torch.Tensor,
        ok: torch.Tensor,
        scales: list | None = None,
    ) -> None:
        """The update as tensor operations, in place; nothing changes where ``ok`` is False.
        ``scales``: each parameter's factor of ``lr`` (its group's ``lr_scale``; default 1)."""
        raise NotImplementedError(f"{type(self).__name__} has no compiled update")

    def __repr__(self):
        tail = (
            f"schedule={self.schedule!r}"
            if self.schedule
            else f"decay={self.decay}, decay_every={self.decay_every}"
        )
        return f"{type(self).__name__}({self.lr}, {tail})"


@dataclasses.dataclass(frozen=True, repr=False)
class Adam(AbstractOptimizer):
    r"""Adam (Kingma & Ba 2015) with step decay :math:`\eta_k = \eta\,\gamma^{k/K}`.

    Example:
        >>> pl.Adam(1e-3, decay=0.9, decay_every=1000)
        Adam(0.001, decay=0.9, decay_every=1000)
    """

    _: dataclasses.KW_ONLY
    betas: tuple = (0.9, 0.999)

    def __post_init__(self):
        super().__post_init__()
        frozen_set(self, betas=tuple(finite_scalar("betas", b) for b in self.betas))

    def build(self, params):
        """torch's Adam, fused into one kernel per step where torch supports it (CPU and CUDA
        floating-point parameters): the same update, a third of the optimizer's time."""
        params = list(params)
        flat = (
            [p for g in params for p in g["params"]]
            if params and isinstance(params[0], dict)
            else params
        )
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in flat)
        return torch.optim.Adam(
            params, lr=self.lr, betas=self.betas, eps=ADAM_EPS, fused=fused or None
        )

    compiles: ClassVar[bool] = True

    def state_tensors(self, opt: torch.optim.Optimizer) -> list:
        """Per parameter ``[step, m, v]``: the torch optimizer's own state tensors (created as
        torch creates them if it has not stepped yet), which :meth:`update_` changes in place,
        so its ``state_dict`` (the checkpoint) is the same whichever path stepped."""
        out = []
        for group in opt.param_groups:
            for p in group["params"]:
                st = opt.state[p]
                if not st:
                    st["step"] = torch.zeros(
                        (), dtype=torch.float32, device=p.device if group.get("fused") else "cpu"
                    )
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                out.append([st["step"], st["exp_avg"], st["exp_avg_sq"]])
        return out

    def update_(
        self,
        params: list,
        grads: list,
        states: list,
        lr: torch.Tensor,
        ok: torch.Tensor,
        scales: list | None = None,
    ) -> None:
        r"""torch's Adam update as plain tensor operations, for a compiled step: with
        :math:`s` steps taken, :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
        :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
        :math:`\theta \leftarrow \theta - \frac{\eta}{1-\beta_1^{s}}\,m / (\sqrt{v/(1-\beta_2^{s})}
        + \epsilon)`.
        Nothing changes where ``ok`` is False (a non-finite gradient)."""
        b1, b2 = self.betas
        for p, g, (step, m, v), scale in zip(params, grads, states, scales or [1.0] * len(params)):
            s = step + 1
            s64 = s.to(torch.float64)  # the bias corrections in double, as torch's Adam
            rate = lr.to(torch.float64) * scale if scale != 1.0 else lr.to(torch.float64)
            step_size = (rate / (1 - torch.pow(b1, s64))).to(p.dtype)
            root = torch.sqrt(1 - torch.pow(b2, s64)).to(p.dtype)
            m_new = torch.lerp(m, g, 1 - b1)
            v_new = v * b2 + (1 - b2) * g * g
            denom = (v_new.sqrt() / root).add(ADAM_EPS)
            p_new = p - step_size * m_new / denom
            p.copy_(torch.where(ok, p_new, p))
            m.copy_(torch.where(ok, m_new, m))
            v.copy_(torch.where(ok, v_new, v))
            step.copy_(torch.where(ok, s, step))


@dataclasses.dataclass(frozen=True, repr=False)
class SGD(AbstractOptimizer):
    r"""Plain gradient descent :math:`\theta \leftarrow \theta - \eta_k d` with step decay; the
    partner of combiners that keep their own moments (M-ConFIG).

    Example:
        >>> pl.SGD(1e-3)
        SGD(0.001, decay=1.0, decay_every=1000)
    """

    compiles: ClassVar[bool] = True

    def build(self, params):
        return torch.optim.SGD(list(params), lr=self.lr)

    def state_tensors(self, opt) -> list:
        """Plain SGD keeps no state."""
        return [[] for group in opt.param_groups for _ in group["params"]]

    def update_(self, params, grads, states, lr, ok, scales=None) -> None:
        r""":math:`\theta \leftarrow \theta - \eta g` as tensor operations (a compiled step);
        nothing changes where ``ok`` is False."""
        for p, g, scale in zip(params, grads, scales or [1.0] * len(params)):
            p.copy_(torch.where(ok, p - (lr * scale if scale != 1.0 else lr) * g, p))
