"""Backends that solve one Problem: the PINN (:class:`PINN`), physics-informed hard constraints and
their mixture of experts (:class:`HardConstraint`), walk-on-spheres (:class:`WalkOnSpheres`),
DCDM (:mod:`pdeml.solvers.dcdm`) and the FE² references (:mod:`pdeml.solvers.rve`,
:mod:`pdeml.solvers.fe2`). Installed as ``pdeml.solvers``; registered in ``pyproject.toml``'s
entry points, not here."""

from pdeml._roots import check as _check

_check(__name__, "solvers")

from .hard import HardConstraint
from .pinn import PINN, PINNBackend
from .wos import WalkOnSpheres

__all__ = ["HardConstraint", "PINN", "PINNBackend", "WalkOnSpheres"]
