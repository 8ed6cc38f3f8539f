"""Backends that solve one Problem."""
from .pinn import PINN

#: CLI names -> backend classes (the registry kept at the edge)
REGISTRY = {"pinn": PINN}

__all__ = ["PINN", "REGISTRY"]
