"""Network building blocks."""
from .constraints import HardDirichlet, OutputTransform
from .mlp import ACTIVATIONS, MLP, FourierFeatures, Sin

__all__ = ["MLP", "FourierFeatures", "Sin", "ACTIVATIONS", "HardDirichlet", "OutputTransform"]
