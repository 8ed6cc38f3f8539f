"""The text of a tiny case file, for tests that need a case *file* (run directories record its
path and hash; subprocesses import it): -u'' = pi^2 sin(pi x) on [0, 1], u = 0 at both ends."""


def tiny_case(steps: int = 3, every: int = 0) -> str:
    """A case file's text: an 8 x 2 MLP on 32 points (redrawn every ``every`` steps), ``steps``
    Adam steps."""
    return f'''"""-u'' = pi^2 sin(pi x) on [0, 1], u = 0 at both ends."""
import math

import torch

import pdeml as pl

problem = pl.Problem(
    pl.geometry.Interval(0, 1),
    lambda x, u: -u.d2("x") - math.pi**2 * torch.sin(math.pi * x),
    [pl.Dirichlet(0.0)],
    exact=lambda x: torch.sin(math.pi * x),
)
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(8, 2), sampler=pl.samplers.Uniform(32, 2, every={every})),
    steps={steps},
    export_resolution=8,
)
'''
