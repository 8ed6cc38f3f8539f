r"""Operator preconditioning for PINNs: the Gauss-Newton matrix, its conditioning, and ENGD.

Write the weighted residuals of all loss terms as one vector
:math:`\tilde r_k = \sqrt{w_k/N_k}\, r_k` so that the loss is :math:`L = \lVert\tilde r\rVert^2`,
and let :math:`J = \partial\tilde r/\partial\theta`. Then

.. math:: G = J^\top J = \sum_k \frac{w_k}{N_k}\sum_i \nabla_\theta r_k(x_i)\nabla_\theta
          r_k(x_i)^\top

is the Gauss-Newton matrix of the residuals (for a linear PDE: the Gram matrix of the PDE and
boundary operators applied to the model's tangent features, the matrix :math:`A` of De Ryck,
Bonnet, Mishra, de Bézenac, "An operator preconditioning perspective on training in
physics-informed machine learning", ICLR 2024). Gradient descent converges at a rate set by
:math:`\kappa(A)`; :func:`conditioning` reports it (and :math:`\kappa(P^{-1}A)` for a Jacobi
preconditioner), so a user sees why training stalls.

**ENGD** (energy natural gradient descent; Müller & Zeinhofer, "Achieving high accuracy with
PINNs via energy natural gradient descent", ICML 2023): :math:`\theta \leftarrow \theta - \eta\,
d`, :math:`d = (G + \lambda I)^{+} J^\top\tilde r` (the damped Gauss-Newton step; for a nonlinear
PDE, the step of its linearization), :math:`\eta` the best of :math:`\{2^{-k}\}_{k=0}^{K}` by
loss. ``solver="dense"`` solves by an SVD of J (Tikhonov filter :math:`s/(s^2+\lambda)`);
``solver="cg"`` is the matrix-free (Hessian-free) variant: conjugate gradients on
:math:`(J^\top J + \lambda I)d = J^\top\tilde r` with products :math:`Jv` and :math:`J^\top u` by
automatic differentiation, for networks too large for a P x P matrix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import ClassVar

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ._validate import fail, finite_scalar, positive_int
from .backend import AbstractLeastSquares
from .distributed import all_mean_
from .settings import frozen_set
from .steppers import AbstractStepper, NonFinite, StepResult, global_losses, weigh


def _check(backend):
    if not isinstance(backend, AbstractLeastSquares):
        fail(
            "backend",
            type(backend).__name__,
            "has no residual vector (it is not a least-squares backend)",
            "use a first-order stepper (Adam) with this method",
        )
    if not backend.exact_residuals:
        fail(
            "estimator",
            backend.resolved().get("estimator"),
            "gives paired (unbiased) stochastic residual estimates",
            "use an exact estimator (taylor or autograd) with Gauss-Newton methods",
        )


def residual_vector(backend, batch: dict, weights: dict | None = None, keys=None) -> torch.Tensor:
    """:math:`\tilde r` (the loss is its squared norm) from ``backend.residual_terms``; ``keys``
    limits it to some batch keys ("domain" and condition names)."""
    _check(backend)
    weights = weights or {}
    return torch.cat(
        [
            (weights.get(name, 1.0) / r.shape[0]) ** 0.5 * r.reshape(-1)
            for name, r in backend.residual_terms(batch, terms=keys).items()
        ]
    )


class _Terms(torch.nn.Module):
    """``backend.residual_terms`` as a module call, for ``torch.func.functional_call``."""

    def __init__(self, backend):
        super().__init__()
        self.backend = backend

    def forward(self, batch, terms):
        return self.backend.residual_terms(batch, terms=terms)


def term_jacobians(
    backend, batch: dict, weights: dict | None = None, keys=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r~, J)`` with the rows of J computed per point: each residual depends on its own point
    only, so ``torch.func.vmap`` over points of the reverse-mode gradient in the parameters gives
    J in one batched pass (the cost of a few forward passes, not N backward ones). Needs an
    estimator whose forward pass is plain tensor algebra (Taylor mode, the default).
    ``keys``: the batch keys to include (default: "domain" and every soft condition)."""
    from torch.func import functional_call, jacrev, vmap

    weights = weights or {}
    wrap = _Terms(backend)
    named = {f"backend.{n}": p.detach() for n, p in backend.named_parameters() if p.requires_grad}
    rows, jac = [], []
    groups = backend.residual_keys()
    for key in keys if keys is not None else list(groups):
        data = batch[key]

        def one(ps, row, key=key):
            single = {key: {k: v.unsqueeze(0) for k, v in row.items()}}
            out = functional_call(wrap, ps, (single, [key]))
            return torch.cat([v.reshape(-1) for v in out.values()])

        r = torch.cat(
            [v.reshape(len(data["x"]), -1) for v in wrap(batch, [key]).values()], 1
        ).detach()
        J = vmap(jacrev(one), in_dims=(None, 0))(named, data)
        J = torch.cat([j.reshape(len(data["x"]), r.shape[1], -1) for j in J.values()], 2)
        for c, name in enumerate(groups[key]):
            scale = (weights.get(name, 1.0) / len(data["x"])) ** 0.5
            rows.append(scale * r[:, c])
            jac.append(scale * J[:, c])
    return torch.cat(rows), torch.cat(jac)


def weighted_jacobian(backend, batch: dict, weights: dict | None = None, keys=None):
    """``(r~, J)``: :func:`term_jacobians`, or, where the residual cannot run under
    ``torch.func`` (nested autograd inside it), one batched reverse pass over the rows of
    :func:`residual_vector` (much slower; warns)."""
    try:
        return term_jacobians(backend, batch, weights, keys)
    except RuntimeError as e:
        warnings.warn(
            f"the per-point vmapped Jacobian failed ({str(e)[:120]}...); using one reverse "
            "pass per residual instead (slow). Use the Taylor estimator (--derivatives "
            "taylor) for the fast path.",
            stacklevel=3,
        )
        r = residual_vector(backend, batch, weights, keys)
        params = [p for p in backend.parameters() if p.requires_grad]
        return r.detach(), jacobian(r, params)


def jacobian(r: torch.Tensor, params: list) -> torch.Tensor:
    """:math:`\\partial r/\\partial\\theta` (N, P) by one batched reverse pass (vmapped over
    rows)."""
    eye = torch.eye(len(r), dtype=r.dtype, device=r.device)
    gs = torch.autograd.grad(
        r, params, grad_outputs=eye, is_grads_batched=True, retain_graph=True, allow_unused=True
    )
    return torch.cat(
        [
            (
                torch.zeros(len(r), p.numel(), dtype=r.dtype, device=r.device)
                if g is None
                else g.reshape(len(r), -1)
            )
            for g, p in zip(gs, params)
        ],
        1,
    )


def conditioning(backend, batch: dict, terms=None, rtol: float = 1e-12) -> dict:
    r"""Spectrum of :math:`A = J^\top J` for the residuals of ``terms`` (default: the PDE terms),
    restricted to its range (eigenvalues above ``rtol`` times the largest: directions the
    operator cannot see, such as a constant for :math:`-u''`, are not conditioning).

    Returns ``{"kappa": κ(A), "kappa_jacobi": κ(D^{-1/2} A D^{-1/2})`` with D = diag(A),
    ``"eigenvalues": ...}``.
    """
    _check(backend)
    groups = backend.residual_keys()
    key_of = {name: key for key, names in groups.items() for name in names}
    names = list(terms) if terms is not None else list(groups["domain"])
    known = list(key_of)
    unknown = [n for n in names if n not in known]
    if unknown:
        fail("terms", terms, f"names unknown terms {unknown}", f"use some of {known}")
    keys = list(dict.fromkeys(key_of[n] for n in names))
    _, J = weighted_jacobian(backend, batch, {n: float(n in names) for n in known}, keys)
    J = J.detach()
    A = J.T @ J

    def kappa(M):
        ev = torch.linalg.eigvalsh(M)
        ev = ev[ev > rtol * ev.max()]
        return float(ev.max() / ev.min()), ev

    k, ev = kappa(A)
    d = A.diagonal().clamp_min(torch.finfo(A.dtype).tiny).rsqrt()
    kj, _ = kappa(d[:, None] * A * d[None, :])
    return {"kappa": k, "kappa_jacobi": kj, "eigenvalues": ev.cpu().numpy()}


@dataclasses.dataclass(frozen=True)
class ENGD(AbstractStepper):
    r"""Energy natural gradient / Gauss-Newton steps with a grid line search (see the module).

    A stepper of its own: one whole step per training step on the weighted residual vector of
    a least-squares backend (the PINN). The loss weights are the case's; there is no learning
    rate (the line search picks the step) and no combiner.

    Args:
        damping: the initial :math:`\lambda`, relative to the largest squared singular value of
            J (dense) or absolute (cg). ``adaptive``: divide it by 3 after a full step
            (η ≥ 1/2), multiply it by 5 after a short one (η < 1/16), Levenberg-Marquardt style.
        line_search: K; step sizes :math:`2^{-k}`, k = 0..K.
        solver: "dense" (SVD of J) or "cg" (Hessian-free). cg_iters, cg_tol: its budget.

    Example:
        >>> problem = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 2.0,
        ...                      [pl.Dirichlet(0.0)], exact=lambda x: x * (1 - x))
        >>> backend = pl.PINN(pl.nn.MLP(16, 2), sampler=pl.samplers.Uniform(64, 2)).build(problem)
        >>> truth = backend.reference(np.random.default_rng(0))
        >>> result = pl.fit(backend, [(20, pl.ENGD())], truth=truth)
        >>> result.l2_relative_error < 1e-3                        # 20 Gauss-Newton steps
        True
    """

    damping: float = 1e-8
    line_search: int = 20
    solver: str = "dense"
    cg_iters: int = 200
    cg_tol: float = 1e-10
    adaptive: bool = True

    name: ClassVar[str] = "engd"

    def __post_init__(self):
        frozen_set(self, damping=finite_scalar("damping", self.damping))
        if self.damping < 0:
            fail("damping", self.damping, "must be non-negative", "pass e.g. 1e-12")
        positive_int("line_search", self.line_search)
        if self.solver not in ("dense", "cg"):
            fail("solver", self.solver, "is not an ENGD solver", 'pass "dense" or "cg"')
        positive_int("cg_iters", self.cg_iters)
        frozen_set(self, cg_tol=finite_scalar("cg_tol", self.cg_tol), adaptive=bool(self.adaptive))

    def _start(self, run):
        _check(run.backend)
        run.lam, run.last_step = self.damping, None

    def direction(self, run, batch):
        """``(r~, d)``: the residual vector and the damped Gauss-Newton direction."""
        if self.solver == "cg":
            r = residual_vector(run.backend, batch, run.local_weights())
            return r.detach(), self._cg(run, r, run.params)
        r, J = weighted_jacobian(run.backend, batch, run.local_weights())
        if run.world.active:
            # several processes: the rows of J are spread over the ranks, so average the normal
            # equations instead, (J^T J + λ s²) d = J^T r; the same direction as the SVD filter
            J = J.detach()
            G, b = J.T @ J, J.T @ r
            all_mean_([G, b], run.world)
            e, V = torch.linalg.eigh(G)
            lam = run.lam * float(e.max())
            filt = torch.where(e > 0, 1 / (e + lam), torch.zeros_like(e))
            return r, V @ (filt * (V.T @ b))
        U, S, Vh = torch.linalg.svd(J.detach(), full_matrices=False)
        lam = run.lam * float(S.max()) ** 2
        filt = torch.where(S > 0, S / (S**2 + lam), torch.zeros_like(S))
        return r, Vh.T @ (filt * (U.T @ r))

    def _squares(self, run, r: torch.Tensor) -> float:
        """Σ r², the loss, averaged over the ranks (each holds its share of the rows)."""
        v = (r.detach() ** 2).sum().reshape(1)
        all_mean_([v], run.world)
        return float(v)

    def _cg(self, run, r, params):
        """Matrix-free CG on (J^T J + λ) d = J^T r: J^T u by a reverse pass, J v by the
        transpose trick (the derivative of J^T u · v in u)."""
        u = torch.zeros_like(r, requires_grad=True)
        jtu = torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(r, params, u, create_graph=True, retain_graph=True)
            ]
        )

        def jv(v):
            return torch.autograd.grad(jtu, u, v, retain_graph=True)[0]

        def jt(w):
            return torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(r, params, w, retain_graph=True)]
            )

        def op(v):
            out = jt(jv(v))
            all_mean_([out], run.world)
            return out + run.lam * v

        b = jt(r.detach())
        all_mean_([b], run.world)
        x = torch.zeros_like(b)
        res, p = b.clone(), b.clone()
        rr = res @ res
        for _ in range(self.cg_iters):
            Ap = op(p)
            alpha = rr / (p @ Ap)
            x, res = x + alpha * p, res - alpha * Ap
            rr_new = res @ res
            if float(rr_new.sqrt()) <= self.cg_tol * float(b.norm()):
                break
            p, rr = res + rr_new / rr * p, rr_new
        return x.detach()

    def step(self, run, batch, k, want_residuals=False):
        """One ENGD step: the best of the line search (or no move if none lowers the loss).
        A non-finite residual or direction leaves the parameters exactly where they were."""
        backend, params = run.backend, run.params
        start = parameters_to_vector(params).detach().clone()
        try:
            r, d = self.direction(run, batch)
        except torch.linalg.LinAlgError as e:  # the SVD of a non-finite Jacobian
            raise NonFinite(backend.losses(batch), f"the Gauss-Newton system ({e})") from None
        if not bool(torch.isfinite(r).all() & torch.isfinite(d).all()):
            what = (
                "the residuals"
                if not bool(torch.isfinite(r).all())
                else "the Gauss-Newton direction"
            )
            raise NonFinite(backend.losses(batch), what)
        quiet = contextlib.nullcontext() if backend.residuals_need_grad else torch.no_grad()

        def move(eta):
            with torch.no_grad():
                vector_to_parameters(start - eta * d if eta else start, params)

        def loss_at(eta):
            move(eta)
            with quiet:
                return self._squares(run, residual_vector(backend, batch, run.local_weights()))

        best_eta, best = 0.0, self._squares(run, r)
        for i in range(self.line_search + 1):
            val = loss_at(2.0**-i)
            if val < best:  # NaN never wins
                best_eta, best = 2.0**-i, val
        move(best_eta)
        run.last_step = best_eta
        if self.adaptive:  # Levenberg-Marquardt style: trust the model more when it works
            if best_eta >= 0.5:
                run.lam = max(run.lam / 3, 1e-15)
            elif best_eta < 2.0**-4:
                run.lam = min(run.lam * 5, 1.0)
        residuals: dict | None = {} if want_residuals else None
        losses = global_losses(run.local_losses(batch, residuals), run.world)
        total = sum(weigh(losses, run.weights).values())
        return StepResult(losses, total, best_eta, residuals=residuals)

    def state_dict(self, run):
        return {"damping": torch.tensor(run.lam, dtype=torch.float64)}

    def load_state_dict(self, run, state):
        run.lam = float(state.get("damping", run.lam))

    def __repr__(self):
        return f"ENGD(damping={self.damping}, solver={self.solver!r})"
