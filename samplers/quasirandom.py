"""Quasi-random collocation points (Sobol, Halton, Latin hypercube, Hammersley)."""

from __future__ import annotations

from pdeml._validate import fail

from .uniform import Uniform

QUASI = ("sobol", "halton", "lhs", "hammersley")


def QuasiRandom(
    n_domain=2000, n_boundary=200, n_initial=200, *, method="sobol", every=0
) -> Uniform:
    """Low-discrepancy points from deepxde's sequences (joint in space-time for boxes).

    Sobol/Halton/Hammersley are deterministic, so redrawing (``every`` > 0) only changes the
    points for ``method="lhs"``.

    Example:
        >>> sampler = QuasiRandom(2000, 200, method="sobol")
    """
    if method not in QUASI:
        fail("method", method, "is not a quasi-random method", f"use one of {QUASI}")
    return Uniform(n_domain, n_boundary, n_initial, every=every, method=method)
