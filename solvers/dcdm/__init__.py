"""DCDM: a deep conjugate-direction solver for sparse SPD grid systems (Kaneda et al., ICML 2023).

``poisson`` builds the matrices (scipy and matrix-free torch), ``net`` the direction network,
``solver`` the iteration, the loss and training, ``multilevel`` the multigrid cycle that runs a
network on its training grid inside finer ones, ``operator`` a user's sparse matrix on a grid;
``cli`` the ``pdeml dcdm`` commands.
"""

from .multilevel import Cycle
from .net import DirectionNet
from .operator import MatrixOperator
from .poisson import GridPoisson, assemble, obstacles, prolong, restrict, wall_connected
from .solver import SolveResult, load, loss, save, solve, train, training_rhs

__all__ = [
    "Cycle",
    "DirectionNet",
    "MatrixOperator",
    "GridPoisson",
    "assemble",
    "obstacles",
    "prolong",
    "restrict",
    "wall_connected",
    "SolveResult",
    "solve",
    "loss",
    "train",
    "training_rhs",
    "save",
    "load",
]
