"""``Problem`` (what to solve), ``Parameter`` (unknowns of inverse problems), ``Case`` (how)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import numpy as np
import torch

from ._validate import fail, finite_array, finite_scalar, positive_int
from .conditions import AbstractCondition
from .geometry import AbstractGeometry
from .geometry.spacetime import SpaceTime


class Parameter:
    """An unknown scalar of the PDE, trained with the network (inverse problems).

    Example:
        >>> problem = Problem(..., parameters={"k": Parameter(1.0)})
        >>> def pde(x, u, p): return u.dt() - p["k"] * u.laplacian()
    """

    def __init__(self, initial: float):
        self.initial = finite_scalar("Parameter(initial)", initial)

    def __repr__(self):
        return f"Parameter({self.initial})"


def _n_positional(fn) -> int | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    ps = sig.parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in ps):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in ps)


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

    def __init__(self, geometry, pde, conditions=(), *, time=None, outputs=("u",), inputs=None,
                 parameters=None, exact=None, reference=None):
        if not isinstance(geometry, AbstractGeometry):
            fail("geometry", geometry, "is not a pdeml geometry", "build it from pdeml.geometry")
        if not callable(pde):
            fail("pde", pde, "is not callable", "pass a function pde(x, u) returning the residual")
        self.geometry, self.pde = geometry, pde
        self.time = None if time is None else tuple(time)
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
            fail("inputs", inputs, f"must be {self.domain.dim} distinct names", f"pass e.g. {default}")
        self.parameters = dict(parameters or {})
        for k, v in self.parameters.items():
            if not isinstance(v, Parameter):
                fail(f"parameters[{k!r}]", v, "is not a pdeml.Parameter", "wrap it: Parameter(1.0)")
        n_args = _n_positional(pde)
        want = 3 if self.parameters else 2
        if n_args is not None and n_args != want:
            fail("pde", pde, f"takes {n_args} positional arguments but {want} are passed",
                 "define pde(x, u, p) when the problem has parameters, else pde(x, u)")
        conditions = list(conditions)
        names: dict[str, int] = {}
        for c in conditions:
            if not isinstance(c, AbstractCondition):
                fail("conditions", c, "holds something that is not a condition",
                     "use pl.Dirichlet, pl.Neumann, pl.Robin, pl.Periodic, pl.Initial or pl.Data")
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
            if pts.ndim != 2 or pts.shape[1] != self.input_dim or vals.shape != (len(pts), len(self.outputs)):
                fail("reference", f"(points {pts.shape}, values {vals.shape})", "has the wrong shape",
                     f"pass points (N, {self.input_dim}) and values (N, {len(self.outputs)})")
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
            fail("exact", self.exact, f"returned shape {v.shape} (or non-finite values)",
                 f"return finite values of shape (N, {len(self.outputs)}) or (N,)")
        return v


@dataclass
class Case:
    """A problem plus how to train it. Every field except ``problem`` has a default, and the
    CLI can override ``steps``, ``lr``, ``lbfgs_steps``, ``seed``.

    Attributes:
        problem: the :class:`Problem`.
        model: a module; ``pl.nn.MLP`` takes its input/output sizes from the problem
            (default ``MLP(width=50, depth=4)``).
        sampler: a sampler object or a registry name ("r3", "r3-causal", "sobol"; built from the
            point counts below; default: ``samplers.Uniform``).
        estimator: a derivative estimator object or spec ("taylor", "stde:16"; default: exact Taylor
            mode where every layer has a jet rule, else exact autograd).
        steps: Adam steps. ``lbfgs_steps``: L-BFGS iterations after Adam (0: none).
        lr, lr_decay, lr_decay_every: Adam learning rate and step decay ``lr * decay**(k/every)``.
        n_domain, n_boundary, n_initial: collocation points (``n_boundary`` per boundary condition).
        resample_every: redraw collocation points every N Adam steps (0: never).
        sampling: "random", "uniform", "sobol", "halton", "lhs" or "hammersley".
        hard_dirichlet: enforce a whole-boundary Dirichlet condition exactly by an SDF transform.
        transform: output transform ``(x, y) -> u`` that builds conditions into the ansatz
            (conditions it satisfies exactly may then be dropped from ``problem``).
        weights: ``{term: weight}`` for the loss terms (the ``Sum`` combiner).
        combiner: how per-term losses become one update: an
            :class:`pdeml.combine.AbstractCombiner` or a name ("sum", "config", "mconfig",
            "pcgrad", "gradnorm"; default "sum" with ``weights``). "mconfig" trains with SGD.
        optimizer: the first-order phase: an object (``pl.Adam(...)``, ``pl.ENGD()``) or a name
            ("adam", "sgd", "engd", "engd-cg"; default Adam with ``lr`` and its decay).
        dtype: "float32" or "float64".
        compile: run the PINN's loss through ``torch.compile`` (forward-mode estimators only:
            fuses the Taylor-mode kernels; ``pdeml train --compile``).
        options: free-form values a case file exposes (reported in ``run.json``).
    """

    problem: Problem
    model: Any = None
    sampler: Any = None
    estimator: Any = None
    steps: int = 5000
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_decay_every: int = 1000
    lbfgs_steps: int = 0
    n_domain: int = 2000
    n_boundary: int = 200
    n_initial: int = 200
    resample_every: int = 0
    sampling: str = "random"
    hard_dirichlet: bool = False
    transform: Any = None
    weights: dict = field(default_factory=dict)
    combiner: Any = None
    optimizer: Any = None
    dtype: str = "float32"
    compile: bool = False
    checkpoint_every: int = 1000
    eval_every: int = 100
    export_resolution: int = 128
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.problem, Problem):
            fail("problem", self.problem, "is not a pdeml.Problem", "pass problem=pl.Problem(...)")
        for k in ("steps", "lbfgs_steps", "resample_every"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                fail(k, v, "must be a non-negative integer", f"pass e.g. {k}=1000")
        for k in ("n_domain", "n_boundary", "n_initial", "lr_decay_every", "checkpoint_every",
                  "eval_every", "export_resolution"):
            positive_int(k, getattr(self, k))
        if not finite_scalar("lr", self.lr) > 0:
            fail("lr", self.lr, "must be positive", "pass e.g. lr=1e-3")
        if not isinstance(self.compile, bool):
            fail("compile", self.compile, "must be True or False", "pass compile=True")
        if self.dtype not in ("float32", "float64"):
            fail("dtype", self.dtype, "is not supported", 'pass "float32" or "float64"')
        from .geometry import METHODS
        if self.sampling not in METHODS:
            fail("sampling", self.sampling, "is not a sampling method", f"use one of {sorted(METHODS)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def replace(self, **changes) -> "Case":
        """A new Case with some fields changed (validated again)."""
        known = {f.name for f in fields(self)}
        for k in changes:
            if k not in known:
                fail(k, changes[k], "is not a Case field", f"use one of {sorted(known)}")
        return replace(self, **changes)
