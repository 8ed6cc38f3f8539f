"""Collocation-point strategies. Each is an :class:`pdeml.sampling.AbstractSampler`."""
from .aas import AAS
from .quasirandom import QuasiRandom
from .r3 import R3
from .rad import RAD, RARD
from .uniform import Uniform

#: CLI names -> factories taking the case's point counts (the registry kept at the edge)
REGISTRY = {
    "uniform": Uniform,
    "sobol": lambda **kw: QuasiRandom(method="sobol", **kw),
    "halton": lambda **kw: QuasiRandom(method="halton", **kw),
    "r3": R3,
    "r3-causal": lambda **kw: R3(causal=True, **kw),
    "rad": lambda every=0, **kw: RAD(**kw),          # its own period (every=1000 steps), not the
    "rar-d": lambda every=0, **kw: RARD(**kw),       # case's condition-point redraw period
    "aas": lambda every=0, **kw: AAS(**kw),
}

__all__ = ["Uniform", "QuasiRandom", "R3", "RAD", "RARD", "AAS", "REGISTRY"]
