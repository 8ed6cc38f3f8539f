r"""Operator methods for trajectory families: ``T_in`` frames in, ``T_out`` frames out.

:class:`FNO3d` is the baseline of Li et al. (ICLR 2021): an FNO over (x, y, t) whose input at
every output time is the ``T_in`` given frames (as channels) and the coordinates, with the time
axis zero-padded (it is not periodic). :class:`STFNO` is Spectral-Refiner's spatiotemporal FNO
(:mod:`pdeml.operators.stfno`). Both build a :class:`TrajectoryOperator`, which trains under
:func:`pdeml.fit` on dataset minibatches (``Minibatches``) with the relative L2 loss, and is
measured on the dataset's test split.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdeml import settings
from pdeml._validate import fail, positive_int
from pdeml.backend import AbstractMethod, AbstractTrainable
from pdeml.datasets import Dataset, Minibatches
from pdeml.family import AbstractFamily
from pdeml.options import Option, set_field

from .fno import FNO
from .losses import relative_l2, relative_residual
from .stfno import STFNONet


def _set_data(case, path):
    """``--data FILE``: the dataset of the method's ``Minibatches`` (its batch size kept), the path
    made absolute so that finetune and export read the run from any directory."""
    current = case.method.data
    path = str(Path(path).resolve())
    data = Minibatches(path) if current is None else settings.replace(current, path=path)
    return set_field("data", flag="--data")(case, data)


#: ``--data FILE``: a trajectory operator's training data (written by ``pdeml data CASE``)
DATA = Option(
    "data",
    "an operator case's dataset file (written by `pdeml data CASE`)",
    _set_data,
    type=lambda text: str(Path(text).resolve()),
    metavar="FILE",
)


class AbstractTrajectoryMethod(AbstractMethod):
    """Settings shared by the trajectory operators: ``t_in`` frames in, ``t_out`` out, the
    training ``data`` (``Minibatches``) and how many test samples measure the error. A concrete
    method is a frozen dataclass with these fields that says which ``network()`` it builds."""

    t_in: int
    t_out: int
    data: Any
    test_samples: int
    physics: bool

    @classmethod
    def cli_options(cls) -> tuple[Option, ...]:
        return (DATA,)

    def _check(self):
        for k in ("t_in", "t_out", "test_samples"):
            positive_int(k, getattr(self, k))
        if self.data is not None and not isinstance(self.data, Minibatches):
            fail(
                "data",
                self.data,
                "is not a Minibatches object",
                'pass data=Minibatches("data/nse.h5", 20)',
            )

    @abc.abstractmethod
    def network(self) -> torch.nn.Module:
        """The module mapping (B, t_in, n, n) to (B, t_out, n, n)."""

    def build(self, problem, *, seed=0, dtype=torch.float32, device="cpu") -> TrajectoryOperator:
        if not isinstance(problem, AbstractFamily):
            fail(
                "problem",
                type(problem).__name__,
                "is not a problem family",
                "pass a Family (cases/nse_fno3d.py)",
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self.network()
        return _cast(TrajectoryOperator(problem, net, self), dtype).to(device)


#: the seed of a family's fixed test draws: the same test inputs for every method and run
TEST_SEED = 2**31 - 1


def parameter_count(module: torch.nn.Module) -> int:
    """Real parameters of ``module`` (a complex weight counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in module.parameters())


class FixedTestSet:
    """For operators measured on fixed draws of their family (seed :data:`TEST_SEED`): the
    subclass builds them once in ``_make_test_set(rng)`` as a dict holding its inputs under
    ``input_key`` and their solutions under ``"truth"``."""

    input_key: str
    _test = None

    def _make_test_set(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def test_set(self) -> dict:
        """The fixed test draws (cached)."""
        if self._test is None:
            self._test = self._make_test_set(np.random.default_rng(TEST_SEED))
        return self._test

    def reference(self, rng):
        t = self.test_set()
        return t[self.input_key], t["truth"]

    def errors(self) -> np.ndarray:
        """Each test draw's relative L2 error against its truth."""
        t = self.test_set()
        p, y = self.predict(t[self.input_key]), t["truth"]
        return np.linalg.norm((p - y).reshape(len(p), -1), axis=1) / np.linalg.norm(
            y.reshape(len(p), -1), axis=1
        )


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module`` in ``dtype``, its complex spectral weights in the matching complex dtype
    (``Module.to(float32)`` would drop their imaginary parts)."""
    cdtype = {torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype]
    return module._apply(
        lambda t: t.to(dtype) if t.is_floating_point() else t.to(cdtype) if t.is_complex() else t
    )


class _BroadcastFNO(torch.nn.Module):
    """FNO-3d's input: the t_in frames as channels at every one of the t_out output times."""

    def __init__(self, fno: FNO, t_out: int):
        super().__init__()
        self.fno, self.t_out = fno, t_out

    def forward(self, a):
        x = a[..., None].expand(*a.shape, self.t_out)  # (B, t_in, n, n, t_out)
        return self.fno(x)[:, 0].movedim(-1, 1)  # (B, t_out, n, n)


@dataclasses.dataclass(frozen=True, eq=False)
class FNO3d(AbstractTrajectoryMethod):
    """FNO over (x, y, t) for trajectories ``{"w": (frames, n, n)}``: the first ``t_in`` frames
    predict the next ``t_out`` (Li et al.'s baseline).

    Args:
        t_in, t_out: frames given and predicted.
        modes: Fourier modes (x, y, t). width, layers: the Fourier layers.
        padding: zeros appended to the time axis (it is not periodic).
        data: the training data, ``Minibatches(path, batch_size)`` (``pdeml train CASE --data
            FILE``).
        test_samples: test samples the error is measured on during training.
        physics: add the equation's residual to the loss, a term ``"physics"``
            (:func:`pdeml.operators.losses.relative_residual`; weigh it with ``Case(weights=...)``).

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
    physics: bool = False

    def __post_init__(self):
        self._check()
        for k in ("width", "layers"):
            positive_int(k, getattr(self, k))
        if len(tuple(self.modes)) != 3:
            fail("modes", self.modes, "must give (x, y, t) mode counts", "pass e.g. (12, 12, 12)")

    def network(self):
        return _BroadcastFNO(
            FNO(
                self.t_in,
                1,
                tuple(self.modes),
                width=self.width,
                layers=self.layers,
                padding=(0, 0, self.padding),
            ),
            self.t_out,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class STFNO(AbstractTrajectoryMethod):
    """The spatiotemporal FNO of Spectral-Refiner (:class:`pdeml.operators.stfno.STFNONet`): time is
    a
    Fourier axis, any number of output frames.

    Args:
        t_in, t_out: frames given and predicted. modes, modes_t: spatial and temporal modes.
        width, layers: the Fourier layers. latent_steps: frames of the hidden layers.
        beta, delta: the time encoding's exponent and the output's spectral-bias strength.
        data, test_samples, physics: as :class:`FNO3d`.

    Example:
        >>> data = Minibatches("data/nse.h5", 20)
        >>> method = STFNO(t_in=10, t_out=40, modes=12, modes_t=5, data=data)
    """

    t_in: int = 10
    t_out: int = 40
    modes: int = 12
    modes_t: int = 5
    width: int = 20
    layers: int = 4
    latent_steps: int = 10
    beta: float = -0.01
    delta: float = 0.1
    data: Any = None
    test_samples: int = 16
    physics: bool = False

    def __post_init__(self):
        self._check()

    def network(self):
        return STFNONet(
            self.modes,
            self.modes_t,
            width=self.width,
            layers=self.layers,
            latent_steps=self.latent_steps,
            out_steps=self.t_out,
            beta=self.beta,
            delta=self.delta,
        )


class TrajectoryOperator(AbstractTrainable):
    """The trained map (B, t_in, n, n) -> (B, t_out, n, n) of a trajectory family."""

    def __init__(self, family, net, method: AbstractTrajectoryMethod):
        super().__init__()
        self.problem, self.net, self.method = family, net, method

    @property
    def term_names(self) -> list[str]:
        return ["data", "physics"] if self.method.physics else ["data"]

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a)

    def split(self, w: torch.Tensor):
        """Input and target frames of trajectories ``w`` (B, frames, n, n)."""
        m = self.method
        if w.shape[1] < m.t_in + m.t_out:
            fail(
                "data",
                f"trajectories of {w.shape[1]} frames",
                f"are shorter than t_in + t_out = {m.t_in + m.t_out}",
                "generate longer ones or lower t_out",
            )
        return w[:, : m.t_in], w[:, m.t_in : m.t_in + m.t_out]

    def losses(self, batch, residuals=None):
        a, y = self.split(batch["data"]["w"])
        pred = self(a)
        out = {"data": relative_l2(pred, y)}
        if self.method.physics:
            out["physics"] = relative_residual(self.problem, a, pred, y)
        return out

    def batches(self, sampler, rng):
        sampler = sampler if sampler is not None else self.method.data
        if sampler is None:
            fail("data", None, "is not set", "pass --data FILE (written by `pdeml data CASE`)")
        return sampler.init(self.problem, rng)

    @torch.no_grad()
    def predict(self, x, chunk: int = 8) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
        return np.concatenate(
            [self(x[i : i + chunk]).double().cpu().numpy() for i in range(0, len(x), chunk)]
        )

    def test_pairs(self, samples=None):
        """``(inputs, targets)`` as numpy of the test trajectories numbered ``samples`` (indices in
        the test split; default the first ``test_samples``), or None without data."""
        data = self.method.data
        if data is None:
            return None
        with Dataset(data.path, data.resolution) as ds:
            test = list(ds.test)
            samples = (
                range(min(self.method.test_samples, len(test))) if samples is None else samples
            )
            for s in samples:
                if not 0 <= s < len(test):
                    fail(
                        "--sample",
                        s,
                        f"is not a test sample (the split has {len(test)})",
                        f"pass 0..{len(test) - 1}",
                    )
            a, y = self.split(ds[[test[s] for s in samples]]["w"])
        return a.numpy(), y.numpy()

    def reference(self, rng):
        """Inputs and targets of the first ``test_samples`` test trajectories."""
        return self.test_pairs()

    def resolved(self):
        return {"parameters": parameter_count(self)}

    def export(self, out, resolution: int, sample: int | None = None) -> list[Path]:
        """``test_<k>.pvd`` time series (prediction, truth, error) of test trajectory ``sample``,
        or of the first three, and ``field.png``."""
        from .export import export_trajectories

        return export_trajectories(self, Path(out), [sample] if sample is not None else None)
