"""The backend contract: what every method builds and what ``fit`` and export rely on.

A **method** (:class:`AbstractMethod`) is a small immutable object holding the settings of one
way to solve (``PINN(model, estimator=..., sampler=...)``); ``build`` turns it into a
**backend** for one problem, seed, dtype and device. Every backend answers ``predict(x)`` and
says what else it exports at points (``exports``: residuals, standard errors, ...). A
**trainable** backend also has ``term_names``, ``losses(batch)`` and ``batches(sampler, rng)``
(its training data: collocation points or dataset minibatches), which is all ``fit`` uses. A
**least-squares** backend exposes its residual vector, which Gauss-Newton steppers need.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .distributed import World


class AbstractMethod(abc.ABC):
    """Settings of one way to solve a problem; holds no run state."""

    @classmethod
    def cli_options(cls) -> tuple:
        """The ``pdeml train`` options this method owns (:class:`pdeml.options.Option`); none by
        default. The PINN owns ``--derivatives``, ``--sampler``, ``--compile`` and
        ``--constraint``."""
        return ()

    @abc.abstractmethod
    def build(
        self, problem, *, seed: int = 0, dtype: torch.dtype = torch.float32, device="cpu"
    ) -> AbstractBackend:
        """The backend that solves ``problem`` (initialized from ``seed``)."""


class AbstractBackend(nn.Module, metaclass=abc.ABCMeta):
    """A built solver for one problem: ``problem``, ``predict``, ``exports``."""

    problem: Any = None
    #: the processes of a distributed run (:meth:`distribute`); one process by default
    world: World = World()

    def distribute(self, world: World) -> None:
        """Told the ranks of a distributed run (``fit`` and ``pdeml solve`` call it). Backends that
        split work of their own over the ranks read ``self.world``: a hard constraint's experts,
        walk-on-spheres' walks. The batches are split by ``fit`` whatever the backend."""
        self.world = world

    @abc.abstractmethod
    def predict(self, x) -> np.ndarray:
        """The solution's outputs (N, n_outputs) at points (N, n_inputs), as float64 numpy."""

    def exports(self, x) -> dict[str, np.ndarray]:
        """Further point data for the VTK files at points ``x`` (default: none)."""
        return {}

    def solve(self, truth) -> dict:
        """A backend that does not train computes its solution here (``pdeml solve``, through
        :func:`pdeml.run.execute`) and returns its metrics: the error against ``truth``
        ``(points (N, d), values (N, k))`` where the case has one (None otherwise), and what the
        method reports (walks, iterations, timing). Trainable backends are trained by ``fit``."""
        from ._validate import fail

        fail(
            "method",
            type(self).__name__,
            "neither trains (AbstractTrainable) nor solves",
            "implement solve(truth) -> metrics in the backend, or train it with `pdeml train`",
        )

    def resolved(self) -> dict:
        """Choices the build made that the settings left open (for run.json), e.g. the estimator."""
        return {}

    def parameter_values(self) -> dict[str, float]:
        """Identified scalar parameters (inverse problems); default none."""
        return {}

    #: what the last :meth:`export` chose that a reader of its files should know (a Monte Carlo
    #: export's walks per point); ``pdeml.run`` adds it to metrics.json
    export_info: dict = {}

    def export(self, out, resolution: int, sample: int | None = None) -> list:
        """Write the solution's files into ``out``: by default the VTK mesh of the problem's
        geometry (:func:`pdeml.export.export`) and ``field.png``; operators write time series
        (of test trajectory ``sample``, or the first few)."""
        from ._validate import fail
        from .export import export, plot_field

        if sample is not None:
            fail(
                "--sample",
                sample,
                "applies to operator runs (a family's test samples)",
                "leave it out",
            )
        files = export(self, out, resolution)
        files.append(plot_field(self, Path(out) / "field.png", min(resolution, 200)))
        return files

    @property
    def device(self) -> torch.device:
        return next(iter(self.state_dict().values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(t for t in self.state_dict().values() if t.is_floating_point()).dtype


class AbstractTrainable(AbstractBackend):
    """A backend trained by :func:`pdeml.fit`: named per-term losses on batches."""

    #: batch terms every rank of a distributed run needs whole (a joint solve over all their rows,
    #: such as a hard constraint's): never split over the ranks (:class:`pdeml.distributed.Sharded`)
    whole_terms: tuple = ()

    @property
    @abc.abstractmethod
    def term_names(self) -> list[str]:
        """The loss terms, in order."""

    @abc.abstractmethod
    def losses(self, batch: dict, residuals: dict | None = None) -> dict[str, torch.Tensor]:
        """``{term: scalar loss}`` on a tensor batch; ``residuals`` (a dict, or None) receives the
        detached residuals adaptive samplers look at."""

    def term_keys(self) -> dict[str, str]:
        """Loss term -> the batch key whose rows the term is a mean over. A distributed run
        weights each rank's term by that key's share of rows on the rank
        (:meth:`pdeml.distributed.Sharded.shares`), so uneven shards still give the global mean.
        Default: every term is a mean over the ``"data"`` rows (an operator's samples)."""
        return {name: "data" for name in self.term_names}

    @abc.abstractmethod
    def batches(self, sampler, rng: np.random.Generator):
        """A run of ``sampler`` (None: the method's own) drawing this backend's batches."""

    def reference(self, rng: np.random.Generator):
        """``(inputs, values)`` the error is measured on during training (``predict(inputs)``
        against ``values``), or None: by default 4096 points of the problem's truth."""
        return self.problem.truth(4096, rng)

    # ------------------------------------------------ the compiled whole step (docs/compile.md)
    #: seconds torch.compile took in this process (``compile_s`` in metrics.json)
    compile_s: float = 0.0
    #: capture a compiled step on CUDA as a CUDA graph (:class:`pdeml.steppers.WholeStep`)
    cuda_graphs: bool = True
    #: hand a compiled CPU graph's large float32 matrix products to oneDNN (:mod:`pdeml.gemm`)
    onednn_gemm: bool = True

    def choices(self) -> dict:
        """Choices this backend made on this machine that a resumed run must keep to do the same
        arithmetic (a PINN's per-product matrix-product library); saved in the checkpoint as
        JSON. Default none."""
        return {}

    def keep_choices(self, choices: dict) -> None:
        """Take the :meth:`choices` of the checkpoint being resumed (before the first step)."""

    def lr_scales(self) -> dict[str, float]:
        """Factors of a first-order phase's learning rate per parameter name
        (``named_parameters``); unnamed parameters take the rate itself. Default none.
        Spectral-Refiner's spectral bias learns at 10x its weights' rate."""
        return {}

    def whole_step(self, batch: dict, steps: int | None = None) -> bool:
        """Whether a first-order phase of ``steps`` steps may be compiled whole, forward,
        backward and update in one graph (:class:`pdeml.steppers.WholeStep`). Default: no."""
        return False

    def step_losses(
        self, batch: dict, residuals: dict | None = None, draws=()
    ) -> dict[str, torch.Tensor]:
        """The per-term losses as the compiled step traces them (uncompiled, with the random
        draws :meth:`draw_ahead` made passed in). Default: :meth:`losses`."""
        return self.losses(batch, residuals)

    def draw_ahead(self) -> list[torch.Tensor]:
        """The random draws one evaluation of the losses makes, made now, for a compiled step
        (a generator cannot be called inside its graph). Default: none."""
        return []


class AbstractLeastSquares(AbstractTrainable):
    """A trainable backend whose losses are mean squares of residual columns (Gauss-Newton)."""

    exact_residuals: bool = True  # False for stochastic (paired) residual estimates

    @abc.abstractmethod
    def residual_terms(
        self, batch: dict, residuals: dict | None = None, terms=None
    ) -> dict[str, torch.Tensor]:
        """``{term: residual columns (N, k)}``; ``terms`` limits it to some batch keys."""

    @abc.abstractmethod
    def residual_keys(self) -> dict[str, list[str]]:
        """Batch key -> the terms whose residuals live at its points, in term order."""

    def term_keys(self) -> dict[str, str]:
        return {name: key for key, names in self.residual_keys().items() for name in names}

    @property
    def residuals_need_grad(self) -> bool:
        """Whether evaluating the residuals needs autograd through the points."""
        return True
