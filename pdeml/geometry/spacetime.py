"""Space x time cylinders ``geometry x [t0, t1]``; inputs are (space..., t)."""

from __future__ import annotations

import numpy as np
import torch

from .._validate import fail, finite_scalar, positive_int
from ._dde import dde
from .base import AbstractGeometry


class SpaceTime(AbstractGeometry):
    """``geometry x [t0, t1]``. Sampling is deepxde's ``GeometryXTime`` (joint quasi-random
    sequences for boxes, shuffled pairs otherwise); the SDF is the spatial one (distance to
    the spatial boundary), which is what boundary-condition hard constraints need."""

    def __init__(self, geometry: AbstractGeometry, t0: float, t1: float):
        if not isinstance(geometry, AbstractGeometry):
            fail("geometry", geometry, "is not a pdeml geometry", "build it from pdeml.geometry")
        t0, t1 = finite_scalar("time[0]", t0), finite_scalar("time[1]", t1)
        if not t1 > t0:
            fail("time", (t0, t1), "must satisfy t0 < t1", "pass time=(t0, t1) with t1 > t0")
        self.space, self.t0, self.t1, self.dim = geometry, t0, t1, geometry.dim + 1
        g = dde()
        self._dde = g.GeometryXTime(geometry._dde, g.TimeDomain(t0, t1))

    @property
    def sdf_exact(self):
        return self.space.sdf_exact

    @property
    def bbox(self):
        lo, hi = self.space.bbox
        return np.append(lo, self.t0), np.append(hi, self.t1)

    def inside(self, x):
        x = self._check_points(x)
        return self.space.inside(x[:, :-1]) & (x[:, -1] >= self.t0) & (x[:, -1] <= self.t1)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.space.sdf(x[:, :-1])

    def smooth_distance(self, x: torch.Tensor) -> torch.Tensor:
        return self.space.smooth_distance(x[:, :-1])

    def sample_initial(
        self, n: int, rng: np.random.Generator, method: str = "random"
    ) -> np.ndarray:
        """``n`` points of the spatial domain at ``t = t0``."""
        n = positive_int("n", n)
        x = self.space.sample_interior(n, rng, method)
        return np.hstack([x, np.full((len(x), 1), self.t0)])
