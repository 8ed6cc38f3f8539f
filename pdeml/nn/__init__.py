"""Network building blocks."""

from .constraints import HardDirichlet, OutputTransform
from .mlp import ACTIVATIONS, MLP, FourierFeatures, PeriodicFeatures, Sin

__all__ = [
    "MLP",
    "FourierFeatures",
    "PeriodicFeatures",
    "Sin",
    "ACTIVATIONS",
    "HardDirichlet",
    "OutputTransform",
]
