r"""Structured PDEs: callables ``pde(x, u)`` like any case's plain function (so a PINN reads
them as it reads any residual), which also carry their coefficients for the methods that
need them: walk-on-spheres reads the source and the screening coefficient, a grid
discretization would read the same.

- :class:`Poisson`: :math:`-\Delta u = f`.
- :class:`ScreenedPoisson`: :math:`-\Delta u + \sigma u = f`, :math:`\sigma \ge 0`.

A plain function stays the general case; a method that needs the structure says so when it is
given a plain function (:func:`structured`).

Example:
    >>> lshape = pl.geometry.Polygon([(0, 0), (1, 0), (1, -1), (-1, -1), (-1, 1), (0, 1)])
    >>> problem = pl.Problem(geometry=lshape, pde=pl.pde.Poisson(source=1.0),
    ...                      conditions=[pl.Dirichlet(0.0)])
    >>> problem.pde.source                       # what walk-on-spheres reads
    1.0
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch

from ._validate import fail, finite_scalar


def _source(value) -> Any:
    if callable(value):
        return value
    return finite_scalar("source", value, "pass a finite number or a callable f(x) of the points")


class AbstractPDE(abc.ABC):
    """A PDE whose coefficients a method can read; calling it gives the PINN residual."""

    source: Any

    def f(self, x: torch.Tensor) -> torch.Tensor:
        """The source at points ``x`` (N, d), as an (N, 1) column in ``x``'s dtype and device."""
        if callable(self.source):
            v = torch.as_tensor(self.source(x), dtype=x.dtype, device=x.device)
            if v.ndim == 1:
                v = v[:, None]
            if v.shape != (x.shape[0], 1):
                fail(
                    "source",
                    f"a callable returning shape {tuple(v.shape)}",
                    f"must return ({x.shape[0]}, 1) or (N,) values for N points",
                    "return one value per point",
                )
            return v
        return torch.full((x.shape[0], 1), float(self.source), dtype=x.dtype, device=x.device)

    @property
    def constant_source(self) -> bool:
        return not callable(self.source)

    @abc.abstractmethod
    def __call__(self, x, u):
        """The residual at points ``x`` of the network's field ``u``."""


@dataclasses.dataclass(frozen=True, eq=False)
class Poisson(AbstractPDE):
    r""":math:`-\Delta u = f`. Residual :math:`-\Delta u - f`.

    Args:
        source: f, a number or a callable of the points ``x`` (N, d) returning (N, 1) or (N,).
    """

    source: Any = 0.0

    def __post_init__(self):
        object.__setattr__(self, "source", _source(self.source))

    def __call__(self, x, u):
        return -u.laplacian() - self.f(x)


@dataclasses.dataclass(frozen=True, eq=False)
class ScreenedPoisson(AbstractPDE):
    r""":math:`-\Delta u + \sigma u = f` with :math:`\sigma \ge 0`. Residual
    :math:`-\Delta u + \sigma u - f`.

    Args:
        sigma: the screening coefficient σ (0 is Poisson).
        source: f, as for :class:`Poisson`.
    """

    sigma: float = 1.0
    source: Any = 0.0

    def __post_init__(self):
        sigma = finite_scalar("sigma", self.sigma, "pass a number >= 0")
        if sigma < 0:
            fail(
                "sigma",
                sigma,
                "is negative (the equation is then not screened: walks do not terminate)",
                "pass sigma >= 0",
            )
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "source", _source(self.source))

    def __call__(self, x, u):
        return -u.laplacian() + self.sigma * u.value - self.f(x)


def structured(pde, method: str, kinds: tuple = (Poisson, ScreenedPoisson)) -> AbstractPDE:
    """``pde`` if it is one of ``kinds``; else a clear error: ``method`` needs the coefficients."""
    if isinstance(pde, kinds):
        return pde
    names = " or ".join(f"pl.pde.{k.__name__}(...)" for k in kinds)
    what = getattr(pde, "__name__", type(pde).__name__)
    fail(
        "pde",
        what,
        f"is a plain function; {method} needs the equation's coefficients",
        f"write the case's pde as {names} (docs/wos.md)",
    )
