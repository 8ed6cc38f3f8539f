"""Collocation-point strategies. Each is an :class:`pdeml.sampling.AbstractSampler`."""

from pdeml._roots import check as _check

_check(__name__, "samplers")

from pdeml import settings
from pdeml._validate import fail
from pdeml.options import Option

from .aas import AAS
from .quasirandom import QuasiRandom
from .r3 import R3
from .rad import RAD, RARD
from .uniform import Uniform


def _named(value, method):
    """``--sampler NAME``: a sampler made from the method's current one (keeping its point counts);
    a sampler object is taken as it is."""
    if not isinstance(value, str):
        return value
    if value not in REGISTRY:
        fail("--sampler", value, "is not a sampler", f"use one of {sorted(REGISTRY)}")
    return REGISTRY[value](method.sampler or Uniform())


def _apply(case, value):
    if "sampler" not in settings.fields(case.method):
        fail(
            "--sampler",
            value,
            f"does not apply to the {type(case.method).__name__} method (it has no sampler)",
            "drop the option, or use a method that has it",
        )
    return case.replace(method=settings.replace(case.method, sampler=_named(value, case.method)))


def _keep(current, redraw: bool = True) -> dict:
    """The point counts and drawing method of the sampler a name replaces (and its condition-point
    redraw period, where both samplers have that meaning)."""
    if not all(hasattr(current, f) for f in ("n_domain", "n_boundary", "n_initial")):
        fail(
            "--sampler",
            type(current).__name__,
            "is the case's own sampler, with no point counts for a named sampler to keep",
            "set the sampler in the case file (PINN(sampler=...))",
        )
    c = current.counts
    out = {"n_domain": c["domain"], "n_boundary": c["boundary"], "n_initial": c["initial"]}
    if redraw and isinstance(current, (Uniform, R3)):
        out["every"] = current.every
    return out


def _method(current):
    return current.method if current.method in Uniform.methods else "random"


#: CLI names -> samplers made from the one they replace (``--sampler NAME`` keeps the case's
#: point counts; RAD, RAR-D and AAS keep their own period, which means something else)
REGISTRY = {
    "uniform": lambda cur: Uniform(**_keep(cur), method=_method(cur)),
    "sobol": lambda cur: QuasiRandom(**_keep(cur), method="sobol"),
    "halton": lambda cur: QuasiRandom(**_keep(cur), method="halton"),
    "r3": lambda cur: R3(**_keep(cur), method=_method(cur)),
    "r3-causal": lambda cur: R3(**_keep(cur), causal=True, method=_method(cur)),
    "rad": lambda cur: RAD(**_keep(cur, False), method=_method(cur)),
    "rar-d": lambda cur: RARD(**_keep(cur, False), method=_method(cur)),
    "aas": lambda cur: AAS(**_keep(cur, False), method=_method(cur)),
}

#: ``--sampler NAME``: the collocation sampler of a method that has one (PINN, hard constraint)
OPTION = Option(
    "sampler", f"collocation sampler: {' | '.join(REGISTRY)} (default: the case's)", _apply
)

__all__ = ["OPTION", "Uniform", "QuasiRandom", "R3", "RAD", "RARD", "AAS", "REGISTRY"]
