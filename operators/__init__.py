"""Neural operators for problem families (issue 15 in progress): FNO layers, the FNO-3d and
ST-FNO trajectory operators; Spectral-Refiner fine-tuning, WoS-NO and EquiNO to come."""
from .backend import FNO3d, STFNO, TrajectoryOperator
from .fno import FNO, SpectralConv
from .stfno import STFNONet

#: method names -> operator methods (the registry kept at the edge)
REGISTRY = {"fno3d": FNO3d, "stfno": STFNO}



def commands() -> dict:
    """Subcommands that operators add to ``pdeml``: name -> (add_parser(sub), main(args))."""
    from . import cli
    return {"finetune": (cli.add_parser, cli.main)}


__all__ = ["commands", "FNO", "SpectralConv", "STFNONet", "FNO3d", "STFNO", "TrajectoryOperator", "REGISTRY"]
