r"""Adversarial adaptive sampling (AAS): a min-max between the PINN and a density of points.

Tang, Zhai, Wan, Yang, "Adversarial adaptive sampling: unify PINN and optimal transport for the
approximation of PDEs", ICLR 2024. There is no public code; this is built from the method's
description, with the choices below.

The objective is :math:`\min_u \max_\alpha J(u, \alpha)`,

.. math:: J = \mathbb{E}_{x\sim p_\alpha}\big[\hat r^2(x; u)\big] - \beta \int |\nabla_y p_\alpha|^2
          dy,

:math:`p_\alpha` a normalizing flow on the (box) domain (:class:`pdeml.samplers.flow.BoxFlow`),
:math:`\hat r^2 = r^2 / \overline{r^2}` the squared residual normalized by its mean (so that
:math:`\beta` is scale-free), and the penalty the Dirichlet energy of the density in unit-cube
coordinates. For fixed :math:`u` the maximizer solves :math:`-2\beta\Delta p = \hat r^2 - \lambda`:
:math:`p - 1` is the :math:`\dot H^{-1}` Riesz representative of the residual's deviation from
uniform, and the maximum is :math:`\|\hat r^2 - 1\|^2_{\dot H^{-1}}/(4\beta)`, the linearized
Wasserstein-2 distance between the residual-induced density and the uniform one. Minimizing it
over :math:`u` flattens the residual profile, which is AAS's aim. The flow therefore deviates
from uniform only as far as the residual does, and returns to uniform as the PINN learns.

Alternation: the PINN takes ``every`` Adam steps on points drawn from the mixture
:math:`q = (1-\varepsilon) p_\alpha + \varepsilon/|\Omega|` (``uniform`` = ε keeps the whole
domain covered); the residuals of its last step (no extra forward pass) then drive
``flow_steps`` Adam steps that *ascend* J. Their gradient uses the score-function (likelihood
ratio) estimator with importance ratios :math:`p_\alpha/q` to the sampling density, with
baseline 1: :math:`\nabla_\alpha\,\mathbb{E}_q[(p_\alpha/q)(\hat r^2 - 1)]` (no derivative of the
residual in x is needed), and the penalty by :func:`pdeml.samplers.flow.dirichlet_energy`. Then new
points are drawn. ``importance=True`` weights the PINN's residuals by
:math:`w = (|\Omega| q)^{-1/2}` so its loss is an unbiased estimate of the uniform mean
:math:`|\Omega|^{-1}\int r^2`; by default (as in the min-max) it minimizes
:math:`\mathbb{E}_q[r^2]`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.sampling import AbstractSampler, draw, point_counts, stacked_residuals
from pdeml.settings import frozen_set

from .flow import BoxFlow, dirichlet_energy


@dataclasses.dataclass(frozen=True)
class AAS(AbstractSampler):
    """Adversarial adaptive sampling with a coupling flow (``--sampler aas``).

    Args:
        n_domain: PDE points per draw. n_boundary, n_initial: condition points.
        every: PINN steps between flow updates (and new draws).
        flow_steps, flow_lr: Adam steps and learning rate of each flow update.
        smoothness: β, the Dirichlet-energy weight.
        uniform: ε, the fraction of uniform points mixed in.
        importance: weight the PDE residuals by :math:`(|\\Omega| q)^{-1/2}`.
        layers, width: the flow's coupling layers and conditioner width.
        energy_points: samples for the Dirichlet-energy estimate.

    Example:
        >>> sampler = AAS(500, every=200)
    """

    n_domain: int = 2000
    n_boundary: int = 200
    n_initial: int = 200
    _: dataclasses.KW_ONLY
    every: int = 200
    flow_steps: int = 50
    flow_lr: float = 2e-3
    smoothness: float = 1e-3
    uniform: float = 0.2
    importance: bool = False
    layers: int = 6
    width: int = 32
    energy_points: int = 512
    method: str = "random"

    wants_residuals: ClassVar[bool] = True

    def __post_init__(self):
        point_counts(self.n_domain, self.n_boundary, self.n_initial)
        positive_int("every", self.every)
        positive_int("flow_steps", self.flow_steps)
        frozen_set(
            self,
            flow_lr=finite_scalar("flow_lr", self.flow_lr),
            smoothness=finite_scalar("smoothness", self.smoothness),
            uniform=finite_scalar("uniform", self.uniform),
            importance=bool(self.importance),
        )
        if not 0 <= self.uniform < 1:
            fail("uniform", self.uniform, "must be in [0, 1)", "pass e.g. 0.2")
        positive_int("layers", self.layers)
        positive_int("width", self.width)
        positive_int("energy_points", self.energy_points)

    # ------------------------------------------------------------------ set-up
    def _start(self, run):
        problem, rng = run.problem, run.rng
        lo, hi = (np.asarray(b, dtype=np.float64) for b in problem.domain.bbox)
        probe = lo + (hi - lo) * rng.random((4096, len(lo)))
        if not problem.domain.inside(probe).all():
            fail(
                "AAS",
                type(problem.domain).__name__,
                "needs a box domain (the flow maps a box onto itself)",
                "use a box (Interval, Rectangle, Cuboid, Hypercube, optionally with time) or "
                "another sampler",
            )
        run.history = []  # (step, mean r^2, objective, energy)
        seed = int(rng.integers(2**62))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            run.flow = BoxFlow(lo, hi, layers=self.layers, width=self.width)
        run.gen = torch.Generator().manual_seed(seed + 1)
        run.opt = torch.optim.Adam(run.flow.parameters(), lr=self.flow_lr)
        run.points = draw(problem, self.counts, rng, self.method)
        self._set_density(run, run.points["domain"]["x"])

    def mixture_log_prob(self, run, x: torch.Tensor) -> torch.Tensor:
        """log q at points (N, d): q = (1 - ε) p_flow + ε / |Ω|."""
        lp = run.flow.log_prob(x)
        if self.uniform == 0:
            return lp
        lu = torch.full_like(lp, -run.flow.log_volume())
        return torch.logaddexp(np.log1p(-self.uniform) + lp, np.log(self.uniform) + lu)

    def _set_density(self, run, x: np.ndarray):
        with torch.no_grad():
            lq = self.mixture_log_prob(run, torch.as_tensor(x, dtype=torch.float64)).numpy()
        run.points["domain"]["log_q"] = lq
        if self.importance:
            run.points["domain"]["w"] = np.exp(-0.5 * (lq + run.flow.log_volume()))

    def draw_domain(self, run, n: int) -> np.ndarray:
        """``n`` points from the mixture: ⌊εn⌋ uniform, the rest from the flow."""
        n_u = int(np.floor(self.uniform * n))
        with torch.no_grad():
            x_flow, _ = run.flow.sample(n - n_u, run.gen)
        parts = [x_flow.numpy()]
        if n_u:
            parts.append(run.problem.domain.sample_interior(n_u, run.rng, self.method))
        return np.concatenate(parts)

    # ---------------------------------------------------------------- contract
    def batch(self, run, step):
        if step > 0 and step % self.every == 0:
            run.points = draw(
                run.problem, self.counts, run.rng, self.method, keep=run.points, domain=False
            )
            x = self.draw_domain(run, self.counts["domain"])
            run.points["domain"] = {"x": x}
            self._set_density(run, x)
            run.version += 1
        return run.points

    def observe(self, run, step, residuals):
        if (step + 1) % self.every:
            return
        dom = run.points["domain"]
        r = stacked_residuals(residuals, len(dom["x"])).double().cpu()
        r2 = (r**2).sum(1, keepdim=True)
        self.update_flow(run, torch.as_tensor(dom["x"]), torch.as_tensor(dom["log_q"]), r2, step)

    def update_flow(
        self, run, x: torch.Tensor, log_q: torch.Tensor, r2: torch.Tensor, step: int = -1
    ):
        """``flow_steps`` ascent steps on J from points ``x`` drawn with density ``exp(log_q)``."""
        adv = r2 / r2.mean().clamp_min(1e-300) - 1.0
        for _ in range(self.flow_steps):
            ratio = torch.exp(run.flow.log_prob(x) - log_q)
            gain = (ratio * adv).mean()
            energy = dirichlet_energy(run.flow, self.energy_points, run.gen)
            loss = -gain + self.smoothness * energy
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
        run.history.append((step, float(r2.mean()), float(gain.detach()), float(energy.detach())))

    # ------------------------------------------------------------------ resume
    def _extra_state(self, run):
        state = {f"aas/flow/{k}": v.detach().clone() for k, v in run.flow.state_dict().items()}
        for i, st in run.opt.state_dict()["state"].items():
            state.update({f"aas/opt/{i}/{k}": torch.as_tensor(v).clone() for k, v in st.items()})
        state["aas/gen"] = run.gen.get_state()
        return state

    def _load_extra_state(self, run, state):
        flow = {
            k[len("aas/flow/") :]: state.pop(k) for k in list(state) if k.startswith("aas/flow/")
        }
        opt: dict = {}
        for k in [k for k in state if k.startswith("aas/opt/")]:
            i, name = k[len("aas/opt/") :].split("/")
            opt.setdefault(int(i), {})[name] = state.pop(k)
        gen = state.pop("aas/gen", None)
        if flow:
            run.flow.load_state_dict(flow)
        if opt:
            sd = run.opt.state_dict()
            sd["state"] = opt
            run.opt.load_state_dict(sd)
        if gen is not None:
            run.gen.set_state(gen)

    def __repr__(self):
        return (
            f"AAS({self.n_domain}, every={self.every}, smoothness={self.smoothness}, "
            f"uniform={self.uniform})"
        )
