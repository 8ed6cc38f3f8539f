r"""R3 sampling: retain, resample, release; and its causal variant.

Daw, Bu, Wang, Perdikaris, Karpatne, "Mitigating propagation failures in physics-informed neural
networks using retain-resample-release (R3) sampling", ICML 2023.

Every step the sampler sees the absolute PDE residuals the loss just computed (no extra forward
pass) and forms the fitness :math:`F_i = |r_i|` (several residuals: their Euclidean norm). Points
with :math:`F_i > \overline{F}` are **retained**, the rest **released**, and the population is
refilled to its size with uniform samples (**resample**).

Causal R3, for time-dependent problems: with :math:`\tilde t \in [0, 1]` the scaled time, the gate
:math:`g(\tilde t) = \tfrac12 (1 - \tanh(\alpha(\tilde t - \beta)))` multiplies the fitness
(:math:`F_i = |r_i| g_i`) and the residual loss (the batch carries ``w = g``: the loss becomes
:math:`\mathrm{mean}((r g)^2)`). After each step
:math:`\beta \leftarrow \beta + \eta \min(e^{-\epsilon\, \mathrm{mean}((|r| g)^2)}, 0.1)`: the gate
opens
towards later times as the early ones are learned. Defaults α = 5, β₀ = −0.5, ε = 20, η = 1e-3.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from pdeml._validate import fail, finite_scalar
from pdeml.sampling import AbstractSampler, draw, point_counts, redraw_period, stacked_residuals
from pdeml.settings import frozen_set


@dataclasses.dataclass(frozen=True)
class R3(AbstractSampler):
    """Retain-resample-release collocation points (``causal=True``: with the causal gate).

    Args:
        n_domain: population size of PDE points. n_boundary, n_initial: condition points
            (redrawn every ``every`` steps; 0 keeps them fixed).
        causal: gate fitness and loss by :math:`g(\\tilde t)` (needs a time-dependent problem).
        alpha, beta, eta, eps: the gate's sharpness, initial position, step and tolerance.
        method: how new points are drawn ("random", "sobol", ...).

    Example:
        >>> sampler = R3(2000, causal=True)      # --sampler r3-causal
    """

    n_domain: int = 2000
    n_boundary: int = 200
    n_initial: int = 200
    _: dataclasses.KW_ONLY
    causal: bool = False
    alpha: float = 5.0
    beta: float = -0.5
    eta: float = 1e-3
    eps: float = 20.0
    every: int = 0
    method: str = "random"

    wants_residuals: ClassVar[bool] = True

    def __post_init__(self):
        point_counts(self.n_domain, self.n_boundary, self.n_initial)
        frozen_set(
            self,
            causal=bool(self.causal),
            alpha=finite_scalar("alpha", self.alpha),
            beta=finite_scalar("beta", self.beta),
            eta=finite_scalar("eta", self.eta),
            eps=finite_scalar("eps", self.eps),
            every=redraw_period(self.every),
        )

    # ----------------------------------------------------------------- gate
    def gate(self, run, x: np.ndarray) -> np.ndarray:
        """:math:`g(\\tilde t)` at points ``x`` (time last) for the run's gate position
        ``run.beta``, shape (N,)."""
        t0, t1 = run.problem.time
        tt = (x[:, -1] - t0) / (t1 - t0)
        return 0.5 * (1 - np.tanh(self.alpha * (tt - run.beta)))

    def _with_gate(self, run):
        if self.causal:
            run.points["domain"]["w"] = self.gate(run, run.points["domain"]["x"])[:, None]

    # ------------------------------------------------------------ contract
    def _start(self, run):
        if self.causal and run.problem.time is None:
            fail(
                "R3(causal)",
                True,
                "needs a time-dependent problem",
                "pass causal=False, or add time=(t0, t1)",
            )
        run.beta = self.beta  # the gate's position moves as the run learns
        run.history = []  # (step, retained fraction, beta)
        run.points = draw(run.problem, self.counts, run.rng, self.method)
        self._with_gate(run)

    def batch(self, run, step):
        if self.every and step > 0 and step % self.every == 0:
            run.points = draw(
                run.problem, self.counts, run.rng, self.method, keep=run.points, domain=False
            )  # R3 owns the PDE points
            run.version += 1
        return run.points

    def observe(self, run, step, residuals):
        x = run.points["domain"]["x"]
        r = stacked_residuals(residuals, len(x))
        fitness = r.double().norm(dim=1).cpu().numpy()
        if self.causal:
            g = self.gate(run, x)
            fitness = fitness * g
            run.beta += self.eta * min(math.exp(-self.eps * float(np.mean(fitness**2))), 0.1)
        keep = fitness > fitness.mean()
        new = run.problem.domain.sample_interior(len(x) - int(keep.sum()), run.rng, self.method)
        run.points["domain"] = {"x": np.concatenate([x[keep], new])}
        self._with_gate(run)
        run.version += 1
        run.history.append((step, float(keep.mean()), run.beta))

    def _extra_state(self, run):
        return {"r3/beta": torch.tensor(run.beta, dtype=torch.float64)}

    def _load_extra_state(self, run, state):
        run.beta = float(state.pop("r3/beta", torch.tensor(run.beta)))

    def __repr__(self):
        return f"R3({self.n_domain}, causal={self.causal})"
