"""Derivative estimators behind :class:`pdeml.Field`: exact autograd, exact Taylor mode, SDGD,
STDE."""

from ..options import Option, set_field
from . import jets
from .autograd import Autograd
from .base import AbstractEstimator
from .taylor import SDGD, STDE, Taylor, parse

#: ``--derivatives SPEC``: the estimator of a method that has one (the PINN, the hard constraint)
OPTION = Option(
    "derivatives",
    "derivative estimator: autograd | taylor | sdgd:B | stde:B | stde-dense:S, "
    "optionally :unbiased (default: the case's)",
    set_field("estimator", parse, "--derivatives"),
)

__all__ = ["AbstractEstimator", "Autograd", "Taylor", "SDGD", "STDE", "parse", "jets", "OPTION"]
