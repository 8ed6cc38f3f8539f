"""Neural operators for problem families: FNO layers, the FNO-3d and ST-FNO trajectory operators
with Spectral-Refiner fine-tuning, WoS-NO over families of domains, and hard constraints
(PI-HC-MoE) over families of initial conditions; EquiNO's core (operators.equino) in progress."""
from .backend import FNO3d, STFNO, TrajectoryOperator
from .equino import EquiNO, EquiNOBackend
from .fno import FNO, SpectralConv
from .hard import HardConstraintFNO, InitialDraws, InitialOperator
from .stfno import STFNONet
from .wosno import DomainDraws, DomainOperator, WoSNO

#: method names -> operator methods (the registry kept at the edge)
REGISTRY = {"fno3d": FNO3d, "stfno": STFNO, "wosno": WoSNO, "hard-fno": HardConstraintFNO, "equino": EquiNO}



def commands() -> dict:
    """Subcommands that operators add to ``pdeml``: name -> (add_parser(sub), main(args))."""
    from . import cli
    return {"finetune": (cli.add_parser, cli.main)}


__all__ = ["commands", "FNO", "SpectralConv", "STFNONet", "FNO3d", "STFNO", "TrajectoryOperator", "WoSNO", "DomainDraws",
           "DomainOperator", "HardConstraintFNO", "InitialDraws", "InitialOperator", "EquiNO", "EquiNOBackend",
           "REGISTRY"]
