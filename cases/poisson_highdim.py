r"""Poisson Δu = f on the unit ball in D dimensions (--dim, default 100), u = 0 on the sphere.

Exact two-body solution :math:`u = (1-\lVert x\rVert^2)\sum_{i<D} c_i \sin(x_i + \cos x_{i+1} +
x_{i+1}\cos x_i)`,
:math:`c_i \sim N(0,1)` from ``--case_seed``; f = (Δu) of it in closed form (see cases/_highdim.py).
Trained with STDE (16 sampled dimensions) by default: ``pdeml train poisson_highdim --dim 1000``.
"""

from pdeml.families.highdim import make_case


def make(dim: int = 100, case_seed: int = 0):
    return make_case("poisson", dim, case_seed)


case = make()
