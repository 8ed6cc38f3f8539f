r"""Boundary, initial and data conditions.

Each condition draws its own points (``sample``) and turns the network's field at those points
into a residual column (``residual``); the backend squares and averages it into one named loss
term. Values are numbers or callables of a torch tensor of points (N, n_inputs) returning
(N,) or (N, 1); ``on=`` predicates take the same tensor and return an (N,) bool mask.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np
import torch

from ._validate import column, fail, finite_array, finite_scalar

_PROBE = 4096  # boundary points drawn per round when filtering with ``on=``
_ROUNDS = 64


def _check_value(name, value):
    if callable(value):
        return value
    return finite_scalar(name, value, "pass a finite number or a callable of the points")


def _eval(value, x: torch.Tensor, what: str) -> torch.Tensor:
    if callable(value):
        return column(what, value(x), x.shape[0]).to(x.dtype)
    return torch.full((x.shape[0], 1), value, dtype=x.dtype, device=x.device)


class AbstractCondition(abc.ABC):
    """A condition that contributes one loss term ``mean(residual**2)``."""

    kind: str = "condition"
    count: str = "boundary"  # which of the sampler's point counts it gets ("initial" or "boundary")
    needs_grad: bool = False  # residual uses input derivatives
    fixed: bool = False  # points never change (data)
    component = 0
    on: Callable | None = None
    name: str | None = None

    @abc.abstractmethod
    def sample(self, problem, n: int, rng: np.random.Generator, method: str) -> dict:
        """Points (and per-point data such as normals) as float64 numpy arrays; key ``x``."""

    @abc.abstractmethod
    def residual(self, u, batch: dict) -> torch.Tensor:
        """(N, k) residual (k = 1 except for Periodic with derivatives) from the field ``u`` at
        ``batch['x']``."""

    def _value(self, value, x):
        return _eval(value, x, f"{type(self).__name__}(value=...)")

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, component={self.component!r})"


def _selected(cond, x: np.ndarray) -> np.ndarray:
    if cond.on is None:
        return x
    mask = cond.on(torch.as_tensor(x))
    if not isinstance(mask, torch.Tensor) or mask.shape != (len(x),) or mask.dtype != torch.bool:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        fail(
            f"{type(cond).__name__}(on=...)",
            cond.on,
            f"returned {got}",
            f"return an ({len(x)},) bool tensor, e.g. lambda x: x[:, 0] < 1e-6",
        )
    return x[mask.cpu().numpy()]


def boundary_points(cond, problem, n, rng, method):
    """``n`` boundary points of ``problem``'s domain (x time) that satisfy ``cond.on``: a fair
    sample of *everything* the predicate selects.

    Geometries may return their boundary samples in order (deepxde sorts a polygon's points
    along the perimeter), so the first ``n`` selected points would be one unbroken stretch. We
    draw a pool of at least ``max(n, 4096)`` points, keep those the predicate selects, and take
    a random subset of ``n`` of them (:func:`spread_subset`), whatever the sampling method.
    """
    if cond.on is None:
        return problem.domain.sample_boundary(n, rng, method)
    got, drawn = [], 0
    for _ in range(_ROUNDS):
        x = _selected(cond, problem.domain.sample_boundary(max(n, _PROBE), rng, method))
        drawn += max(n, _PROBE)
        got.append(x)
        total = sum(len(g) for g in got)
        if total == 0 and drawn >= _PROBE:
            fail(
                f"{type(cond).__name__}(on=...)",
                cond.on,
                f"selects no points out of {drawn} sampled on the boundary",
                "check the predicate against the boundary (points lie exactly on it only up to "
                "float rounding, so compare with a tolerance such as x[:, 0] < 1e-6)",
            )
        if total >= n:
            return spread_subset(np.concatenate(got), n, rng)
        method = "random"  # later rounds: a deterministic sequence would repeat itself
    fail(
        f"{type(cond).__name__}(on=...)",
        cond.on,
        f"selects too few points ({total} of {drawn})",
        "widen the predicate or lower the point count",
    )


def spread_subset(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of ``x`` drawn without replacement from all of it (kept in pool order); never
    the first ``n``. Random for every method: a pool may be sorted along the boundary (so a
    prefix is one stretch), and a strided subset of a Sobol/Halton sequence is not uniform (every
    other van der Corput point lies in [0, 1/2))."""
    if len(x) <= n:
        return x
    return x[np.sort(rng.choice(len(x), size=n, replace=False))]


class Dirichlet(AbstractCondition):
    r"""u = g on the boundary (or the part chosen by ``on``). Residual :math:`u - g`."""

    kind = "dirichlet"

    def __init__(self, value=0.0, *, on: Callable | None = None, component=0, name=None):
        self.value = _check_value("Dirichlet(value)", value)
        self.on, self.component, self.name = on, component, name

    def sample(self, problem, n, rng, method):
        return {"x": boundary_points(self, problem, n, rng, method)}

    def residual(self, u, batch):
        x = batch["x"]
        return u[self.component].value - self._value(self.value, x)


def _with_normals(cond, problem, n, rng, method) -> dict:
    """Boundary points of ``cond`` with their outward unit normals (Neumann, Robin)."""
    x = boundary_points(cond, problem, n, rng, method)
    return {"x": x, "normal": problem.domain.boundary_normal(x)}


def _normal_derivative(f, batch):
    r""":math:`\nabla u \cdot n` at the batch's points, (N, 1)."""
    return (f.grad() * batch["normal"]).sum(dim=1, keepdim=True)


class Neumann(AbstractCondition):
    r"""Outward normal derivative :math:`\partial u/\partial n = g`. Residual :math:`\nabla
    u\cdot n - g`."""

    kind = "neumann"
    needs_grad = True

    def __init__(self, value=0.0, *, on: Callable | None = None, component=0, name=None):
        self.value = _check_value("Neumann(value)", value)
        self.on, self.component, self.name = on, component, name

    def sample(self, problem, n, rng, method):
        return _with_normals(self, problem, n, rng, method)

    def residual(self, u, batch):
        return _normal_derivative(u[self.component], batch) - self._value(self.value, batch["x"])


class Robin(AbstractCondition):
    r""":math:`\partial u/\partial n + \alpha u = g`. Residual :math:`\nabla u\cdot n + \alpha u
    - g`."""

    kind = "robin"
    needs_grad = True

    def __init__(self, alpha, value=0.0, *, on: Callable | None = None, component=0, name=None):
        self.alpha = _check_value("Robin(alpha)", alpha)
        self.value = _check_value("Robin(value)", value)
        self.on, self.component, self.name = on, component, name

    def sample(self, problem, n, rng, method):
        return _with_normals(self, problem, n, rng, method)

    def residual(self, u, batch):
        f, x = u[self.component], batch["x"]
        return (
            _normal_derivative(f, batch)
            + self._value(self.alpha, x) * f.value
            - self._value(self.value, x)
        )


class Periodic(AbstractCondition):
    r"""Periodicity in input dimension ``dim`` of a box-like domain: values (and derivatives
    :math:`\partial^k u/\partial x_{dim}^k` up to ``derivative_order``) agree on the two faces
    :math:`x_{dim} = lo` and :math:`x_{dim} = hi`. Points come in pairs: first half on the low
    face, second half the same points moved to the high face."""

    kind = "periodic"

    def __init__(self, dim: int, *, derivative_order: int = 0, component=0, name=None):
        if not isinstance(dim, int) or dim < 0:
            fail(
                "Periodic(dim)", dim, "must be a non-negative input index", "pass e.g. Periodic(0)"
            )
        if derivative_order not in (0, 1, 2):
            fail(
                "Periodic(derivative_order)",
                derivative_order,
                "must be 0, 1 or 2",
                "pass 0, 1 or 2",
            )
        self.dim, self.derivative_order, self.component, self.name = (
            dim,
            derivative_order,
            component,
            name,
        )
        self.needs_grad = derivative_order > 0

    def sample(self, problem, n, rng, method):
        space_dim = problem.geometry.dim
        if self.dim >= space_dim:
            fail(
                "Periodic(dim)",
                self.dim,
                f"is not a spatial input (the problem has {space_dim})",
                f"pass an index below {space_dim}",
            )
        lo, hi = problem.geometry.bbox
        x = problem.domain.sample_interior(n, rng, method)
        a, b = x.copy(), x.copy()
        a[:, self.dim], b[:, self.dim] = lo[self.dim], hi[self.dim]
        return {"x": np.concatenate([a, b])}

    def residual(self, u, batch):
        f = u[self.component]
        n = batch["x"].shape[0] // 2
        parts = [f.value]
        if self.derivative_order >= 1:
            parts.append(f.d(self.dim))
        if self.derivative_order >= 2:
            parts.append(f.d2(self.dim, self.dim))
        r = torch.cat(parts, dim=1)
        return r[:n] - r[n:]  # (n, 1 + derivative_order): value and derivative mismatches


class Initial(AbstractCondition):
    r"""An initial condition at :math:`t = t_0`: :math:`\partial_t^k u(x, t_0) = g(x, t_0)` with
    ``order`` k = 0 (the value, default), 1 (the initial velocity of a wave equation) or 2.
    Residual :math:`\partial_t^k u - g`.

    Example:
        >>> pl.Initial(lambda x: torch.sin(torch.pi * x[:, :1]))           # u(x, 0)
        Initial(name=None, component=0)
        >>> pl.Initial(lambda x: 0 * x[:, :1], order=1, name="velocity")   # u_t(x, 0)
        Initial(name='velocity', component=0)
    """

    kind = "initial"
    count = "initial"

    def __init__(self, value, *, order: int = 0, component=0, name=None):
        self.value = _check_value("Initial(value)", value)
        if order not in (0, 1, 2):
            fail(
                "Initial(order)",
                order,
                "must be 0, 1 or 2 (the time derivative that is given)",
                "pass order=1 for an initial velocity",
            )
        self.order, self.component, self.name = order, component, name
        self.needs_grad = order > 0

    def sample(self, problem, n, rng, method):
        return {"x": initial_points(self, problem, n, rng, method)}

    def residual(self, u, batch):
        f = u[self.component]
        t = batch["x"].shape[1] - 1
        lhs = f.value if self.order == 0 else f.d(t) if self.order == 1 else f.d2(t, t)
        return lhs - self._value(self.value, batch["x"])


def initial_points(cond, problem, n, rng, method):
    """``n`` points of the initial slice t = t0 (those ``cond.on`` selects, if it has one)."""
    if problem.time is None:
        fail(
            type(cond).__name__,
            cond,
            "needs a time-dependent problem",
            "pass Problem(..., time=(t0, t1))",
        )
    if getattr(cond, "on", None) is None:
        return problem.domain.sample_initial(n, rng, method)
    pool = _selected(cond, problem.domain.sample_initial(max(n, _PROBE), rng, method))
    if len(pool) == 0:
        fail(
            f"{type(cond).__name__}(on=...)",
            cond.on,
            "selects no points of the initial slice",
            "check the predicate (inputs are (space..., t))",
        )
    if len(pool) < n:
        pool = np.concatenate([pool, initial_points(cond, problem, n - len(pool), rng, "random")])
    return spread_subset(pool, n, rng)


class Operator(AbstractCondition):
    r"""A general condition :math:`r(x, u) = 0` on a part of the domain, as DeepXDE's
    ``OperatorBC``: ``residual(x, u)`` returns an (N,) or (N, 1) tensor from the points and the
    field (derivatives as in a PDE). ``where`` picks the points: ``"boundary"`` (default),
    ``"initial"`` (the slice t = t0) or ``"domain"`` (interior points); ``on`` narrows them.

    Example:
        >>> # u_x(0, t) + u(0, t) = 0 on the left end only
        >>> pl.Operator(lambda x, u: u.d("x") + u.value, on=lambda x: x[:, 0] < 1e-6, name="left")
        Operator(name='left', component=0)
    """

    kind = "operator"
    needs_grad = True

    def __init__(
        self, residual: Callable, *, where: str = "boundary", on: Callable | None = None, name=None
    ):
        if not callable(residual):
            fail(
                "Operator(residual)", residual, "is not callable", "pass a function residual(x, u)"
            )
        if where not in ("boundary", "initial", "domain"):
            fail(
                "Operator(where)", where, "is not a place", 'pass "boundary", "initial" or "domain"'
            )
        self.fn, self.where, self.on, self.name = residual, where, on, name
        self.count = "initial" if where == "initial" else "boundary"

    def sample(self, problem, n, rng, method):
        if self.where == "boundary":
            return {"x": boundary_points(self, problem, n, rng, method)}
        if self.where == "initial":
            return {"x": initial_points(self, problem, n, rng, method)}
        x = problem.domain.sample_interior(
            max(n, _PROBE) if self.on is not None else n, rng, method
        )
        x = _selected(self, x)
        if len(x) < n:
            fail(
                "Operator(on=...)",
                self.on,
                f"selects {len(x)} of the interior points, fewer than {n}",
                "widen the predicate or lower the point count",
            )
        return {"x": spread_subset(x, n, rng)}

    def residual(self, u, batch):
        f = u if len(u.output_names) > 1 else u[0]
        return column(
            f"Operator(residual) {self.name or ''}".strip(),
            self.fn(batch["x"], f),
            batch["x"].shape[0],
            finite=False,
        )


class Data(AbstractCondition):
    r"""Observations ``values`` at fixed ``points`` (inverse problems, hybrid training).

    ``values`` is (N,) or (N, 1) for one ``component``. Residual :math:`u(x_k) - y_k`.
    """

    kind = "data"
    fixed = True

    def __init__(self, points, values, *, component=0, name=None):
        p = finite_array("Data(points)", points)
        v = finite_array("Data(values)", values)
        if p.ndim == 1:
            p = p[:, None]
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if p.ndim != 2 or v.shape != (p.shape[0],):
            fail(
                "Data(values)",
                f"array of shape {np.shape(values)}",
                f"does not match points of shape {np.shape(points)}",
                "pass points (N, n_inputs) and values (N,) or (N, 1)",
            )
        self.points, self.values, self.component, self.name = p, v[:, None], component, name

    def sample(self, problem, n, rng, method):
        if self.points.shape[1] != problem.input_dim:
            fail(
                "Data(points)",
                f"array of shape {self.points.shape}",
                f"has {self.points.shape[1]} columns but the problem has {problem.input_dim} "
                "inputs",
                f"pass points of shape (N, {problem.input_dim}), time last",
            )
        return {"x": self.points, "y": self.values}

    def residual(self, u, batch):
        return u[self.component].value - batch["y"]
