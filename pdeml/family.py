"""``Family``: a problem whose inputs are drawn (initial conditions, sources, shapes), with the
reference solver that turns each draw into its solution, so operator cases carry their truth.

A family is a settings object: ``generate(count, generator)`` returns ``count`` samples
``{field: tensor (count, ...)}`` (the inputs and the reference solutions), and
:meth:`AbstractFamily.write` turns that into a dataset file (:mod:`pdeml.datasets`) batch by
batch, with a progress bar and the family's settings in the file, so the data can be
regenerated and checked.
"""

from __future__ import annotations

import abc

import torch

from ._validate import fail, positive_int
from .settings import describe


class AbstractFamily(abc.ABC):
    """Settings of a problem family and its reference solver. ``frame_dt``: the time between
    stored frames of a trajectory family (1 where samples have no time)."""

    frame_dt: float = 1.0

    @property
    def outputs(self) -> tuple:
        return tuple(self.shapes())

    @abc.abstractmethod
    def shapes(self) -> dict[str, tuple]:
        """The shape of one sample of each field, e.g. ``{"w": (frames, n, n)}``."""

    @abc.abstractmethod
    def generate(
        self, count: int, generator: torch.Generator, device="cpu"
    ) -> dict[str, torch.Tensor]:
        """``count`` samples ``{field: (count, *shape)}`` drawn with ``generator``."""

    def write(
        self,
        path,
        samples: int,
        *,
        test: int | None = None,
        seed: int = 0,
        batch: int = 32,
        device="cpu",
        progress: bool = True,
    ):
        """Generate ``samples`` samples (the last ``test``, default 1/8, are the test split) in
        batches of ``batch`` and write them to ``path`` (chunked HDF5)."""
        from .callbacks import progress as shown
        from .datasets import Writer

        samples, batch = positive_int("--samples", samples), positive_int("--batch", batch)
        test = max(1, samples // 8) if test is None else positive_int("--test", test)
        if test >= samples:
            fail(
                "--test",
                test,
                f"leaves no training samples of {samples}",
                f"pass fewer than {samples}",
            )
        generator = torch.Generator().manual_seed(seed)
        settings = {"family": describe(self), "seed": seed, "batch": batch, "samples": samples}
        with (
            Writer(
                path, self.shapes(), samples=samples, settings=settings, n_train=samples - test
            ) as wr,
            shown(total=samples, desc="data", enabled=progress, unit="samples") as bar,
        ):
            while wr.count < samples:
                n = min(batch, samples - wr.count)
                wr.append(
                    {
                        k: v.float().cpu().numpy()
                        for k, v in self.generate(n, generator, device).items()
                    }
                )
                bar.update(n)
        return wr.path
