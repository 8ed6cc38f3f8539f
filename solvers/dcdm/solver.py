r"""DCDM: the deep conjugate-direction iteration, its training, and a CG baseline.

Kaneda, Akar, Chen, Kala, Hyde, Teran, "A deep conjugate direction method for iteratively
solving linear systems", ICML 2023.

Iteration (:func:`solve`): :math:`r_0 = b - Ax_0`; each step
:math:`q = f_\theta(r_k/\lVert r_k\rVert)`, A-orthogonalized against the last ``k`` directions,
:math:`q \leftarrow q - \sum_j \frac{q^\top Ap_j}{p_j^\top Ap_j} p_j`, then
:math:`\alpha = q^\top r_k / q^\top Aq`, :math:`x \leftarrow x + \alpha q`, :math:`r = b - Ax`
(recomputed), until :math:`\lVert r\rVert \le \text{tol}\,\lVert b\rVert`. With
:math:`f_\theta = \text{identity}` and k = 1 this is conjugate gradients in exact arithmetic.

Loss (:func:`loss`), unsupervised and scale invariant:
:math:`L(\theta) = \mathrm{mean}_b \lVert b - \frac{q^\top b}{q^\top Aq} Aq\rVert^2`, :math:`q =
f_\theta(b)`:
the residual left after an exact line search along the network's direction.

Training right-hand sides (:func:`training_rhs`): the Ritz vectors of ``m`` Lanczos steps on A
from a random start, :math:`b = \sum_i c_i v_i`, :math:`c_i \sim N(0, 1)`, the low half weighted
x9, normalized. The Ritz values of a partial Lanczos run spread over the whole spectrum
(densest at its ends), so the training residuals contain every frequency band.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pdeml import checkpoint as ckpt
from pdeml._validate import fail, positive_int
from pdeml.backend import AbstractTrainable
from pdeml.distributed import World
from pdeml.sampling import EpochSampler
from pdeml.settings import frozen_set

from .multilevel import Cycle, propose
from .net import DirectionNet
from .operator import MatrixOperator, as_operator
from .poisson import GridPoisson, assemble, batch_dot, check_fluid, prolong


@dataclass
class SolveResult:
    x: torch.Tensor
    residuals: list = field(default_factory=list)  # ||r_k|| / ||b||, k = 0, 1, ...
    iterations: int = 0
    converged: bool = False
    seconds: float = 0.0
    directions: list = field(default_factory=list)  # the p_k, with keep_directions=True
    fallbacks: int = 0  # steps that used q = r (see ``stall``)


def _direction(A, r, proposer, dirs):
    """q = proposer(r) (the network, alone or in its multigrid cycle), or r when ``proposer`` is
    None; A-orthogonalized against ``dirs``; returns (q, Aq, qAq)."""
    q = r.clone() if proposer is None else proposer(r)
    for p, Ap, pAp in dirs:
        q = q - (batch_dot(q, Ap) / pAp).view(-1, *[1] * A.fluid.ndim) * p
    Aq = A(q)
    return q, Aq, batch_dot(q, Aq)


def solve(
    A,
    b,
    net: DirectionNet | None = None,
    *,
    tol: float = 1e-6,
    maxiter: int = 1000,
    k: int = 2,
    x0=None,
    progress: bool = False,
    keep_directions: bool = False,
    stall: float | None = 0.9,
    multilevel: int | str | None = None,
    sweeps: int = 2,
    corrections: int = 2,
    grid=None,
) -> SolveResult:
    """Solve A x = b on the grid of ``A`` (float64 iteration).

    ``A``: a grid operator (:class:`GridPoisson`,
    :class:`~pdeml.solvers.dcdm.operator.MatrixOperator`),
    or a scipy sparse SPD matrix with ``grid`` = its grid shape, or a boolean mask whose ``True``
    cells (C order) carry the unknowns. ``b``: (*grid) or (1, *grid), then ``SolveResult.x`` is on
    the grid; or a vector over the unknowns, then x is one too.

    ``net=None`` uses q = r (a conjugate-direction method: CG for k >= 1).

    ``stall``: safeguard (not in the paper). The network is a fixed function of r/||r||. When
    its direction, once A-orthogonalized, no longer reduces ||r|| below ``stall`` times the
    previous value, the next input would be almost the same and the iteration would stay
    stuck. So the next step uses q = r instead, which moves the residual on, and the step
    after it tries the network again. A network direction that A-orthogonalization reduces to
    nothing (it repeats a recent one) is replaced by q = r too. ``None`` turns both off (the
    paper's method). ``SolveResult.fallbacks`` counts the q = r steps.

    ``multilevel`` (ours, not the paper's): on a grid with a side longer than this (pass the
    side of the network's training grid, or ``"auto"`` to read it from ``net.trained_on``), q
    comes from a multigrid cycle (``corrections`` 2: a W-cycle; 1: a V-cycle) that smooths with
    ``sweeps`` damped-Jacobi steps per level and runs the network on the coarsest level, no
    finer than ``multilevel`` (:class:`~pdeml.solvers.dcdm.multilevel.Cycle`). The iteration count
    then stays at the training grid's at 2x to 8x its resolution."""
    if not tol > 0:
        fail("tol", tol, "must be positive", "pass e.g. 1e-6")
    maxiter, k = positive_int("maxiter", maxiter), positive_int("k", k)
    A = as_operator(A, grid)
    flat = np.ndim(b) == 1
    b = A.on_grid(b, "b")
    x = torch.zeros_like(b) if x0 is None else A.on_grid(x0, "x0")
    out = (lambda v: v[0][A.fluid]) if flat else (lambda v: v[0])
    nb = float(b.norm())
    if not np.isfinite(nb):
        fail(
            "b",
            "a right-hand side with NaN/inf",
            "must have finite values",
            "check how b was built",
        )
    if nb == 0:
        return SolveResult(x=out(x), residuals=[0.0], converged=True)
    if multilevel is not None:  # on a grid no finer than ``multilevel``: just the net
        proposer = Cycle(A, net, multilevel, sweeps, corrections)
    else:
        proposer = None if net is None else (lambda v: propose(net, v, A.fluid))
    r = b - A(x)
    res = [float(r.norm()) / nb]
    dirs: list = []
    kept: list = []
    t0 = time.perf_counter()
    from pdeml.callbacks import progress as shown

    bar = shown(total=maxiter, desc="dcdm", enabled=progress, leave=False, unit="iterations")
    it = fallbacks = 0
    used_net = False
    with torch.no_grad():
        while res[-1] > tol and it < maxiter:
            stuck = stall is not None and used_net and res[-1] > stall * res[-2]
            used_net = net is not None and not stuck
            q, Aq, qAq = _direction(A, r, proposer if used_net else None, dirs)
            if stall is not None and used_net and not float(qAq) > 1e-14 * float(batch_dot(q, q)):
                q, Aq, qAq = _direction(A, r, None, dirs)  # the net repeated a recent direction
                used_net = False
            fallbacks += int(net is not None and not used_net)
            if float(qAq) < 0 or not np.isfinite(float(qAq)):
                fail(
                    "A",
                    f"q^T A q = {float(qAq):.3g} at iteration {it}",
                    "shows the matrix is not symmetric positive definite",
                    "DCDM and CG need an SPD matrix: negate a negative "
                    "definite one, or use a direct or indefinite solver "
                    "(scipy.sparse.linalg.minres)",
                )
            if not float(qAq) > 0:
                break  # direction lost (numerically zero)
            alpha = batch_dot(q, r) / qAq
            x = x + alpha.view(-1, *[1] * A.fluid.ndim) * q
            r = b - A(x)
            dirs = (dirs + [(q, Aq, qAq)])[-k:]
            if keep_directions:
                kept.append(q[0])
            it += 1
            res.append(float(r.norm()) / nb)
            bar.update(1)
            bar.set_postfix(residual=f"{res[-1]:.2e}")
    bar.close()
    return SolveResult(
        x=out(x),
        residuals=res,
        iterations=it,
        converged=res[-1] <= tol,
        seconds=time.perf_counter() - t0,
        directions=kept,
        fallbacks=fallbacks,
    )


def loss(net: DirectionNet, A: GridPoisson, b: torch.Tensor) -> torch.Tensor:
    """mean_b || b - (q.b / q.Aq) A q ||^2 with q = net(b); b: (B, *grid), unit norm."""
    q = net(b, A.fluid)
    Aq = A(q)
    alpha = batch_dot(q, b) / batch_dot(q, Aq)
    return (b - alpha.view(-1, *[1] * A.fluid.ndim) * Aq).pow(2).flatten(1).sum(1).mean()


def lanczos_ritz(A, m: int, rng) -> tuple[np.ndarray, np.ndarray]:
    r"""Ritz pairs of ``m`` Lanczos steps on the symmetric matrix ``A`` from a random start.

    :math:`AQ_m = Q_mT_m + \beta_m q_{m+1}e_m^\top`; the Ritz pairs are :math:`(\theta_i, Q_ms_i)`
    for the
    eigenpairs :math:`(\theta_i, s_i)` of the tridiagonal :math:`T_m`
    (``scipy.linalg.eigh_tridiagonal``).
    The basis is re-orthogonalized in full (twice) each step, so it stays orthonormal in floating
    point; the run stops early if the Krylov space is exhausted. Returns ascending values (k,)
    and vectors (n, k). Memory and time grow as n·m (1000 steps on 64³ cells: 2 GB)."""
    from scipy.linalg import eigh_tridiagonal

    n = A.shape[0]
    m = min(positive_int("ritz", m), n)
    Q = np.zeros((n, m))
    alpha, beta = np.zeros(m), np.zeros(m)
    q = rng.standard_normal(n)
    q /= np.linalg.norm(q)
    k = m
    for j in range(m):
        Q[:, j] = q
        w = A @ q
        alpha[j] = q @ w
        for _ in range(2):
            w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        beta[j] = np.linalg.norm(w)
        if beta[j] <= 1e-10 * abs(alpha[j]):
            k = j + 1  # invariant subspace: exact eigenpairs
            break
        q = w / beta[j]
    vals, S = eigh_tridiagonal(alpha[:k], beta[: k - 1])
    return vals, Q[:, :k] @ S


def _training_system(system):
    """(fluid mask, scipy matrix) of an obstacle layout (its Poisson matrix) or of a
    :class:`~pdeml.solvers.dcdm.operator.MatrixOperator` (the user's matrix)."""
    if isinstance(system, MatrixOperator):
        return system.fluid.cpu().numpy(), system.matrix
    fluid = check_fluid(system)
    return fluid, assemble(fluid)


def training_rhs(
    system, count: int, *, ritz: int = 1000, smooth: float = 0.5, seed: int = 0
) -> np.ndarray:
    """(count, *grid) unit right-hand sides from Lanczos Ritz vectors (see the module docstring).
    ``system``: a fluid mask (its Poisson matrix) or a
    :class:`~pdeml.solvers.dcdm.operator.MatrixOperator`.
    ``smooth``: the fraction of them drawn from the lowest 5% of the Ritz pairs only (not in
    the paper: without them a network stalls on smooth residuals, see docs/dcdm.md)."""
    return _ritz_rhs(*_training_system(system), count, ritz, smooth, seed)


def _ritz_rhs(fluid, A, count, ritz, smooth, seed) -> np.ndarray:
    if not 0.0 <= smooth <= 1.0:
        fail("smooth", smooth, "is not a fraction", "pass a value in [0, 1], e.g. 0.5")
    rng = np.random.default_rng(seed)
    vals, vecs = lanczos_ritz(A, ritz, rng)
    keep = vals > 1e-8 * vals.max()  # drop Ritz values ~ 0
    vals, vecs = vals[keep], vecs[:, keep]
    weight = np.where(np.arange(len(vals)) < len(vals) // 2, 9.0, 1.0)  # ascending: low half x9
    c = rng.standard_normal((count, len(vals))) * weight
    n_smooth = int(round(smooth * count))
    c[:n_smooth, max(1, len(vals) // 20) :] = 0.0
    b = c @ vecs.T
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return prolong(fluid, b)


@dataclass(frozen=True, eq=False)
class RightHandSides(EpochSampler):
    """The training right-hand sides ``data`` (count, *grid), ``batch_size`` of them per step in
    a fresh order every epoch (the run's generator). A batch is ``{"data": {"b": (B, *grid)}}``;
    under torchrun each rank trains on its block of the rows."""

    data: np.ndarray
    batch_size: int = 16

    def __post_init__(self):
        frozen_set(self, data=np.asarray(self.data))
        positive_int("batch", self.batch_size)
        if self.batch_size > len(self.data):
            fail(
                "batch",
                self.batch_size,
                f"exceeds the {len(self.data)} right-hand sides",
                f"pass at most {len(self.data)}",
            )

    def _items(self, run):
        return len(self.data)

    def _read(self, run, idx, fresh):
        return {"data": {"b": self.data[idx]}}


class DirectionTraining(AbstractTrainable):
    """A :class:`DirectionNet` and its training data as a trainable backend: one loss term,
    :func:`loss` on a batch of right-hand sides, trained by :func:`pdeml.fit` (:func:`train`)."""

    def __init__(self, net: DirectionNet, A, rhs: np.ndarray, batch: int):
        super().__init__()
        self.net, self.rhs, self.batch = net, rhs, batch
        self.operator = [A]  # a list: the matrix's buffers are not the run's state

    @property
    def term_names(self):
        return ["dcdm"]

    def losses(self, batch, residuals=None):
        return {"dcdm": loss(self.net, self.operator[0], batch["data"]["b"])}

    def batches(self, sampler, rng):
        return (sampler if sampler is not None else RightHandSides(self.rhs, self.batch)).init(
            None, rng
        )

    def reference(self, rng):
        return None

    @torch.no_grad()
    def predict(self, x):
        """The network's direction for right-hand sides ``x`` (B, *grid)."""
        A = self.operator[0]
        return (
            self.net(torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device), A.fluid)
            .cpu()
            .numpy()
        )


def train(
    system,
    *,
    epochs: int = 40,
    count: int = 800,
    batch: int = 16,
    lr: float = 3e-3,
    schedule=None,
    channels: int = 16,
    levels: int = 4,
    seed: int = 0,
    device="cpu",
    checkpoint=None,
    resume: bool = False,
    progress: bool = True,
    init: DirectionNet | None = None,
    ritz: int = 1000,
    smooth: float = 0.5,
    world: World | None = None,
) -> tuple[DirectionNet, dict]:
    """Train a :class:`DirectionNet` on one matrix under :func:`pdeml.fit`: Adam at ``lr`` (or
    ``lr`` times a ``schedule`` over the whole training, e.g. :class:`pdeml.Cosine`) for
    ``epochs`` passes over ``count`` right-hand sides, ``batch`` per step (a remainder of
    ``count`` short of a batch is left out of each epoch's order). ``system``: a fluid
    mask (the Poisson matrix of that obstacle layout) or a
    :class:`~pdeml.solvers.dcdm.operator.MatrixOperator` (your own matrix on its grid).
    ``checkpoint``: the network file to write (``dcdm.pt``, weights_only-safe, what
    :func:`load` reads); fit's resumable ``checkpoint.pt`` goes beside it, and ``resume``
    continues from that. ``init``: start from this network's weights (e.g. one trained on a
    coarser grid, which is cheaper per epoch: the network is resolution-free). ``world``
    (:class:`pdeml.distributed.World`): under torchrun each rank takes its block of every batch
    of right-hand sides, gradients and losses are averaged over the ranks (the same steps as one
    process), and rank 0 alone shows progress and writes the files. Returns the network and
    ``{"epochs", "loss" (the mean loss of each epoch), "wall_time_s", "grid"}``."""
    from pdeml.callbacks import ProgressBar
    from pdeml.fit import fit
    from pdeml.optim import Adam
    from pdeml.steppers import FirstOrder

    world = world if world is not None else World()
    fluid, matrix = _training_system(system)
    epochs, count, batch = (
        positive_int("epochs", epochs),
        positive_int("count", count),
        positive_int("batch", batch),
    )
    dev = torch.device(device)
    A = (system if isinstance(system, MatrixOperator) else GridPoisson(fluid)).to(dev)
    rhs = _ritz_rhs(fluid, matrix, count, ritz, smooth, seed).astype(np.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DirectionNet(fluid.ndim, channels, levels).to(dev)
        if init is not None:
            net.load_state_dict(init.state_dict())
    batch = min(batch, count)  # fewer right-hand sides than a batch: one batch of all of them
    backend = DirectionTraining(net, A, rhs, batch)
    per_epoch = count // batch
    state = None if checkpoint is None else Path(checkpoint).with_name("checkpoint.pt")
    result = fit(
        backend,
        [(epochs * per_epoch, FirstOrder(Adam(lr, schedule=schedule)))],
        seed=seed,
        eval_every=1,
        checkpoint=state,
        resume=resume,
        world=world,
        callbacks=[ProgressBar(progress)] if world.main else [],
    )
    steps = [row["dcdm"] for row in result.history]
    info = {
        "epochs": epochs,
        "loss": [
            float(np.mean(steps[e * per_epoch : (e + 1) * per_epoch]))
            for e in range(epochs)
            if steps[e * per_epoch : (e + 1) * per_epoch]
        ],
        "wall_time_s": result.wall_time_s,
        "grid": list(fluid.shape),
    }
    net.trained_on = tuple(fluid.shape)
    if checkpoint is not None and world.main:
        save(net, checkpoint, info)
    return net, info


def save(net: DirectionNet, path, info: dict | None = None):
    import json

    ckpt.save(
        Path(path),
        {
            "format": 1,
            "kind": "dcdm",
            "net": net.state_dict(),
            "config": json.dumps({"dim": net.dim, "channels": net.channels, "levels": net.levels}),
            "info": json.dumps(info or {}),
        },
    )


def load(path, device="cpu") -> DirectionNet:
    import json

    saved = ckpt.load(
        Path(path),
        map_location=device,
        missing="train a network with `pdeml dcdm train --out DIR`, then pass DIR/dcdm.pt",
        unreadable="pass the dcdm.pt that `pdeml dcdm train` wrote (this file is not one; a "
        "matrix goes to --matrix)",
    )
    if saved.get("kind") != "dcdm":
        fail(
            "checkpoint",
            str(path),
            "is not a DCDM checkpoint",
            "pass a file written by `pdeml dcdm train`",
        )
    net = DirectionNet(**json.loads(saved["config"])).to(device)
    net.load_state_dict(saved["net"])
    grid = json.loads(saved.get("info", "{}")).get("grid")
    net.trained_on = tuple(grid) if grid else None
    return net.eval()
