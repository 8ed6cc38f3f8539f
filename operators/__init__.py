"""Neural operators for problem families: FNO layers today (issue 15 in progress); ST-FNO,
WoS-NO and EquiNO to come."""
from .fno import FNO, SpectralConv

__all__ = ["FNO", "SpectralConv"]
