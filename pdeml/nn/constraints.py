r"""Hard constraints as output transforms.

Hard Dirichlet: :math:`u(x) = g(x) + \frac{\phi(x)}{\phi_{\max}}\, N(x)` with
:math:`\phi \ge 0` the geometry's ``smooth_distance`` (``-sdf``, or for polygons a smooth
approximate distance function): zero exactly on the boundary, so :math:`u = g` there whatever the
network :math:`N` does. See Sukumar &
Srivastava, "Exact imposition of boundary conditions with distance functions in
physics-informed deep neural networks", CMAME 2022. ``g`` must be defined in the whole domain.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validate import column, fail
from ..derivatives import jets as J


class HardDirichlet(nn.Module):
    """Apply ``u_c = g + (phi / scale) * N_c`` to output component ``component``."""

    def __init__(self, domain, value, component: int, scale: float):
        super().__init__()
        self.domain, self.value, self.component, self.scale = domain, value, component, float(scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.domain.smooth_distance(x) / self.scale
        if callable(self.value):
            g = column("Dirichlet(value) (hard)", self.value(x), x.shape[0], finite=False).to(
                y.dtype
            )
        else:
            g = self.value
        c = self.component
        col = g + phi * y[:, c : c + 1]
        if y.shape[1] == 1:
            return col
        return torch.cat([y[:, :c], col, y[:, c + 1 :]], dim=1)

    def jet(self, x: J.Jet, y: J.Jet) -> J.Jet:
        """Taylor-mode rule: Leibniz on phi * N plus the jet of g."""
        phi = J.scale(self.domain.smooth_distance_jet(x), 1.0 / self.scale)
        if callable(self.value):
            g = J.function_jet(
                lambda p: column(
                    "Dirichlet(value) (hard)", self.value(p), p.shape[0], finite=False
                ).to(p.dtype),
                [x],
            )
        else:
            g = J.constant(torch.full_like(y.c[0][:, :1], float(self.value)), y)
        c = self.component
        col = J.add(g, J.multiply(phi, J.select(y, c)))
        cols = [J.select(y, i) if i != c else col for i in range(y.c[0].shape[1])]
        return col if len(cols) == 1 else J.concat(cols)


class OutputTransform(nn.Module):
    r"""A user's output transform :math:`u = T(x, N(x))`, applied after any hard Dirichlet factor.

    Use it to build conditions into the ansatz, e.g. for Burgers
    ``lambda x, y: -torch.sin(pi * x[:, :1]) + x[:, 1:2] * (1 - x[:, :1] ** 2) * y`` satisfies
    both the initial and the boundary condition exactly (Lagaris, Likas, Fotiadis, "Artificial
    neural networks for solving ordinary and partial differential equations", IEEE TNN 1998).
    ``x`` is in the problem's own coordinates (not the network's normalized ones).
    """

    def __init__(self, fn):
        super().__init__()
        if not callable(fn):
            fail("transform", fn, "is not callable", "pass a function (x, y) -> y")
        self.fn = fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.fn(x, y)
        if not isinstance(out, torch.Tensor) or out.shape != y.shape:
            fail(
                "transform",
                getattr(self.fn, "__name__", self.fn),
                f"returned {getattr(out, 'shape', type(out).__name__)}, not the network's shape "
                f"{tuple(y.shape)}",
                "return a tensor shaped like y, e.g. g(x) + phi(x) * y",
            )
        return out

    def jet(self, x: J.Jet, y: J.Jet) -> J.Jet:
        """No closed-form rule for a user's function: nested jvp (warns once)."""
        return J.function_jet(self.fn, [x, y], name="OutputTransform")
