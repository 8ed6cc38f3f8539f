"""Where did the collocation points go: point clouds over the residual field (PNG and VTK).

``PointSnapshots`` (a training callback) writes ``snapshots/points_<step>.vtu`` (vertex cells,
point data ``residual``: the Euclidean norm of the PDE residuals at each point) and, for
two-dimensional inputs (x, y) or (x, t), ``snapshots/points_<step>.png``: the points drawn over
|r| on a grid. Open the .vtu series in ParaView with "Points" representation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..callbacks import AbstractCallback
from .vtk import write_mesh


def write_points(path, points: np.ndarray, data: dict) -> Path:
    """A point cloud as VTK unstructured grid with one vertex cell per point."""
    return write_mesh(path, points, "vertex", np.arange(len(points)).reshape(-1, 1), data)


def _residual_norm(backend, x: np.ndarray) -> np.ndarray:
    """|r| at points (``residual_at`` leaves a stochastic estimator's random stream as it was)."""
    r = backend.residual_at(x)
    return np.linalg.norm(r.reshape(len(x), -1), axis=1)


def plot_points(backend, points: np.ndarray, path, resolution: int = 96, title: str = "") -> Path:
    """The points over log10 |r| on a grid of the bounding box (inputs of dimension 2 only)."""
    from .plots import figure, save

    p = backend.problem
    lo, hi = (np.asarray(b, dtype=np.float64) for b in p.domain.bbox)
    if len(lo) != 2:
        raise ValueError(
            f"plot_points needs 2 inputs, the problem has {len(lo)}. Fix: use the .vtu "
            "snapshots (write_points), which work in any dimension."
        )
    X, Y = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([X.ravel(), Y.ravel()], 1)
    inside = p.domain.inside(grid)
    r = np.full(len(grid), np.nan)
    r[inside] = _residual_norm(backend, grid[inside])
    fig, axes = figure(1, 1, (5.6, 4.6))
    ax = axes[0, 0]
    im = ax.pcolormesh(
        X, Y, np.log10(np.maximum(r, 1e-16)).reshape(X.shape), shading="auto", cmap="magma"
    )
    fig.colorbar(im, ax=ax, label="log10 |residual|")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="cyan", edgecolors="none")
    names = p.inputs
    ax.set(xlabel=names[0], ylabel=names[1], title=title or f"{len(points)} collocation points")
    return save(fig, path)


class PointSnapshots(AbstractCallback):
    """Every ``every`` steps, save the PDE points in use (``state.points``) with their residuals
    (VTK, and a PNG for 2-input problems) into ``directory``.

    Example:
        >>> problem = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 2.0,
        ...                      [pl.Dirichlet(0.0)], exact=lambda x: x * (1 - x))
        >>> backend = pl.PINN(pl.nn.MLP(16, 2), sampler=pl.samplers.Uniform(64, 2)).build(problem)
        >>> snaps = PointSnapshots(backend, "snapshots", every=5, png=False)
        >>> _ = pl.fit(backend, [(10, pl.FirstOrder())], callbacks=[snaps])
        >>> sorted(p.name for p in Path("snapshots").iterdir())
        ['points_000000.vtu', 'points_000005.vtu', 'points_000010.vtu']
    """

    def __init__(self, backend, directory, every: int = 1000, png: bool = True):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"--snapshots={every!r} must be a positive integer. Fix: pass e.g. --snapshots 500"
            )
        self.backend, self.every = backend, every
        self.directory, self.png = Path(directory), png
        self.written: list[Path] = []

    def snapshot(self, step: int, points: dict):
        self.directory.mkdir(parents=True, exist_ok=True)
        x = np.asarray(points["domain"]["x"])
        stem = self.directory / f"points_{step:06d}"
        self.written.append(
            write_points(stem.with_suffix(".vtu"), x, {"residual": _residual_norm(self.backend, x)})
        )
        if self.png and x.shape[1] == 2:
            self.written.append(
                plot_points(
                    self.backend, x, stem.with_suffix(".png"), title=f"step {step}: {len(x)} points"
                )
            )

    def on_start(self, state):
        if state.step == 0:
            self.snapshot(0, state.points)

    def on_step(self, state):
        if state.step % self.every == 0:
            self.snapshot(state.step, state.points)
