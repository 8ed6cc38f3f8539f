"""The sampler contract: where the collocation points of each loss term come from.

A sampler object holds *settings* only (point counts, redraw period, method); ``init(problem,
rng, residual_at)`` returns a new object of the same class that carries the run state (the
points, the generator, adaptive state), so one settings object can serve two runs. The run
returns a *batch*: ``{term: {"x": points, ...}}`` with one entry ``"domain"`` for the PDE
residual and one per condition (keyed by the problem's condition names), as float64 numpy
arrays. ``fit`` converts a batch to tensors once per ``version``. Adaptive samplers set
``wants_residuals`` and receive the last step's detached PDE residuals through :meth:`observe`;
samplers that need residuals at points of their own choosing (RAD's candidate sets) use the
``residual_at(x) -> (N, m)`` they were initialized with.
Concrete samplers live in the top-level ``samplers`` package.
"""

from __future__ import annotations

import abc
import copy
from typing import Any

import numpy as np
import torch

from ._validate import fail, positive_int
from .checkpoint import rng_state, set_rng_state


class AbstractSampler(abc.ABC):
    """Settings of a collocation strategy; :meth:`init` starts a run of it.

    A run keeps its current batch in ``self.points`` and its generator in ``self.rng``;
    ``current``, ``state_dict`` and ``load_state_dict`` work from them unless a sampler has more
    state to save (:meth:`_extra_state`)."""

    wants_residuals: bool = False
    version: int = 0
    points: Any = None  # a run's current batch (None on settings)
    problem = None
    rng: np.random.Generator | None = None
    residual_at = None

    counts: dict = {}

    @property
    def n_domain(self) -> int:
        return self.counts["domain"]

    @property
    def n_boundary(self) -> int:
        return self.counts["boundary"]

    @property
    def n_initial(self) -> int:
        return self.counts["initial"]

    def init(self, problem, rng: np.random.Generator, residual_at=None) -> AbstractSampler:
        """A new run of these settings on ``problem``: draws the initial points from ``rng`` (the
        run keeps it); ``residual_at(points) -> (N, m)`` gives the PDE residuals of the model
        being trained, for samplers that look at points of their own choosing."""
        run = copy.copy(self)
        run.problem, run.rng, run.residual_at, run.version = problem, rng, residual_at, 0
        run._start()
        run.version += 1
        return run

    @abc.abstractmethod
    def _start(self) -> None:
        """Draw the initial ``self.points`` (and any adaptive state) of a run."""

    @abc.abstractmethod
    def batch(self, step: int) -> dict:
        """The points for training step ``step`` (may redraw, bumping ``version``)."""

    def current(self) -> dict:
        """The points in use now, without redrawing."""
        return self.points

    def fixed_batch(self) -> dict:
        """The batch a fixed-objective stepper (L-BFGS, which takes no new batch per step)
        minimizes: by default the points in use now; a minibatch sampler may give all its items
        (EquiNO's L-BFGS phase runs on every training strain)."""
        return self.current()

    def observe(self, step: int, residuals: dict) -> None:
        """See the PDE residuals of the last step (adaptive samplers)."""

    def distribute(self, world) -> tuple:
        """Told the ranks of a distributed run (:class:`~pdeml.distributed.Sharded`); returns the
        batch terms the run now reads per rank itself, which ``Sharded`` leaves alone. Default:
        none, every rank draws the whole batch and ``Sharded`` takes its rows."""
        return ()

    def state_dict(self) -> dict:
        """Tensors and plain values that restore the run exactly (for resume)."""
        if self.points is None:
            fail(
                type(self).__name__,
                "state_dict()",
                "was called on settings, not on a run",
                "call it on the object that init(problem, rng) returned",
            )
        return {**batch_state(self.points), "rng": rng_state(self.rng), **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        if "rng" in state:
            set_rng_state(self.rng, state.pop("rng"))
        self._load_extra_state(state)
        self.points = batch_from_state(state)
        self.version += 1

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        """Pop this sampler's own entries (written by :meth:`_extra_state`) from ``state``."""


class NoPoints(AbstractSampler):
    """The batches of a backend whose loss needs no sampled data (its objective is fixed when it
    is built, as a Spectral-Refiner fine-tuning's is): an empty batch every step, nothing drawn.

    Example:
        >>> NoPoints().init(None, np.random.default_rng(0)).batch(5)
        {}
    """

    def _start(self):
        self.points = {}

    def batch(self, step: int) -> dict:
        return self.points

    def __repr__(self):
        return "NoPoints()"


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
    sharded_terms: tuple = ()
    world = None

    def distribute(self, world) -> tuple:
        """Read only this rank's block of every batch from now on (re-reading the current one,
        which ``init`` read whole); returns the terms now read per rank, which
        :class:`~pdeml.distributed.Sharded` leaves alone."""
        if not self.sharded_terms:
            return ()
        self.world = world
        self.points = self._read(self._indices(), False)
        self.version += 1
        return self.sharded_terms

    def _own(self, idx: np.ndarray) -> np.ndarray:
        """The items of a batch ``idx`` this rank reads: its contiguous block
        (:func:`~pdeml.distributed.shard_rows`), or all of them on one process or when the batch
        does not split evenly. Blocks in rank order are ``idx`` again."""
        from .distributed import shard_rows

        s = None if self.world is None else shard_rows(len(idx), self.world)
        return idx if s is None else idx[s]

    @abc.abstractmethod
    def _items(self) -> int:
        """How many items an epoch runs over."""

    @abc.abstractmethod
    def _read(self, idx: np.ndarray, fresh: bool) -> dict:
        """The batch of items ``idx`` (sorted); ``fresh`` is False when a resumed run re-reads the
        batch it had (nothing new may be drawn)."""

    def _start_order(self):
        self.order, self.position, self.epoch = self.rng.permutation(self._items()), 0, 0
        self.points = self._read(self._indices(), True)

    def _indices(self) -> np.ndarray:
        return np.sort(self.order[self.position : self.position + self.batch_size])

    def batch(self, step):
        if step > 0:
            self.position += self.batch_size
            if self.position + self.batch_size > len(self.order):  # next epoch, new order
                self.order, self.position = self.rng.permutation(self._items()), 0
                self.epoch += 1
            self.points = self._read(self._indices(), True)
            self.version += 1
        return self.points

    def state_dict(self):
        return {
            "order": torch.as_tensor(self.order),
            "position": self.position,
            "epoch": self.epoch,
            "rng": rng_state(self.rng),
            **self._extra_state(),
        }

    def load_state_dict(self, state):
        state = dict(state)
        self.order = state.pop("order").numpy()
        self.position, self.epoch = int(state.pop("position")), int(state.pop("epoch"))
        set_rng_state(self.rng, state.pop("rng"))
        self._load_extra_state(state)
        self.points = self._read(self._indices(), False)
        self.version += 1


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
