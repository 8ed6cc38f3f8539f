"""Small helpers that make every error name the argument, its value and the fix."""

from __future__ import annotations

import errno
import math
from typing import NoReturn

import numpy as np
import torch


def fail(name: str, value, problem: str, fix: str, exc=ValueError) -> NoReturn:
    """Raise ``exc`` with the uniform message ``{name}={value!r} {problem}. Fix: {fix}``."""
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    raise exc(f"{name}={text} {problem}. Fix: {fix}")


def finite_array(name: str, value, fix: str = "pass finite numbers only") -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        fail(name, value, "must have finite values", fix)
    return arr


def finite_scalar(name: str, value, fix: str = "pass a finite number") -> float:
    if isinstance(value, (str, bytes)):  # float("0") would pass: a string is not a number
        fail(name, value, "is a string, not a number", fix, TypeError)
    try:
        v = float(value)
    except (TypeError, ValueError):
        fail(name, value, "must be a number", fix, TypeError)
    if not math.isfinite(v):
        fail(name, value, "must be finite", fix)
    return v


def positive_int(name: str, value, fix: str = "pass an integer >= 1") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        fail(name, value, "must be a positive integer", fix)
    return int(value)


def column(name: str, t: torch.Tensor, n: int, finite: bool = True) -> torch.Tensor:
    """Check that a callable's answer is (n,) or (n, 1) (and finite, unless ``finite=False``:
    the training loop's NaN guard covers PDE residuals); return it as (n, 1)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} returned {type(t).__name__}; expected a torch tensor of shape ({n},) or "
            f"({n}, 1). Fix: build the value from the input tensor with torch operations."
        )
    if t.shape == (n,):
        t = t[:, None]
    elif t.shape != (n, 1):
        raise ValueError(
            f"{name} returned shape {tuple(t.shape)} for {n} points; expected ({n},) or ({n}, 1). "
            "Fix: a common cause is broadcasting an (N,) tensor such as x[:, 0] against an "
            "(N, 1) tensor such as u.value; use x[:, 0:1] to keep the column shape."
        )
    # under torch.compile the check would split the graph; the eager first call made it, and
    # the training loop stops on any non-finite loss
    if finite and not torch.compiler.is_compiling() and not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{name} returned non-finite values (NaN or inf). Fix: check the formula "
            "for divisions by zero or overflow on the sampled points."
        )
    return t


def guard_disk(out, fn, fix: str | None = None):
    """``fn()``, with a full disk reported as one (naming the directory and ``fix``), not a
    library traceback."""
    try:
        return fn()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = fix or (
                f"free space, then `pdeml export {out}` re-writes the VTK files and pictures "
                "(metrics.json is written first)"
            )
            raise OSError(
                e.errno,
                f"the disk holding {out} is full while writing results "
                f"({e.filename or 'a file'}). Fix: {fix}",
            ) from None
        raise
