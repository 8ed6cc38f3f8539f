r"""``Mesh``: a 3-D domain bounded by a closed triangle surface, read from a mesh file (STL, OBJ,
VTK/VTU surfaces, anything meshio reads) or given as arrays.

- **Signed distance**: the exact distance to the nearest triangle (closest point on each
  triangle: its plane inside the triangle, else the nearest edge), signed by the generalized
  winding number :math:`w(x) = \frac1{4\pi}\sum_t \Omega_t(x)` (Van Oosterom & Strackee's
  solid angle of each triangle; :math:`|w| > 1/2` inside). Exact for any closed surface, written
  in torch (CPU or GPU, chunked over points), so walk-on-spheres and hard constraints can use
  it. Cost: points x triangles per call.
- **Sampling**: boundary points area-weighted over the triangles (uniform on the surface), with
  outward normals; interior points by rejection from the bounding box.

Example:
    >>> points = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]   # a tetrahedron; or Mesh("a.stl")
    >>> geom = pl.geometry.Mesh(points=np.array(points, float),
    ...                         triangles=np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
    >>> x = torch.tensor([[0.1, 0.1, 0.1], [1.0, 1.0, 1.0]], dtype=torch.float64)
    >>> geom.sdf(x)                                  # < 0 inside
    tensor([-0.1000,  1.1547], dtype=torch.float64)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .._validate import fail, positive_int
from .base import AbstractGeometry

_CHUNK = 2**22  # point-triangle pairs per chunk


def read_cells(path, cell_type: str, fix: str):
    """``(points (V, 3), cells (F, k))`` of every ``cell_type`` cell in a mesh file meshio reads;
    a missing or unreadable file, or one without such cells, is an error that says ``fix``."""
    import meshio

    path = Path(path)
    if not path.is_file():
        fail("path", str(path), "does not exist", fix, FileNotFoundError)
    try:
        m = meshio.read(path)
    except Exception as e:  # meshio raises many kinds for unreadable files
        fail("path", str(path), f"is not a mesh meshio can read ({e})", fix)
    cells = [c.data for c in m.cells if c.type == cell_type]
    if not cells:
        fail(
            "path",
            str(path),
            f"has no {cell_type}s (cells: {sorted({c.type for c in m.cells})})",
            fix,
        )
    return np.asarray(m.points, dtype=float)[:, :3], np.concatenate(cells).astype(np.int64)


def _point_triangle_distance(p, a, b, c):
    """Distance (N, M) from points p (N, 3) to triangles (a, b, c) (M, 3 each)."""
    ab, ac = b - a, c - a
    n = torch.cross(ab, ac, dim=-1)
    nn = (n * n).sum(-1).clamp_min(torch.finfo(p.dtype).tiny)
    ap = p[:, None, :] - a[None]  # (N, M, 3)
    height = (ap * n[None]).sum(-1) / nn.sqrt()  # signed distance to the plane
    # barycentric coordinates of the projection
    foot = ap - (height / nn.sqrt())[..., None] * n[None]
    v = (torch.cross(foot, ac[None].expand_as(foot), dim=-1) * n[None]).sum(-1) / nn
    w = (torch.cross(ab[None].expand_as(foot), foot, dim=-1) * n[None]).sum(-1) / nn
    inside = (v >= 0) & (w >= 0) & (v + w <= 1)

    def segment(q0, q1):
        d = q1 - q0
        t = ((p[:, None, :] - q0[None]) * d[None]).sum(-1) / (d * d).sum(-1).clamp_min(
            torch.finfo(p.dtype).tiny
        )
        closest = q0[None] + t.clamp(0, 1)[..., None] * d[None]
        return (p[:, None, :] - closest).norm(dim=-1)

    edges = torch.minimum(torch.minimum(segment(a, b), segment(b, c)), segment(c, a))
    return torch.where(inside, height.abs(), edges)


def _winding(p, a, b, c):
    """Generalized winding number (N,) of points p about the triangles (sum of solid angles /
    4π)."""
    ra, rb, rc = a[None] - p[:, None], b[None] - p[:, None], c[None] - p[:, None]
    la, lb, lc = ra.norm(dim=-1), rb.norm(dim=-1), rc.norm(dim=-1)
    det = (ra * torch.cross(rb, rc, dim=-1)).sum(-1)
    den = la * lb * lc + (ra * rb).sum(-1) * lc + (ra * rc).sum(-1) * lb + (rb * rc).sum(-1) * la
    return (2 * torch.atan2(det, den)).sum(-1) / (4 * math.pi)


def _check_surface(pts: np.ndarray, tri: np.ndarray) -> None:
    """A closed, manifold, consistently oriented surface of finite, non-degenerate triangles, or
    an error naming the first triangle that is not (a degenerate triangle made every point
    "inside" at distance 0, a NaN vertex gave NaN distances, and a solve then crashed minutes
    later in the walk kernel)."""
    bad = ~np.isfinite(pts).all(1)
    if bad.any():
        v = int(np.flatnonzero(bad)[0])
        t = int(np.flatnonzero((tri == v).any(1))[0]) if (tri == v).any() else None
        fail(
            "mesh",
            f"vertex {v} = {pts[v].tolist()}" + (f" (of triangle {t})" if t is not None else ""),
            "is not finite",
            "repair the surface (every vertex needs finite coordinates)",
        )
    # topology on merged vertices (STL repeats a vertex per facet)
    _, ids = np.unique(pts, axis=0, return_inverse=True)
    t = ids.reshape(-1)[tri]
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    flat = (area <= 1e-12 * area.max()) | (t[:, 0] == t[:, 1]) | (t[:, 1] == t[:, 2])
    flat |= t[:, 0] == t[:, 2]
    if flat.any():
        k = int(np.flatnonzero(flat)[0])
        fail(
            "mesh",
            f"triangle {k} {tri[k].tolist()} at {pts[tri[k]].round(6).tolist()}",
            "is degenerate (zero area: collinear or repeated vertices)",
            "remove or repair degenerate triangles (e.g. trimesh's remove_degenerate_faces)",
        )
    directed = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    owner = np.tile(np.arange(len(t)), 3)
    undirected = np.sort(directed, axis=1)
    _, inv, count = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    per_edge = count[inv.reshape(-1)]
    if (per_edge != 2).any():
        j = int(np.flatnonzero(per_edge != 2)[0])
        what = (
            "is open (an edge belongs to one triangle)"
            if per_edge[j] == 1
            else (f"is not manifold (an edge belongs to {per_edge[j]} triangles)")
        )
        fail(
            "mesh",
            f"triangle {int(owner[j])} {tri[owner[j]].tolist()}",
            f"{what}: the surface must be closed and manifold",
            "close the holes and split non-manifold edges (trimesh, MeshLab)",
        )
    _, dcount = np.unique(directed, axis=0, return_counts=True)
    if (dcount > 1).any():
        _, dinv, dcount = np.unique(directed, axis=0, return_inverse=True, return_counts=True)
        j = int(np.flatnonzero(dcount[dinv.reshape(-1)] > 1)[0])
        fail(
            "mesh",
            f"triangle {int(owner[j])} {tri[owner[j]].tolist()}",
            "is oriented against its neighbour (they run a shared edge the same way)",
            "orient the triangles consistently (trimesh's fix_normals)",
        )


class Mesh(AbstractGeometry):
    """The solid bounded by a closed triangle surface (3-D).

    Args:
        path: a surface mesh file (STL, OBJ, VTK/VTU, ... via meshio), or None with ``points``
            (V, 3) and ``triangles`` (F, 3) vertex indices given directly.
    """

    dim = 3

    def __init__(self, path=None, *, points=None, triangles=None):
        if path is not None:
            points, triangles = read_cells(
                path,
                "triangle",
                "pass a triangulated closed surface (STL, OBJ, VTK); "
                "2-D outlines: pl.geometry.Polygon.read(path)",
            )
        elif points is None or triangles is None:
            fail(
                "path",
                None,
                "is missing (and points/triangles are not both given)",
                'pass pl.geometry.Mesh("part.stl") or Mesh(points=..., triangles=...)',
            )
        pts, tri = np.asarray(points, dtype=float), np.asarray(triangles, dtype=np.int64)
        if pts.ndim != 2 or pts.shape[1] != 3 or tri.ndim != 2 or tri.shape[1] != 3 or len(tri) < 4:
            fail(
                "mesh",
                f"points {pts.shape}, triangles {tri.shape}",
                "is not a closed 3-D triangle surface",
                "pass (V, 3) points and (F >= 4, 3) triangles",
            )
        if tri.min() < 0 or tri.max() >= len(pts):
            fail(
                "triangles",
                f"indices {tri.min()}..{tri.max()}",
                f"address points outside 0..{len(pts) - 1}",
                "index the points array",
            )
        _check_surface(pts, tri)
        a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
        cross = np.cross(b - a, c - a)
        volume = float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)
        if abs(volume) < 1e-14:
            fail("mesh", f"{len(tri)} triangles", "enclose no volume", "pass a closed surface")
        if volume < 0:  # make the normals point outward
            tri, cross = tri[:, [0, 2, 1]], -cross
        self.points, self.triangles = pts, tri
        self.areas = 0.5 * np.linalg.norm(cross, axis=1)
        self.normals = cross / (2 * self.areas[:, None]).clip(min=1e-300)
        self.volume = abs(volume)
        self.path = None if path is None else str(path)

    # ------------------------------------------------------------------ distance
    def _tri(self, like: torch.Tensor):
        t = torch.as_tensor(self.points, dtype=like.dtype, device=like.device)
        idx = torch.as_tensor(self.triangles, device=like.device)
        return t[idx[:, 0]], t[idx[:, 1]], t[idx[:, 2]]

    def _chunks(self, x, fn):
        per = max(1, _CHUNK // len(self.triangles))
        return (
            torch.cat([fn(x[i : i + per]) for i in range(0, len(x), per)])
            if len(x)
            else x.new_zeros(0)
        )

    def unsigned_distance(self, x: torch.Tensor) -> torch.Tensor:
        """Exact distance (N,) from each row of ``x`` to the surface."""
        a, b, c = self._tri(x)
        return self._chunks(x, lambda p: _point_triangle_distance(p, a, b, c).min(dim=1).values)

    def winding_number(self, x: torch.Tensor) -> torch.Tensor:
        """Generalized winding number (N,): 1 inside, 0 outside (for outward triangles)."""
        a, b, c = self._tri(x)
        return self._chunks(x, lambda p: _winding(p, a, b, c))

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        d = self.unsigned_distance(x)
        with torch.no_grad():
            inside = self.winding_number(x.detach()) > 0.5
        return torch.where(inside, -d, d)

    # ------------------------------------------------------------------ queries
    @property
    def bbox(self):
        return self.points.min(axis=0), self.points.max(axis=0)

    def _scale(self) -> float:
        lo, hi = self.bbox
        return float(np.linalg.norm(hi - lo))

    def inside(self, x) -> np.ndarray:
        """Inside or on the surface (within 1e-9 of the mesh's size): the winding number, and
        the distance only where the winding number is fractional (numba, parallel over points;
        :mod:`pdeml.geometry.mesh_numba`)."""
        from .mesh_numba import kernels

        x = np.ascontiguousarray(self._check_points(x), dtype=np.float64)
        t = self.triangles
        return kernels().inside(
            x, *(np.ascontiguousarray(self.points[t[:, k]]) for k in range(3)), 1e-9 * self._scale()
        )

    def on_boundary(self, x) -> np.ndarray:
        x = torch.as_tensor(self._check_points(x), dtype=torch.float64)
        return (self.unsigned_distance(x) <= 1e-9 * self._scale()).numpy()

    def boundary_normal(self, x) -> np.ndarray:
        """Outward unit normal (N, 3) of the triangle nearest to each point."""
        p = torch.as_tensor(self._check_points(x), dtype=torch.float64)
        a, b, c = self._tri(p)
        nearest = self._chunks(p, lambda q: _point_triangle_distance(q, a, b, c).argmin(dim=1))
        return self.normals[nearest.numpy()]

    # ------------------------------------------------------------------ sampling
    def sample_boundary(
        self, n: int, rng: np.random.Generator, method: str = "random"
    ) -> np.ndarray:
        """Points uniform on the surface: a triangle by area, then uniform in it."""
        n = positive_int("n", n)
        self._random_only(method)
        t = rng.choice(len(self.triangles), size=n, p=self.areas / self.areas.sum())
        r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
        a, b, c = (self.points[self.triangles[t, k]] for k in range(3))
        return (1 - r1)[:, None] * a + (r1 * (1 - r2))[:, None] * b + (r1 * r2)[:, None] * c

    def sample_interior(
        self, n: int, rng: np.random.Generator, method: str = "random"
    ) -> np.ndarray:
        """Points uniform inside: rejection from the bounding box."""
        n = positive_int("n", n)
        self._random_only(method)
        lo, hi = self.bbox
        got, total = [], 0
        frac = self.volume / float(np.prod(hi - lo))
        while total < n:
            m = int(1.2 * (n - total) / max(frac, 1e-3)) + 16
            x = lo + (hi - lo) * rng.random((m, 3))
            x = x[self.inside(x)]
            got.append(x)
            total += len(x)
        return np.concatenate(got)[:n]

    def _random_only(self, method):
        if method != "random":
            fail(
                "method",
                method,
                "is not available on a mesh geometry (random sampling only so far)",
                'use method="random" (pass --sampler uniform)',
            )

    def __repr__(self):
        src = self.path or "arrays"
        return f"Mesh({src}, {len(self.points)} points, {len(self.triangles)} triangles)"
