r"""Loss-term combiners: per-term losses in, one descent direction out.

The seam for gradient-combination methods (ConFIG, PCGrad, ... in the optimizer layer):
``backward`` receives the named per-term losses and the trainable parameters and must leave
the combined gradient in ``p.grad``. ``total`` gives the scalar objective for line searches.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, cast

import torch

from ._validate import fail, finite_scalar
from .distributed import World, all_mean_
from .settings import Run, frozen_set


class CombinerRun(Run):
    """A run of a combiner (what :meth:`AbstractCombiner.init` returns): the loss-term ``names``,
    the ``world`` it averages over, and the rule's own state (momenta, smoothed weights, a
    generator). Its methods are the rule's, applied to this state."""

    names: list
    world: World

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar objective (used by L-BFGS and for reporting)."""
        return self.settings.total(losses)

    def backward(self, losses: dict[str, torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
        """Fill ``p.grad`` for ``params``; return the scalar objective."""
        return self.settings.backward(self, losses, params)

    def direction(self, G: torch.Tensor, losses: dict) -> torch.Tensor:
        """The direction built from per-term gradients ``G`` (m, P) (per-term rules)."""
        return self.settings.direction(self, G, losses)

    def state_dict(self) -> dict:
        """Tensors that restore the run on resume (momenta, smoothed weights)."""
        return self.settings.state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        self.settings.load_state_dict(self, state)


class AbstractCombiner(abc.ABC):
    """Settings of a combination rule (a frozen dataclass). :meth:`init` returns a separate
    :class:`CombinerRun` that keeps whatever state the rule needs (momenta, smoothed weights, a
    generator), so one settings object can serve two runs; every method past ``init`` takes that
    run first. The losses it receives are already weighted by the case's loss weights
    (``fit(weights=...)``)."""

    #: a compiled step can build this rule's direction in its graph: tensor operations on the
    #: per-term gradients, no state that changes (:class:`pdeml.steppers.WholeStep`)
    in_graph: ClassVar[bool] = False

    def init(self, names, world: World | None = None) -> CombinerRun:
        """A run of this rule for the loss terms ``names`` (in the backend's order). On several
        processes (``world``) every gradient it builds from is first averaged over the ranks, so
        the rule sees the global per-term gradients (:mod:`pdeml.distributed`)."""
        run = CombinerRun(settings=self, names=list(names), world=world or World())
        self._start(run)
        return run

    def _start(self, run) -> None:
        """Set up the run state (default: none)."""

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar objective (used by L-BFGS and for reporting): the sum of the terms."""
        return cast(torch.Tensor, sum(losses.values()))

    @abc.abstractmethod
    def backward(
        self, run, losses: dict[str, torch.Tensor], params: list[torch.Tensor]
    ) -> torch.Tensor:
        """Fill ``p.grad`` for ``params``; return the scalar objective."""

    def direction(self, run, G: torch.Tensor, losses: dict) -> torch.Tensor:
        """The direction from per-term gradients ``G`` (m, P) (per-term rules)."""
        raise NotImplementedError(f"{type(self).__name__} builds no per-term direction")

    def state_dict(self, run) -> dict:
        """Tensors that restore the run on resume (momenta, smoothed weights)."""
        return {}

    def load_state_dict(self, run, state: dict) -> None:
        """Restore :meth:`state_dict`."""


@dataclasses.dataclass(frozen=True)
class Sum(AbstractCombiner):
    r"""The sum :math:`L = \sum_k L_k` of the (weighted) loss terms, back-propagated at once.

    Example:
        >>> pl.Sum()          # the default; loss weights are the case's ``weights``
        Sum()
    """

    in_graph: ClassVar[bool] = True  # the compiled step differentiates the sum itself

    def backward(self, run, losses, params):
        total = self.total(losses)
        total.backward()
        if run.world.active:
            all_mean_([p.grad for p in params if p.grad is not None], run.world)
        return total


# ----------------------------------------------------------------- per-term gradient combiners
def term_gradients(losses: dict, params: list, names=None) -> torch.Tensor:
    """Stacked flat gradients (m, P) of the named loss terms (all by default); unused
    parameters contribute zeros. The graph is kept until the last term."""
    names = list(losses) if names is None else list(names)
    rows = []
    for k, name in enumerate(names):
        gs = torch.autograd.grad(
            losses[name], params, retain_graph=k < len(names) - 1, materialize_grads=True
        )
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


def set_gradient(params: list, flat: torch.Tensor) -> None:
    """Write a flat vector into ``p.grad`` of ``params``."""
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).to(p.dtype).clone()
        i += n


def config_direction(G: torch.Tensor) -> torch.Tensor:
    r"""ConFIG's conflict-free update from per-term gradients ``G`` (m, P).

    With unit vectors :math:`\hat g_i = g_i/\lVert g_i\rVert` stacked in :math:`\hat G`, the
    direction :math:`g_u = \hat G^{+}\mathbf 1` (least-squares / pseudo-inverse) has
    :math:`\hat g_i\cdot g_u = 1` for every i when the :math:`\hat g_i` are independent: every
    term decreases, equally fast. It is normalized and rescaled by the sum of the projections,
    :math:`g = (\sum_i g_i\cdot\hat g_u)\,\hat g_u`. Liu, Chu, Thuerey, "ConFIG: towards
    conflict-free training of physics informed neural networks", ICLR 2025.
    """
    norms = G.norm(dim=1, keepdim=True)
    units = torch.where(
        norms > 0, G / norms.clamp_min(torch.finfo(G.dtype).tiny), torch.zeros_like(G)
    )
    gu = torch.linalg.pinv(units) @ torch.ones(len(G), dtype=G.dtype, device=G.device)
    gu_hat = gu / gu.norm().clamp_min(torch.finfo(G.dtype).tiny)
    return (G @ gu_hat).sum() * gu_hat


def pcgrad_direction(G: torch.Tensor, order=None) -> torch.Tensor:
    r"""PCGrad (Yu et al., "Gradient surgery for multi-task learning", NeurIPS 2020): each
    :math:`g_i`, in turn, loses its component along every other *original* :math:`g_j` it
    conflicts with (:math:`g_i\cdot g_j < 0`), in the order ``order`` (default: as given); the
    projected gradients are summed."""
    m = len(G)
    out = G.clone()
    for i in range(m):
        for j in order if order is not None else range(m):
            if j == i:
                continue
            dot = out[i] @ G[j]
            if dot < 0:
                out[i] = out[i] - dot / (G[j] @ G[j]).clamp_min(torch.finfo(G.dtype).tiny) * G[j]
    return out.sum(0)


class _PerTerm(AbstractCombiner):
    """Combiners built from per-term gradients: ``total`` is the plain sum (for reporting and
    line searches); ``backward`` builds the direction from every term's gradient (M-ConFIG
    overrides it: one term per step)."""

    def backward(self, run, losses, params):
        G = term_gradients(losses, params)
        all_mean_([G], run.world)
        set_gradient(params, self.direction(run, G, losses))
        return self.total(losses).detach()


@dataclasses.dataclass(frozen=True)
class ConFIG(_PerTerm):
    """Conflict-free inverse gradients (:func:`config_direction`): ``--combiner config``.

    Example:
        >>> pl.FirstOrder(pl.Adam(1e-3), pl.ConFIG())       # a phase's stepper; --combiner config
        FirstOrder(Adam(0.001, decay=1.0, decay_every=1000), ConFIG())
    """

    #: the direction is tensor operations without state: a compiled step can build it in its
    #: graph (:class:`pdeml.steppers.WholeStep`)
    in_graph: ClassVar[bool] = True

    def direction(self, run, G, losses):
        return config_direction(G)


@dataclasses.dataclass(frozen=True)
class PCGrad(_PerTerm):
    """Projecting conflicting gradients (:func:`pcgrad_direction`), a fresh random term order
    each step from ``seed`` (as in the paper): ``--combiner pcgrad``."""

    seed: int = 0

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            fail("seed", self.seed, "must be an integer", "pass e.g. PCGrad(seed=0)")

    def _start(self, run):
        run.gen = torch.Generator().manual_seed(self.seed)

    def direction(self, run, G, losses):
        return pcgrad_direction(G, torch.randperm(len(G), generator=run.gen).tolist())

    def state_dict(self, run):
        return {"gen": run.gen.get_state()}

    def load_state_dict(self, run, state):
        if "gen" in state:  # checkpoints from before combiners had state have none
            run.gen.set_state(state["gen"])

    def __repr__(self):
        return "PCGrad()" if self.seed == 0 else f"PCGrad(seed={self.seed})"


@dataclasses.dataclass(frozen=True)
class GradNorm(_PerTerm):
    r"""Magnitude balancing by learning-rate annealing (Wang, Teng, Perdikaris, "Understanding
    and mitigating gradient flow pathologies in PINNs", SIAM J. Sci. Comput. 2021): weights
    :math:`\hat\lambda_i = \sum_j\lVert g_j\rVert / \lVert g_i\rVert` (every weighted term
    gets the same gradient norm), smoothed
    :math:`\lambda \leftarrow \alpha\lambda + (1-\alpha)\hat\lambda`; the update is
    :math:`\sum_i \lambda_i g_i` (``--combiner gradnorm``). The run keeps the smoothed
    weights (``run.weights``)."""

    alpha: float = 0.9

    def __post_init__(self):
        frozen_set(self, alpha=finite_scalar("alpha", self.alpha))
        if not 0 <= self.alpha < 1:
            fail("alpha", self.alpha, "must be in [0, 1)", "pass e.g. 0.9")

    def _start(self, run):
        run.weights = None

    def direction(self, run, G, losses):
        norms = G.norm(dim=1).clamp_min(torch.finfo(G.dtype).tiny)
        target = norms.sum() / norms
        run.weights = (
            target if run.weights is None else self.alpha * run.weights + (1 - self.alpha) * target
        )
        return run.weights @ G

    def state_dict(self, run):
        return {} if run.weights is None else {"weights": run.weights.detach().clone()}

    def load_state_dict(self, run, state):
        run.weights = state.get("weights")


@dataclasses.dataclass(frozen=True)
class MConFIG(_PerTerm):
    r"""Momentum ConFIG: one back-propagated term per step (cycling), ConFIG of the momenta.

    Term :math:`i = k \bmod m` updates its first moment
    :math:`m_i \leftarrow \beta_1 m_i + (1-\beta_1) g_i` (bias-corrected by its own count); once
    every term has been seen, the direction :math:`d` = ConFIG of the corrected moments is
    scaled Adam-like by a second moment of the gradient that this momentum stream implies,
    :math:`\tilde g_k = (\tilde m_k - \beta_1\tilde m_{k-1})/(1-\beta_1)` with
    :math:`\tilde m_k = d_k(1-\beta_1^k)`: :math:`d / (\sqrt{\hat s} + \epsilon)`. Because the
    moments live here, pair it with plain SGD (``pl.optim.SGD``), not Adam. The backward pass
    costs one term's gradient instead of m. Liu, Chu, Thuerey, ICLR 2025 (M-ConFIG). The run
    keeps the moments in ``run.state``.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        frozen_set(
            self,
            beta1=finite_scalar("beta1", self.beta1),
            beta2=finite_scalar("beta2", self.beta2),
            eps=finite_scalar("eps", self.eps),
        )

    def _start(self, run):
        run.state = {}

    def backward(self, run, losses, params):
        names = run.names
        st = run.state
        i = int(st["seen"].sum()) % len(names) if "seen" in st else 0  # terms in turn
        g = term_gradients(losses, params, [names[i]])[0]
        all_mean_([g], run.world)
        if "m" not in st:
            st.update(
                m=torch.zeros(len(names), len(g), dtype=g.dtype, device=g.device),
                seen=torch.zeros(len(names), dtype=torch.long),
                t=torch.zeros((), dtype=torch.long),
                fake_m=torch.zeros_like(g),
                s=torch.zeros_like(g),
            )
        b1, b2 = self.beta1, self.beta2
        st["m"][i] = b1 * st["m"][i] + (1 - b1) * g
        st["seen"][i] += 1
        if bool((st["seen"] == 0).any()):
            set_gradient(params, torch.zeros_like(g))  # wait until every term was seen
            return self.total(losses).detach()
        st["t"] += 1
        t = int(st["t"])
        m_hat = st["m"] / (1 - b1 ** st["seen"].to(g.dtype)).unsqueeze(1)
        d = config_direction(m_hat)
        fake_m = d * (1 - b1**t)
        fake_g = (fake_m - b1 * st["fake_m"]) / (1 - b1)
        st["fake_m"] = fake_m
        st["s"] = b2 * st["s"] + (1 - b2) * fake_g**2
        set_gradient(params, d / ((st["s"] / (1 - b2**t)).sqrt() + self.eps))
        return self.total(losses).detach()

    def state_dict(self, run):
        return {k: v.detach().clone() for k, v in run.state.items()}

    def load_state_dict(self, run, state):
        run.state = dict(state)

    def __repr__(self):
        return f"MConFIG(beta1={self.beta1}, beta2={self.beta2})"


#: CLI names -> combiners (``--combiner NAME``)
COMBINERS = {
    "sum": Sum,
    "config": ConFIG,
    "mconfig": MConFIG,
    "pcgrad": PCGrad,
    "gradnorm": GradNorm,
}


def make_combiner(spec) -> AbstractCombiner:
    """A combiner object from an object or a name in :data:`COMBINERS`."""
    if isinstance(spec, AbstractCombiner):
        return spec
    if spec not in COMBINERS:
        fail("combiner", spec, "is not a combiner", f"use one of {sorted(COMBINERS)}")
    return COMBINERS[spec]()
