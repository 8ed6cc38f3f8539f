"""Neural operators for problem families (issue 15 in progress): FNO layers and the FNO-3d
trajectory operator; ST-FNO, WoS-NO and EquiNO to come."""
from .backend import FNO3d, TrajectoryOperator
from .fno import FNO, SpectralConv

#: method names -> operator methods (the registry kept at the edge)
REGISTRY = {"fno3d": FNO3d}

__all__ = ["FNO", "SpectralConv", "FNO3d", "TrajectoryOperator", "REGISTRY"]
