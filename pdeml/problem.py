"""``Problem`` (what to solve), ``Parameter`` (unknowns of inverse problems), ``Case`` (how)."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch

from ._validate import fail, finite_array, finite_scalar, positive_int
from .combine import AbstractCombiner, MConFIG, Sum
from .conditions import AbstractCondition
from .geometry import AbstractGeometry
from .geometry.spacetime import SpaceTime
from .optim import SGD, Adam
from .steppers import LBFGS, AbstractStepper, FirstOrder, Phase


class Parameter:
    """An unknown scalar of the PDE, trained with the network (inverse problems).

    Args:
        initial: its value at the start.
        lr_scale: its learning rate in first-order phases, as a multiple of the optimizer's.
            Adam moves every weight by about the learning rate per step, whatever its
            gradient's size: at 1x a coefficient of order one crawls (2000 steps at 1e-3 move it
            by at most 2). The default, 10, lets it cross its range within the first thousand
            steps while the network's weights keep the optimizer's rate. ``fit`` warns when a
            parameter is still drifting at the end, and ``loss.png`` plots its path.

    Example:
        >>> def pde(x, u, p):                     # a third argument: the parameters
        ...     return u.dt() - p["k"] * u.laplacian()
        >>> problem = pl.Problem(pl.geometry.Interval(0, 1), pde, [pl.Dirichlet(0.0)], time=(0, 1),
        ...                      parameters={"k": pl.Parameter(1.0)})
        >>> problem.parameters
        {'k': Parameter(1.0)}
    """

    def __init__(self, initial: float, lr_scale: float = 10.0):
        self.initial = finite_scalar("Parameter(initial)", initial)
        self.lr_scale = finite_scalar("Parameter(lr_scale)", lr_scale)
        if not self.lr_scale > 0:
            fail(
                "Parameter(lr_scale)",
                lr_scale,
                "must be positive",
                "pass a factor of the optimizer's learning rate, e.g. 10",
            )

    def __repr__(self):
        scale = "" if self.lr_scale == 10.0 else f", lr_scale={self.lr_scale}"
        return f"Parameter({self.initial}{scale})"


def _n_positional(fn) -> int | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    ps = sig.parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in ps):
        return None
    return sum(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in ps
    )


class Problem:
    """A PDE on a domain: geometry, residual function, conditions, and optionally the truth.

    Args:
        geometry: a :mod:`pdeml.geometry` domain.
        pde: ``pde(x, u)`` (or ``pde(x, u, p)`` with ``parameters``) returning one residual
            tensor (N,) / (N, 1) or a tuple of them; ``u`` is a :class:`~pdeml.Field`.
        conditions: boundary / initial / data conditions (:mod:`pdeml.conditions`).
        time: ``(t0, t1)`` for time-dependent problems; inputs are then (space..., t).
        outputs: names of the network outputs, e.g. ``("u", "v", "p")``.
        inputs: names of the inputs (default x, y, z [, t]).
        parameters: ``{name: Parameter(initial)}`` for inverse problems.
        exact: callable of points (N, n_inputs) -> (N, n_outputs) or (N,): the exact solution.
        reference: ``(points, values)`` of an independently computed solution.
    """

    def __init__(
        self,
        geometry,
        pde,
        conditions=(),
        *,
        time=None,
        outputs=("u",),
        inputs=None,
        parameters=None,
        exact=None,
        reference=None,
    ):
        if not isinstance(geometry, AbstractGeometry):
            fail("geometry", geometry, "is not a pdeml geometry", "build it from pdeml.geometry")
        if not callable(pde):
            fail("pde", pde, "is not callable", "pass a function pde(x, u) returning the residual")
        self.geometry, self.pde = geometry, pde
        if time is not None:
            if isinstance(time, (str, bytes)) or not hasattr(time, "__len__") or len(time) != 2:
                fail("time", time, "is not a (t0, t1) pair", "pass time=(0.0, 1.0)")
            time = tuple(finite_scalar(f"time[{i}]", t) for i, t in enumerate(time))
        self.time = time
        self.domain = geometry if time is None else SpaceTime(geometry, *self.time)
        if isinstance(outputs, str):
            outputs = (outputs,)
        self.outputs = tuple(outputs)
        if not self.outputs or len(set(self.outputs)) != len(self.outputs):
            fail("outputs", outputs, "must be distinct names", 'pass e.g. ("u", "v", "p")')
        d = geometry.dim
        default = ("x", "y", "z")[:d] if d <= 3 else tuple(f"x{i}" for i in range(d))
        default += ("t",) if time is not None else ()
        self.inputs = tuple(inputs) if inputs is not None else default
        if len(self.inputs) != self.domain.dim or len(set(self.inputs)) != len(self.inputs):
            fail(
                "inputs",
                inputs,
                f"must be {self.domain.dim} distinct names",
                f"pass e.g. {default}",
            )
        self.parameters = dict(parameters or {})
        for k, v in self.parameters.items():
            if not isinstance(v, Parameter):
                fail(f"parameters[{k!r}]", v, "is not a pdeml.Parameter", "wrap it: Parameter(1.0)")
        n_args = _n_positional(pde)
        want = 3 if self.parameters else 2
        if n_args is not None and n_args != want:
            fail(
                "pde",
                pde,
                f"takes {n_args} positional arguments but {want} are passed",
                "define pde(x, u, p) when the problem has parameters, else pde(x, u)",
            )
        conditions = list(conditions)
        names: dict[str, int] = {}
        for c in conditions:
            if not isinstance(c, AbstractCondition):
                fail(
                    "conditions",
                    c,
                    "holds something that is not a condition",
                    "use pl.Dirichlet, pl.Neumann, pl.Robin, pl.Periodic, pl.Initial or pl.Data",
                )
            base = c.name or c.kind
            names[base] = names.get(base, 0) + 1
        seen: dict[str, int] = {}
        self.condition_names = []
        for c in conditions:
            base = c.name or c.kind
            seen[base] = seen.get(base, 0) + 1
            self.condition_names.append(base if names[base] == 1 else f"{base}{seen[base]}")
        self.conditions = conditions
        if exact is not None and not callable(exact):
            fail("exact", exact, "is not callable", "pass a function of the points (N, n_inputs)")
        self.exact = exact
        self.reference = None
        if reference is not None:
            pts, vals = reference
            pts = finite_array("reference[0] (points)", pts)
            vals = finite_array("reference[1] (values)", vals)
            if vals.ndim == 1:
                vals = vals[:, None]
            if (
                pts.ndim != 2
                or pts.shape[1] != self.input_dim
                or vals.shape != (len(pts), len(self.outputs))
            ):
                fail(
                    "reference",
                    f"(points {pts.shape}, values {vals.shape})",
                    "has the wrong shape",
                    f"pass points (N, {self.input_dim}) and values (N, {len(self.outputs)})",
                )
            self.reference = (pts, vals)

    @property
    def input_dim(self) -> int:
        return self.domain.dim

    @property
    def spatial_dims(self) -> tuple[int, ...]:
        return tuple(range(self.geometry.dim))

    @property
    def has_truth(self) -> bool:
        return self.exact is not None or self.reference is not None

    def truth(self, n: int, rng: np.random.Generator):
        """``(points, values)`` to measure errors on, or None: the reference, or ``n``
        interior points with exact values."""
        if self.reference is not None:
            return self.reference
        if self.exact is None:
            return None
        x = self.domain.sample_interior(n, rng, "random")
        return x, self.exact_values(x)

    def exact_values(self, x: np.ndarray) -> np.ndarray:
        """Exact solution at ``x`` as float64 (N, n_outputs)."""
        with torch.no_grad():
            v = self.exact(torch.as_tensor(x, dtype=torch.float64))
        v = v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=float)
        v = v.reshape(len(x), -1)
        if v.shape[1] != len(self.outputs) or not np.all(np.isfinite(v)):
            fail(
                "exact",
                self.exact,
                f"returned shape {v.shape} (or non-finite values)",
                f"return finite values of shape (N, {len(self.outputs)}) or (N,)",
            )
        return v


_MISSING = object()

#: settings that were Case fields before the method/backend contract, and where they live now
_MOVED = {
    **{
        k: f"method=PINN({k}=...)"
        for k in ("model", "estimator", "hard_dirichlet", "transform", "compile")
    },
    **{
        k: "method=PINN(sampler=Uniform(n_domain, n_boundary, n_initial, every=resample_every, "
        "method=sampling))"
        for k in ("sampler", "n_domain", "n_boundary", "n_initial", "resample_every", "sampling")
    },
    **{
        k: "optimizer=pl.Adam(lr, decay=lr_decay, decay_every=lr_decay_every)"
        for k in ("lr", "lr_decay", "lr_decay_every")
    },
}


#: the shortcut keywords of :class:`Case`: they build (and, in ``replace``, change) its phases
SHORTCUT = ("steps", "optimizer", "combiner", "lbfgs_steps", "lbfgs")


def _shortcut_phases(steps=5000, optimizer=None, combiner=None, lbfgs_steps=0, lbfgs=None) -> tuple:
    """``steps`` of ``optimizer`` (with ``combiner``), then ``lbfgs_steps`` of ``lbfgs``."""
    optimizer = optimizer if optimizer is not None else Adam()
    combiner = combiner if combiner is not None else Sum()
    lbfgs = lbfgs if lbfgs is not None else LBFGS()
    for k, v in (("steps", steps), ("lbfgs_steps", lbfgs_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            fail(k, v, "must be a non-negative integer", f"pass e.g. {k}=1000")
    if not isinstance(combiner, AbstractCombiner):
        fail(
            "combiner",
            combiner,
            "is not a combiner object",
            "pass e.g. pl.ConFIG() (the names are for --combiner)",
        )
    if not isinstance(lbfgs, LBFGS):
        fail("lbfgs", lbfgs, "is not an L-BFGS stepper", "pass pl.LBFGS(...)")
    if isinstance(optimizer, AbstractStepper):
        if not isinstance(combiner, Sum):
            fail(
                "combiner",
                combiner,
                f"does not apply to {optimizer!r}, which takes whole "
                "Gauss-Newton steps on the weighted residuals",
                "use the default pl.Sum() (loss weights still apply), or a first-order optimizer",
            )
        first = optimizer
    else:
        first = FirstOrder(optimizer, combiner)  # validates the optimizer
        if isinstance(combiner, MConFIG) and not isinstance(optimizer, SGD):
            fail(
                "optimizer",
                optimizer,
                "would add a second set of moments to M-ConFIG's own",
                "pass optimizer=pl.SGD(lr) with combiner=pl.MConFIG() (--optimizer sgd)",
            )
    return (Phase(steps, first), Phase(lbfgs_steps, lbfgs))


@dataclass(init=False, eq=False)
class Case:
    """A problem, the method that solves it, and how to train it. Each setting has exactly one
    place: the method's (model, estimator, sampler, ...) live in ``method``; training is a list
    of ``phases`` (:class:`Phase`: steps of a stepper), in order. The shortcut keywords
    ``steps`` of ``optimizer`` (with ``combiner``), then ``lbfgs_steps`` of ``lbfgs``, build the
    usual two phases, and read back from them (``case.steps``, ``case.optimizer``, ...). The
    CLI's overrides land on one of these each (:mod:`pdeml.overrides`).

    Attributes:
        problem: the :class:`Problem`.
        method: how to solve it, e.g. ``pl.PINN(pl.nn.MLP(50, 4),
            sampler=pl.samplers.Uniform(2000))``.
        phases: ``[Phase(steps, stepper), ...]`` (:mod:`pdeml.steppers`, :class:`pdeml.ENGD`);
            or the shortcut: ``steps`` of ``optimizer`` (``pl.Adam(1e-3)`` by default,
            ``pl.SGD``, or a stepper of its own, ``pl.ENGD()``) with ``combiner`` (``pl.Sum()``
            by default, ``pl.ConFIG()``, ``pl.MConFIG()`` with ``pl.SGD``, ``pl.PCGrad()``,
            ``pl.GradNorm()``), then ``lbfgs_steps`` of ``lbfgs`` (0: none).
        weights: ``{term: weight}`` for the loss terms, in every phase (default 1 each).
        dtype: "float32" or "float64".
        checkpoint_every, checkpoint_minutes: checkpoint every that many steps, and at least
            every that many minutes of training.
        eval_every: steps between history rows (with the error against the truth).
        export_resolution: mesh resolution of the VTK export (a 3-D volume: at most 45 voxels a
            side, :data:`pdeml.export.vtk.VOLUME_POINTS`; its picture is the mid-plane slice).
        options: the values a case file's ``make()`` was called with (reported in ``run.json``).

    Example:
        >>> problem = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 2.0,
        ...                      [pl.Dirichlet(0.0)])
        >>> case = pl.Case(problem, pl.PINN(pl.nn.MLP(50, 4)), steps=3000, optimizer=pl.Adam(2e-3),
        ...                lbfgs_steps=2500, weights={"dirichlet": 10.0})
        >>> [(steps, type(stepper).__name__) for steps, stepper in case.phases]
        [(3000, 'FirstOrder'), (2500, 'LBFGS')]
        >>> adam_engd = pl.Case(problem, pl.PINN(), phases=[pl.Phase(1000, pl.FirstOrder()),
        ...                                                  pl.Phase(200, pl.ENGD())])
        >>> adam_engd.replace(steps=500).phases[0].steps      # --steps: the first phase's
        500
    """

    problem: Problem
    method: Any
    phases: tuple
    weights: dict = field(default_factory=dict)
    dtype: str = "float32"
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 10.0
    eval_every: int = 100
    export_resolution: int = 128
    options: dict = field(default_factory=dict)

    def __init__(self, problem=_MISSING, method=_MISSING, **settings):
        known = [f.name for f in fields(Case)] + list(SHORTCUT)
        for k, v in settings.items():
            if k in _MOVED:
                fail(
                    k,
                    v,
                    "is no longer a Case field (settings of the method and the optimizer live "
                    "in those objects)",
                    f"pass {_MOVED[k]} (pl.PINN(...), pl.samplers.Uniform(...))",
                    TypeError,
                )
            if k not in known:
                close = difflib.get_close_matches(k, known, n=1)
                fail(
                    k,
                    v,
                    "is not a Case field",
                    (f"did you mean {close[0]}=? " if close else "") + f"The fields are {known}",
                )
        for name, value in (("problem", problem), ("method", method)):
            if value is _MISSING:
                fail(
                    name,
                    None,
                    "is missing",
                    "pass pl.Case(problem=pl.Problem(...), method=pl.PINN(...), ...)",
                    TypeError,
                )
        shortcut = {k: settings.pop(k) for k in SHORTCUT if k in settings}
        if "phases" in settings and shortcut:
            first = sorted(shortcut)[0]
            fail(
                first,
                shortcut[first],
                "and phases= both say how to train",
                "give phases=[pl.Phase(steps, stepper), ...], or the shortcut, not both",
            )
        if "phases" not in settings:
            settings["phases"] = _shortcut_phases(**shortcut)
        for f in fields(Case):
            if f.name in ("problem", "method"):
                value = problem if f.name == "problem" else method
            elif f.name in settings:
                value = settings[f.name]
            else:
                value = f.default_factory() if f.default_factory is not MISSING else f.default
            setattr(self, f.name, value)
        self._validate()

    def _validate(self):
        from .backend import AbstractMethod
        from .family import AbstractFamily

        if not isinstance(self.problem, (Problem, AbstractFamily)):
            fail(
                "problem",
                self.problem,
                "is neither a pdeml.Problem nor a family",
                "pass problem=pl.Problem(...) (or a family of problems for operator methods)",
            )
        if not isinstance(self.method, AbstractMethod):
            fail(
                "method",
                self.method,
                "is not a method",
                "pass e.g. method=pl.PINN(pl.nn.MLP(50, 4))",
            )
        self.phases = _checked_phases(self.phases)
        for k in ("checkpoint_every", "eval_every", "export_resolution"):
            positive_int(k, getattr(self, k))
        if not finite_scalar("checkpoint_minutes", self.checkpoint_minutes) > 0:
            fail("checkpoint_minutes", self.checkpoint_minutes, "must be positive", "pass e.g. 10")
        if self.dtype not in ("float32", "float64"):
            fail("dtype", self.dtype, "is not supported", 'pass "float32" or "float64"')
        from .fit import check_weights

        check_weights(self.weights)  # the term names are checked when a backend exists

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    # ------------------------------------------------ the shortcut, read from the phases
    @property
    def steps(self) -> int:
        """The first phase's steps."""
        return self.phases[0].steps

    @property
    def optimizer(self):
        """The first phase's optimizer (its stepper itself when that is not first-order: ENGD)."""
        first = self.phases[0].stepper
        return first.optimizer if isinstance(first, FirstOrder) else first

    @property
    def combiner(self):
        """The first phase's combiner (``Sum()`` for a stepper of its own)."""
        first = self.phases[0].stepper
        return first.combiner if isinstance(first, FirstOrder) else Sum()

    def _lbfgs_index(self, key: str, value) -> int | None:
        found = [i for i, p in enumerate(self.phases) if isinstance(p.stepper, LBFGS)]
        if len(found) > 1:
            fail(
                key,
                value,
                f"is ambiguous: the case has {len(found)} L-BFGS phases",
                "set the phases in the case file",
            )
        return found[0] if found else None

    @property
    def lbfgs_steps(self) -> int:
        """The L-BFGS phase's steps (0 without one)."""
        i = self._lbfgs_index("lbfgs_steps", None)
        return 0 if i is None else self.phases[i].steps

    @property
    def lbfgs(self) -> LBFGS:
        """The L-BFGS phase's stepper (the default one without such a phase)."""
        i = self._lbfgs_index("lbfgs", None)
        return LBFGS() if i is None else self.phases[i].stepper

    def replace(self, **changes) -> Case:
        """A new Case with some fields changed (validated again). The shortcut keywords change
        the phases they name: ``steps`` the first phase's steps, ``optimizer`` / ``combiner``
        its first-order settings (an ``optimizer`` that is a stepper, ENGD, replaces it),
        ``lbfgs_steps`` / ``lbfgs`` the L-BFGS phase (appended if there is none)."""
        known = {f.name for f in fields(self)} | set(SHORTCUT)
        for k in changes:
            if k not in known:
                fail(k, changes[k], "is not a Case field", f"use one of {sorted(known)}")
        shortcut = {k: changes.pop(k) for k in SHORTCUT if k in changes}
        if shortcut and "phases" in changes:
            fail(
                "phases",
                changes["phases"],
                "and the shortcut keywords both change the phases",
                "pass one of them",
            )
        if shortcut:
            phases = list(self.phases)
            if {"optimizer", "combiner"} & set(shortcut):
                optimizer = shortcut.get("optimizer", self.optimizer)
                combiner = shortcut.get("combiner", self.combiner)
                phases[0] = _shortcut_phases(phases[0].steps, optimizer, combiner)[0]
            if "steps" in shortcut:
                phases[0] = Phase(shortcut["steps"], phases[0].stepper)
            if {"lbfgs_steps", "lbfgs"} & set(shortcut):
                key = "lbfgs_steps" if "lbfgs_steps" in shortcut else "lbfgs"
                i = self._lbfgs_index(key, shortcut[key])
                steps = shortcut.get("lbfgs_steps", 0 if i is None else phases[i].steps)
                stepper = shortcut.get("lbfgs", LBFGS() if i is None else phases[i].stepper)
                last = _shortcut_phases(0, None, None, steps, stepper)[1]
                if i is None:
                    phases.append(last)
                else:
                    phases[i] = last
            changes["phases"] = tuple(phases)
        return replace(self, **changes)


def _checked_phases(phases) -> tuple:
    """``phases`` as a tuple of :class:`Phase` (0-step ones kept: the shortcut's L-BFGS phase
    may be empty), or an error naming the bad one."""
    from .fit import check_phases

    if isinstance(phases, (str, bytes)) or not hasattr(phases, "__iter__"):
        fail("phases", phases, "is not a list of phases", "pass [pl.Phase(steps, stepper), ...]")
    out = tuple(check_phases(phases, keep_empty=True))
    if not out:
        fail("phases", phases, "is empty", "pass at least one pl.Phase(steps, stepper)")
    return out
