r"""Training on several processes: one value, :class:`World`, says which process this
is, and a few collectives act on it.

The launcher (``torchrun``) describes the job in environment variables. :meth:`World.from_env`
reads them once, at the CLI's edge; everything below receives the immutable :class:`World`
and nothing else reads the environment. A single process is ``World()`` (rank 0 of 1), and
every collective is then the identity: a one-process run does exactly what it did before.

What is sharded and what is reduced (the collectives below):

- collocation points: every rank draws the same global batch and trains on its block of rows
  (:class:`Sharded`); a term of N rows that does not split evenly gives the first N mod size
  ranks one row more, and each rank's mean over its n_r rows is weighted by its share
  n_r size / N (:meth:`Sharded.shares`), so the mean over the ranks is the global batch's mean;
- gradients: every loss term's gradient is averaged over the ranks *before* the combiner, so
  ConFIG or PCGrad see the global per-term gradients, exactly as one process with the global
  batch would (plain DDP wrapping would not cover the second-order autograd of PDE residuals
  nor the jet pass);
- L-BFGS: the closure's loss and gradient are averaged, so every rank takes the same
  line-search steps; ENGD: the normal equations JᵀJ and Jᵀr are averaged;
- the NaN check: any rank's non-finite step stops every rank, in the same step.

Example:
    >>> world = World()             # one process; the CLI reads World.from_env(os.environ)
    >>> world.rank, world.size, world.active
    (0, 1, False)
    >>> with joined(world, torch.device("cpu")) as device:   # the process group (none for one)
    ...     device                                           # then fit(..., world=world)
    device(type='cpu')
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import torch

from ._validate import fail


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes, ``local_rank`` on its
    machine (the GPU it drives); ``restart``, how often torchrun restarted the job (elastic
    restarts); ``rendezvous``, ``(host, port, agent_store)`` of the job's key-value store."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    restart: int = 0
    rendezvous: tuple | None = None

    def __post_init__(self):
        for k in ("rank", "size", "local_rank", "restart"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                fail(k, v, "is not a non-negative integer", "launch with torchrun, or pass World()")
        if self.size < 1 or self.rank >= self.size:
            fail(
                "rank",
                self.rank,
                f"is not a rank of a world of size {self.size}",
                "pass 0 <= rank < size (torchrun sets RANK and WORLD_SIZE)",
            )

    @property
    def active(self) -> bool:
        """More than one process: collectives communicate."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping) -> World:
        """The world torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process
        when they are absent. The only place that reads the launcher's environment."""

        def get(name, default):
            raw = env.get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                fail(name, raw, "is not an integer", "launch with torchrun, which sets it")

        host, port = env.get("MASTER_ADDR"), get("MASTER_PORT", None)
        store = (
            None
            if host is None or port is None
            else (host, port, env.get("TORCHELASTIC_USE_AGENT_STORE") == "True")
        )
        return cls(
            rank=get("RANK", 0),
            size=get("WORLD_SIZE", 1),
            local_rank=get("LOCAL_RANK", 0),
            restart=get("TORCHELASTIC_RESTART_COUNT", 0),
            rendezvous=store,
        )


def start(world: World, device: torch.device, timeout_s: float = 300.0) -> torch.device:
    """Join the process group of ``world`` (NCCL on CUDA, gloo on the CPU) and return the
    device this rank trains on (``cuda:local_rank`` for a CUDA job). One process: nothing to
    join, ``device`` as given. The rendezvous (``MASTER_ADDR``/``MASTER_PORT``) is torchrun's.
    A rank that does not answer within ``timeout_s`` ends the job with an error, not a hang."""
    if not world.active:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        kwargs: dict[str, Any] = {}
        if world.rendezvous is not None:
            # the job's store, under a prefix per restart: after an elastic restart the store
            # still holds the dead round's addresses, and gloo would dial them (and hang)
            host, port, agent = world.rendezvous
            store = dist.TCPStore(
                host, port, world.size, is_master=world.rank == 0 and not agent, timeout=timeout
            )
            kwargs = {"store": dist.PrefixStore(f"pdeml/restart{world.restart}", store)}
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=world.rank,
            world_size=world.size,
            timeout=timeout,
            **kwargs,
        )
    return device


def stop(world: World) -> None:
    """Leave the process group (after the last collective)."""
    if world.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def joined(world: World, device: torch.device, timeout_s: float = 300.0):
    """:func:`start` on entry (yielding this rank's device) and :func:`stop` on the way out, also
    when the body raises: ``with joined(world, device) as device: ...``."""
    device = start(world, device, timeout_s)
    try:
        yield device
    finally:
        stop(world)


def all_mean_(tensors: list[torch.Tensor], world: World) -> None:
    """Average ``tensors`` over the ranks, in place, in one collective (one flat buffer). Complex
    tensors (an FNO's spectral weights) travel as their real and imaginary parts, so the buffer
    stays real: a complex buffer would double the real tensors' traffic."""
    if not world.active or not tensors:
        return
    import torch.distributed as dist

    tensors = [torch.view_as_real(t) if t.is_complex() else t for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world.size
    i = 0
    for t in tensors:
        t.copy_(flat[i : i + t.numel()].view_as(t))
        i += t.numel()


def broadcast_(tensors: list[torch.Tensor], world: World) -> None:
    """Overwrite ``tensors`` on every rank with rank 0's, in place (the model at the start, so
    every rank begins from the same parameters whatever its device's generator did)."""
    if not world.active:
        return
    import torch.distributed as dist

    for t in tensors:
        dist.broadcast(t.data, 0)


def _comm_device(t: torch.Tensor) -> torch.device:
    """Where a collective can act on ``t``: NCCL reduces CUDA tensors only."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of ``t`` over the ranks (a new tensor on ``t``'s device; ``t`` itself for one
    process)."""
    if not world.active:
        return t
    import torch.distributed as dist

    out = t.detach().to(_comm_device(t)).clone()
    dist.all_reduce(out)
    return out.to(t.device)


def all_gather_object(obj, world: World) -> list:
    """Every rank's ``obj`` (picklable: arrays of different sizes), in rank order."""
    if not world.active:
        return [obj]
    import torch.distributed as dist

    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(t: torch.Tensor, world: World) -> torch.Tensor:
    """The rows of ``t`` (n, ...) of every rank, concatenated in rank order; n may differ from
    rank to rank (each block is padded to the longest for the collective, then trimmed)."""
    if not world.active:
        return t
    import torch.distributed as dist

    c = t.detach().to(_comm_device(t)).contiguous()
    n = torch.tensor([len(c)], device=c.device)
    counts = [torch.empty_like(n) for _ in range(world.size)]
    dist.all_gather(counts, n)
    sizes = [int(k) for k in counts]
    longest = max(sizes)
    if len(c) < longest:
        c = torch.cat([c, c.new_zeros((longest - len(c), *c.shape[1:]))])
    parts = [torch.empty_like(c) for _ in range(world.size)]
    dist.all_gather(parts, c)
    return torch.cat([p[:k] for p, k in zip(parts, sizes)]).to(t.device)


def split_predict(backend, x, world: World):
    """``backend.predict(x)`` with the rows of ``x`` split over the ranks and the predictions
    gathered on every rank, in order: the evaluation during training, once instead of on every
    rank. One process: ``backend.predict(x)``."""
    if not world.active:
        return backend.predict(x)
    import numpy as np

    parts = np.array_split(np.arange(len(x)), world.size)
    mine = backend.predict(x[parts[world.rank]]) if len(parts[world.rank]) else None
    got = [p for p in all_gather_object(mine, world) if p is not None]
    return np.concatenate(got)


# ------------------------------------------------------------------------------------ sharding
def shard_rows(n: int, world: World) -> slice | None:
    """The rows of an n-row array that ``world.rank`` trains on: a contiguous block, n // size
    rows, one more on the first n mod size ranks (301 rows on 2 ranks: 151 and 150); or None
    (every rank takes all n) on one process or when there are fewer rows than ranks. A replicated
    term is exact too: the mean over the ranks of identical gradients is that gradient. Uneven
    blocks are exact through :meth:`Sharded.shares`."""
    if not world.active or n < world.size:
        return None
    k, extra = divmod(n, world.size)
    start = world.rank * k + min(world.rank, extra)
    return slice(start, start + k + (world.rank < extra))


class Sharded:
    """A sampler run, sharded: every rank runs the *same* global sampler (the same generator, so
    the same points and the same adaptive state) and trains on its block of rows of each term
    (:func:`shard_rows`), except the backend's ``whole`` terms (a joint solve over all their rows),
    which every rank takes whole. Adaptive samplers see the residuals of the whole global batch,
    gathered
    from every rank, so their state stays identical on all ranks; the checkpoint of rank 0 is
    then the whole state, and a run resumes exactly under any world size.

    The price is that each rank draws (not trains on) the global batch: cheap next to a training
    step for the built-in samplers."""

    def __init__(self, run, world: World, whole: tuple = ()):
        self.run, self.world, self.whole = run, world, frozenset(whole)
        # terms the run reads per rank itself (a dataset's samples, walk-on-spheres targets)
        self.whole |= frozenset(run.distribute(world))
        self._cache: dict = {}
        self._shares: tuple = (None, {})

    def shares(self, batch: dict) -> dict:
        """``{term: n_r size / N}`` for this rank's ``batch`` (one that :meth:`batch`,
        :meth:`current` or :meth:`fixed_batch` returned): its n_r rows of the N rows all ranks
        hold together. A loss that is a mean over a term's rows, times this factor, averages over
        the ranks to the mean over all N rows, however unevenly they split (a replicated or
        whole term: 1). One small collective per new batch: every rank must call it alike."""
        if self._shares[0] is not batch:
            rows = [
                next((len(v) for v in arrays.values() if getattr(v, "ndim", 0) >= 1), 0)
                for arrays in batch.values()
            ]
            total = all_sum(torch.tensor(rows, dtype=torch.float64), self.world).tolist()
            self._shares = (
                batch,
                {
                    term: n * self.world.size / t if t else 1.0
                    for term, n, t in zip(batch, rows, total)
                },
            )
        return self._shares[1]

    def __getattr__(self, name):  # version, wants_residuals, state_dict, ...
        return getattr(self.run, name)

    def _slice(self, batch: dict) -> dict:
        key = (self.run.version, id(batch))
        if key not in self._cache:  # one batch at a time: the shares key on its identity
            self._cache = {
                key: {
                    term: arrays
                    if term in self.whole
                    else {k: self._rows(v) for k, v in arrays.items()}
                    for term, arrays in batch.items()
                }
            }
        return self._cache[key]

    def _rows(self, v):
        s = shard_rows(len(v), self.world) if getattr(v, "ndim", 0) >= 1 else None
        return v if s is None else v[s]

    def batch(self, step: int) -> dict:
        return self._slice(self.run.batch(step))

    def current(self) -> dict:
        return self._slice(self.run.current())

    def fixed_batch(self) -> dict:
        return self._slice(self.run.fixed_batch())

    def observe(self, step: int, residuals: dict) -> None:
        """Gather the PDE residuals (one entry per equation, rows = the domain points) to the
        global batch's rows, then let the sampler see them."""
        n = len(self.run.current()["domain"]["x"])
        if shard_rows(n, self.world) is not None:
            residuals = {k: all_gather_rows(r, self.world) for k, r in residuals.items()}
        self.run.observe(step, residuals)

    def load_state_dict(self, state: dict) -> None:
        self.run.load_state_dict(state)
        self._cache = {}


__all__ = [
    "World",
    "Sharded",
    "start",
    "stop",
    "joined",
    "all_mean_",
    "all_sum",
    "all_gather_object",
    "broadcast_",
    "split_predict",
    "all_gather_rows",
    "shard_rows",
]
