"""Write a trained field to VTK (meshio): ``solution.vtu``, or ``solution.pvd`` + snapshots.

Point data: one array per output, what the backend exports (a PINN: each PDE residual,
``residual`` / ``residual_k``), and where a
truth exists ``exact_<name>`` and ``error_<name>`` (prediction minus truth; a reference given
as scattered points is interpolated linearly onto the mesh).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import meshio
import numpy as np
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator, RegularGridInterpolator

from .mesh import mesh


def truth_function(problem):
    """``x -> values (N, n_outputs)`` of the problem's truth, or None: the exact solution, or
    the reference interpolated linearly (nearest value outside its hull). The interpolant is
    built once: a reference on a tensor grid (the Allen-Cahn 512 x 201 ETDRK4 grid) uses
    ``RegularGridInterpolator``; scattered points one Delaunay triangulation. (Building it per
    call, as ``griddata`` does, took 57 of the 60 s of exporting allen_cahn_1d's 21 snapshots.)"""
    if problem.exact is not None:
        return problem.exact_values
    if problem.reference is None:
        return None
    pts, vals = problem.reference
    if pts.shape[1] > 4 or len(pts) <= 2 * pts.shape[1]:
        return None
    if pts.shape[1] == 1:
        order = np.argsort(pts[:, 0])
        return lambda x: np.stack(
            [np.interp(x[:, 0], pts[order, 0], vals[order, k]) for k in range(vals.shape[1])],
            axis=1,
        )
    axes = [np.unique(pts[:, d]) for d in range(pts.shape[1])]
    if np.prod([len(a) for a in axes]) == len(pts) and all(len(a) > 1 for a in axes):
        grid = np.full(tuple(len(a) for a in axes) + (vals.shape[1],), np.nan)
        idx = tuple(np.searchsorted(a, pts[:, d]) for d, a in enumerate(axes))
        grid[idx] = vals
        interp = RegularGridInterpolator(axes, grid, bounds_error=False, fill_value=None)
        lo, hi = np.array([a[0] for a in axes]), np.array([a[-1] for a in axes])
        return lambda x: interp(np.clip(x, lo, hi))
    lin, near = LinearNDInterpolator(pts, vals), NearestNDInterpolator(pts, vals)

    def scattered(x):
        v = lin(x)
        return np.where(np.isnan(v), near(x), v)

    return scattered


_BUILD = object()


def point_data(backend, x: np.ndarray, truth=_BUILD) -> dict[str, np.ndarray]:
    """Fields to write at points ``x`` (N, n_inputs); ``truth`` a :func:`truth_function` or None
    (default: built for this call)."""
    p = backend.problem
    pred = backend.predict(x)
    data = {name: pred[:, k] for k, name in enumerate(p.outputs)}
    data.update(backend.exports(x))
    truth = truth_function(p) if truth is _BUILD else truth
    truth = truth(x) if truth is not None else None
    if truth is not None:
        for k, name in enumerate(p.outputs):
            data[f"exact_{name}"] = truth[:, k]
            data[f"error_{name}"] = pred[:, k] - truth[:, k]
    return data


def write_pvd(path, files: list[tuple[float, str]]) -> Path:
    """A ParaView collection (``.pvd``) of ``(time, file relative to path's folder)`` pairs."""
    entries = "\n".join(
        f'    <DataSet timestep="{t:.10g}" part="0" file={quoteattr(name)}/>' for t, name in files
    )
    path = Path(path)
    path.write_text(
        '<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n  <Collection>\n'
        + entries
        + "\n  </Collection>\n</VTKFile>\n"
    )
    return path


def _pad3(x):
    if x.shape[1] > 3:  # a slice of a high-dimensional domain: (x0, x1)
        x = x[:, :2]
    return np.hstack([x, np.zeros((len(x), 3 - x.shape[1]))]) if x.shape[1] < 3 else x


def write_mesh(
    path, pts, cell_type: str, cells, point_data: dict | None = None, cell_data: dict | None = None
) -> Path:
    """One block of ``cells`` (``"quad"``, ``"vertex"``, ...) on points (N, d; padded to 3-D)
    with ``point_data`` and ``cell_data`` (name -> array over the points / the cells) as a file
    meshio writes (``.vtu``); the folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meshio.write(
        path,
        meshio.Mesh(
            _pad3(np.asarray(pts, dtype=np.float64)),
            [(cell_type, cells)],
            point_data={k: np.ascontiguousarray(v) for k, v in (point_data or {}).items()},
            cell_data={k: [np.asarray(v)] for k, v in (cell_data or {}).items()},
        ),
    )
    return path


def _write(path, pts, cell_type, cells, data):
    write_mesh(path, pts, cell_type, cells, data)


#: the 3-D export's point budget: a volume is written on at most this many grid nodes (the model,
#: its residual and an inside test at each), 45 voxels a side, whatever ``resolution`` asks; the
#: 3-D picture is a mid-plane slice at the full resolution (:func:`pdeml.export.plots.plot_field`)
VOLUME_POINTS = 100_000


def volume_resolution(resolution: int) -> int:
    """The voxels a side a 3-D export writes for ``resolution``: the largest n <= resolution
    whose (n + 1)³ grid nodes fit :data:`VOLUME_POINTS`."""
    return min(resolution, int(VOLUME_POINTS ** (1 / 3)) - 1)


def export(backend, out_dir, resolution: int = 128, snapshots: int = 21) -> list[Path]:
    """Write the VTK files for ``backend`` into ``out_dir``; returns the paths written. A 3-D
    geometry is written as a volume of :func:`volume_resolution` voxels a side."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = backend.problem
    res = resolution if p.geometry.dim < 3 else volume_resolution(resolution)
    pts, cell_type, cells = mesh(p.geometry, res)
    truth = truth_function(p)  # built once for every snapshot
    if p.time is None:
        path = out / "solution.vtu"
        _write(path, pts, cell_type, cells, point_data(backend, pts, truth))
        return [path]
    written, entries = [], []
    (out / "solution").mkdir(exist_ok=True)
    for k, t in enumerate(np.linspace(p.time[0], p.time[1], snapshots)):
        xt = np.hstack([pts, np.full((len(pts), 1), t)])
        name = f"solution/t{k:04d}.vtu"
        _write(out / name, pts, cell_type, cells, point_data(backend, xt, truth))
        entries.append((t, name))
        written.append(out / name)
    written.insert(0, write_pvd(out / "solution.pvd", entries))
    if p.geometry.dim == 1:  # the whole space-time plane as one mesh (x, t, 0)
        nt = res
        x = np.linspace(p.geometry.bbox[0][0], p.geometry.bbox[1][0], res + 1)
        t = np.linspace(p.time[0], p.time[1], nt + 1)
        X, T = np.meshgrid(x, t, indexing="ij")
        xt = np.stack([X.ravel(), T.ravel()], 1)
        idx = np.arange(len(xt)).reshape(res + 1, nt + 1)
        quads = np.stack(
            [
                idx[:-1, :-1].ravel(),
                idx[1:, :-1].ravel(),
                idx[1:, 1:].ravel(),
                idx[:-1, 1:].ravel(),
            ],
            1,
        )
        path = out / "spacetime.vtu"
        _write(path, xt, "quad", quads, point_data(backend, xt, truth))
        written.append(path)
    return written
