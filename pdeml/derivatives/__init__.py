"""Derivative estimators behind :class:`pdeml.Field`: exact autograd, exact Taylor mode, SDGD, STDE."""
from . import jets
from .autograd import Autograd
from .base import AbstractEstimator
from .taylor import SDGD, STDE, Taylor, parse

__all__ = ["AbstractEstimator", "Autograd", "Taylor", "SDGD", "STDE", "parse", "jets"]
