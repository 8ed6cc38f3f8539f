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

import math

import numpy as np
import torch

from pdeml._validate import fail, finite_scalar
from pdeml.sampling import AbstractSampler, draw, point_counts, redraw_period, stacked_residuals


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

    wants_residuals = True

    def __init__(
        self,
        n_domain=2000,
        n_boundary=200,
        n_initial=200,
        *,
        causal=False,
        alpha=5.0,
        beta=-0.5,
        eta=1e-3,
        eps=20.0,
        every=0,
        method="random",
    ):
        self.counts = point_counts(n_domain, n_boundary, n_initial)
        self.causal = bool(causal)
        self.alpha, self.beta = finite_scalar("alpha", alpha), finite_scalar("beta", beta)
        self.eta, self.eps = finite_scalar("eta", eta), finite_scalar("eps", eps)
        self.every, self.method = redraw_period(every), method

    # ----------------------------------------------------------------- gate
    def gate(self, x: np.ndarray) -> np.ndarray:
        """:math:`g(\\tilde t)` at points ``x`` (time last), shape (N,)."""
        t0, t1 = self.problem.time
        tt = (x[:, -1] - t0) / (t1 - t0)
        return 0.5 * (1 - np.tanh(self.alpha * (tt - self.beta)))

    def _with_gate(self):
        if self.causal:
            self.points["domain"]["w"] = self.gate(self.points["domain"]["x"])[:, None]

    # ------------------------------------------------------------ contract
    def _start(self):
        if self.causal and self.problem.time is None:
            fail(
                "R3(causal)",
                True,
                "needs a time-dependent problem",
                "pass causal=False, or add time=(t0, t1)",
            )
        self.history = []  # (step, retained fraction, beta)
        self.points = draw(self.problem, self.counts, self.rng, self.method)
        self._with_gate()

    def batch(self, step):
        if self.every and step > 0 and step % self.every == 0:
            self.points = draw(
                self.problem, self.counts, self.rng, self.method, keep=self.points, domain=False
            )  # R3 owns the PDE points
            self.version += 1
        return self.points

    def observe(self, step, residuals):
        x = self.points["domain"]["x"]
        r = stacked_residuals(residuals, len(x))
        fitness = r.double().norm(dim=1).cpu().numpy()
        if self.causal:
            g = self.gate(x)
            fitness = fitness * g
            self.beta += self.eta * min(math.exp(-self.eps * float(np.mean(fitness**2))), 0.1)
        keep = fitness > fitness.mean()
        new = self.problem.domain.sample_interior(len(x) - int(keep.sum()), self.rng, self.method)
        self.points["domain"] = {"x": np.concatenate([x[keep], new])}
        self._with_gate()
        self.version += 1
        self.history.append((step, float(keep.mean()), self.beta))

    def _extra_state(self):
        return {"r3/beta": torch.tensor(self.beta, dtype=torch.float64)}

    def _load_extra_state(self, state):
        self.beta = float(state.pop("r3/beta", torch.tensor(self.beta)))

    def __repr__(self):
        return f"R3({self.counts['domain']}, causal={self.causal})"
