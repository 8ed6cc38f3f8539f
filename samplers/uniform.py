"""Uniform (pseudo-random or equispaced) collocation points, redrawn every N steps."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from pdeml._validate import fail
from pdeml.sampling import AbstractSampler, draw, point_counts, redraw_period


@dataclasses.dataclass(frozen=True)
class Uniform(AbstractSampler):
    """Points uniformly distributed in the domain, on the boundary and on the initial slice.

    Args:
        n_domain, n_boundary, n_initial: points for the PDE term, per boundary condition, and
            for initial conditions.
        every: redraw all (non-data) points every ``every`` steps; 0 keeps them fixed.
        method: "random" (i.i.d. uniform), "uniform" (equispaced grid-like set) or a
            quasi-random sequence ("sobol", "halton", "lhs", "hammersley"; see
            :func:`pdeml.samplers.QuasiRandom`).

    Example:
        >>> sampler = Uniform(2000, 200, every=100)
    """

    n_domain: int = 2000
    n_boundary: int = 200
    n_initial: int = 200
    _: dataclasses.KW_ONLY
    every: int = 0
    method: str = "random"

    methods: ClassVar[tuple] = ("random", "uniform", "sobol", "halton", "lhs", "hammersley")

    def __post_init__(self):
        point_counts(self.n_domain, self.n_boundary, self.n_initial)
        if self.method not in self.methods:
            fail(
                "method",
                self.method,
                f"is not a method of {type(self).__name__}",
                f"use one of {self.methods}",
            )
        redraw_period(self.every)

    def _start(self, run):
        run.points = draw(run.problem, self.counts, run.rng, self.method)

    def batch(self, run, step):
        if self.every and step > 0 and step % self.every == 0:
            run.points = draw(run.problem, self.counts, run.rng, self.method, keep=run.points)
            run.version += 1
        return run.points

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.n_domain}, {self.n_boundary}, {self.n_initial}, "
            f"every={self.every}, method={self.method!r})"
        )
