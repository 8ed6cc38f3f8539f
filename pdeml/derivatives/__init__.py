"""Derivative estimators behind :class:`pdeml.Field`."""
from .autograd import Autograd
from .base import AbstractEstimator

__all__ = ["AbstractEstimator", "Autograd"]
