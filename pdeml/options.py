"""Command-line options that a method owns.

A method declares the options that land on its own settings (:meth:`AbstractMethod.cli_options`):
the PINN owns ``--derivatives``, ``--sampler``, ``--compile`` and ``--constraint``, an operator
``--data``. ``pdeml train`` offers the options of every registered method
(:mod:`pdeml.registry`) and applies one only where the case's method owns it; elsewhere it is an
error naming the methods that do. The core knows none of them by name.

Example:
    >>> import dataclasses
    >>> from pdeml.options import Option, set_field
    >>> opt = Option("width", "hidden units", set_field("width", int), type=int)
    >>> opt.flag, opt.dest
    ('--width', 'width')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from . import settings
from ._validate import fail


@dataclasses.dataclass(frozen=True)
class Option:
    """One ``--name VALUE`` option of ``pdeml train`` that a method owns.

    Args:
        name: the option without dashes (``"derivatives"`` is ``--derivatives``).
        help: the help text of ``pdeml train --help``.
        apply: ``apply(case, value) -> case``: the case with the value landed on its field.
        type: converts the command-line string (argparse's ``type``); Python callers pass values.
        nargs, const, metavar: as in :meth:`argparse.ArgumentParser.add_argument`.
        first: applied before every other override (it may replace the method, as
            ``--constraint`` does, so that the other options land on the new one).
    """

    name: str
    help: str
    apply: Callable[[Any, Any], Any]
    type: Callable[[str], Any] | None = None
    nargs: str | None = None
    const: Any = None
    metavar: str | None = None
    first: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def add_to(self, parser) -> None:
        """Add this option to an argparse parser (default None: the case's own setting)."""
        kwargs = {
            k: v
            for k, v in (("type", self.type), ("nargs", self.nargs), ("metavar", self.metavar))
            if v is not None
        }
        if self.nargs == "?":
            kwargs["const"] = self.const
        parser.add_argument(self.flag, dest=self.dest, default=None, help=self.help, **kwargs)


def set_field(field: str, convert: Callable[[Any], Any] | None = None, flag: str | None = None):
    """An ``apply`` that lands the (converted) value on the method's field ``field``."""

    def apply(case, value):
        if field not in settings.fields(case.method):
            fail(
                flag or f"--{field}",
                value,
                f"does not apply to the {type(case.method).__name__} method (it has no {field})",
                "drop the option, or use a method that has it",
            )
        new = convert(value) if convert is not None else value
        return case.replace(method=settings.replace(case.method, **{field: new}))

    return apply


def add_case_file(parser) -> None:
    """``--case FILE``: the case file a run directory was trained from. A command that reads a
    run directory imports no code that the directory names (:func:`pdeml.loading.run_case`)."""
    parser.add_argument(
        "--case",
        dest="case_file",
        metavar="FILE",
        help="for a run trained from a case file: that file (a run directory's own case file is "
        "never imported; its sha256 is checked against run.json)",
    )
