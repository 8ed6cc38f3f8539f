"""Case files and built-in case names: what ``pdeml train CASE`` loads.

A CASE is a path to a Python file that defines ``case = pl.Case(...)`` (or ``make(**options)``
that returns one), or the name of a module in a registered case folder
(:func:`pdeml.registry.case_modules`).

Example:
    >>> from pdeml.loading import load_case
    >>> case, source = load_case("heat_1d")
    >>> source, case.steps
    ('heat_1d', 3000)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from . import registry
from ._roots import OLD_ROOTS, moved
from ._validate import fail
from .problem import Case


def builtin_cases() -> dict[str, str]:
    """Case names (over every registered case folder, :func:`pdeml.registry.case_modules`) -> first
    docstring line and the case's options (``--dim 100``). Reads the sources: builds nothing."""
    import ast

    out = {}
    for name, module in registry.case_modules().items():
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        tree = ast.parse(Path(spec.origin).read_text())
        doc = ast.get_docstring(tree)
        line = " ".join(doc.strip().split("\n\n")[0].split()) if doc else ""  # the first paragraph
        make = next(
            (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "make"), None
        )
        if make is not None:
            args = make.args.args[-len(make.args.defaults) :] if make.args.defaults else []
            opts = [f"--{a.arg} {ast.unparse(d)}" for a, d in zip(args, make.args.defaults)]
            opts += [
                f"--{a.arg} {ast.unparse(d)}"
                for a, d in zip(make.args.kwonlyargs, make.args.kw_defaults)
                if d is not None
            ]
            line += f"  [{' '.join(opts)}]"
        out[name] = line
    return out


def typed_option(flag: str, value, default):
    """``value`` (a command-line string) converted to the type of ``default`` (str if None);
    booleans are true/false/1/0. A bad value is an error that names ``flag``."""
    kind = type(default) if default is not None else str
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return kind(value)
    except (TypeError, ValueError):
        fail(flag, value, f"is not a valid {kind.__name__}", f"pass e.g. {flag} {default}")


def _apply_options(mod, spec: str, options: dict) -> Case:
    """``mod.make(**options)`` with each value converted to the type of the option's default."""
    import inspect

    make = getattr(mod, "make", None)
    if make is None:
        fail(
            "case options",
            options,
            f"were given but case {spec!r} takes none (it defines no make())",
            "drop them, or define `def make(name=default, ...) -> pl.Case` in the case file",
        )
    params = inspect.signature(make).parameters
    kwargs = {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name not in params:
            fail(
                f"--{key}",
                value,
                f"is not an option of case {spec!r}",
                f"use one of {['--' + k for k in params]}",
            )
        default = params[name].default
        kwargs[name] = typed_option(
            f"--{key}", value, None if default is inspect.Parameter.empty else default
        )
    case = make(**kwargs)
    return case.replace(options={**case.options, **kwargs})


def _import_file(path: Path):
    if path.suffix != ".py":
        fail(
            "case",
            str(path),
            "is not a Python file (a case file ends in .py)",
            "pass the case's .py file, or a built-in name (`pdeml cases` lists them)",
        )
    name = f"_pdeml_case_{abs(hash(str(path.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        fail("case", str(path), "cannot be imported as a Python file", "pass a .py case file")
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = mod
    try:
        mod_spec.loader.exec_module(mod)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        fail(
            "case",
            str(path),
            f"has a syntax error at line {e.lineno}: {e.msg}",
            "correct the file (python -m py_compile FILE shows the line)",
        )
    except ImportError as e:  # `from solvers import PINN`: the old import roots
        sys.modules.pop(name, None)
        if (e.name or "").split(".")[0] not in OLD_ROOTS and "one import root" not in str(e):
            raise
        raise ImportError(f"case={str(path)!r}: {moved(e.name) if e.name else e}") from None
    except Exception as e:  # the case's own code raised: say where, not only what
        sys.modules.pop(name, None)
        import traceback

        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        line = f" at line {frames[-1].lineno}" if frames else ""
        fail(
            "case",
            str(path),
            f"raised {type(e).__name__}{line} while it was imported: {e}{_did_you_mean(e)}",
            "correct the case file (run `python FILE` to see the whole traceback)",
        )
    return mod


def _did_you_mean(e: Exception) -> str:
    """For ``X.__init__() got an unexpected keyword argument 'n_boundry'``: the closest argument
    ``X`` takes (``n_boundary``), found among the classes pdeml exports."""
    import difflib
    import inspect
    import re

    m = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(e))
    if not isinstance(e, TypeError) or m is None:
        return ""
    import pdeml

    found = [
        obj
        for mod in (pdeml, pdeml.samplers, pdeml.solvers, pdeml.operators, pdeml.derivatives)
        for obj in vars(mod).values()
        if inspect.isclass(obj) and obj.__name__ == m.group(1)
    ]
    if not found:
        return ""
    names = list(inspect.signature(found[0]).parameters)
    close = difflib.get_close_matches(m.group(2), names, n=1)
    return f" (did you mean {close[0]}=?)" if close else f" (it takes {names})"


def load_case(spec: str, options: dict | None = None) -> tuple[Case, str]:
    """A case from a file path or a built-in name; returns ``(case, source)``. A spec is a file
    when it ends in ``.py`` or names an existing file (a directory never is, so a run directory
    named like its case does not shadow the case). ``options`` are passed to the case file's
    ``make(**options)`` (``pdeml train CASE --dim 1000``); without them the module-level ``case``
    is used."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            fail(
                "case",
                spec,
                "is not a file",
                "pass the path of a case file or a built-in name (`pdeml cases` lists them)",
                FileNotFoundError,
            )
        mod = _import_file(path)
        source = str(path.resolve())
    else:
        modules = registry.case_modules()
        if spec not in modules:
            fail(
                "case",
                spec,
                "is neither a file nor a built-in case",
                f"use one of {sorted(modules)} or a path",
            )
        mod = importlib.import_module(modules[spec])
        source = spec
    case = getattr(mod, "case", None)
    if not isinstance(case, Case):
        fail("case", spec, "defines no module-level `case = pl.Case(...)`", "add one to the file")
    if options:
        case = _apply_options(mod, spec, options)
    return case, source


def source_hash(source: str | None) -> str | None:
    """The sha256 of a case file (what run.json records beside its path), or None for a
    built-in name or a case object."""
    if source is None or source in registry.case_modules():
        return None
    import hashlib

    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def run_case(out, info: dict, case_file=None, options: dict | None = None) -> tuple[Case, str]:
    """The case of the run directory ``out`` (whose run.json is ``info``), loaded without ever
    importing code the directory names: a run directory is data, and can be handed to you.

    A built-in case (recorded by name) loads by its name. A case file loads only when the user
    names it (``case_file``: ``--case FILE``): it must lie outside the run directory, and its
    sha256 must match the one run.json recorded. run.json's path is shown, never imported."""
    out = Path(out).resolve()
    source = info.get("source")
    if case_file is not None:
        path = Path(case_file).resolve()
        if path == out or out in path.parents:
            fail(
                "--case",
                str(case_file),
                f"lies inside the run directory {out}, which anyone who handed you the run "
                "could have written",
                "pass the case file you trained from, kept outside the run directory",
            )
        if not path.is_file():
            fail("--case", str(case_file), "is not a file", "pass the case's .py file")
        want = info.get("source_sha256")
        got = str(source_hash(str(path)))  # a file outside the case folders: always hashed
        if want is not None and got != want:
            fail(
                "--case",
                str(case_file),
                f"is not the file this run was trained from (sha256 {got[:12]}..., run.json "
                f"records {str(want)[:12]}... for {source})",
                "pass the unchanged file the run was trained from",
            )
        return load_case(str(path), options)
    if source is None:
        fail(
            "DIR",
            str(out),
            "was trained from a Python Case object, not a file or name",
            "call pdeml.run.export_backend from Python instead",
        )
    if source in registry.case_modules():
        return load_case(source, options)
    fail(
        "DIR",
        str(out),
        f"was trained from the case file {source!r}; pdeml does not import code that a run "
        "directory names (a run directory is data)",
        f"pass --case FILE naming that file (its sha256 is checked against run.json), e.g. "
        f"--case {source}",
    )
