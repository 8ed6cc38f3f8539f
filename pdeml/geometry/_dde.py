"""Quiet, side-effect-free access to ``deepxde.geometry``.

deepxde picks a global backend at import (environment variable or ``~/.deepxde``), prints a
banner, and its PyTorch backend changes torch's default device on GPU machines. pdeml only
uses its numpy geometry, so we import it with the PyTorch backend forced for the duration of
the import, swallow the banner, and restore the caller's environment and torch defaults.
Sampling uses numpy's global RNG inside deepxde; :func:`seeded` confines that to a block
seeded from a caller-owned ``numpy.random.Generator`` and restores the global state after.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys

import numpy as np
import torch

_cache: dict = {}


def dde():
    """Return the ``deepxde.geometry`` module, imported quietly on first use."""
    mod = _cache.get("geometry")
    if mod is not None:
        return mod
    if "deepxde.geometry" in sys.modules:  # the user imported deepxde themselves
        mod = sys.modules["deepxde.geometry"]
    else:
        saved = {k: os.environ.get(k) for k in ("DDE_BACKEND", "DDEBACKEND")}
        dtype, device = torch.get_default_dtype(), torch.get_default_device()
        had_mode = torch._C._len_torch_function_stack() > 0
        os.environ["DDE_BACKEND"] = "pytorch"
        os.environ.pop("DDEBACKEND", None)
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                mod = importlib.import_module("deepxde.geometry")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            torch.set_default_dtype(dtype)
            # set_default_device(d) installs a torch-function mode that taxes every later op;
            # None removes it when the caller had none (the plain CPU default).
            torch.set_default_device(device if had_mode or device.type != "cpu" else None)
    _cache["geometry"] = mod
    return mod


@contextlib.contextmanager
def seeded(rng: np.random.Generator):
    """Run deepxde's sampling with numpy's global RNG seeded from ``rng``; restore it after."""
    state = np.random.get_state()
    np.random.seed(int(rng.integers(0, 2**32 - 1)))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # deepxde prints point-count notes
            yield
    finally:
        np.random.set_state(state)
