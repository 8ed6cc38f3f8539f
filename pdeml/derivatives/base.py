"""The seam between case files and derivative computation."""

from __future__ import annotations

import abc
import contextlib
from typing import ClassVar, cast

import torch

from ..settings import Run


class EstimatorRun(Run):
    """A run of an estimator (what :meth:`AbstractEstimator.init` returns), the object a
    :class:`~pdeml.field.Field` asks for derivatives: ``rng`` (a stochastic estimator's
    :class:`Seeded` generator, else None) and ``plans`` (what each call site asked for, which
    Taylor-mode estimators learn). ``run.grad(field)`` is ``run.settings.grad(run, field)``."""

    rng: Seeded | None
    plans: dict

    # the Field's questions, delegated explicitly (a compiled step traces these)
    def values(self, field) -> torch.Tensor:
        return self.settings.values(self, field)

    def grad(self, field) -> torch.Tensor:
        return self.settings.grad(self, field)

    def d(self, field, i: int) -> torch.Tensor:
        return self.settings.d(self, field, i)

    def d2(self, field, i: int, j: int) -> torch.Tensor:
        return self.settings.d2(self, field, i, j)

    def laplacian(self, field, dims: tuple[int, ...]) -> torch.Tensor:
        return self.settings.laplacian(self, field, dims)

    def diffusion(self, field, dims: tuple[int, ...], sigma: torch.Tensor) -> torch.Tensor:
        return self.settings.diffusion(self, field, dims, sigma)

    def biharmonic(self, field, dims: tuple[int, ...]) -> torch.Tensor:
        return self.settings.biharmonic(self, field, dims)

    def input_grad(self, site) -> bool:
        return self.settings.input_grad(self, site)

    def reset(self, seed: int) -> None:
        self.settings.reset(self, seed)

    def state_dict(self) -> dict:
        return self.settings.state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        self.settings.load_state_dict(self, state)


class AbstractEstimator(abc.ABC):
    """Settings of how the values and derivatives a :class:`~pdeml.field.Field` is asked for are
    computed (a frozen dataclass); :meth:`init` returns the :class:`EstimatorRun` that computes
    them, and every method past it takes that run first.

    Case files only talk to ``Field``; swapping the estimator (exact autograd, Taylor mode,
    SDGD, STDE) never changes them. Estimators declare their theory as data so tests can
    measure it: ``exact`` (no sampling at all), ``unbiased_laplacian`` (the Laplacian estimate's
    expectation is the exact operator) and ``paired`` (the backend should form the unbiased
    gradient :math:`2 R_J^{\\text{detach}} \\nabla R_I` from two independent draws).

    Every derivative method receives the field and returns a column (N, 1) for one output
    component. ``field._cache`` is a dict shared by all components of one network evaluation,
    where an estimator keeps intermediate results (values, gradients, Hessian rows, jets);
    ``field._cache["site"]`` names the call site ("pde", "conditions", ...), so an estimator
    may learn what a site asks for and compute it in one pass next time.
    """

    exact: ClassVar[bool] = True
    unbiased_laplacian: ClassVar[bool] = True
    #: a stochastic estimator keeps a generator in its run
    stochastic: ClassVar[bool] = False

    def directions(self, n_inputs: int) -> int:
        """Tangent directions a Taylor-mode pass carries per point for a Laplacian in
        ``n_inputs`` dimensions (the rows a compiled step's jets hold, :func:`pdeml.solvers.pinn.
        compile_pays`); 0 for estimators that do not push jets (reverse mode)."""
        return 0

    @property
    def paired(self) -> bool:
        """Whether the backend should form the paired unbiased gradient (two draws)."""
        return False

    def init(self, seed: int | None = None) -> EstimatorRun:
        """A run of this estimator; a stochastic one draws from a generator seeded by ``seed``
        (default: its own ``seed`` setting)."""
        if seed is None:
            seed = getattr(self, "seed", 0)
        return EstimatorRun(settings=self, rng=Seeded(seed) if self.stochastic else None, plans={})

    def values(self, run, field) -> torch.Tensor:
        """The network outputs (N, n_outputs) at ``field.x`` (default: one plain forward pass)."""
        cache = field._cache
        if "values" not in cache:
            cache["values"] = field.model(field.x)
        return cache["values"]

    @abc.abstractmethod
    def grad(self, run, field) -> torch.Tensor:
        """Full input gradient (N, n_inputs)."""

    def d(self, run, field, i: int) -> torch.Tensor:
        """First derivative d u / dx_i, (N, 1)."""
        return self.grad(run, field)[:, i : i + 1]

    @abc.abstractmethod
    def d2(self, run, field, i: int, j: int) -> torch.Tensor:
        """Second derivative d^2 u / dx_i dx_j, (N, 1)."""

    @abc.abstractmethod
    def laplacian(self, run, field, dims: tuple[int, ...]) -> torch.Tensor:
        """Sum of d^2 u / dx_i^2 over ``dims`` (the spatial inputs), (N, 1)."""

    def diffusion(self, run, field, dims: tuple[int, ...], sigma: torch.Tensor) -> torch.Tensor:
        r""":math:`\tfrac12 \operatorname{tr}(\sigma\sigma^\top \nabla^2 u)` over ``dims`` (N, 1);
        exact by default (Hessian rows of the first derivatives)."""
        a = sigma @ sigma.T
        rows = [grad_of(self.d(run, field, i), field.x)[:, list(dims)] for i in dims]
        return cast(
            torch.Tensor, 0.5 * sum((a[k] * r).sum(1, keepdim=True) for k, r in enumerate(rows))
        )

    def biharmonic(self, run, field, dims: tuple[int, ...]) -> torch.Tensor:
        r""":math:`\Delta^2 u` over ``dims`` (N, 1); by default the Laplacian of
        :meth:`laplacian` by reverse mode (exact for exact estimators)."""
        lap = self.laplacian(run, field, dims)
        g = grad_of(lap, field.x)
        return cast(
            torch.Tensor, sum(grad_of(g[:, i : i + 1], field.x)[:, i : i + 1] for i in dims)
        )

    def input_grad(self, run, site) -> bool:
        """Whether the points of call site ``site`` must require grad (reverse-mode estimators:
        always). Forward-mode estimators say no once they know the site needs no reverse pass,
        which saves building the graph of the forcing terms and a backward pass into x."""
        return True

    def reset(self, run, seed: int) -> None:
        """Seed the run's random generator (stochastic estimators)."""
        if run.rng is not None:
            run.rng.reset(seed)

    def state_dict(self, run) -> dict:
        return {} if run.rng is None else run.rng.state_dict()

    def load_state_dict(self, run, state: dict) -> None:
        """Restore :meth:`state_dict` (resumable runs)."""
        if run.rng is not None:
            run.rng.load_state_dict(state)


def grad_of(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:math:`\\partial (\\sum y) / \\partial x` with a graph (zeros where ``y`` ignores ``x``)."""
    (g,) = torch.autograd.grad(
        y, x, grad_outputs=torch.ones_like(y), create_graph=True, allow_unused=True
    )
    return torch.zeros_like(x) if g is None else g


class Seeded:
    """A CPU ``torch.Generator`` that checkpoints: the randomness of stochastic estimators.

    Estimators draw through :meth:`draw` (``torch.randperm``, ``torch.randint``, ``torch.randn``
    with this generator). A compiled training step cannot call a generator inside its graph,
    so it draws ahead: :meth:`recording` notes the draws one evaluation makes, :meth:`ahead`
    makes the same draws eagerly, from the same stream, and inside the graph :meth:`draw` hands
    out those tensors in order (``self.tape``). The stream advances exactly as in an eager step.
    """

    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(int(seed))
        self.tape: list | None = None  # tensors drawn ahead, for a compiled step
        self._notes: list | None = None

    def draw(self, kind: str, *args, **kwargs) -> torch.Tensor:
        """``torch.<kind>(*args, generator=self.gen, **kwargs)``, or the next tensor drawn ahead."""
        if self.tape is not None:
            return self.tape.pop(0)
        if self._notes is not None:
            self._notes.append((kind, args, kwargs))
        return getattr(torch, kind)(*args, generator=self.gen, **kwargs)

    @contextlib.contextmanager
    def recording(self):
        """Note the draws made in the body (yielding the list of notes)."""
        self._notes = notes = []
        try:
            yield notes
        finally:
            self._notes = None

    def ahead(self, notes: list) -> list:
        """Make the noted draws now, in order: the tensors a compiled step reads."""
        return [
            getattr(torch, kind)(*args, generator=self.gen, **kwargs)
            for kind, args, kwargs in notes
        ]

    def reset(self, seed: int) -> None:
        self.gen.manual_seed(int(seed))

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.gen.set_state(state["generator"].cpu())


class AbstractStochasticEstimator(AbstractEstimator):
    """An estimator that samples: its run owns a :class:`Seeded` generator (``run.rng``), which
    ``reset(seed)`` re-seeds and the checkpoint carries. Its settings ``unbiased`` asks for the
    paired gradient."""

    exact: ClassVar[bool] = False
    stochastic: ClassVar[bool] = True
    unbiased: bool

    @property
    def paired(self) -> bool:
        return self.unbiased
