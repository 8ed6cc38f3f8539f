"""Uniform (pseudo-random or equispaced) collocation points, redrawn every N steps."""

from __future__ import annotations

from pdeml._validate import fail
from pdeml.sampling import AbstractSampler, draw, point_counts, redraw_period


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

    methods = ("random", "uniform", "sobol", "halton", "lhs", "hammersley")

    def __init__(self, n_domain=2000, n_boundary=200, n_initial=200, *, every=0, method="random"):
        self.counts = point_counts(n_domain, n_boundary, n_initial)
        if method not in self.methods:
            fail(
                "method",
                method,
                f"is not a method of {type(self).__name__}",
                f"use one of {self.methods}",
            )
        self.every, self.method = redraw_period(every), method

    def _start(self):
        self.points = draw(self.problem, self.counts, self.rng, self.method)

    def batch(self, step):
        if self.every and step > 0 and step % self.every == 0:
            self.points = draw(self.problem, self.counts, self.rng, self.method, keep=self.points)
            self.version += 1
        return self.points

    def __repr__(self):
        c = self.counts
        return (
            f"{type(self).__name__}({c['domain']}, {c['boundary']}, {c['initial']}, "
            f"every={self.every}, method={self.method!r})"
        )
