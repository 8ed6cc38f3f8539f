r"""Hard constraints as output transforms.

Hard Dirichlet: :math:`u(x) = g(x) + \frac{\phi(x)}{\phi_{\max}}\, N(x)` with
:math:`\phi \ge 0` the geometry's ``smooth_distance`` (``-sdf``, or for polygons a smooth
approximate distance function): zero exactly on the boundary, so :math:`u = g` there whatever the network :math:`N` does. See Sukumar &
Srivastava, "Exact imposition of boundary conditions with distance functions in
physics-informed deep neural networks", CMAME 2022. ``g`` must be defined in the whole domain.
"""
from __future__ import annotations

import torch
from torch import nn

from .._validate import column


class HardDirichlet(nn.Module):
    """Apply ``u_c = g + (phi / scale) * N_c`` to output component ``component``."""

    def __init__(self, domain, value, component: int, scale: float):
        super().__init__()
        self.domain, self.value, self.component, self.scale = domain, value, component, float(scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.domain.smooth_distance(x) / self.scale
        if callable(self.value):
            g = column("Dirichlet(value) (hard)", self.value(x), x.shape[0], finite=False).to(y.dtype)
        else:
            g = self.value
        c = self.component
        col = g + phi * y[:, c:c + 1]
        if y.shape[1] == 1:
            return col
        return torch.cat([y[:, :c], col, y[:, c + 1:]], dim=1)
