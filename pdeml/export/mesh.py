"""Meshes that cover a geometry, for sampling a trained field.

* 1-D: a line mesh on the interval.
* 2-D: Delaunay triangulation of grid points inside the domain plus boundary points (and the
  polygon vertices, so re-entrant corners are exact); triangles whose centroid or an edge
  midpoint lies outside are dropped, which keeps holes and notches empty.
* 3-D: voxels of a regular grid whose eight corners all lie inside (hexahedra): every node
  written is in the body, where the fields mean something (a voxel that straddles the
  boundary is left out, so the surface is a staircase up to one voxel inside it).
* more dimensions: the 2-D slice through the bounding-box centre spanned by the first two
  coordinates (quads whose centres lie inside); points keep all coordinates.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

from ..geometry import AbstractGeometry


def _grid(lo, hi, n):
    axes = [np.linspace(a, b, n) for a, b in zip(lo, hi)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(lo))


def _vertices(geom):
    """Polygon vertices anywhere in a CSG tree (so corners become mesh nodes)."""
    if hasattr(geom, "vertices"):
        return np.asarray(geom.vertices, dtype=float)
    parts = [
        _vertices(g) for g in (getattr(geom, "a", None), getattr(geom, "b", None)) if g is not None
    ]
    return np.concatenate(parts) if parts else np.zeros((0, geom.dim))


def mesh(geom: AbstractGeometry, resolution: int = 128):
    """``(points (P, dim), cell_type, cells (C, k))`` covering ``geom``."""
    lo, hi = geom.bbox
    if geom.dim == 1:
        x = np.linspace(lo[0], hi[0], resolution + 1)[:, None]
        return x, "line", np.stack([np.arange(resolution), np.arange(1, resolution + 1)], 1)
    if geom.dim == 2:
        pts = _grid(lo, hi, resolution)
        pts = pts[geom.inside(pts)]
        rng = np.random.default_rng(0)
        bnd = geom.sample_boundary(4 * resolution, rng, "uniform")
        allp = np.concatenate([pts, bnd, _vertices(geom)])
        h = float(np.max(hi - lo)) / resolution
        allp = np.unique(np.round(allp / (h * 1e-3)) * (h * 1e-3), axis=0)
        tri = Delaunay(allp).simplices
        p = allp[tri]  # (T, 3, 2)
        keep = geom.inside(p.mean(axis=1))
        for e in range(3):  # an edge along the boundary has its midpoint on it, not inside
            q = (p[:, e] + p[:, (e + 1) % 3]) / 2
            keep &= geom.inside(q) | geom.on_boundary(q)
        edge = np.linalg.norm(p - np.roll(p, 1, axis=1), axis=2).max(axis=1)
        keep &= edge < 4 * h  # no slivers across concave gaps
        return allp, "triangle", tri[keep]
    if geom.dim == 3:
        n = resolution
        nodes = _grid(lo, hi, n + 1)
        idx = np.arange((n + 1) ** 3).reshape(n + 1, n + 1, n + 1)
        i, j, k = (c.ravel() for c in np.meshgrid(*[np.arange(n)] * 3, indexing="ij"))
        hexa = np.stack(
            [
                idx[i, j, k],
                idx[i + 1, j, k],
                idx[i + 1, j + 1, k],
                idx[i, j + 1, k],
                idx[i, j, k + 1],
                idx[i + 1, j, k + 1],
                idx[i + 1, j + 1, k + 1],
                idx[i, j + 1, k + 1],
            ],
            axis=1,
        )
        hexa = hexa[geom.inside(nodes)[hexa].all(axis=1)]
        used, inverse = np.unique(hexa, return_inverse=True)
        return nodes[used], "hexahedron", inverse.reshape(hexa.shape)
    n, c = resolution, (lo + hi) / 2
    plane = _grid(lo[:2], hi[:2], n + 1)
    nodes = np.tile(c, (len(plane), 1))
    nodes[:, :2] = plane
    grid = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    quads = np.stack(
        [
            grid[:-1, :-1].ravel(),
            grid[1:, :-1].ravel(),
            grid[1:, 1:].ravel(),
            grid[:-1, 1:].ravel(),
        ],
        1,
    )
    quads = quads[geom.inside(nodes[quads].mean(axis=1))]
    used, inverse = np.unique(quads, return_inverse=True)
    return nodes[used], "quad", inverse.reshape(quads.shape)


def plane_slice(geom: AbstractGeometry, resolution: int = 128, axis: int = 2):
    """``(points (P, 3), "triangle", cells (C, 3), value)``: the mid-plane of a 3-D ``geom``
    normal to ``axis`` (at ``value``, the bounding box's centre), as a grid of
    (resolution + 1)² points of which only the squares with four corners inside are kept, two
    triangles each. Costs resolution² inside tests: a 3-D picture without a 3-D mesh."""
    lo, hi = geom.bbox
    others = [a for a in range(3) if a != axis]
    value = float(lo[axis] + hi[axis]) / 2
    plane = _grid(lo[others], hi[others], resolution + 1)
    pts = np.empty((len(plane), 3))
    pts[:, others], pts[:, axis] = plane, value
    idx = np.arange(len(plane)).reshape(resolution + 1, resolution + 1)
    quads = np.stack(
        [idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()],
        1,
    )
    quads = quads[geom.inside(pts)[quads].all(axis=1)]
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    used, inverse = np.unique(tri, return_inverse=True)
    return pts[used], "triangle", inverse.reshape(tri.shape), value
