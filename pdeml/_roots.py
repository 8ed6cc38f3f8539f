"""The one import root: ``solvers``, ``operators``, ``samplers`` and ``cases`` install as
``pdeml.solvers`` ... ``pdeml.cases``; an import under the old top-level names says so."""

from __future__ import annotations

#: the folders that installed as top-level packages before they moved under ``pdeml``
OLD_ROOTS = ("solvers", "operators", "samplers", "cases")


def moved(name: str) -> str:
    """The message for an import of ``name`` (an old top-level root, or a module under one)."""
    root = name.split(".")[0]
    return (
        f"`import {name}`: pdeml's {root} install as pdeml.{root} (one import root), and no "
        f"top-level `{root}` belongs to pdeml. Fix: write `import pdeml as pl` and use pl.PINN, "
        f"pl.samplers.R3, pl.operators.STFNO, or `from pdeml.{name} import ...`"
    )


def check(module_name: str, root: str) -> None:
    """Refuse to run a method package under a name other than ``pdeml.<root>`` (a source checkout
    on ``sys.path`` makes ``import solvers`` find the folder: its classes would be second copies
    that ``isinstance`` does not recognise)."""
    if module_name != f"pdeml.{root}":
        raise ImportError(moved(module_name))
