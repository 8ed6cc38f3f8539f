r"""Residual-based adaptive distribution (RAD) and refinement with distribution (RAR-D).

Wu, Zhu, Tan, Kartha, Lu, "A comprehensive study of non-adaptive and residual-based adaptive
sampling for physics-informed neural networks", CMAME 2023.

Every ``every`` steps the sampler evaluates the PDE residual on a dense uniform candidate set
:math:`S_0` (``candidates`` times the population) and forms the probability mass

.. math:: p(x) \propto \frac{|r(x)|^k}{\mathbb{E}\,|r|^k} + c, \qquad x \in S_0,

(:math:`\mathbb{E}` the mean over :math:`S_0`; several residual columns: their Euclidean norm).
**RAD** replaces the whole population by ``n_domain`` draws from :math:`p` (without
replacement, as in the paper); **RAR-D** keeps the population and *adds* ``add`` draws, so it
grows. :math:`k = 1, c = 1` are the paper's recommended defaults; :math:`c \to \infty` is
uniform sampling, :math:`k \to \infty` picks the largest residuals (RAR-G).

Unlike R3, these need residuals at points the loss did not see: the sampler is handed the
backend's ``residual_at`` through :meth:`pdeml.sampling.AbstractSampler.init`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.sampling import AbstractSampler, draw, point_counts
from pdeml.settings import frozen_set


def residual_probabilities(r: np.ndarray, k: float, c: float) -> np.ndarray:
    """:math:`p_i \\propto |r_i|^k / \\mathrm{mean}(|r|^k) + c`, normalized; ``r`` (N,) or (N,
    m)."""
    a = np.abs(np.asarray(r, dtype=np.float64))
    a = np.linalg.norm(a.reshape(len(a), -1), axis=1) ** k
    mean = a.mean()
    w = (a / mean if mean > 0 else np.zeros_like(a)) + c
    if not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise FloatingPointError(
            "RAD: the residuals on the candidate set are not finite (or all zero "
            "with c = 0). Fix: pass c > 0, or check the model for NaN."
        )
    return w / w.sum()


@dataclasses.dataclass(frozen=True)
class RAD(AbstractSampler):
    """Resample all PDE points from the residual-weighted density every ``every`` steps.

    Args:
        n_domain: population size. n_boundary, n_initial: condition points.
        every: steps between resamplings (the residual is evaluated on the candidates then).
        k, c: the density's exponent and uniform floor (paper defaults 1 and 1).
        candidates: size of the candidate set as a multiple of ``n_domain``.
        method: how candidates (and condition points) are drawn.

    Example:
        >>> sampler = RAD(2000, every=1000)          # --sampler rad
    """

    n_domain: int = 2000
    n_boundary: int = 200
    n_initial: int = 200
    _: dataclasses.KW_ONLY
    every: int = 1000
    k: float = 1.0
    c: float = 1.0
    candidates: int = 20
    add: int | None = None
    method: str = "random"

    grows: ClassVar[bool] = False

    def __post_init__(self):
        point_counts(self.n_domain, self.n_boundary, self.n_initial)
        positive_int("every", self.every)
        frozen_set(self, k=finite_scalar("k", self.k), c=finite_scalar("c", self.c))
        if self.k < 0 or self.c < 0:
            fail(
                "k, c",
                (self.k, self.c),
                "must be non-negative",
                "pass e.g. k=1, c=1 (the paper's defaults)",
            )
        positive_int("candidates", self.candidates)
        if self.add is not None:
            positive_int("add", self.add)

    @property
    def added(self) -> int:
        """Points RAR-D adds per resampling: ``add``, or 10% of ``n_domain``."""
        return self.add if self.add is not None else max(1, self.n_domain // 10)

    def _start(self, run):
        if run.residual_at is None:
            fail(
                type(self).__name__,
                "residual_at",
                "was not given to init()",
                "train a backend that evaluates residuals (the PINN), or pass "
                "init(problem, rng, residual_at=...)",
            )
        run.points = draw(run.problem, self.counts, run.rng, self.method)

    def draw_weighted(self, run, n: int) -> np.ndarray:
        """``n`` points from the residual-weighted density on a fresh candidate set."""
        size = max(self.candidates * self.n_domain, n)
        cand = run.problem.domain.sample_interior(size, run.rng, self.method)
        p = residual_probabilities(run.residual_at(cand), self.k, self.c)
        return cand[run.rng.choice(len(cand), size=n, replace=False, p=p)]

    def batch(self, run, step):
        if step > 0 and step % self.every == 0:
            run.points = draw(
                run.problem, self.counts, run.rng, self.method, keep=run.points, domain=False
            )
            if self.grows:
                new = self.draw_weighted(run, self.added)
                run.points["domain"] = {"x": np.concatenate([run.points["domain"]["x"], new])}
            else:
                run.points["domain"] = {"x": self.draw_weighted(run, self.n_domain)}
            run.version += 1
        return run.points

    def __repr__(self):
        n = self.n_domain
        return f"{type(self).__name__}({n}, every={self.every}, k={self.k}, c={self.c})"


@dataclasses.dataclass(frozen=True, repr=False)
class RARD(RAD):
    """RAR-D: every ``every`` steps *add* ``add`` points (default 10% of ``n_domain``) drawn from
    the residual-weighted density; the population grows. Arguments as :class:`RAD`, with the
    paper's RAR-D defaults k = 2, c = 0."""

    _: dataclasses.KW_ONLY
    k: float = 2.0
    c: float = 0.0

    grows: ClassVar[bool] = True
