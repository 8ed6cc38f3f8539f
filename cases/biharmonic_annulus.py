r"""Biharmonic Δ²u = f on the annulus 1 <= |x| <= 2 in D dimensions (--dim, default 10), u = 0 and
∂u/∂n given on both spheres.

Manufactured three-body solution :math:`u = (1-q)(4-q)\,h`, :math:`q = \lVert x\rVert^2`,
:math:`h = \sum_{i=1}^{D-2} c_i e^{x_i x_{i+1} x_{i+2}}`, :math:`c_i \sim N(0,1)` from
``--case_seed``.
f by the product rule :math:`\Delta^2(\varphi h) = h\Delta^2\varphi +
4\nabla\Delta\varphi\cdot\nabla h +
2\Delta\varphi\Delta h + 4 H_\varphi{:}H_h + 4\nabla\varphi\cdot\nabla\Delta h + \varphi\Delta^2 h`,
with the
derivatives of each three-variable term e^{abc} by autograd in its own three variables (exact,
O(D) work). The value condition is built into the ansatz :math:`(1-q)(4-q)\,N(x)`; the normal
derivative is a soft Neumann condition. STDE estimates Δ²u with Gaussian 4-jets.

Known open problem: the default training does not converge yet (relative L2 ≈ 3 at D = 10
after 1000 steps with stde:16, ≈ 6 at D = 5 after 500 exact Taylor-mode steps; |f| ~ 700).
The forcing, the normal derivative and the ansatz jets are tested; the training recipe is not.
Measured since (session 6, one thread): the PDE term outweighs the Neumann term by ~1e5 (mean
squares ~1e9 vs ~1e4 early on), so the normal derivative is barely enforced and the answer is
off by a biharmonic function. Reweighting helps at D = 5 (exact Taylor, 1000 steps: relative
L2 0.30 with weights pde 1e-4 / neumann 10, 0.13 with 1e-6 / 10), but then the PDE residual
stays as large as f: the Neumann data alone shape the answer. At D = 10 (stde:16, 2000 steps)
the same weights leave 1.8 to 2.1, and the Neumann term is not fitted either: its mean square
stays ~2500, more than the target's own (1213 on |x| = 2, 286 on
|x| = 1), while the PDE term spikes to ~4e10 now and then (16-direction estimates of Δ²u).
The defaults are left as they were until a recipe solves the PDE itself.
"""

import numpy as np
import torch
from torch import nn

import pdeml as pl
from pdeml.derivatives import jets as J


def coefficients(dim, seed):
    return torch.as_tensor(np.random.default_rng(seed).standard_normal(dim - 2))


def three_body(x, c):
    """h(x) = sum_i c_i exp(x_i x_{i+1} x_{i+2}), (N, 1)."""
    blocks = torch.stack([x[:, :-2], x[:, 1:-1], x[:, 2:]], -1)
    return blocks.prod(-1).exp() @ c.to(x.dtype).to(x.device)[:, None]


def _term_derivatives(y):
    """For E = exp(abc) at rows y = (a, b, c): E, ∇E, H_E, ∇ΔE, Δ²E by autograd in 3 variables."""
    y = y.detach().requires_grad_(True)
    e = torch.exp(y.prod(1, keepdim=True))

    def grad(f):
        return torch.autograd.grad(f.sum(), y, create_graph=True)[0]

    g = grad(e)
    hess = torch.stack([grad(g[:, i : i + 1]) for i in range(3)], 1)
    lap = torch.diagonal(hess, dim1=1, dim2=2).sum(1, keepdim=True)
    glap = grad(lap)
    bih = sum(grad(glap[:, i : i + 1])[:, i : i + 1] for i in range(3))
    return [t.detach() for t in (e, g, hess, glap, bih)]


def exact_and_forcing(x, c):
    """``(u, Δ²u)`` at points x (N, D)."""
    n, d = x.shape
    c = c.to(x.dtype).to(x.device)
    blocks = torch.stack([x[:, :-2], x[:, 1:-1], x[:, 2:]], -1)  # (N, D-2, 3)
    e, g, hess, glap, bih = _term_derivatives(blocks.reshape(-1, 3))
    k = d - 2

    def total(t):  # sum_i c_i t_i over the terms
        return (c * t.reshape(n, k)).sum(1, keepdim=True)

    y = blocks.reshape(-1, 3)
    h = total(e)
    x_grad_h = total((y * g).sum(1))
    lap_h = total(torch.diagonal(hess, dim1=1, dim2=2).sum(1))
    xHx = total(torch.einsum("ri,rij,rj->r", y, hess, y))
    x_glap_h = total((y * glap).sum(1))
    bih_h = total(bih)
    q = x.pow(2).sum(1, keepdim=True)
    phi, dphi = (1 - q) * (4 - q), 2 * q - 5
    a = 4 * d + 8  # Δφ = a q - 10 d, ∇Δφ = 2 a x, Δ²φ = 2 a d
    f = (
        h * 2 * a * d
        + 4 * 2 * a * x_grad_h
        + 2 * (a * q - 10 * d) * lap_h
        + 4 * (2 * dphi * lap_h + 8 * xHx)
        + 4 * 2 * dphi * x_glap_h
        + phi * bih_h
    )
    return phi * h, f


class AnnulusAnsatz(nn.Module):
    """u = (1 - q)(4 - q) y with its jet rule (φ(q) = q² - 5q + 4 is a polynomial)."""

    def forward(self, x, y):
        q = x.pow(2).sum(1, keepdim=True)
        return (1 - q) * (4 - q) * y

    def jet(self, x, y):
        q = J.sq_norm(x, torch.zeros_like(x.c[0][0]))
        phi = J.elementwise(
            q,
            lambda s, K: (
                [(1 - s) * (4 - s), 2 * s - 5, torch.full_like(s, 2.0)]
                + [torch.zeros_like(s)] * (K - 2)
            ),
        )
        return J.multiply(phi, y)


def make(dim: int = 10, case_seed: int = 0):
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 3:
        raise ValueError(f"dim={dim!r} must be an integer >= 3. Fix: pass e.g. --dim 10")
    c = coefficients(dim, case_seed)
    zero = np.zeros(dim)
    geometry = pl.geometry.Hypersphere(zero, 2.0) - pl.geometry.Hypersphere(zero, 1.0)

    def exact(x):
        q = x.pow(2).sum(1, keepdim=True)
        return (1 - q) * (4 - q) * three_body(x, c)

    def normal_derivative(x):  # ∇u = h ∇φ on the spheres: 12 h (r = 2), 6 h (r = 1)
        q = x.pow(2).sum(1, keepdim=True)
        return torch.where(q > 2.25, 12.0, 6.0) * three_body(x, c)

    def pde(x, u):
        return u.biharmonic() - exact_and_forcing(x, c)[1]

    problem = pl.Problem(
        geometry=geometry, pde=pde, exact=exact, conditions=[pl.Neumann(normal_derivative)]
    )
    method = pl.PINN(
        pl.nn.MLP(width=128, depth=4),
        transform=AnnulusAnsatz(),
        estimator=pl.derivatives.STDE(16),
        sampler=pl.samplers.Uniform(100, 100, every=1),
    )
    return pl.Case(
        problem,
        method,
        steps=3000,
        optimizer=pl.Adam(1e-3, decay=0.5, decay_every=1000),
        eval_every=100,
        checkpoint_every=1000,
        export_resolution=64,
        weights={"neumann": 10.0},
        options={"dim": dim, "case_seed": case_seed},
    )


case = make()
