r"""Physics-informed hard constraints scaled by a mixture of experts (PI-HC-MoE): Chalapathi, Du,
Krishnapriyan, "Scaling physics-informed hard constraints with mixture-of-experts", ICLR 2024.

A network outputs N basis functions :math:`b(x) \in \mathbb R^N` (N = 16 in the paper). On
expert k's subdomain :math:`\Omega_k` the solution is :math:`u(x) = b(x)^\top\omega_k`, with
:math:`\omega_k` the minimizer of

.. math:: \|F_k(\omega)\|^2 = \sum_{x \in X_k} r(x; b^\top\omega)^2
          + \sum_{c}\sum_{x \in X_c} c(x; b^\top\omega)^2 + \lambda^2\|\omega\|^2,
          \qquad \lambda = 10^{-4},

where :math:`r` is the case's own PDE residual (its ``pde(x, u)`` through
:class:`~pdeml.field.Field`)
at m points :math:`X_k` of :math:`\Omega_k`, and every initial and boundary condition's rows
:math:`X_c` are shared by all experts. Derivatives are linear in :math:`\omega`
(:math:`\partial^\alpha u = (\partial^\alpha b)^\top\omega`), so the estimator differentiates the N
bases once per point set and each solver iterate only recombines those columns. The solve is
Levenberg–Marquardt in float64 (:func:`levenberg_marquardt`: at most ``max_iter`` = 50
iterations, stopping when the step or the gradient :math:`J^\top F` is below ``tol`` relative to
:math:`\omega` and :math:`\|J\|\|F\|`); for a linear PDE it is one linear least-squares
problem, which its first (Gauss-Newton) step solves.

With m > N the PDE cannot hold at every point: the constraint is the least-squares optimum to
solver tolerance, and the residual left at the points measures how well the bases span the
solution.

**Gradient by the implicit function theorem.** At the minimizer,
:math:`G(\omega, \theta) = \nabla_\omega \tfrac12\|F\|^2 = 0`, so
:math:`d\omega/d\theta = -H^{-1}\,\partial G/\partial\theta` with :math:`H = \partial
G/\partial\omega`
(the full Hessian, second-order terms included). It is computed as
:math:`\tilde\omega = \omega^* - H^{-1}G(\omega^*, \theta)` with :math:`\omega^*` and :math:`H`
detached: the value is :math:`\omega^*` (plus a Newton step of the size of the solver's
tolerance), the derivative is exactly the theorem's, and the LM iterations are not unrolled.

**Training loss**: the PDE residual (mean square) at the sampler's domain points, a fresh set
apart from the constraint points, with u from each point's expert; no solution data.

**Experts**: a fixed partition of the (space-time) bounding box into ``experts`` =
:math:`(k_1, \dots, k_d)` equal boxes (the paper: 4 intervals in space for 1-D
diffusion-sorption; 2 x 2 x 1 for 2-D Navier–Stokes). Each solves its own :math:`\omega_k` on its
own m points; all are solved together as one batch. Continuity across the interfaces is not
imposed (as in the paper): the seam is measured, not zero.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.backend import AbstractMethod, AbstractTrainable
from pdeml.derivatives import Autograd, Taylor, jets
from pdeml.field import Field
from pdeml.nn import MLP
from pdeml.problem import Problem
from pdeml.sampling import AbstractSampler, batch_from_state, rng_state, set_rng_state


# ----------------------------------------------------------------- bases and their combination
class Basis:
    """The N bases' values and derivatives at one point set, computed once by the estimator and
    kept as float64 columns (M, N) (or (M, N, n_inputs) for gradients)."""

    def __init__(self, field: Field | None, n: int, graph: bool = True, missing: str | None = None):
        self.field, self.n, self.graph, self.cache, self.missing = field, n, graph, {}, missing

    def get(self, key, fn) -> torch.Tensor:
        if key not in self.cache:
            if self.field is None:
                if self.missing:
                    fail(
                        "pde",
                        key,
                        f"asks for a derivative that {self.missing} give",
                        "use those derivatives",
                    )
                fail(
                    "pde",
                    key,
                    "asks for a derivative the first evaluation did not",
                    "make the residual ask for the same derivatives every time",
                )
            cols = torch.stack([fn(self.field[c]) for c in range(self.n)], 1).double()
            self.cache[key] = cols if self.graph else cols.detach()
        return self.cache[key]

    def detached(self) -> Basis:
        out = Basis(None, self.n, graph=False, missing=self.missing)
        out.cache = {k: v.detach() for k, v in self.cache.items()}
        return out


class _Tiled:
    """A basis's columns repeated ``k`` times along the points (one copy per expert)."""

    def __init__(self, basis: Basis, k: int):
        self.basis, self.k = basis, k

    def get(self, key, fn) -> torch.Tensor:
        v = self.basis.get(key, fn)
        return v.repeat(self.k, *[1] * (v.ndim - 1))


class CombinedEstimator:
    """The estimator run of :math:`u = \\sum_i w_i b_i` with weights per row ``w`` (M, N), from the
    bases' cached columns: derivatives are the same combination of the bases' derivatives. (It
    is what a :class:`~pdeml.field.Field` asks, as an estimator's run is; it has no settings.)"""

    def __init__(self, basis: Basis, w: torch.Tensor):
        self.basis, self.w = basis, w

    def _mix(self, cols):  # (M, N, 1) -> (M, 1); (M, N, d) -> (M, d)
        return torch.einsum("mn...,mn->m...", cols, self.w)

    def values(self, field):
        return self._mix(self.basis.get(("v",), lambda f: f.value))

    def grad(self, field):
        return self._mix(self.basis.get(("g",), lambda f: f.grad()))

    def d(self, field, i):
        return self._mix(self.basis.get(("d", i), lambda f: f.d(i)))

    def d2(self, field, i, j):
        return self._mix(self.basis.get(("d2", i, j), lambda f: f.d2(i, j)))

    def laplacian(self, field, dims):
        return self._mix(self.basis.get(("lap",), lambda f: f.laplacian()))

    def biharmonic(self, field, dims):
        return self._mix(self.basis.get(("bih",), lambda f: f.biharmonic()))

    def diffusion(self, field, dims, sigma):
        return self._mix(
            self.basis.get(
                ("diff", sigma.detach().cpu().numpy().tobytes()), lambda f: f.diffusion(sigma)
            )
        )

    def input_grad(self, site):
        return False


class _BasisNet(nn.Module):
    """The bases b(x): the network on inputs mapped from the bounding box to [-1, 1]."""

    def __init__(self, net, center, halfwidth):
        super().__init__()
        self.net = net
        self.register_buffer("center", center)
        self.register_buffer("halfwidth", halfwidth)

    def forward(self, x):
        return self.net((x - self.center) / self.halfwidth)

    def jet(self, x, tangents, weights=None, stack=False):
        xj = jets.Jet([x] + list(tangents), weights, stack)
        return jets.push(self.net, jets.affine_diag(xj, self.center, self.halfwidth))


# ------------------------------------------------------------------------ the batched solver
def levenberg_marquardt(fun, w0: torch.Tensor, *, tol: float = 1e-4, max_iter: int = 50):
    r"""Minimize :math:`\|F_k(w_k)\|^2` for every row k of ``w0`` (K, N) at once, where
    ``fun(w)`` (K, R) has row k depending on ``w[k]`` only (its last N rows a ridge
    :math:`\lambda w_k`, which keeps every step's system full rank).

    Each iteration tries the Gauss-Newton step (μ = 0), solved as the least-squares problem
    :math:`\min_\delta \|J\delta + F\|^2 + \mu\|D\delta\|^2` by QR (no normal equations, whose
    condition number is the square), :math:`D^2 = \mathrm{diag}\,J^\top J`; an expert whose cost
    rises retries with μ = 1e-4, then ×10, until it falls. A linear F is solved exactly by the first
    step. A row is done when its relative gradient
    :math:`\|J^\top F\| / (\|J\|\,\|F\|) \le tol` (first-order optimality, scale-free), or
    when no damping lowers its cost (a stall). Returns ``(w, info)``: ``{"iterations",
    "gradient" (K,) (the relative gradient at the w returned), "converged" (K,) bool: the
    gradient test holds}``."""
    w = w0.detach().clone()
    K, N = w.shape
    F = fun(w)
    cost = (F**2).sum(1)
    stalled = torch.zeros(K, dtype=torch.bool, device=w.device)

    def relative_gradient(w, F):
        J = jacobian_rows(fun, w)  # (K, R, N)
        g = torch.einsum("krn,kr->kn", J, F)
        return J, g.norm(dim=1) / (J.flatten(1).norm(dim=1) * F.norm(dim=1)).clamp_min(
            torch.finfo(w.dtype).tiny
        )

    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        J, rel = relative_gradient(w, F)
        done = (rel <= tol) | stalled
        if done.all():
            break
        D = J.norm(dim=1).clamp_min(1e-12)  # sqrt(diag J^T J), (K, N)
        mu = torch.zeros(K, dtype=w.dtype, device=w.device)
        todo = ~done
        for _ in range(12):  # damping until the cost falls
            A = torch.cat([J, torch.diag_embed(mu.sqrt()[:, None] * D)], 1)
            b = torch.cat([-F, torch.zeros_like(w)], 1)
            trial = torch.linalg.lstsq(A, b[..., None]).solution[..., 0]
            F_new = fun(w + trial)
            cost_new = (F_new**2).sum(1)
            ok = todo & (cost_new <= cost)
            w = torch.where(ok[:, None], w + trial, w)
            F = torch.where(ok[:, None], F_new, F)
            cost = torch.where(ok, cost_new, cost)
            todo = todo & ~ok
            if not todo.any():
                break
            mu = torch.where(todo, torch.where(mu == 0, torch.full_like(mu, 1e-4), mu * 10), mu)
        stalled |= todo  # no damping lowers the cost
    else:
        _, rel = relative_gradient(w, F)  # at the w returned
    return w, {"iterations": it, "gradient": rel, "converged": rel <= tol}


def constrained_weights(
    rows,
    w0: torch.Tensor,
    *,
    tol: float,
    max_iter: int,
    differentiable: bool,
    parts=None,
    world=None,
):
    r"""The constraint layer: ``(w, info)`` with w (K, N) the minimizer of every expert's
    :math:`\|F_k(w_k)\|^2` (:func:`levenberg_marquardt` from ``w0``) and, when ``differentiable``,
    carrying the implicit-function gradient. ``rows(w, graph)`` gives F (K, R): on the bases'
    detached columns when ``graph`` is False (the solver's iterations), through the network's
    graph when True.

    ``parts``: optional ``[(experts, device, fun)]`` splitting the solve. Each part runs the
    solver and the Hessian on its device with ``fun``, the detached rows of its experts (index
    tensor ``experts``), and sends w and H back; the gradient G needs the network's graph and is
    formed where it lives. Without ``parts`` all experts are one batch.

    ``world`` (:class:`pdeml.distributed.World`): ``parts`` then hold this rank's experts only;
    the solved weights, Hessians and convergence of all experts are summed over the ranks (each
    expert is solved on exactly one), so every rank forms the same gradient step.

    At the minimizer :math:`G = \nabla_w \tfrac12\|F\|^2 = 0`, so
    :math:`dw/d\theta = -H^{-1}\partial G/\partial\theta`; the returned
    :math:`\tilde w = w^* - H^{-1}G(w^*, \theta)` (with :math:`w^*` and H detached) has the value
    :math:`w^*` (plus a Newton step of the size of the tolerance) and exactly that derivative,
    and the iterations are not unrolled. Rows the solver did not converge on (a stall, or
    ``max_iter``) keep :math:`w^*` and pass no gradient; ``info["converged"]`` says which."""
    if parts is None:
        parts = [(None, w0.device, lambda w: rows(w, False))]
    w = torch.empty_like(w0)
    H = (
        torch.empty(*w0.shape, w0.shape[1], dtype=w0.dtype, device=w0.device)
        if differentiable
        else None
    )
    info = {
        "iterations": 0,
        "gradient": torch.empty(len(w0), dtype=w0.dtype, device=w0.device),
        "converged": torch.empty(len(w0), dtype=torch.bool, device=w0.device),
    }
    for idx, device, fun in parts:
        idx = slice(None) if idx is None else idx
        wp, got = levenberg_marquardt(fun, w0[idx].to(device), tol=tol, max_iter=max_iter)
        w[idx] = wp.to(w0.device)
        info["iterations"] = max(info["iterations"], got["iterations"])
        info["gradient"][idx], info["converged"][idx] = (
            got["gradient"].to(w0.device),
            got["converged"].to(w0.device),
        )
        if differentiable:
            H[idx] = _block_hessian(fun, wp).to(w0.device)  # (K_part, N, N)
    if world is not None and world.active:
        w, H, info = _gather_experts(parts, w, H, info, world)
    if not differentiable:
        return w, info
    wr = w.detach().requires_grad_(True)
    (G,) = torch.autograd.grad(0.5 * (rows(wr, True) ** 2).sum(), wr, create_graph=True)
    ift = w.detach() - torch.linalg.solve(H, G[..., None])[..., 0]
    # where the solver did not reach a stationary point the theorem does not hold (and H may be
    # indefinite): those rows keep w* and pass no gradient, rather than a wrong one
    return torch.where(info["converged"][:, None], ift, w.detach()), info


def _gather_experts(parts, w, H, info, world):
    """Every rank's solved experts into every rank's (K, ...) arrays: zeros elsewhere, summed."""
    from pdeml.distributed import all_gather_object, all_sum

    mine = torch.zeros(len(w), dtype=torch.bool, device=w.device)
    for idx, _, _ in parts:
        mine[slice(None) if idx is None else idx] = True
    keep = lambda t: torch.where(mine.view(-1, *[1] * (t.ndim - 1)), t, torch.zeros_like(t))  # noqa: E731
    w = all_sum(keep(w), world)
    H = None if H is None else all_sum(keep(H), world)
    info = {
        "iterations": max(all_gather_object(info["iterations"], world)),
        "gradient": all_sum(keep(info["gradient"]), world),
        "converged": all_sum(keep(info["converged"].to(w.dtype)), world) > 0.5,
    }
    return w, H, info


def jacobian_rows(fun, w: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial F_k/\partial w_k` (K, R, N) by forward mode: N Jacobian-vector products,
    one per coordinate with every expert at once (row k depends on ``w[k]`` only), batched by
    ``torch.func.vmap`` (7x faster than N separate passes for N = 16); a residual that vmap cannot
    batch (data-dependent Python control flow) falls back to N passes."""
    K, N = w.shape
    E = torch.eye(N, dtype=w.dtype, device=w.device)[:, None, :].expand(N, K, N)
    try:
        return torch.func.vmap(lambda e: torch.func.jvp(fun, (w,), (e,))[1], out_dims=-1)(E)
    except RuntimeError:
        pass
    import torch.autograd.forward_ad as fwad

    cols = []
    for e in E:
        with fwad.dual_level():
            cols.append(fwad.unpack_dual(fun(fwad.make_dual(w, e.contiguous()))).tangent)
    return torch.stack(cols, -1)


# ----------------------------------------------------------------------- the method
def parse_constraint(spec: str, flag: str = "constraint") -> tuple[int, ...] | None:
    """``"soft"`` -> None; ``"hc"`` -> 1 expert; ``"moe:K"`` or ``"moe:AxB"`` -> expert counts."""
    spec = str(spec)
    if spec == "soft":
        return None
    if spec == "hc":
        return (1,)
    if spec.startswith("moe:"):
        try:
            parts = tuple(int(p) for p in spec[4:].split("x"))
        except ValueError:
            parts = ()
        if parts and min(parts) >= 1:
            return parts
    fail(flag, spec, "is not a constraint", "pass soft, hc, moe:4 or moe:2x2x1")


def parse_experts(spec, dim: int) -> tuple[int, ...]:
    """``experts`` as one count per input axis: an int k splits the first axis into k; a tuple
    gives every axis (``(2, 2, 1)``)."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return (positive_int("experts", spec),) + (1,) * (dim - 1)
    spec = tuple(spec)
    if len(spec) != dim:
        fail(
            "experts",
            spec,
            f"does not give one count per input ({dim})",
            f"pass {(2,) + (1,) * (dim - 1)}",
        )
    return tuple(positive_int("experts", k) for k in spec)


def expert_index(
    x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, experts: tuple[int, ...]
) -> torch.Tensor:
    """Each point's expert: the number of its box when the box [lo, hi] is split into
    ``experts[j]`` equal parts along axis j (row-major over the axes; edges go to the last part)."""
    k = torch.zeros(len(x), dtype=torch.long, device=x.device)
    lo, hi = lo.to(x.device), hi.to(x.device)
    for j, n in enumerate(experts):
        t = (x[:, j].double() - lo[j]) / (hi[j] - lo[j])
        k = k * n + (t * n).floor().long().clamp(0, n - 1)
    return k


@dataclasses.dataclass(frozen=True, eq=False)
class HardConstraint(AbstractMethod):
    """PI-HC (``experts=1``) and PI-HC-MoE settings (see the module docstring).

    Args:
        model: the basis network (default ``MLP(width=50, depth=4)``), built with ``basis``
            outputs.
        basis: N, the number of basis functions.
        experts: K as an int (equal slabs of the first input) or one count per input.
        points: constraint points per expert (m).
        ridge: λ. tol, max_iter: the Levenberg–Marquardt stopping rule.
        sampler: the loss points and condition points (default ``Uniform(2000, 200, 200,
            every=1)``: fresh every step).
        estimator: derivative estimator of the bases (default Taylor mode where the network
            has jet rules).
        condition_loss: add each initial/boundary condition's mean-square residual at the
            sampler's fresh condition points to the loss (one term per condition). The paper's
            loss is the PDE residual alone; without these terms, bases that each satisfy the
            PDE (a constant does for the heat equation) give a zero loss whatever the initial
            condition's misfit, and training drifts there (measured in docs/hard-constraints.md).
        devices: where the experts' solves run: expert k on ``devices[k % len(devices)]``
            (its Levenberg–Marquardt iterations and Hessian; the network and the gradient stay on
            the backend's device). Default: all experts as one batch on the backend's device.

    Example:
        >>> method = HardConstraint(pl.nn.MLP(64, 4), basis=16, experts=4, points=1000)
    """

    model: Any = None
    basis: int = 16
    experts: Any = 1
    points: int = 1000
    ridge: float = 1e-4
    tol: float = 1e-4
    max_iter: int = 50
    sampler: Any = None
    estimator: Any = None
    condition_loss: bool = True
    devices: Any = None

    @classmethod
    def cli_options(cls) -> tuple:
        from pdeml import derivatives, samplers

        return (derivatives.OPTION, samplers.OPTION)

    def __post_init__(self):
        if self.devices is not None:
            if isinstance(self.devices, str) or not len(self.devices):
                fail(
                    "devices",
                    self.devices,
                    "is not a list of devices",
                    'pass e.g. ("cuda:0", "cuda:1")',
                )
            for d in self.devices:
                try:
                    torch.device(d)
                except (RuntimeError, TypeError):
                    fail("devices", d, "is not a torch device", 'pass e.g. "cuda:1" or "cpu"')
        if not isinstance(self.condition_loss, bool):
            fail(
                "condition_loss",
                self.condition_loss,
                "must be True or False",
                "pass condition_loss=False",
            )
        for k in ("basis", "points", "max_iter"):
            positive_int(k, getattr(self, k))
        if not finite_scalar("ridge", self.ridge) >= 0:
            fail("ridge", self.ridge, "is negative", "pass e.g. 1e-4")
        if not finite_scalar("tol", self.tol) > 0:
            fail("tol", self.tol, "is not positive", "pass e.g. 1e-4")
        if self.model is not None and not isinstance(self.model, nn.Module):
            fail(
                "model",
                self.model,
                "is not a torch module",
                "pass e.g. pl.nn.MLP(width=50, depth=4)",
            )

    def build(self, problem, *, seed=0, dtype=torch.float32, device="cpu") -> HardConstraintBackend:
        return HardConstraintBackend(problem, self, seed=seed, dtype=dtype).to(device)


@dataclasses.dataclass(frozen=True, eq=False)
class ConstraintPoints(AbstractSampler):
    """The hard constraint's batches: the inner sampler's (loss and condition points) plus
    ``"constraint"``: m points in each expert's box (K * m rows, expert by expert), redrawn
    whenever the inner sampler redraws."""

    inner: AbstractSampler
    m: int
    experts: tuple[int, ...]

    @property
    def wants_residuals(self) -> bool:  # type: ignore[override]
        """An adaptive inner sampler (R3, AAS) gets the PDE residuals of each step: the hard
        constraint's loss reports them at the inner sampler's domain points."""
        return self.inner.wants_residuals

    def _start(self, run):
        run.inner = self.inner.init(
            run.problem, np.random.default_rng(int(run.rng.integers(2**63))), run.residual_at
        )
        run.seen = run.inner.version
        run.points = {**run.inner.current(), "constraint": {"x": self._draw(run)}}

    def _draw(self, run) -> np.ndarray:
        lo, hi = (np.asarray(b, float) for b in run.problem.domain.bbox)
        out = []
        for k in range(math.prod(self.experts)):
            idx = np.unravel_index(k, self.experts)
            a = lo + (hi - lo) * np.asarray(idx) / np.asarray(self.experts)
            b = lo + (hi - lo) * (np.asarray(idx) + 1) / np.asarray(self.experts)
            got, tries = [], 0
            while sum(len(g) for g in got) < self.m:
                x = run.rng.uniform(a, b, (2 * self.m, len(lo)))
                got.append(x[run.problem.domain.inside(x)])
                tries += 1
                if tries > 200:
                    fail(
                        "experts",
                        self.experts,
                        f"leave expert {k}'s box almost outside the domain",
                        "use fewer experts or a partition that fits the domain",
                    )
            out.append(np.concatenate(got)[: self.m])
        return np.concatenate(out)

    def batch(self, run, step):
        p = run.inner.batch(step)
        if run.inner.version != run.seen:
            run.seen = run.inner.version
            run.points = {**p, "constraint": {"x": self._draw(run)}}
            run.version += 1
        return run.points

    def observe(self, run, step, residuals):
        run.inner.observe(step, residuals)

    def state_dict(self, run):
        return {
            "inner": run.inner.state_dict(),
            "constraint/x": torch.as_tensor(run.points["constraint"]["x"]),
            "rng": rng_state(run.rng),
        }

    def load_state_dict(self, run, state):
        run.inner.load_state_dict(state["inner"])
        set_rng_state(run.rng, state["rng"])
        run.seen = run.inner.version
        run.points = {
            **run.inner.current(),
            **batch_from_state({"constraint/x": state["constraint/x"]}),
        }
        run.version += 1


class HardConstraintBackend(AbstractTrainable):
    """Bases trained so that their constrained combination solves the problem (built by
    :meth:`HardConstraint.build`). ``omega`` (K, N) holds the last solve's weights, which
    ``predict`` uses."""

    def __init__(self, problem: Problem, method: HardConstraint, *, seed=0, dtype=torch.float32):
        super().__init__()
        if not isinstance(problem, Problem):
            fail(
                "problem", type(problem).__name__, "is not a pdeml.Problem", "pass pl.Problem(...)"
            )
        if len(problem.outputs) != 1:
            fail(
                "problem",
                f"outputs {problem.outputs}",
                "has several outputs (the hard constraint combines bases of one field so far)",
                "use a single-output problem",
            )
        if problem.parameters:
            fail(
                "problem",
                "its unknown parameters",
                "are not supported by the hard constraint",
                "use PINN",
            )
        if not problem.conditions:
            fail(
                "problem",
                "no conditions",
                "leave the constraint without initial or boundary rows",
                "add the problem's initial and boundary conditions",
            )
        self.problem, self.method = problem, method
        self.experts = parse_experts(method.experts, problem.input_dim)
        lo, hi = problem.domain.bbox
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = copy.deepcopy(
                method.model if method.model is not None else MLP(width=50, depth=4)
            )
            if hasattr(net, "bind"):
                net = net.bind(problem.input_dim, method.basis)
            for m in reversed(list(net.modules())):
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        self.bases = _BasisNet(net, torch.as_tensor((lo + hi) / 2), torch.as_tensor((hi - lo) / 2))
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float64))
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float64))
        self.register_buffer(
            "omega", torch.zeros(math.prod(self.experts), method.basis, dtype=torch.float64)
        )
        from pdeml.derivatives import parse as parse_estimator

        self.estimator = (
            parse_estimator(method.estimator)
            if method.estimator is not None
            else (Taylor() if hasattr(net, "jet") else Autograd())
        ).init()  # a stochastic estimator draws from its own seed
        self.bases.to(dtype)
        self.last, self._taught = {}, set()

    # ------------------------------------------------------------------ pieces
    @property
    def dtype(self) -> torch.dtype:
        """The network's dtype (the weights ``omega`` are float64 whatever it is)."""
        return self.bases.center.dtype

    @property
    def term_names(self):
        return ["pde"] + (list(self.problem.condition_names) if self.method.condition_loss else [])

    def term_keys(self):
        return {"pde": "domain", **{n: n for n in self.problem.condition_names}}

    @property
    def whole_terms(self):
        """The constraint's points and the conditions' enter one solve per expert: on several
        processes every rank solves with all of them (the PDE points are split)."""
        return ("constraint", *self.problem.condition_names)

    @property
    def K(self) -> int:
        return math.prod(self.experts)

    def expert_of(self, x: torch.Tensor) -> torch.Tensor:
        """Each point's expert (its box in the partition of the bounding box)."""
        return expert_index(x, self.lo, self.hi, self.experts)

    def _basis(self, x: torch.Tensor, site: str) -> Basis:
        p = self.problem
        x = x.detach().requires_grad_(self.estimator.input_grad(site))
        f = Field(
            x,
            estimator=self.estimator,
            input_names=p.inputs,
            output_names=tuple(f"b{i}" for i in range(self.method.basis)),
            spatial_dims=p.spatial_dims,
            model=self.bases,
            site=site,
        )
        return Basis(f, self.method.basis)

    def _field(self, x, basis: Basis, w: torch.Tensor) -> Field:
        p = self.problem
        return Field(
            x.detach().double(),
            estimator=CombinedEstimator(basis, w),
            input_names=p.inputs,
            output_names=p.outputs,
            spatial_dims=p.spatial_dims,
        )

    def _pde(self, x, u) -> torch.Tensor:
        out = self.problem.pde(x, u[0])
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        return torch.cat([r.reshape(len(x), -1) for r in out], 1)

    def _rows(self, w, xc, bc: Basis, conds: list) -> torch.Tensor:
        """F (K, R): every expert's PDE rows, its copy of the condition rows, and the ridge rows."""
        K = len(w)
        m = len(xc) // K
        r = self._pde(xc.double(), self._field(xc, bc, w.repeat_interleave(m, 0)))
        parts = [r.reshape(K, -1)]
        for c, xb, basis, data in conds:  # every expert's copy in one pass
            n = len(xb)
            tiled = {
                k: v.repeat(K, *[1] * (v.ndim - 1)) if torch.is_tensor(v) else v
                for k, v in data.items()
            }
            f = self._field(xb.repeat(K, 1), _Tiled(basis, K), w.repeat_interleave(n, 0))
            parts.append(c.residual(f, tiled).reshape(K, -1))
        parts.append(self.method.ridge * w)
        return torch.cat(parts, 1)

    def solve(self, batch: dict, differentiable: bool = True, spread: bool = False):
        """The constraint's weights (K, N) on a batch: LM on detached bases, then the IFT step
        (differentiable in the network's parameters when ``differentiable`` and grad mode is on).
        ``spread``: each rank of a distributed run (``self.world``) solves experts rank,
        rank + size, ... and the ranks exchange the results (training solves; the evaluation
        solve of :meth:`current_omega` stays whole on each rank, since rank 0 alone exports)."""
        differentiable = differentiable and torch.is_grad_enabled()
        with torch.enable_grad():  # the solver's Jacobians need autograd even in no_grad
            return self._solve(
                batch, differentiable, self.world if spread and self.world.active else None
            )

    def _constraint_bases(self, batch):
        """The constraint points, their bases and each condition's ``(condition, points, bases,
        data)``. The estimator learns on first use what each site asks for and then computes it
        in one pass; so that the first step's columns are those of that one pass (and a resumed
        run's first step equals an uninterrupted run's), the first use evaluates the rows once
        to teach it and starts again."""

        def make():
            xc = batch["constraint"]["x"]
            conds = []
            for name, c in zip(self.problem.condition_names, self.problem.conditions):
                conds.append(
                    (
                        c,
                        batch[name]["x"],
                        self._basis(batch[name]["x"], "conditions"),
                        _double(batch[name]),
                    )
                )
            return xc, self._basis(xc, "constraint"), conds

        xc, bc, conds = make()
        if "constraint" not in self._taught:
            self._rows(self.omega, xc, bc, conds)
            self._taught.add("constraint")
            xc, bc, conds = make()
        return xc, bc, conds

    def _solve(self, batch, differentiable, world=None):
        xc, bc, conds = self._constraint_bases(batch)
        self._rows(self.omega, xc, bc, conds)  # fill the bases' columns (with the graph)
        flat = (bc.detached(), [(c, xb, b.detached(), d) for c, xb, b, d in conds])
        w, self.last = constrained_weights(
            lambda w, graph: (
                self._rows(w, xc, bc, conds) if graph else self._rows(w, xc, flat[0], flat[1])
            ),
            self.omega.clone(),
            tol=self.method.tol,
            max_iter=self.method.max_iter,
            differentiable=differentiable,
            parts=self._parts(xc, *flat, world=world),
            world=world,
        )
        self.omega.copy_(w.detach())
        return w

    def _parts(self, xc, bc: Basis, conds: list, world=None):
        """With ``devices``: expert k solves on device ``devices[k % len(devices)]``, from a copy
        of its own constraint rows' detached columns and of the shared condition rows. With a
        distributed ``world``: only this rank's experts (k = rank mod size), on its device, or
        spread over ``devices`` in turn."""
        devices = self.method.devices
        if not devices and world is None:
            return None
        ranked = torch.arange(self.K, device=xc.device)
        if world is not None:
            ranked = ranked[world.rank :: world.size]
        devices = devices or [xc.device]
        m, out = len(xc) // self.K, []
        for g, dev in enumerate(devices):
            experts = ranked[g :: len(devices)]
            if not len(experts):
                continue
            rows = (experts[:, None] * m + torch.arange(m, device=xc.device)).reshape(-1)
            xg, bg = xc[rows].to(dev), Basis(None, bc.n, graph=False, missing=bc.missing)
            bg.cache = {k: v[rows].to(dev) for k, v in bc.cache.items()}
            cg = [
                (
                    c,
                    x.to(dev),
                    _moved(b, dev),
                    {k: v.to(dev) if torch.is_tensor(v) else v for k, v in d.items()},
                )
                for c, x, b, d in conds
            ]
            out.append(
                (
                    experts,
                    torch.device(dev),
                    lambda w, xg=xg, bg=bg, cg=cg: self._rows(w, xg, bg, cg),
                )
            )
        return out

    def losses(self, batch, residuals=None):
        w = self.solve(batch, spread=True)
        x = batch["domain"]["x"]
        if "pde" not in self._taught:  # as in _constraint_bases
            self._pde(x.double(), self._field(x, self._basis(x, "pde"), w[self.expert_of(x)]))
            self._taught.add("pde")
        b = self._basis(x, "pde")
        r = self._pde(x.double(), self._field(x, b, w[self.expert_of(x)]))
        if residuals is not None:
            residuals["pde"] = r.detach()
        out = {"pde": (r**2).mean()}
        if self.method.condition_loss:
            for name, c in zip(self.problem.condition_names, self.problem.conditions):
                xb = batch[name]["x"]
                u = self._field(xb, self._basis(xb, "conditions"), w[self.expert_of(xb)])
                out[name] = (c.residual(u, _double(batch[name])) ** 2).mean()
        return out

    def batches(self, sampler, rng):
        if sampler is None:
            from pdeml.samplers import Uniform

            sampler = (
                self.method.sampler
                if self.method.sampler is not None
                else Uniform(2000, 200, 200, every=1)
            )
        return ConstraintPoints(sampler, self.method.points, self.experts).init(self.problem, rng)

    # --------------------------------------------------------------- reporting
    def current_omega(self) -> torch.Tensor:
        """The weights for the network as it is now: training's last solve is stale once the
        optimizer has stepped (ω is sensitive to the bases), so the constraint is solved again on a
        fixed batch (seed 0 of the method's sampler) whenever the parameters differ from those of
        the last such solve. (They are compared by value: a fused optimizer step does not bump
        tensor versions.) The field ``predict`` gives is a function of the weights alone."""
        params = [p.detach() for p in self.parameters()]
        seen = getattr(self, "_solved_for", None)
        if (
            seen is None
            or len(seen) != len(params)
            or not all(torch.equal(a, b) for a, b in zip(seen, params))
        ):
            if getattr(self, "_eval_batch", None) is None:
                from pdeml.sampling import to_torch

                raw = self.batches(None, np.random.default_rng(0)).current()
                self._eval_batch = to_torch(raw, self.dtype, self.omega.device)
            self.solve(self._eval_batch, differentiable=False)
            self._solved_for = [p.clone() for p in params]
        return self.omega

    def forward(self, x):
        x = torch.as_tensor(x)
        w = self.current_omega()
        return (self.bases(x.to(self.bases.center.dtype)).double() * w[self.expert_of(x)]).sum(
            1, keepdim=True
        )

    @torch.no_grad()
    def predict(self, x, chunk: int = 65536) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x), dtype=self.bases.center.dtype, device=self.omega.device)
        return np.concatenate(
            [self(x[i : i + chunk]).cpu().numpy() for i in range(0, max(len(x), 1), chunk)]
        )[: len(x)]

    def residual_at(self, x) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x), dtype=self.bases.center.dtype, device=self.omega.device)
        b = self._basis(x, "pde")
        return (
            self._pde(x.double(), self._field(x, b, self.current_omega()[self.expert_of(x)]))
            .detach()
            .cpu()
            .numpy()
        )

    def exports(self, x) -> dict[str, np.ndarray]:
        x = torch.as_tensor(np.asarray(x))
        return {"expert": self.expert_of(x).double().numpy(), "residual": self.residual_at(x)[:, 0]}

    def resolved(self):
        return {"estimator": repr(self.estimator.settings), "experts": list(self.experts)}


def _moved(basis: Basis, device) -> Basis:
    out = Basis(None, basis.n, graph=False, missing=basis.missing)
    out.cache = {k: v.to(device) for k, v in basis.cache.items()}
    return out


def _double(data: dict) -> dict:
    """A condition's batch with its float tensors in float64 (the constraint's precision)."""
    return {
        k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in data.items()
    }


def _block_hessian(fun, w: torch.Tensor) -> torch.Tensor:
    """:math:`\\partial^2 \\tfrac12\\|F_k\\|^2/\\partial w_k^2` (K, N, N), exact (second-order terms
    included): the Jacobian of the gradient :math:`J^\\top F` by forward mode."""

    def grad(v):
        with torch.enable_grad():
            v = v if v.requires_grad else v.detach().requires_grad_(True)
            return torch.autograd.grad(0.5 * (fun(v) ** 2).sum(), v, create_graph=True)[0]

    wv = w.detach().requires_grad_(True)
    g = grad(wv)
    rows = [torch.autograd.grad(g[:, i].sum(), wv, retain_graph=True)[0] for i in range(w.shape[1])]
    return torch.stack(rows, 1).detach()  # [k, i, :] = d g_ki / d w_k


__all__ = [
    "HardConstraint",
    "HardConstraintBackend",
    "ConstraintPoints",
    "constrained_weights",
    "expert_index",
    "levenberg_marquardt",
    "parse_experts",
]
