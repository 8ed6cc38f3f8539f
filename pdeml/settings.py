"""Settings objects and their runs: readable fields, changed copies, plain descriptions.

A settings object (a method, optimizer, stepper, combiner, sampler, estimator) is a frozen
dataclass: its fields are its constructor arguments and a run never changes them. Its
``init(...)`` returns a separate :class:`Run` that holds what the run changes (points,
generators, momenta, optimizer state), as Optax's ``init`` returns a state beside the
transformation; so one settings object can serve two runs, and ``run.json`` describes exactly
what the user chose. :func:`fields` reads the settings back, :func:`replace` makes a validated
copy with some changed (how a command-line override lands on a real field), and
:func:`describe` writes any of them into ``run.json`` as plain JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ._validate import fail


class Run(SimpleNamespace):
    """The state of one run of frozen ``settings``: whatever the run changes, as attributes
    (set by the settings' ``init``). A name the run does not hold reads through to its
    settings (``run.every`` is ``run.settings.every``), and a settings method whose first
    argument is the run comes bound to it (``run.gate(x)`` is ``run.settings.gate(run, x)``);
    writing a name sets the run's own."""

    settings: Any

    def __getattr__(self, name: str) -> Any:
        if name == "settings" or name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.settings, name)
        if inspect.ismethod(value) and _takes_run(value.__func__):
            return functools.partial(value, self)
        return value

    def __repr__(self) -> str:
        return f"<run of {self.settings!r}>"


@functools.cache
def _takes_run(fn) -> bool:
    params = list(inspect.signature(fn).parameters)
    return len(params) > 1 and params[1] == "run"


def frozen_set(obj, **values) -> None:
    """Set validated (normalized) field values on a frozen dataclass in its ``__post_init__``."""
    for k, v in values.items():
        object.__setattr__(obj, k, v)


def fields(obj) -> dict:
    """The fields of the settings dataclass ``obj`` (its constructor arguments)."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        fail(
            type(obj).__name__,
            obj,
            "is not a settings object (a dataclass)",
            "pass a method, sampler, optimizer, stepper, combiner or estimator",
        )
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


def replace(obj, **changes):
    """:func:`dataclasses.replace`: a new settings object like ``obj`` with ``changes``,
    validated by its ``__post_init__``. An unknown field is an error that lists the known
    ones."""
    known = fields(obj)
    for k, v in changes.items():
        if k not in known:
            fail(k, v, f"is not a setting of {type(obj).__name__}", f"use one of {sorted(known)}")
    return dataclasses.replace(obj, **changes)


def _module_arguments(module: torch.nn.Module) -> dict | None:
    """The constructor arguments a network keeps under their own names (``MLP(width=50)`` keeps
    ``width``), or None if it does not keep them all. Networks are torch modules, which cannot
    be frozen dataclasses; this is how ``run.json`` still names their settings."""
    params = list(inspect.signature(type(module).__init__).parameters.values())[1:]
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not all(n in vars(module) for n in names):
        return None
    return {n: vars(module)[n] for n in names}


def describe(obj, depth: int = 0):
    """``obj`` as plain JSON: numbers, strings, lists and dicts as they are; settings dataclasses
    as ``{"type": name, field: value, ...}``; networks by the arguments they keep; functions by
    name; arrays and tensors by shape; anything else by its ``repr``."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): describe(v, depth + 1) for k, v in obj.items()}
    names = getattr(obj, "_fields", None)
    if isinstance(obj, tuple) and names:  # a named tuple (pl.Phase): by field
        return {
            "type": type(obj).__name__,
            **{k: describe(v, depth + 1) for k, v in zip(names, obj)},
        }
    if isinstance(obj, (list, tuple)):
        return [describe(v, depth + 1) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return f"<{type(obj).__name__} of shape {tuple(obj.shape)}>"
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
        return f"<function {getattr(obj, '__qualname__', obj)}>"
    if depth > 6:
        return f"<{type(obj).__name__}>"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict | None = fields(obj)
    elif isinstance(obj, torch.nn.Module):
        out = _module_arguments(obj)
        if out is None:
            return f"<{type(obj).__name__}>"
    else:
        return {"type": type(obj).__name__, "repr": repr(obj)}
    assert out is not None
    return {
        "type": type(obj).__name__,
        **{k: describe(v, depth + 1) for k, v in out.items() if k != "problem"},
    }
