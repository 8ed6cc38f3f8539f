"""Export of trajectory operators: per test sample a ``.pvd`` time series of ImageData with the
prediction, the truth and the error, and ``field.png`` with a few time slices side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pdeml.export.image import write_image_data
from pdeml.export.plots import figure, save
from pdeml.export.vtk import write_pvd


def write_series(out: Path, name: str, pred: np.ndarray, truth: np.ndarray, t0: float, dt: float) -> Path:
    """``name.pvd`` over ``name/t*.vti``: prediction, truth and error of one trajectory
    (frames, n, n) at times t0, t0 + dt, ... on the unit square."""
    n, files = truth.shape[-1], []
    for j in range(len(truth)):
        rel = f"{name}/t{j:04d}.vti"
        write_image_data(out / rel, {"prediction": pred[j], "truth": truth[j], "error": pred[j] - truth[j]},
                         spacing=(1.0 / n, 1.0 / n, 1.0))
        files.append((t0 + j * dt, rel))
    return write_pvd(out / f"{name}.pvd", files)


def export_trajectories(backend, out: Path, samples=None, first: int = 3) -> list[Path]:
    """Files for the test trajectories numbered ``samples`` (indices in the test split; default
    the first ``first``)."""
    pairs = backend.test_pairs(samples)
    if pairs is None:
        return []
    a, y = pairs
    if samples is None:
        a, y = a[:first], y[:first]
    samples = list(samples) if samples is not None else list(range(len(y)))
    pred = backend.predict(a)
    t_in, dt = backend.method.t_in, backend.problem.frame_dt
    written = [write_series(out, f"test_{k:03d}", pred[s], y[s], t_in * dt, dt) for s, k in enumerate(samples)]
    written.append(plot_trajectory(pred[0], y[0], t_in, dt, out / "field.png"))
    return written


def plot_trajectory(pred: np.ndarray, truth: np.ndarray, t_in: int, dt: float, path, slices: int = 4) -> Path:
    """Prediction, truth and error (rows) at ``slices`` times (columns) of one test trajectory."""
    frames = np.linspace(0, len(truth) - 1, slices).round().astype(int)
    fig, ax = figure(3, slices, (3.2 * slices, 8.4))
    lim = float(np.abs(truth).max())
    for c, j in enumerate(frames):
        for r, (title, v, cmap) in enumerate((("prediction", pred[j], "RdBu_r"), ("truth", truth[j], "RdBu_r"),
                                              ("error", pred[j] - truth[j], "PuOr"))):
            im = ax[r, c].imshow(v.T, origin="lower", extent=(0, 1, 0, 1), cmap=cmap,
                                 vmin=-lim if r < 2 else None, vmax=lim if r < 2 else None)
            ax[r, c].set(title=f"{title}, t = {(t_in + j) * dt:.3g}", xticks=[], yticks=[])
            fig.colorbar(im, ax=ax[r, c], shrink=0.8)
    return save(fig, path)
