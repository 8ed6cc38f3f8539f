"""Neural operators for problem families: FNO layers, the FNO-3d and ST-FNO trajectory operators
with Spectral-Refiner fine-tuning, WoS-NO over families of domains, and hard constraints
(PI-HC-MoE) over families of initial conditions, and EquiNO, the equilibrium operator for FE²
multiscale mechanics. Installed as ``pdeml.operators``; registered in ``pyproject.toml``'s entry
points."""

from pdeml._roots import check as _check

_check(__name__, "operators")

from .backend import STFNO, FNO3d, TrajectoryOperator
from .equino import EquiNO, EquiNOBackend
from .fno import FNO, SpectralConv
from .hard import HardConstraintFNO, InitialDraws, InitialOperator
from .stfno import STFNONet
from .wosno import DomainDraws, DomainOperator, WoSNO

__all__ = [
    "FNO",
    "SpectralConv",
    "STFNONet",
    "FNO3d",
    "STFNO",
    "TrajectoryOperator",
    "WoSNO",
    "DomainDraws",
    "DomainOperator",
    "HardConstraintFNO",
    "InitialDraws",
    "InitialOperator",
    "EquiNO",
    "EquiNOBackend",
]
