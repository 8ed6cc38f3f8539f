r"""PI-HC-MoE in the operator setting: one network for a family of initial conditions, its output
constrained per input (Chalapathi, Du, Krishnapriyan, ICLR 2024, the family setting; the single
problem is :mod:`pdeml.solvers.hard`).

An FNO (:mod:`pdeml.operators.fno`) maps the initial condition :math:`u_0(x)`, broadcast over an
``nx`` x ``nt`` node grid of (x, t), to N basis functions on that grid. For each input and each
expert k (a box of a fixed partition of the grid),
:math:`u = b^\top\omega_k` with :math:`\omega_k` minimizing

.. math:: \sum_{j \in X_k} r_j(b^\top\omega)^2 + \sum_{i} (b_i^\top\omega - u_0(x_i))^2
          + \sum_c \sum_{j \in X_c} c_j(b^\top\omega)^2 + \lambda^2\|\omega\|^2,

the case's own PDE residual r (its ``pde(x, u)``, through :class:`~pdeml.field.Field`) at m
random interior nodes :math:`X_k` of the expert's box, the initial rows at the t = 0 nodes, and
every boundary condition's rows at its boundary nodes (all experts get every initial and
boundary row). Derivatives of the bases are finite differences on the grid (second order:
central inside, one-sided at the edges), as in the paper's reference code, computed once per
step; the solver only recombines them. The solve and its implicit-function gradient are
:func:`pdeml.solvers.hard.constrained_weights`, batched over inputs x experts.

``constraint="soft"`` is the physics-informed baseline (PI-SC): the same FNO with one output,
trained on the same residual and condition terms. Training uses no solution data; the error is
measured against the family's truth on ``test_draws`` fixed inputs (the constraint is solved
for each, as at any new input).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.backend import AbstractMethod, AbstractTrainable
from pdeml.family import AbstractFamily
from pdeml.field import Field
from pdeml.sampling import EpochSampler
from pdeml.settings import frozen_set
from pdeml.solvers.hard import (
    Basis,
    CombinedEstimator,
    constrained_weights,
    expert_index,
    parse_constraint,
    parse_experts,
)
from pdeml.solvers.pinn import CONSTRAINT

from .backend import FixedTestSet, _cast, parameter_count
from .fno import FNO

MISSING = "the grid operator gives values, first and second derivatives only"


def grid_derivatives(b: torch.Tensor, spacing: tuple[float, ...]) -> dict:
    """Finite-difference derivatives of grid functions ``b`` (..., n_1, ..., n_d) over the last d
    axes: ``{("d", i): first, ("d2", i, j): second}``, second order everywhere (central inside;
    at the edges one-sided three- and four-point formulas; mixed ones as first of first)."""
    d = len(spacing)
    out = {}
    for i, h in enumerate(spacing):
        ax = b.ndim - d + i
        out[("d", i)] = torch.gradient(b, spacing=h, dim=ax, edge_order=2)[0]
        u = b.movedim(ax, -1)
        inner = (u[..., 2:] - 2 * u[..., 1:-1] + u[..., :-2]) / h**2
        lo = (2 * u[..., :1] - 5 * u[..., 1:2] + 4 * u[..., 2:3] - u[..., 3:4]) / h**2
        hi = (2 * u[..., -1:] - 5 * u[..., -2:-1] + 4 * u[..., -3:-2] - u[..., -4:-3]) / h**2
        out[("d2", i, i)] = torch.cat([lo, inner, hi], -1).movedim(-1, ax)
    for i in range(d):
        for j in range(i + 1, d):
            out[("d2", i, j)] = out[("d2", j, i)] = torch.gradient(
                out[("d", i)], spacing=spacing[j], dim=b.ndim - d + j, edge_order=2
            )[0]
    return out


@dataclasses.dataclass(frozen=True)
class InitialDraws(EpochSampler):
    """Training inputs of a family, ``batch_size`` per step in a fresh order every epoch, and each
    step's constraint nodes: ``points`` random interior nodes of every expert's box per input
    (drawn from the step's position, so a resumed run re-reads the same ones).

    A batch is ``{"data": {"u0", "params"}, "constraint": {"nodes"}}`` (nodes: (B, K, m) flat
    grid indices, stored as floats like every batch entry)."""

    draws: int = 64
    batch_size: int = 4
    _: dataclasses.KW_ONLY
    points: int = 256
    experts: tuple = (1,)

    def __post_init__(self):
        positive_int("draws", self.draws)
        positive_int("batch_size", self.batch_size)
        if self.batch_size > self.draws:
            fail(
                "batch_size",
                self.batch_size,
                f"exceeds the {self.draws} training draws",
                f"pass at most {self.draws}",
            )
        positive_int("points", self.points)
        frozen_set(self, experts=tuple(self.experts))

    def _start(self, run):
        fam = run.problem
        run.params = np.stack([fam.draw(run.rng) for _ in range(self.draws)])
        run.u0 = np.stack([fam.initial_values(p) for p in run.params])
        run.pools = expert_pools(fam, self.experts, self.points)
        run.base = int(run.rng.integers(2**62))
        self._start_order(run)

    def _items(self, run):
        return self.draws

    def _read(self, run, idx, fresh):
        rng = np.random.default_rng([run.base, run.epoch, run.position])
        nodes = np.stack(
            [np.stack([rng.choice(p, self.points, replace=False) for p in run.pools]) for _ in idx]
        )
        return {
            "data": {"u0": run.u0[idx], "params": run.params[idx]},
            "constraint": {"nodes": nodes},
        }

    def _extra_state(self, run):
        return {"base": run.base}

    def _load_extra_state(self, run, state):
        run.base = int(state["base"])

    def __repr__(self):
        return (
            f"InitialDraws({self.draws}, {self.batch_size}, points={self.points}, "
            f"experts={self.experts})"
        )


def expert_pools(family, experts: tuple[int, ...], m: int) -> list[np.ndarray]:
    """Each expert's interior nodes (flat grid indices): not on the spatial boundary, t > t0."""
    g = family.grid()
    nx, nt = g.shape[:2]
    inner = np.zeros((nx, nt), bool)
    inner[1:-1, 1:] = True
    lo, hi = np.array([e[0] for e in family.extent]), np.array([e[1] for e in family.extent])
    k = expert_index(
        torch.as_tensor(g.reshape(-1, 2)), torch.as_tensor(lo), torch.as_tensor(hi), experts
    ).numpy()
    pools = [np.flatnonzero(inner.ravel() & (k == e)) for e in range(math.prod(experts))]
    for e, p in enumerate(pools):
        if len(p) < m:
            fail(
                "points",
                m,
                f"exceeds expert {e}'s {len(p)} interior grid nodes",
                f"pass at most {min(len(q) for q in pools)}, fewer experts or a finer grid",
            )
    return pools


@dataclasses.dataclass(frozen=True, eq=False)
class HardConstraintFNO(AbstractMethod):
    """PI-SC / PI-HC / PI-HC-MoE over a family of initial conditions (see the module docstring).

    Args:
        constraint: ``"soft"``, ``"hc"`` (one expert) or ``"moe:K"`` / ``"moe:AxB"`` (experts
            per grid axis: K slabs in x, or A x B boxes in (x, t)).
        basis: N. points: constraint nodes per expert and input (m).
        ridge, tol, max_iter: the solve (as :class:`pdeml.solvers.hard.HardConstraint`).
        draws, batch_size: training inputs and inputs per step. test_draws: fixed test inputs.
        modes, width, layers: the FNO (modes per axis (x, t)).
        condition_loss: add the initial and boundary misfits to the loss (always on for soft).

    Example:
        >>> from pdeml.families.sorption import SorptionFamily
        >>> case = pl.Case(SorptionFamily(64, 32), HardConstraintFNO("moe:4"), steps=500)
        >>> case.method.constraint             # --constraint hc | moe:K | soft sets it
        'moe:4'
    """

    constraint: str = "moe:4"
    basis: int = 16
    points: int = 128
    ridge: float = 1e-4
    tol: float = 1e-4
    max_iter: int = 50
    draws: int = 64
    batch_size: int = 4
    test_draws: int = 8
    modes: tuple = (16, 8)
    width: int = 32
    layers: int = 4
    condition_loss: bool = True

    @classmethod
    def cli_options(cls) -> tuple:
        return (CONSTRAINT,)

    def __post_init__(self):
        parse_constraint(self.constraint)
        for k in (
            "basis",
            "points",
            "max_iter",
            "draws",
            "batch_size",
            "test_draws",
            "width",
            "layers",
        ):
            positive_int(k, getattr(self, k))
        if not finite_scalar("ridge", self.ridge) >= 0:
            fail("ridge", self.ridge, "is negative", "pass e.g. 1e-4")
        if not finite_scalar("tol", self.tol) > 0:
            fail("tol", self.tol, "is not positive", "pass e.g. 1e-4")
        if len(tuple(self.modes)) != 2:
            fail("modes", self.modes, "must give (x, t) mode counts", "pass e.g. (16, 8)")

    def build(self, problem, *, seed=0, dtype=torch.float32, device="cpu") -> InitialOperator:
        needs = ("draw", "initial_values", "truth", "grid", "problem", "extent")
        if not isinstance(problem, AbstractFamily) or not all(hasattr(problem, k) for k in needs):
            fail(
                "problem",
                type(problem).__name__,
                "is not a family of initial conditions",
                f"pass a family with {', '.join(needs)} (cases/_sorption_family.SorptionFamily)",
            )
        nx, nt = problem.grid().shape[:2]
        if self.modes[0] > nx // 2 or self.modes[1] > nt // 2:
            fail(
                "modes",
                self.modes,
                f"exceed what the {nx} x {nt} grid holds",
                f"pass at most {(nx // 2, nt // 2)}",
            )
        experts = parse_constraint(self.constraint)
        out = 1 if experts is None else self.basis
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = FNO(
                1,
                out,
                tuple(self.modes),
                width=self.width,
                layers=self.layers,
                padding=(max(1, nx // 8), max(1, nt // 4)),
            )
        return _cast(InitialOperator(problem, net, self), dtype).to(device)


class InitialOperator(FixedTestSet, AbstractTrainable):
    """The trained map from initial values (B, nx) to solutions (B, nx, nt)."""

    input_key = "u0"

    def __init__(self, family, net, method: HardConstraintFNO):
        super().__init__()
        self.problem, self.net, self.method = family, net, method
        p = family.problem
        self.pde_problem = p
        experts = parse_constraint(method.constraint)
        self.experts = (
            None
            if experts is None
            else parse_experts(experts if len(experts) > 1 else experts[0], 2)
        )
        g = family.grid()
        self.nx, self.nt = g.shape[:2]
        self.spacing = tuple(
            float(g[1, 0, 0] - g[0, 0, 0]) if i == 0 else float(g[0, 1, 1] - g[0, 0, 1])
            for i in range(2)
        )
        coords = torch.as_tensor(g.reshape(-1, 2), dtype=torch.float64)
        self.register_buffer("coords", coords)
        lo, hi = (
            torch.as_tensor([e[i] for e in family.extent], dtype=torch.float64) for i in (0, 1)
        )
        K = 1 if self.experts is None else math.prod(self.experts)
        self.register_buffer("expert", expert_index(coords, lo, hi, self.experts or (1, 1)))
        inner = torch.zeros(self.nx, self.nt, dtype=torch.bool)
        inner[1:-1, 1:] = True
        self.register_buffer("interior", torch.nonzero(inner.ravel())[:, 0])
        self.register_buffer("initial_nodes", torch.arange(self.nx) * self.nt)  # t = t0
        self.conditions = []  # (name, condition, data keys) of the boundary conditions
        side = torch.zeros(self.nx, self.nt, dtype=torch.bool)
        side[[0, -1], 1:] = True
        edge = torch.nonzero(side.ravel())[:, 0].numpy()
        for name, c in zip(p.condition_names, p.conditions):
            if c.kind == "initial":
                continue
            if (
                c.kind not in ("dirichlet", "neumann", "robin", "operator")
                or getattr(c, "where", "boundary") != "boundary"
            ):
                fail(
                    "problem",
                    f"condition {name!r} ({c.kind})",
                    "is not a boundary condition the grid operator places",
                    "use Dirichlet, Neumann, Robin or Operator(where='boundary') conditions",
                )
            x = coords[edge].numpy()
            keep = edge if c.on is None else edge[np.asarray(c.on(torch.as_tensor(x)), bool)]
            xs = coords[keep]
            data = {
                "x": xs,
                "normal": torch.as_tensor(
                    p.domain.boundary_normal(xs.numpy()), dtype=torch.float64
                ),
            }
            i = len(self.conditions)  # nodes and data as buffers: they follow .to(device)
            self.register_buffer(f"_cond{i}_nodes", torch.as_tensor(keep))
            for k, v in data.items():
                self.register_buffer(f"_cond{i}_{k}", v)
            self.conditions.append((name, c, tuple(data)))
        self.K = K
        self._eval_nodes = None
        self.last = {}

    # ------------------------------------------------------------------ pieces
    def boundary_rows(self):
        """``(name, condition, flat nodes, data)`` of each boundary condition."""
        for i, (name, c, keys) in enumerate(self.conditions):
            yield (
                name,
                c,
                getattr(self, f"_cond{i}_nodes"),
                {k: getattr(self, f"_cond{i}_{k}") for k in keys},
            )

    @property
    def term_names(self):
        conds = [n for n, *_ in self.conditions]
        return (
            ["pde", "initial", *conds]
            if (self.experts is None or self.method.condition_loss)
            else ["pde"]
        )

    def forward(self, u0: torch.Tensor) -> torch.Tensor:
        """Basis functions (B, N, nx, nt) (or the field (B, 1, nx, nt) for soft)."""
        a = u0[:, None, :, None].expand(len(u0), 1, self.nx, self.nt)
        return self.net(a)

    def _columns(self, b: torch.Tensor) -> dict:
        """Per flat node, float64 columns (B, nx*nt, N, 1) of the bases' values and derivatives
        ((B, nx*nt, N, 2) for the gradient), the shapes a point estimator's columns have."""
        b = b.double()
        B, N = b.shape[:2]
        flat = lambda v: v.reshape(B, N, -1).transpose(1, 2)[..., None]  # noqa: E731
        cols = {("v",): flat(b)}
        for k, v in grid_derivatives(b, self.spacing).items():
            cols[k] = flat(v)
        cols[("g",)] = torch.cat([cols[("d", 0)], cols[("d", 1)]], -1)
        cols[("lap",)] = sum(cols[("d2", i, i)] for i in self.pde_problem.spatial_dims)
        return cols

    def _field(
        self, cols: dict, inputs: torch.Tensor, nodes: torch.Tensor, w: torch.Tensor
    ) -> Field:
        """The combined field at rows (R, S): row r's flat grid ``nodes[r]`` of input ``inputs[r]``,
        with weights ``w`` (R, N) for the whole row or (R, S, N) per node; ``cols`` per input
        (B, nodes, N...). Its points are ordered row by row."""
        R, S = nodes.shape
        basis = Basis(None, w.shape[-1], graph=True, missing=MISSING)
        for k, v in cols.items():
            basis.cache[k] = v[inputs[:, None], nodes].reshape(R * S, *v.shape[2:])
        w = w[:, None].expand(R, S, -1) if w.ndim == 2 else w
        p = self.pde_problem
        return Field(
            self.coords[nodes.reshape(-1)],
            estimator=CombinedEstimator(basis, w.reshape(R * S, -1)),
            input_names=p.inputs,
            output_names=p.outputs,
            spatial_dims=p.spatial_dims,
        )

    def _pde(self, x, u) -> torch.Tensor:
        out = self.pde_problem.pde(x, u[0])
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        return torch.cat([r.reshape(len(x), -1) for r in out], 1)

    def _terms(self, cols, inputs, nodes, w, u0) -> list[torch.Tensor]:
        """Residual blocks, one row per entry of ``inputs`` (R,): the PDE at ``nodes`` (R, S), the
        initial misfit against ``u0`` (R, nx), then each boundary condition. ``w``: (R, N), or
        a function giving the weights (R, S', N) at any nodes (R, S')."""
        weights = w if callable(w) else (lambda nodes: w)
        R = len(inputs)
        f = self._field(cols, inputs, nodes, weights(nodes))
        out = [self._pde(f.x, f).reshape(R, -1)]
        at = self.initial_nodes.expand(R, -1)
        out.append(self._field(cols, inputs, at, weights(at)).value.reshape(R, -1) - u0.double())
        for _, c, keep, data in self.boundary_rows():
            at = keep.expand(R, -1)
            fc = self._field(cols, inputs, at, weights(at))
            out.append(c.residual(fc, {k: v.repeat(R, 1) for k, v in data.items()}).reshape(R, -1))
        return out

    # ----------------------------------------------------------------- the solve
    def solve(
        self,
        b: torch.Tensor,
        u0: torch.Tensor,
        nodes: torch.Tensor,
        differentiable: bool = True,
        w0: torch.Tensor | None = None,
        cols: dict | None = None,
    ):
        """Weights (B*K, N) for bases ``b`` (B, N, nx, nt), initial values ``u0`` (B, nx) and
        constraint nodes ``nodes`` (B, K, m): row r is input r // K, expert r % K. The solver
        starts from ``w0`` (default zeros: a new input has no previous weights); ``cols``: the
        bases' columns when the caller has them (the training step uses them again for its loss)."""
        differentiable = differentiable and torch.is_grad_enabled()
        B, K = len(b), self.K
        with torch.enable_grad():
            cols = self._columns(b) if cols is None else cols
            flat = {k: v.detach() for k, v in cols.items()}
            inputs = torch.arange(B, device=b.device).repeat_interleave(K)
            idx, u0r = nodes.reshape(B * K, -1).long(), u0[inputs]

            def rows(w, graph):
                parts = self._terms(cols if graph else flat, inputs, idx, w, u0r)
                return torch.cat(
                    [t.reshape(len(w), -1) for t in parts] + [self.method.ridge * w], 1
                )

            if w0 is None:
                w0 = torch.zeros(B * K, self.method.basis, dtype=torch.float64, device=b.device)
            w, self.last = constrained_weights(
                rows,
                w0,
                tol=self.method.tol,
                max_iter=self.method.max_iter,
                differentiable=differentiable,
            )
        return w

    def fields(self, b, w) -> torch.Tensor:
        """u (B, nx, nt) from bases (B, N, nx, nt) and weights (B*K, N): each node's expert's."""
        B, N = b.shape[:2]
        wk = w.reshape(B, self.K, N)[:, self.expert]  # (B, nodes, N)
        return (
            (b.double().reshape(B, N, -1).transpose(1, 2) * wk).sum(-1).reshape(B, self.nx, self.nt)
        )

    def losses(self, batch, residuals=None):
        """The PDE residual (mean square) at every interior node of every input, each node with its
        expert's weights; and, with ``condition_loss`` (always for soft), the initial and
        boundary misfits."""
        u0 = batch["data"]["u0"]
        b = self(u0)
        B = len(b)
        cols = self._columns(b)  # once: the solve and the loss share them
        if self.experts is None:  # soft: the output is u, its weight 1
            w = torch.ones(B, 1, 1, dtype=torch.float64, device=b.device)
        else:
            w = self.solve(b, u0, batch["constraint"]["nodes"], cols=cols).reshape(B, self.K, -1)
        inputs = torch.arange(B, device=b.device)
        parts = self._terms(
            cols,
            inputs,
            self.interior.expand(B, -1),
            lambda nodes: w[inputs[:, None], self.expert[nodes]],
            u0,
        )
        if residuals is not None:
            residuals["pde"] = parts[0].detach().reshape(-1, 1)
        out = {"pde": (parts[0] ** 2).mean()}
        if self.experts is None or self.method.condition_loss:
            names = ["initial"] + [n for n, *_ in self.conditions]
            out.update({n: (r**2).mean() for n, r in zip(names, parts[1:])})
        return out

    def batches(self, sampler, rng):
        sampler = sampler if sampler is not None else self.sampler()
        if not isinstance(sampler, InitialDraws):
            fail(
                "sampler",
                sampler,
                "is not an InitialDraws",
                "leave it out (the operator draws its own inputs)",
            )
        return sampler.init(self.problem, rng)

    def sampler(self) -> InitialDraws:
        m = self.method
        return InitialDraws(m.draws, m.batch_size, points=m.points, experts=self.experts or (1, 1))

    # --------------------------------------------------------------- evaluation
    def eval_nodes(self, B: int) -> torch.Tensor:
        """Fixed constraint nodes (seed 0) for solving at new inputs, (B, K, m)."""
        if self._eval_nodes is None:
            pools = expert_pools(self.problem, self.experts or (1, 1), self.method.points)
            rng = np.random.default_rng(0)
            self._eval_nodes = torch.as_tensor(
                np.stack([rng.choice(p, self.method.points, replace=False) for p in pools]),
                device=self.coords.device,
            )
        return self._eval_nodes.expand(B, -1, -1)

    @torch.no_grad()
    def predict(self, x, chunk: int = 8) -> np.ndarray:
        """Solutions (B, nx, nt) at initial values ``x`` (B, nx); the constraint is solved for
        each."""
        x = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
        if x.ndim != 2 or x.shape[1] != self.nx:
            fail(
                "x",
                tuple(x.shape),
                f"is not (B, {self.nx}) initial values",
                "pass family.initial_values(draw) stacked",
            )
        out = []
        for i in range(0, len(x), chunk):
            u0 = x[i : i + chunk]
            b = self(u0)
            if self.experts is None:
                out.append(b[:, 0].double().cpu().numpy())
                continue
            w = self.solve(b, u0, self.eval_nodes(len(u0)), differentiable=False)
            out.append(self.fields(b, w).cpu().numpy())
        return np.concatenate(out)

    def _make_test_set(self, rng) -> dict:
        """Parameters, initial values and method-of-lines truth of the test inputs."""
        fam = self.problem
        params = [fam.draw(rng) for _ in range(self.method.test_draws)]
        return {
            "params": np.stack(params),
            "u0": np.stack([fam.initial_values(p) for p in params]),
            "truth": np.stack([fam.truth(p) for p in params]),
        }

    def resolved(self):
        return {
            "parameters": parameter_count(self),
            "grid": [self.nx, self.nt],
            "experts": list(self.experts) if self.experts else None,
        }

    def export(self, out, resolution: int, sample: int | None = None):
        """``test_<k>.vti`` per test input (``sample``, or the first three) over the (x, t) grid:
        prediction, truth, error and the expert index; and ``field.png``."""
        from .export import export_initial_family

        return export_initial_family(self, out, [sample] if sample is not None else None)
