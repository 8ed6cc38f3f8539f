"""pdeml: define a PDE case in Python, train a surrogate, export the field to VTK.

Example:
    >>> import pdeml as pl
    >>> geom = pl.geometry.Rectangle([0, 0], [1, 1])
    >>> problem = pl.Problem(geometry=geom, pde=lambda x, u: -u.laplacian() - 1.0,
    ...                      conditions=[pl.Dirichlet(0.0)])
    >>> from solvers import PINN
    >>> case = pl.Case(problem=problem, method=PINN(pl.nn.MLP(width=50, depth=4)), steps=2000)
"""
from . import derivatives, geometry, nn, pde
from .backend import AbstractBackend, AbstractLeastSquares, AbstractMethod, AbstractTrainable
from .callbacks import AbstractCallback, EarlyStopping, HistoryCSV, ProgressBar
from .combine import AbstractCombiner, ConFIG, GradNorm, MConFIG, PCGrad, Sum
from .conditions import (AbstractCondition, Data, Dirichlet, Initial, Neumann, Operator, Periodic,
                         Robin)
from .device import resolve_device
from .field import Field
from .fit import DivergenceError, FitResult, fit, relative_l2
from .gauss_newton import ENGD
from .optim import SGD, Adam, OneCycle
from .problem import Case, Parameter, Problem
from .sampling import AbstractSampler
from .steppers import LBFGS, AbstractStepper, FirstOrder

__version__ = "0.1.0"

__all__ = ["geometry", "nn", "derivatives", "Problem", "Case", "Parameter", "Field",
           "AbstractCondition", "Dirichlet", "Neumann", "Robin", "Periodic", "Initial", "Data", "Operator",
           "fit", "FitResult", "DivergenceError", "relative_l2", "Adam", "SGD", "LBFGS", "ENGD", "Sum",
           "FirstOrder", "OneCycle", "AbstractStepper", "AbstractMethod", "AbstractBackend", "AbstractTrainable",
           "AbstractLeastSquares",
           "ConFIG", "MConFIG", "PCGrad", "GradNorm",
           "AbstractCombiner", "AbstractSampler", "AbstractCallback", "ProgressBar",
           "HistoryCSV", "EarlyStopping", "resolve_device"]
