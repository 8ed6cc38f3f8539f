"""Collocation-point strategies. Each is an :class:`pdeml.sampling.AbstractSampler`."""
from .quasirandom import QuasiRandom
from .uniform import Uniform

#: CLI names -> factories (the registry kept at the edge; see docs/architecture.md)
REGISTRY = {"uniform": Uniform, "sobol": lambda **kw: QuasiRandom(method="sobol", **kw),
            "halton": lambda **kw: QuasiRandom(method="halton", **kw)}

__all__ = ["Uniform", "QuasiRandom", "REGISTRY"]
