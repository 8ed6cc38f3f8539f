"""Settings objects: their readable fields, changed copies, and plain descriptions.

A settings object (a method, optimizer, stepper, combiner, sampler, estimator) keeps each
constructor argument under the argument's own name, and nothing else that a run changes. Then
:func:`fields` reads them back, :func:`replace` makes a validated copy with some changed (how a
command-line override lands on a real field), and :func:`describe` writes any of them into
``run.json`` as plain JSON.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import torch

from ._validate import fail


def _init_names(cls) -> list[str]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _holds(obj, name: str) -> bool:
    """``obj`` keeps ``name`` itself (an instance attribute or a property), not merely a class
    attribute of that name with another meaning (``STDE.unbiased`` is a theory flag)."""
    return name in getattr(obj, "__dict__", {}) or isinstance(
        getattr(type(obj), name, None), property
    )


def fields(obj) -> dict:
    """The constructor arguments of ``obj`` as it holds them (dataclass fields, or attributes
    named like the ``__init__`` parameters); arguments it does not keep are left out."""
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    return {name: getattr(obj, name) for name in _init_names(type(obj)) if _holds(obj, name)}


def complete(obj) -> bool:
    """Whether :func:`fields` holds every constructor argument (so a copy can be rebuilt)."""
    return dataclasses.is_dataclass(obj) or set(fields(obj)) == set(_init_names(type(obj)))


def replace(obj, **changes):
    """A new settings object like ``obj`` with ``changes``, validated by its constructor. An
    unknown field is an error that lists the known ones."""
    known = fields(obj)
    for k, v in changes.items():
        if k not in known:
            fail(k, v, f"is not a setting of {type(obj).__name__}", f"use one of {sorted(known)}")
    if dataclasses.is_dataclass(obj):
        return dataclasses.replace(obj, **changes)
    if not complete(obj):
        fail(
            type(obj).__name__,
            obj,
            "does not keep all its constructor arguments, so it cannot be copied with changes",
            "build a new one instead",
        )
    return type(obj)(**{**known, **changes})


def describe(obj, depth: int = 0):
    """``obj`` as plain JSON: numbers, strings, lists and dicts as they are; settings objects as
    ``{"type": name, field: value, ...}``; functions by name; arrays and tensors by shape."""
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
    try:
        out = fields(obj)
    except (TypeError, ValueError):
        out = {}
    if not _init_names(type(obj)):
        return {"type": type(obj).__name__}
    if not complete(obj):  # it does not keep its arguments: its repr says more
        return (
            f"<{type(obj).__name__}>"
            if isinstance(obj, torch.nn.Module)
            else {"type": type(obj).__name__, "repr": repr(obj)}
        )
    return {
        "type": type(obj).__name__,
        **{k: describe(v, depth + 1) for k, v in out.items() if k != "problem"},
    }
