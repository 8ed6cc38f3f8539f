r"""A normalizing flow on a box: the generative model of adversarial adaptive sampling.

Points live in the box :math:`[lo, hi]^d`; the flow works in unit-cube coordinates
:math:`y = (x - lo)/(hi - lo)`. A Gaussian base :math:`z_0 \sim N(0, \sigma_0^2 I)`
(:math:`\sigma_0 = \pi/\sqrt 3`, the logistic distribution's spread, so the base maps to a
nearly flat density) passes through ``layers`` affine coupling layers (Dinh, Sohl-Dickstein,
Bengio, "Density estimation using Real NVP", ICLR 2017), each transforming one coordinate
:math:`a` (cycling) conditioned on the others :math:`b`:

.. math:: z_a' = e^{s} z_a + t, \qquad (s, t) = \mathrm{NN}(2\sigma(z_b) - 1), \quad |s| \le S,

and the bounded-domain output transform :math:`y = \sigma(z)` maps :math:`\mathbb{R}^d` onto the
open unit cube. So :math:`\log p_y(y) = \log N(z_0) - \sum s - \sum_a \log\sigma'(z_a)`. Every map
is a bijection: the density integrates to one exactly and samples never leave the box. The
Gaussian tails make the density vanish at the faces faster than any power, so its Dirichlet
energy :math:`\int|\nabla p|^2` (AAS's smoothness penalty) is finite for every parameter value; a
logistic base would make it the uniform density exactly but with power-law faces whose energy
can be infinite. The conditioners' last layers start at zero (the identity coupling). KRnet,
which the AAS paper uses, is a richer flow of the same kind.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SIGMA0 = math.pi / math.sqrt(3)
_TINY = 1e-12
_ZMAX = 25.0  # σ(25) = 1 - 1.4e-11: points stay strictly inside the box in float64


def _logit(y):
    y = y.clamp(_TINY, 1 - _TINY)
    return torch.log(y) - torch.log1p(-y)


def _log_dsigmoid(u):
    """log σ'(u) = -softplus(u) - softplus(-u)."""
    return -F.softplus(u) - F.softplus(-u)


class BoxFlow(nn.Module):
    """Coupling flow on the box ``[lo, hi]`` (``d >= 1``; for d = 1 the conditioner sees a
    constant).

    Args:
        lo, hi: the box corners (sequences of length d).
        layers: coupling layers (each transforms one coordinate). width: conditioner width.
        max_log_scale: S, the largest |log scale| per layer.
    """

    def __init__(self, lo, hi, *, layers: int = 6, width: int = 32, max_log_scale: float = 3.0):
        super().__init__()
        lo = torch.as_tensor(lo, dtype=torch.float64).reshape(-1)
        hi = torch.as_tensor(hi, dtype=torch.float64).reshape(-1)
        self.register_buffer("lo", lo)
        self.register_buffer("width_", hi - lo)
        self.d, self.S = len(lo), float(max_log_scale)
        self.nets = nn.ModuleList()
        for _ in range(layers):
            net = nn.Sequential(
                nn.Linear(max(self.d - 1, 1), width),
                nn.Tanh(),
                nn.Linear(width, width),
                nn.Tanh(),
                nn.Linear(width, 2),
            )
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
            self.nets.append(net)
        self.double()

    def _st(self, layer: int, z):
        a = layer % self.d
        cond = torch.cat([z[:, :a], z[:, a + 1 :]], 1) if self.d > 1 else torch.zeros_like(z)
        out = self.nets[layer](2 * torch.sigmoid(cond) - 1)
        return a, self.S * torch.tanh(out[:, :1] / self.S), out[:, 1:]

    def _base_log_prob(self, z0):
        return (-0.5 * (z0 / SIGMA0) ** 2 - math.log(SIGMA0 * math.sqrt(2 * math.pi))).sum(
            1, keepdim=True
        )

    def _out(self, z, log_base, sum_s):
        """Cube points and their log density from the last latent point."""
        log_py = log_base - sum_s - _log_dsigmoid(z).sum(1, keepdim=True)
        return torch.sigmoid(z.clamp(-_ZMAX, _ZMAX)), log_py

    def forward_map(self, z0):
        """Base points (N, d) -> (cube points, log density there in cube coordinates)."""
        z, sum_s = z0, torch.zeros(len(z0), 1, dtype=z0.dtype, device=z0.device)
        for layer in range(len(self.nets)):
            a, s, t = self._st(layer, z)
            z = torch.cat([z[:, :a], torch.exp(s) * z[:, a : a + 1] + t, z[:, a + 1 :]], 1)
            sum_s = sum_s + s
        return self._out(z, self._base_log_prob(z0), sum_s)

    def cube_log_prob(self, y):
        """log density (N, 1) at unit-cube points, in cube coordinates."""
        z_last = z = _logit(y)
        sum_s = torch.zeros(len(y), 1, dtype=y.dtype, device=y.device)
        for layer in reversed(range(len(self.nets))):
            a, s, t = self._st(layer, z)
            z = torch.cat([z[:, :a], (z[:, a : a + 1] - t) * torch.exp(-s), z[:, a + 1 :]], 1)
            sum_s = sum_s + s
        return self._out(z_last, self._base_log_prob(z), sum_s)[1]

    def log_volume(self) -> float:
        return float(torch.log(self.width_).sum())

    def log_prob(self, x):
        """log density (N, 1) at box points ``x`` (N, d), with respect to x."""
        return self.cube_log_prob((x - self.lo) / self.width_) - self.log_volume()

    def sample(self, n: int, generator: torch.Generator | None = None):
        """``n`` points in the box and their log density (reparameterized: differentiable)."""
        z0 = SIGMA0 * torch.randn(n, self.d, dtype=self.lo.dtype, generator=generator)
        y, log_py = self.forward_map(z0)
        return self.lo + self.width_ * y, log_py - self.log_volume()


def dirichlet_energy(flow: BoxFlow, n: int, generator=None):
    r""":math:`\int |\nabla_y p_y|^2 dy` in unit-cube coordinates: importance sampling from the
    flow's own (detached) samples, :math:`\mathbb{E}_{y\sim p_0}[p_y^2 |\nabla_y \log p_y|^2 / p_0]`
    with :math:`p_0 = p` frozen, so the value is :math:`\mathbb{E}_p[p |\nabla\log p|^2]` and the
    gradient in the flow's parameters is exact in expectation."""
    with torch.no_grad():
        y, _ = flow.forward_map(
            SIGMA0 * torch.randn(n, flow.d, dtype=flow.lo.dtype, generator=generator)
        )
    y = y.requires_grad_(True)
    logp = flow.cube_log_prob(y)
    (g,) = torch.autograd.grad(logp.sum(), y, create_graph=True)
    return (torch.exp(2 * logp - logp.detach()) * (g**2).sum(1, keepdim=True)).mean()
