r"""Poisson -Δu = f on [-1, 1]² with a sharp Gaussian peak u = exp(-α(x² + y²)), α = 1000 (--alpha).

The test family of deep adaptive sampling (Tang, Wan, Yang, "DAS-PINNs", JCP 2023) and
adversarial adaptive sampling (Tang, Zhai, Wan, Yang, ICLR 2024): the peak has width
~1/√α ≈ 0.03, so a few hundred uniform points barely see it. Forcing in closed form,
:math:`f = -\Delta u = 4\alpha(1 - \alpha r^2)\,u`; boundary values from u, imposed exactly.
``pdeml train peak_2d --sampler aas`` moves the points onto the peak.
"""

import torch

import pdeml as pl


def make(alpha: float = 1000.0, points: int = 500):
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be positive. Fix: pass e.g. --alpha 1000")

    def exact(x):
        return torch.exp(-alpha * (x**2).sum(1, keepdim=True))

    def source(x):
        return 4 * alpha * (1 - alpha * (x**2).sum(1, keepdim=True)) * exact(x)

    problem = pl.Problem(
        geometry=pl.geometry.Rectangle([-1, -1], [1, 1]),
        pde=pl.pde.Poisson(source=source),
        conditions=[pl.Dirichlet(exact)],
        exact=exact,
    )
    method = pl.PINN(
        pl.nn.MLP(width=32, depth=4), hard_dirichlet=True, sampler=pl.samplers.Uniform(points, 1)
    )
    return pl.Case(
        problem,
        method,
        steps=10000,
        optimizer=pl.Adam(1e-3, decay=0.5, decay_every=4000),
        eval_every=500,
        checkpoint_every=5000,
        options={"alpha": alpha, "points": points},
    )


case = make()
