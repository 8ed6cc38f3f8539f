"""Command-line overrides landing on a case: ``--steps``, ``--lr``, ``--optimizer NAME``, ... and
the options a case's method owns (:mod:`pdeml.options`). Names are the CLI's edge: the library
takes objects.

Example:
    >>> import pdeml as pl
    >>> from pdeml.overrides import make_optimizer
    >>> make_optimizer("sgd", pl.Adam(2e-3)).lr
    0.002
"""

from __future__ import annotations

from . import registry, settings
from ._validate import fail
from .combine import MConFIG, make_combiner
from .gauss_newton import ENGD
from .optim import SGD, Adam
from .problem import Case


def _carry(cls):
    """``--optimizer adam|sgd``: the new optimizer keeps the case's learning rate and decay."""

    def make(current):
        keep = {
            k: getattr(current, k)
            for k in ("lr", "decay", "decay_every", "schedule")
            if hasattr(current, k)
        }
        return cls(keep.pop("lr", 1e-3), **keep)

    return make


def _engd(**kw):
    def make(current):
        return ENGD(**kw)

    return make


#: CLI names -> the first phase's optimizer, made from the case's current one
OPTIMIZERS = {
    "adam": _carry(Adam),
    "sgd": _carry(SGD),
    "engd": _engd(),
    "engd-cg": _engd(solver="cg"),
}


def make_optimizer(spec, current=None):
    """An optimizer object from an object, or a name in :data:`OPTIMIZERS` (which keeps the
    learning rate and decay of ``current`` where both have one)."""
    if not isinstance(spec, str):
        return spec
    if spec not in OPTIMIZERS:
        fail("optimizer", spec, "is not an optimizer", f"use one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[spec](current)


#: the overrides of the case's own fields, which every case has; a method adds its own
#: (:meth:`pdeml.backend.AbstractMethod.cli_options`: ``derivatives``, ``sampler``, ``compile``,
#: ``constraint``, ``data``, ...)
CASE_OVERRIDES = (
    "optimizer",
    "lr",
    "combiner",
    "steps",
    "lbfgs_steps",
    "checkpoint_every",
    "checkpoint_minutes",
)


def apply_overrides(case: Case, overrides: dict) -> Case:
    """``case`` with command-line overrides landed on the fields they name: ``steps``,
    ``lbfgs_steps``, ``optimizer`` (a name keeps the case's learning rate), ``lr`` (the
    optimizer's), ``combiner`` ("mconfig" also switches Adam to SGD, which M-ConFIG needs), and
    the options that the case's method owns (:func:`pdeml.registry.apply_option`; one marked
    ``first``, such as ``constraint``, is applied before the others so that they land on the
    method it makes). An override that has no field to land on is an error, never silently
    dropped."""
    owned = registry.method_options()
    unknown = set(overrides) - set(CASE_OVERRIDES) - set(owned)
    if unknown:
        fail(
            "overrides",
            sorted(unknown),
            "are not overrides",
            f"use some of {[*CASE_OVERRIDES, *owned]}",
        )
    o = {k: v for k, v in overrides.items() if v is not None}
    first = [k for k in o if k in owned and any(opt.first for _, opt in owned[k])]
    for k in first:
        case = registry.apply_option(case, k, o[k])
    if "optimizer" in o:
        case = case.replace(optimizer=make_optimizer(o["optimizer"], case.optimizer))
    if "lr" in o:
        if "lr" not in settings.fields(case.optimizer):
            fail(
                "--lr",
                o["lr"],
                f"does not apply to {case.optimizer!r}, which has no learning rate",
                "drop --lr (ENGD's line search picks its step), or pass --optimizer adam",
            )
        case = case.replace(optimizer=settings.replace(case.optimizer, lr=o["lr"]))
    if "combiner" in o:
        combiner = make_combiner(o["combiner"])
        changes = {"combiner": combiner}
        if (
            isinstance(combiner, MConFIG)
            and "optimizer" not in o
            and isinstance(case.optimizer, Adam)
        ):
            changes["optimizer"] = make_optimizer("sgd", case.optimizer)
        case = case.replace(**changes)
    plain = {
        k: o[k]
        for k in ("steps", "lbfgs_steps", "checkpoint_every", "checkpoint_minutes")
        if k in o
    }
    if plain:
        case = case.replace(**plain)
    for k in o:
        if k in owned and k not in first:
            case = registry.apply_option(case, k, o[k])
    return case
