r"""Operator methods for trajectory families: ``T_in`` frames in, ``T_out`` frames out.

:class:`FNO3d` is the baseline of Li et al. (ICLR 2021): an FNO over (x, y, t) whose input at
every output time is the ``T_in`` given frames (as channels) and the coordinates, with the time
axis zero-padded (it is not periodic). Its backend, :class:`TrajectoryOperator`, trains under
:func:`pdeml.fit` on dataset minibatches (``Minibatches``) with the relative L2 loss, and is
measured on the dataset's test split.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdeml._validate import fail, positive_int
from pdeml.backend import AbstractMethod, AbstractTrainable
from pdeml.datasets import Dataset, Minibatches
from pdeml.family import AbstractFamily

from .fno import FNO
from .losses import relative_l2


@dataclasses.dataclass(frozen=True, eq=False)
class FNO3d(AbstractMethod):
    """FNO over (x, y, t) for trajectories ``{"w": (frames, n, n)}``: the first ``t_in`` frames
    predict the next ``t_out``.

    Args:
        t_in, t_out: frames given and predicted.
        modes: Fourier modes (x, y, t). width, layers: the Fourier layers.
        padding: zeros appended to the time axis (it is not periodic).
        data: the training data, ``Minibatches(path, batch_size)`` (``pdeml train CASE --data FILE``).
        test_samples: test samples the error is measured on during training.

    Example:
        >>> method = FNO3d(t_in=10, t_out=40, data=Minibatches("data/nse.h5", 20))
    """

    t_in: int = 10
    t_out: int = 40
    modes: tuple = (12, 12, 12)
    width: int = 20
    layers: int = 4
    padding: int = 6
    data: Any = None
    test_samples: int = 16

    def __post_init__(self):
        for k in ("t_in", "t_out", "width", "layers", "test_samples"):
            positive_int(k, getattr(self, k))
        if len(tuple(self.modes)) != 3:
            fail("modes", self.modes, "must give (x, y, t) mode counts", "pass e.g. (12, 12, 12)")
        if self.data is not None and not isinstance(self.data, Minibatches):
            fail("data", self.data, "is not a Minibatches object", 'pass data=Minibatches("data/nse.h5", 20)')

    def build(self, problem, *, seed=0, dtype=torch.float32, device="cpu") -> "TrajectoryOperator":
        if not isinstance(problem, AbstractFamily):
            fail("problem", type(problem).__name__, "is not a problem family", "pass a Family (cases/nse_2d.py)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = FNO(self.t_in, 1, tuple(self.modes), width=self.width, layers=self.layers,
                      padding=(0, 0, self.padding))
        return TrajectoryOperator(problem, net, self).to(dtype=dtype, device=device)


class TrajectoryOperator(AbstractTrainable):
    """The trained map (B, t_in, n, n) -> (B, t_out, n, n) of a trajectory family."""

    term_names = ["data"]

    def __init__(self, family, net, method: FNO3d):
        super().__init__()
        self.problem, self.net, self.method = family, net, method

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        t_out = self.method.t_out
        x = a[..., None].expand(*a.shape, t_out)                 # (B, t_in, n, n, t_out)
        return self.net(x)[:, 0].movedim(-1, 1)                  # (B, t_out, n, n)

    def split(self, w: torch.Tensor):
        """Input and target frames of trajectories ``w`` (B, frames, n, n)."""
        m = self.method
        if w.shape[1] < m.t_in + m.t_out:
            fail("data", f"trajectories of {w.shape[1]} frames", f"are shorter than t_in + t_out = {m.t_in + m.t_out}",
                 "generate longer ones or lower t_out")
        return w[:, :m.t_in], w[:, m.t_in:m.t_in + m.t_out]

    def losses(self, batch, residuals=None):
        a, y = self.split(batch["data"]["w"])
        return {"data": relative_l2(self(a), y)}

    def batches(self, sampler, rng):
        sampler = sampler if sampler is not None else self.method.data
        if sampler is None:
            fail("data", None, "is not set", "pass --data FILE (written by `pdeml data CASE`)")
        return sampler.init(self.problem, rng)

    @torch.no_grad()
    def predict(self, x, chunk: int = 8) -> np.ndarray:
        p = next(self.parameters())
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32 if not p.is_floating_point() else p.dtype,
                            device=p.device)
        return np.concatenate([self(x[i:i + chunk]).double().cpu().numpy() for i in range(0, len(x), chunk)])

    def reference(self, rng):
        """Inputs and targets of the first ``test_samples`` test trajectories."""
        data = self.method.data
        if data is None:
            return None
        with Dataset(data.path, data.resolution) as ds:
            idx = list(ds.test)[: self.method.test_samples]
            a, y = self.split(ds[idx]["w"])
        return a.numpy(), y.numpy()

    def resolved(self):
        return {"parameters": sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters())}

    def export(self, out, resolution: int, samples: int = 3) -> list[Path]:
        from .export import export_trajectories
        return export_trajectories(self, Path(out), samples)
