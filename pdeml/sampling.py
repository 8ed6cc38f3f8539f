"""The sampler contract: where the collocation points of each loss term come from.

A sampler is a frozen dataclass of *settings* only (point counts, redraw period, method);
``init(problem, rng, residual_at)`` returns a separate :class:`SamplerRun` that carries the run
state (the points, the generator, adaptive state), so one settings object can serve two runs.
The run returns a *batch*: ``{term: {"x": points, ...}}`` with one entry ``"domain"`` for the PDE
residual and one per condition (keyed by the problem's condition names), as float64 numpy
arrays. ``fit`` converts a batch to tensors once per ``version``. Adaptive samplers set
``wants_residuals`` and receive the last step's detached PDE residuals through :meth:`observe`;
samplers that need residuals at points of their own choosing (RAD's candidate sets) use the
``residual_at(x) -> (N, m)`` they were initialized with.
Concrete samplers live in the top-level ``samplers`` package.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch

from ._validate import fail, positive_int
from .checkpoint import rng_state, set_rng_state
from .settings import Run


class SamplerRun(Run):
    """A run of a sampler (what :meth:`AbstractSampler.init` returns): ``problem``, ``rng``,
    ``residual_at``, the current batch ``points``, its ``version``, and the sampler's own state
    (an epoch's order, R3's gate position, AAS's flow). Its methods are the sampler's, applied
    to this state."""

    problem: Any
    rng: np.random.Generator
    residual_at: Any
    version: int
    points: Any

    def batch(self, step: int) -> dict:
        """The points for training step ``step`` (may redraw, bumping ``version``)."""
        return self.settings.batch(self, step)

    def current(self) -> dict:
        """The points in use now, without redrawing."""
        return self.settings.current(self)

    def fixed_batch(self) -> dict:
        """The batch a fixed-objective stepper (L-BFGS) minimizes."""
        return self.settings.fixed_batch(self)

    def observe(self, step: int, residuals: dict) -> None:
        """See the PDE residuals of the last step (adaptive samplers)."""
        self.settings.observe(self, step, residuals)

    def distribute(self, world) -> tuple:
        """Told the ranks of a distributed run; returns the terms now read per rank."""
        return self.settings.distribute(self, world)

    def state_dict(self) -> dict:
        """Tensors and plain values that restore the run exactly (for resume)."""
        return self.settings.state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        self.settings.load_state_dict(self, state)


class AbstractSampler(abc.ABC):
    """Settings of a collocation strategy (a frozen dataclass); :meth:`init` starts a run of it.

    Every method past ``init`` takes the run (a :class:`SamplerRun`) as its first argument and
    changes only the run. A run keeps its current batch in ``run.points`` and its generator in
    ``run.rng``; ``current``, ``state_dict`` and ``load_state_dict`` work from them unless a
    sampler has more state to save (:meth:`_extra_state`)."""

    wants_residuals: ClassVar[bool] = False

    @property
    def counts(self) -> dict:
        """The points drawn per term kind (samplers with ``n_domain``, ``n_boundary`` and
        ``n_initial`` fields)."""
        s: Any = self
        return {"domain": s.n_domain, "boundary": s.n_boundary, "initial": s.n_initial}

    def init(self, problem, rng: np.random.Generator, residual_at=None) -> SamplerRun:
        """A new run of these settings on ``problem``: draws the initial points from ``rng`` (the
        run keeps it); ``residual_at(points) -> (N, m)`` gives the PDE residuals of the model
        being trained, for samplers that look at points of their own choosing."""
        run = SamplerRun(
            settings=self, problem=problem, rng=rng, residual_at=residual_at, version=0, points=None
        )
        self._start(run)
        run.version += 1
        return run

    @abc.abstractmethod
    def _start(self, run) -> None:
        """Draw the initial ``run.points`` (and any adaptive state) of a run."""

    @abc.abstractmethod
    def batch(self, run, step: int) -> dict:
        """The points for training step ``step`` (may redraw, bumping ``run.version``)."""

    def current(self, run) -> dict:
        """The points in use now, without redrawing."""
        return run.points

    def fixed_batch(self, run) -> dict:
        """The batch a fixed-objective stepper (L-BFGS, which takes no new batch per step)
        minimizes: by default the points in use now; a minibatch sampler may give all its items
        (EquiNO's L-BFGS phase runs on every training strain)."""
        return self.current(run)

    def observe(self, run, step: int, residuals: dict) -> None:
        """See the PDE residuals of the last step (adaptive samplers)."""

    def distribute(self, run, world) -> tuple:
        """Told the ranks of a distributed run (:class:`~pdeml.distributed.Sharded`); returns the
        batch terms the run now reads per rank itself, which ``Sharded`` leaves alone. Default:
        none, every rank draws the whole batch and ``Sharded`` takes its rows."""
        return ()

    def state_dict(self, run) -> dict:
        """Tensors and plain values that restore the run exactly (for resume)."""
        return {**batch_state(run.points), "rng": rng_state(run.rng), **self._extra_state(run)}

    def load_state_dict(self, run, state: dict) -> None:
        state = dict(state)
        if "rng" in state:
            set_rng_state(run.rng, state.pop("rng"))
        self._load_extra_state(run, state)
        run.points = batch_from_state(state)
        run.version += 1

    def _extra_state(self, run) -> dict:
        return {}

    def _load_extra_state(self, run, state: dict) -> None:
        """Pop this sampler's own entries (written by :meth:`_extra_state`) from ``state``."""


@dataclasses.dataclass(frozen=True)
class NoPoints(AbstractSampler):
    """The batches of a backend whose loss needs no sampled data (its objective is fixed when it
    is built, as a Spectral-Refiner fine-tuning's is): an empty batch every step, nothing drawn.

    Example:
        >>> NoPoints().init(None, np.random.default_rng(0)).batch(5)
        {}
    """

    def _start(self, run):
        run.points = {}

    def batch(self, run, step: int) -> dict:
        return run.points


class EpochSampler(AbstractSampler):
    """A run over ``n`` items (dataset samples, training domains), ``batch_size`` of them per step
    in a fresh random order every epoch. Subclasses say how many items there are
    (:meth:`_items`) and read a batch of them (:meth:`_read`); the order, the position in it, the
    epoch and the generator are checkpointed here, with the subclass's :meth:`_extra_state`."""

    batch_size: int
    #: the batch terms a subclass reads only this rank's share of (its :meth:`_read` takes
    #: :meth:`_own` of the items), when :meth:`distribute` hands it the job's world: a dataset
    #: read from disk, targets that cost walks. Empty: every rank reads the whole batch, and
    #: :class:`~pdeml.distributed.Sharded` slices it.
    sharded_terms: ClassVar[tuple] = ()

    def distribute(self, run, world) -> tuple:
        """Read only this rank's block of every batch from now on (re-reading the current one,
        which ``init`` read whole); returns the terms now read per rank, which
        :class:`~pdeml.distributed.Sharded` leaves alone."""
        if not self.sharded_terms:
            return ()
        run.world = world
        run.points = self._read(run, self._indices(run), False)
        run.version += 1
        return self.sharded_terms

    def _own(self, run, idx: np.ndarray) -> np.ndarray:
        """The items of a batch ``idx`` this rank reads: its contiguous block
        (:func:`~pdeml.distributed.shard_rows`, uneven when the batch does not split evenly), or
        all of them on one process or when there are fewer items than ranks. Blocks in rank order
        are ``idx`` again."""
        from .distributed import shard_rows

        world = getattr(run, "world", None)
        s = None if world is None else shard_rows(len(idx), world)
        return idx if s is None else idx[s]

    @abc.abstractmethod
    def _items(self, run) -> int:
        """How many items an epoch runs over."""

    @abc.abstractmethod
    def _read(self, run, idx: np.ndarray, fresh: bool) -> dict:
        """The batch of items ``idx`` (sorted); ``fresh`` is False when a resumed run re-reads the
        batch it had (nothing new may be drawn)."""

    def _start(self, run):
        self._start_order(run)

    def _start_order(self, run):
        run.world = None
        run.order, run.position, run.epoch = run.rng.permutation(self._items(run)), 0, 0
        run.points = self._read(run, self._indices(run), True)

    def _indices(self, run) -> np.ndarray:
        return np.sort(run.order[run.position : run.position + self.batch_size])

    def batch(self, run, step):
        if step > 0:
            run.position += self.batch_size
            if run.position + self.batch_size > len(run.order):  # next epoch, new order
                run.order, run.position = run.rng.permutation(self._items(run)), 0
                run.epoch += 1
            run.points = self._read(run, self._indices(run), True)
            run.version += 1
        return run.points

    def state_dict(self, run):
        return {
            "order": torch.as_tensor(run.order),
            "position": run.position,
            "epoch": run.epoch,
            "rng": rng_state(run.rng),
            **self._extra_state(run),
        }

    def load_state_dict(self, run, state):
        state = dict(state)
        run.order = state.pop("order").numpy()
        run.position, run.epoch = int(state.pop("position")), int(state.pop("epoch"))
        set_rng_state(run.rng, state.pop("rng"))
        self._load_extra_state(run, state)
        run.points = self._read(run, self._indices(run), False)
        run.version += 1


def point_counts(n_domain, n_boundary, n_initial) -> dict:
    """The ``counts`` a sampler draws: validated PDE, per-boundary-condition and initial points."""
    return {
        "domain": positive_int("n_domain", n_domain),
        "boundary": positive_int("n_boundary", n_boundary),
        "initial": positive_int("n_initial", n_initial),
    }


def redraw_period(every) -> int:
    """A validated redraw period: 0 (never) or a positive number of steps."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        fail("every", every, "must be a non-negative integer", "pass 0 (fixed points) or e.g. 100")
    return every


def stacked_residuals(residuals: dict, n: int) -> torch.Tensor:
    """The residual columns ``observe`` receives, side by side: (n, m)."""
    return torch.cat([v.reshape(n, -1) for v in residuals.values()], 1)


def draw(
    problem, counts: dict, rng: np.random.Generator, method: str, *, keep=None, domain: bool = True
) -> dict:
    """Draw a batch for ``problem``: ``counts`` has keys ``domain``, ``boundary``, ``initial``.
    Entries of ``keep`` (fixed data) are reused instead of redrawn; ``domain=False`` keeps
    ``keep["domain"]`` too (samplers that manage their PDE points themselves)."""
    out = {
        "domain": keep["domain"]
        if not domain
        else {"x": problem.domain.sample_interior(counts["domain"], rng, method)}
    }
    for name, cond in zip(problem.condition_names, problem.conditions):
        if keep is not None and cond.fixed and name in keep:
            out[name] = keep[name]
            continue
        n = counts[cond.count]
        out[name] = cond.sample(problem, n, rng, method)
    return out


def to_torch(batch: dict, dtype: torch.dtype, device) -> dict:
    return {
        k: {kk: torch.as_tensor(np.asarray(vv), dtype=dtype, device=device) for kk, vv in v.items()}
        for k, v in batch.items()
    }


def batch_state(batch: dict) -> dict:
    """A batch as a flat dict of tensors (checkpoint-friendly)."""
    return {f"{k}/{kk}": torch.as_tensor(vv) for k, v in batch.items() for kk, vv in v.items()}


def batch_from_state(state: dict) -> dict:
    out: dict = {}
    for key, t in state.items():
        k, kk = key.split("/", 1)
        out.setdefault(k, {})[kk] = t.cpu().numpy()
    return out
