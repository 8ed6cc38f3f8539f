r"""A family of diffusion–sorption problems over initial conditions (the PI-HC-MoE paper's operator
setting): the equation, boundary conditions and constants of ``cases/diffusion_sorption_1d.py``,
and initial conditions

.. math:: u_0(x) = (1 - x)\,(e^{-a x} + c\,x), \qquad a \sim U(2, 8),\ c \sim U(0, 1),

which meet u(0) = 1 and, to 5e-4, the outflow condition at x = 1. (PDEBench draws constants in
[0, 0.2], which meet neither; here the initial data are smooth and compatible, so the error
measures the operator, not a corner layer.) Solutions live on an ``nx`` x ``nt`` grid of nodes
over [0, 1] x [0, 500 s], both ends included; the truth is the method of lines on
10 (nx - 1) + 1 nodes read at the grid's nodes.
"""
from __future__ import annotations

import numpy as np
import torch

from pdeml._validate import positive_int
from pdeml.family import AbstractFamily

from . import diffusion_sorption_1d as ds


class SorptionFamily(AbstractFamily):
    """Diffusion–sorption over initial conditions on an ``nx`` x ``nt`` node grid."""

    def __init__(self, nx: int = 64, nt: int = 32):
        self.nx, self.nt = positive_int("nx", nx), positive_int("nt", nt)
        self.problem = ds.problem          # the equation and the boundary conditions (its Initial is replaced)
        self.extent = ((0.0, 1.0), (0.0, ds.T))

    def shapes(self):
        return {"u0": (self.nx,), "u": (self.nx, self.nt)}

    def grid(self) -> np.ndarray:
        """Node coordinates (nx, nt, 2): (x, t)."""
        x, t = np.linspace(0, 1, self.nx), np.linspace(0, ds.T, self.nt)
        return np.stack(np.meshgrid(x, t, indexing="ij"), -1)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Parameters (a, c) of one initial condition."""
        return np.array([rng.uniform(2, 8), rng.uniform(0, 1)])

    @staticmethod
    def initial(params: np.ndarray, x: np.ndarray) -> np.ndarray:
        a, c = params
        return (1 - x) * (np.exp(-a * x) + c * x)

    def initial_values(self, params: np.ndarray) -> np.ndarray:
        """u0 at the grid's x nodes, (nx,)."""
        return self.initial(params, np.linspace(0, 1, self.nx))

    def truth(self, params: np.ndarray, refine: int = 10) -> np.ndarray:
        """u (nx, nt) at the grid's nodes."""
        n = refine * (self.nx - 1) + 1
        u = ds.solve(self.initial(params, np.linspace(0, 1, n)), n, np.linspace(0, ds.T, self.nt))
        return u[:, ::refine].T

    def generate(self, count, generator, device="cpu"):
        rng = np.random.default_rng(int(torch.randint(2 ** 62, (1,), generator=generator)))
        params = [self.draw(rng) for _ in range(count)]
        return {"u0": torch.as_tensor(np.stack([self.initial_values(p) for p in params]), device=device),
                "u": torch.as_tensor(np.stack([self.truth(p) for p in params]), device=device)}

    def __repr__(self):
        return f"SorptionFamily(nx={self.nx}, nt={self.nt})"
