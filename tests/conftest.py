import os
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
# the matrix-product measurements of compiled steps (pdeml.gemm) go to a cache of the test run's
# own, not the user's ~/.cache/pdeml (the worker processes inherit it)
os.environ.setdefault("PDEML_CACHE", tempfile.mkdtemp(prefix="pdeml-test-cache-"))

import numpy as np
import pytest
import torch

import pdeml as pl


@pytest.fixture
def square_problem():
    """-Δu = 2π² sin(πx) sin(πy) on the unit square, u = 0: exact sin(πx) sin(πy)."""
    pi = np.pi

    def exact(x):
        return torch.sin(pi * x[:, 0:1]) * torch.sin(pi * x[:, 1:2])

    def pde(x, u):
        return -u.laplacian() - 2 * pi**2 * exact(x)

    return pl.Problem(pl.geometry.Rectangle([0, 0], [1, 1]), pde, [pl.Dirichlet(0.0)], exact=exact)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
