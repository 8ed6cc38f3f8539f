"""Export of trajectory operators: per test sample a ``.pvd`` time series of ImageData with the
prediction, the truth and the error, and ``field.png`` with a few time slices side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pdeml.export.image import write_image_data
from pdeml.export.plots import figure, save
from pdeml.export.vtk import write_pvd


def write_series(
    out: Path, name: str, pred: np.ndarray, truth: np.ndarray, t0: float, dt: float
) -> Path:
    """``name.pvd`` over ``name/t*.vti``: prediction, truth and error of one trajectory
    (frames, n, n) at times t0, t0 + dt, ... on the unit square."""
    n, files = truth.shape[-1], []
    for j in range(len(truth)):
        rel = f"{name}/t{j:04d}.vti"
        write_image_data(
            out / rel,
            {"prediction": pred[j], "truth": truth[j], "error": pred[j] - truth[j]},
            spacing=(1.0 / n, 1.0 / n, 1.0),
        )
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
    written = [
        write_series(out, f"test_{k:03d}", pred[s], y[s], t_in * dt, dt)
        for s, k in enumerate(samples)
    ]
    written.append(plot_trajectory(pred[0], y[0], t_in, dt, out / "field.png"))
    return written


def plot_trajectory(
    pred: np.ndarray, truth: np.ndarray, t_in: int, dt: float, path, slices: int = 4
) -> Path:
    """Prediction, truth and error (rows) at ``slices`` times (columns) of one test trajectory."""
    frames = np.linspace(0, len(truth) - 1, slices).round().astype(int)
    fig, ax = figure(3, slices, (3.2 * slices, 8.4))
    lim = float(np.abs(truth).max())
    err = float(np.abs(pred[frames] - truth[frames]).max()) or 1.0  # centred on zero, one scale
    for c, j in enumerate(frames):
        for r, (title, v, cmap) in enumerate(
            (
                ("prediction", pred[j], "RdBu_r"),
                ("truth", truth[j], "RdBu_r"),
                ("error", pred[j] - truth[j], "PuOr"),
            )
        ):
            im = ax[r, c].imshow(
                v.T,
                origin="lower",
                extent=(0, 1, 0, 1),
                cmap=cmap,
                vmin=-lim if r < 2 else -err,
                vmax=lim if r < 2 else err,
            )
            label = "error (prediction - truth)" if title == "error" else title
            ax[r, c].set(title=f"{label}, t = {(t_in + j) * dt:.3g}", xticks=[], yticks=[])
            fig.colorbar(im, ax=ax[r, c], shrink=0.8)
    return save(fig, path)


def _chosen(samples, count: int, first: int, what: str) -> list[int]:
    """The test draws to export: ``samples``, or the first ``first``; each checked."""
    from pdeml._validate import fail

    samples = list(range(min(first, count))) if samples is None else list(samples)
    for s in samples:
        if not 0 <= s < count:
            fail("--sample", s, f"is not a {what} (there are {count})", f"pass 0..{count - 1}")
    return samples


def export_domains(
    backend, out: Path, samples=None, walks: int = 256, first: int = 3
) -> list[Path]:
    """``test_<k>.vti`` per test domain of a domain operator (``samples``, default the first
    ``first``): prediction, truth, error and a walk-on-spheres solve (mean, standard error) on the
    inside cell centres (NaN outside), and ``field.png`` of the first."""
    from pdeml.solvers.wos import WalkOnSpheres

    t, fam = backend.test_set(), backend.problem
    samples = _chosen(samples, len(t["draws"]), first, "test domain")
    pred = backend.predict(t["features"][samples])
    x, half, written = fam.grid(), fam.half, []
    n = x.shape[0]
    for j, s in enumerate(samples):
        inside = t["inside"][s]
        est = (
            WalkOnSpheres(walks=walks)
            .build(fam.wos_problem(t["draws"][s]), seed=s, dtype=torch.float64)
            .estimate(x[inside])
        )
        fields = {
            "prediction": pred[j],
            "truth": t["truth"][s],
            "error": pred[j] - t["truth"][s],
            "wos_mean": np.zeros((n, n)),
            "wos_std_error": np.zeros((n, n)),
        }
        fields["wos_mean"][inside], fields["wos_std_error"][inside] = est["mean"], est["std_error"]
        fields = {k: np.where(inside, v, np.nan) for k, v in fields.items()}
        written.append(
            write_image_data(
                out / f"test_{s:03d}.vti",
                fields | {"inside": inside.astype(float)},
                spacing=(2 * half / n, 2 * half / n, 1.0),
                origin=(-half, -half, 0.0),
            )
        )
        if j == 0:
            written.append(plot_domain(fields, half, out / "field.png"))
    return written


def plot_domain(fields: dict, half: float, path) -> Path:
    """Prediction, truth, error and the walk-on-spheres standard error of one domain, side by
    side."""
    names = ("prediction", "truth", "error", "wos_std_error")
    fig, ax = figure(1, len(names), (3.4 * len(names), 3.2))
    lim = float(np.nanmax(np.abs(fields["truth"])))
    for a, k in zip(ax.ravel(), names):
        same = k in ("prediction", "truth")
        im = a.imshow(
            fields[k].T,
            origin="lower",
            extent=(-half, half, -half, half),
            cmap="RdBu_r" if same else "PuOr" if k == "error" else "viridis",
            vmin=-lim if same else None,
            vmax=lim if same else None,
        )
        a.set(title=k.replace("_", " "), xticks=[], yticks=[])
        fig.colorbar(im, ax=a, shrink=0.8)
    return save(fig, path)


def export_initial_family(backend, out: Path, samples=None, first: int = 3) -> list[Path]:
    """``test_<k>.vti`` per test input of an initial-condition operator (``samples``, default the
    first ``first``) over the (x, t) node grid, one cell per node: prediction, truth, error and
    the expert index; and ``field.png`` of the first."""
    t, fam = backend.test_set(), backend.problem
    samples = _chosen(samples, len(t["u0"]), first, "test input")
    pred = backend.predict(t["u0"][samples])
    g = fam.grid()
    h = (g[1, 0, 0] - g[0, 0, 0], g[0, 1, 1] - g[0, 0, 1])
    expert = backend.expert.reshape(g.shape[:2]).cpu().numpy().astype(float)
    written = []
    for j, s in enumerate(samples):
        fields = {
            "prediction": pred[j],
            "truth": t["truth"][s],
            "error": pred[j] - t["truth"][s],
            "expert": expert,
        }
        written.append(
            write_image_data(
                out / f"test_{s:03d}.vti",
                fields,
                spacing=(h[0], h[1], 1.0),
                origin=(g[0, 0, 0] - h[0] / 2, g[0, 0, 1] - h[1] / 2, 0.0),
            )
        )
        if j == 0:
            written.append(plot_space_time(fields, fam.extent, out / "field.png"))
    return written


def plot_space_time(fields: dict, extent, path) -> Path:
    """Prediction, truth, error and the expert index over (x, t), side by side."""
    names = ("prediction", "truth", "error", "expert")
    fig, ax = figure(1, len(names), (3.4 * len(names), 3.2))
    box = (*extent[0], *extent[1])
    lo, hi = float(fields["truth"].min()), float(fields["truth"].max())
    for a, k in zip(ax.ravel(), names):
        same = k in ("prediction", "truth")  # one colour scale for both
        im = a.imshow(
            fields[k].T,
            origin="lower",
            extent=box,
            aspect="auto",
            cmap="PuOr" if k == "error" else "tab10" if k == "expert" else "viridis",
            vmin=lo if same else None,
            vmax=hi if same else None,
        )
        a.set(title=k, xlabel="x", ylabel="t")
        fig.colorbar(im, ax=a, shrink=0.8)
    return save(fig, path)
