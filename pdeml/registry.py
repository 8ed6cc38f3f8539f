"""What is installed: methods, subcommands and case folders, read from entry points.

The core imports no method. pdeml's own methods register like anyone else's, in
``pyproject.toml``; another installed package adds a method, a ``pdeml`` subcommand or a folder of
cases under the same groups, without touching pdeml:

.. code-block:: toml

    [project.entry-points."pdeml.methods"]
    mymethod = "mypkg.method:MyMethod"        # an AbstractMethod subclass
    [project.entry-points."pdeml.commands"]
    mycmd = "mypkg.cli"                        # a module with add_parser(sub) and main(args)
    [project.entry-points."pdeml.cases"]
    mycases = "mypkg.cases"                    # a package: each public module defines `case`

Nothing is cached: a package installed while Python runs is seen by the next call.
"""

from __future__ import annotations

import importlib.metadata
import pkgutil
from typing import Any

from ._validate import fail
from .backend import AbstractMethod
from .options import Option

GROUPS = ("pdeml.methods", "pdeml.commands", "pdeml.cases")


def _load(group: str) -> dict[str, Any]:
    out = {}
    for ep in importlib.metadata.entry_points(group=group):
        if ep.name in out:
            continue  # the first distribution on sys.path wins
        try:
            out[ep.name] = ep.load()
        except Exception as e:  # a broken plug-in names itself
            raise ImportError(
                f"entry point {ep.name!r} = {ep.value!r} of group {group!r} does not load: "
                f"{type(e).__name__}: {e}. Fix: repair or uninstall the package that "
                "declares it"
            ) from e
    return out


def methods() -> dict[str, type[AbstractMethod]]:
    """Method names (as run.json records them) -> method classes."""
    out = _load("pdeml.methods")
    for name, cls in out.items():
        if not (isinstance(cls, type) and issubclass(cls, AbstractMethod)):
            fail(
                "entry point",
                f"pdeml.methods:{name}",
                f"names {cls!r}, not a pdeml.AbstractMethod subclass",
                "register the method's class",
            )
    return out


def commands() -> dict[str, Any]:
    """Subcommand names -> modules with ``add_parser(subparsers)`` and ``main(args) -> int``."""
    return _load("pdeml.commands")


def case_modules() -> dict[str, str]:
    """Case names -> module names, over every registered case folder. A name that an earlier
    folder already has is listed as ``FOLDER:NAME``; every name is also reachable that way."""
    out: dict[str, str] = {}
    for folder, pkg in _load("pdeml.cases").items():
        for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if m.name.startswith("_") or m.ispkg:
                continue
            module = f"{pkg.__name__}.{m.name}"
            out.setdefault(m.name, module)
            if out[m.name] != module:
                out[f"{folder}:{m.name}"] = module
    return out


def method_name(method) -> str:
    """The registered name of ``method``'s class (its class name if unregistered)."""
    return next((k for k, v in methods().items() if type(method) is v), type(method).__name__)


def method_options() -> dict[str, list[tuple[type[AbstractMethod], Option]]]:
    """Option names -> the (method class, option) pairs that own them, over registered methods."""
    out: dict[str, list[tuple[type[AbstractMethod], Option]]] = {}
    for cls in methods().values():
        for opt in cls.cli_options():
            out.setdefault(opt.name, []).append((cls, opt))
    return out


def apply_option(case, name: str, value):
    """``case`` with the method option ``name`` applied by the case's own method, or an error that
    names the methods owning it."""
    own = {o.name: o for o in type(case.method).cli_options()}
    if name in own:
        return own[name].apply(case, value)
    owners = sorted({cls.__name__ for cls, _ in method_options().get(name, [])})
    fail(
        f"--{name}",
        value,
        f"does not apply to the {type(case.method).__name__} method",
        f"drop it ({'an option of ' + ', '.join(owners) if owners else 'no method has it'})",
    )
