"""Backends that solve one Problem, and the registries the CLI reads (kept at the edge)."""
from .pinn import PINN, PINNBackend

#: method names -> method classes (``pdeml cases`` reports a case's method by these names)
REGISTRY = {"pinn": PINN}


def commands() -> dict:
    """Subcommands that solvers add to ``pdeml``: name -> (add_parser(sub), main(args))."""
    from .dcdm import cli as dcdm_cli
    return {"dcdm": (dcdm_cli.add_parser, dcdm_cli.main)}


__all__ = ["PINN", "PINNBackend", "REGISTRY", "commands"]
