r"""Semilinear heat u_t + Δu + (1-u²)/(1+u²) = 0 on R^D x [0, 0.3], u(x, 0.3) = 5/(10+2|x|²) (--dim,
default 100).

Truth: the published reference values u(0, 0) = 0.47006 / 0.31674 / 0.28753 / 0.28433 for
D = 10 / 100 / 1000 / 10000 (as quoted in Hu, Shukla, Karniadakis, Kawaguchi, SDGD, Neural
Networks 2024); the reported error is |u(0,0) - ref| / ref. The ansatz
:math:`u = g(x) + (T - t)\,N(x, t)` satisfies the terminal condition exactly and has a jet rule.
Collocation points follow the Brownian paths that carry u(0, 0) (Feynman-Kac):
:math:`t \sim U(0, T)`, :math:`x \sim N(0, 2tI)`, redrawn every step.
"""

import dataclasses
import math

import numpy as np
import torch
from torch import nn

import pdeml as pl
from pdeml.derivatives import jets as J
from pdeml.sampling import AbstractSampler

T = 0.3
REFERENCE = {10: 0.47006, 100: 0.31674, 1000: 0.28753, 10000: 0.28433}


def terminal(q):
    """g as a function of q = |x|²."""
    return 5 / (10 + 2 * q)


def terminal_derivatives(q, K):
    r""":math:`\frac{d^k}{dq^k} \frac{5}{10+2q} = 5 (-2)^k k! / (10+2q)^{k+1}`."""
    base = 10 + 2 * q
    return [5 * (-2) ** k * math.factorial(k) / base ** (k + 1) for k in range(K + 1)]


class TerminalAnsatz(nn.Module):
    """u = g(x) + (T - t) y, with its Taylor-mode rule (so STDE needs no jvp fallback)."""

    def forward(self, x, y):
        return terminal(x[:, :-1].pow(2).sum(1, keepdim=True)) + (T - x[:, -1:]) * y

    def jet(self, x, y):
        t = J.select(x, x.c[0].shape[1] - 1)
        q = J.add(J.sq_norm(x, torch.zeros_like(x.c[0][0])), J.scale(J.multiply(t, t), -1.0))
        g = J.elementwise(q, terminal_derivatives)
        rest = J.add(J.constant(torch.full_like(t.c[0], T), t), J.scale(t, -1.0))
        return J.add(g, J.multiply(rest, y))


@dataclasses.dataclass(frozen=True)
class BrownianPaths(AbstractSampler):
    r"""``n`` points :math:`t \sim U(0, T)`, :math:`x = \sqrt{2t}\,z`, :math:`z \sim N(0, I)`,
    redrawn every step. Settings (``n``) are frozen; the run keeps the points and generator."""

    n: int = 100

    def _draw(self, run):
        t = run.rng.uniform(0, T, (self.n, 1))
        x = np.sqrt(2 * t) * run.rng.standard_normal((self.n, run.problem.geometry.dim))
        run.points = {"domain": {"x": np.hstack([x, t])}}

    def _start(self, run):
        self._draw(run)

    def batch(self, run, step):
        if step > 0:
            self._draw(run)
            run.version += 1
        return run.points


def pde(x, u):
    return u.dt() + u.laplacian() + (1 - u.value**2) / (1 + u.value**2)


def make(dim: int = 100):
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r} must be a positive integer. Fix: pass e.g. --dim 100")
    ref = REFERENCE.get(dim)
    geometry = pl.geometry.Hypersphere(np.zeros(dim), 3 * math.sqrt(2 * T))  # sets the input scale
    problem = pl.Problem(
        geometry=geometry,
        time=(0, T),
        pde=pde,
        reference=None if ref is None else (np.zeros((1, dim + 1)), [[ref]]),
    )
    method = pl.PINN(
        pl.nn.MLP(width=128, depth=4),
        transform=TerminalAnsatz(),
        sampler=BrownianPaths(200),
        estimator=pl.derivatives.STDE(16),
    )
    return pl.Case(
        problem,
        method,
        steps=4000,
        optimizer=pl.Adam(1e-3, decay=0.5, decay_every=500),
        eval_every=100,
        checkpoint_every=1000,
        export_resolution=64,
        options={"dim": dim},
    )


case = make()
