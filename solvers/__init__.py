"""Backends that solve one Problem, and the registries the CLI reads (kept at the edge)."""
from .hard import HardConstraint
from .pinn import PINN, PINNBackend
from .wos import WalkOnSpheres

#: method names -> method classes (``pdeml cases`` reports a case's method by these names)
REGISTRY = {"pinn": PINN, "wos": WalkOnSpheres, "hard": HardConstraint}


def commands() -> dict:
    """Subcommands that solvers add to ``pdeml``: name -> (add_parser(sub), main(args))."""
    from . import fe2_cli, rve_cli, wos_cli
    from .dcdm import cli as dcdm_cli
    return {"dcdm": (dcdm_cli.add_parser, dcdm_cli.main), "solve": (wos_cli.add_parser, wos_cli.main),
            "rve": (rve_cli.add_parser, rve_cli.main), "fe2": (fe2_cli.add_parser, fe2_cli.main)}


__all__ = ["HardConstraint", "PINN", "PINNBackend", "REGISTRY", "WalkOnSpheres", "commands"]
