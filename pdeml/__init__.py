"""pdeml: define a PDE case in Python, train a surrogate, export the field to VTK.

Example:
    >>> import pdeml as pl
    >>> geom = pl.geometry.Rectangle([0, 0], [1, 1])
    >>> problem = pl.Problem(geometry=geom, pde=lambda x, u: -u.laplacian() - 1.0,
    ...                      conditions=[pl.Dirichlet(0.0)])
    >>> case = pl.Case(problem=problem, method=pl.PINN(pl.nn.MLP(width=50, depth=4)), steps=2000)
    >>> case.steps
    2000

One import root: the methods live in subpackages that load when first named, so that
``import pdeml`` stays light and the core never imports a method (``pl.PINN``,
``pl.samplers.R3``, ``pl.operators.STFNO``, ``pl.families.StarFamily``).
"""

import importlib as _importlib
from typing import TYPE_CHECKING

from . import derivatives, geometry, nn, pde
from .backend import AbstractBackend, AbstractLeastSquares, AbstractMethod, AbstractTrainable
from .callbacks import AbstractCallback, EarlyStopping, HistoryCSV, ProgressBar
from .combine import AbstractCombiner, ConFIG, GradNorm, MConFIG, PCGrad, Sum
from .conditions import (
    AbstractCondition,
    Data,
    Dirichlet,
    Initial,
    Neumann,
    Operator,
    Periodic,
    Robin,
)
from .device import resolve_device
from .field import Field
from .fit import DivergenceError, FitResult, fit, relative_l2
from .gauss_newton import ENGD
from .optim import SGD, Adam, Cosine, OneCycle
from .problem import Case, Parameter, Problem
from .sampling import AbstractSampler
from .steppers import LBFGS, AbstractStepper, FirstOrder, Phase

__version__ = "0.1.0"

#: subpackages loaded on first use (the method layers above the core, and the built-in cases)
_SUBPACKAGES = ("solvers", "operators", "samplers", "families", "cases")
#: root names -> the subpackage that defines them (the methods a case names most)
_METHODS = {"PINN": "solvers", "HardConstraint": "solvers", "WalkOnSpheres": "solvers"}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from . import cases, families, operators, samplers, solvers
    from .solvers import PINN, HardConstraint, WalkOnSpheres


def __getattr__(name: str):
    """``pl.PINN``, ``pl.samplers``, ...: the method layers, imported when first named."""
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name in _METHODS:
        return getattr(_importlib.import_module(f"{__name__}.{_METHODS[name]}"), name)
    raise AttributeError(f"module 'pdeml' has no attribute {name!r}")


def __dir__() -> list:
    return sorted({*globals(), *_SUBPACKAGES, *_METHODS})


__all__ = [
    "geometry",
    "nn",
    "derivatives",
    "pde",
    "Problem",
    "Case",
    "Phase",
    "Parameter",
    "Field",
    "AbstractCondition",
    "Dirichlet",
    "Neumann",
    "Robin",
    "Periodic",
    "Initial",
    "Data",
    "Operator",
    "fit",
    "FitResult",
    "DivergenceError",
    "relative_l2",
    "Adam",
    "SGD",
    "LBFGS",
    "ENGD",
    "Sum",
    "FirstOrder",
    "OneCycle",
    "Cosine",
    "AbstractStepper",
    "AbstractMethod",
    "AbstractBackend",
    "AbstractTrainable",
    "AbstractLeastSquares",
    "ConFIG",
    "MConFIG",
    "PCGrad",
    "GradNorm",
    "AbstractCombiner",
    "AbstractSampler",
    "AbstractCallback",
    "ProgressBar",
    "HistoryCSV",
    "EarlyStopping",
    "resolve_device",
    "solvers",
    "operators",
    "samplers",
    "families",
    "cases",
    "PINN",
    "HardConstraint",
    "WalkOnSpheres",
]
