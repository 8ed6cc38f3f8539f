"""Geometric primitives: deepxde objects for sampling, exact (or bounding) SDFs in torch."""

from __future__ import annotations

import numpy as np
import torch

from .._validate import fail, finite_array, finite_scalar, positive_int
from ._dde import dde
from .base import AbstractGeometry


def _tensor(geom, name: str, like: torch.Tensor) -> torch.Tensor:
    """``geom.<name>`` (a numpy array) as a tensor of ``like``'s dtype and device, cached per
    dtype and device by the first eager evaluation, and made outside torch.func's levels (inside
    a transform, such as the jets' nested-jvp fallback, a new tensor would belong to that
    transform and must not outlive it in the cache).

    Under torch.compile the cached tensor is a graph input with one guard. (A Python list baked
    in gets a guard per number: 2000 for a center at D = 1000, 1.5 ms a step.) A graph traced
    before any eager evaluation builds the tensor from a list: a numpy array converted inside
    the graph trips torch.func's gradient transform (a guard failure in torch 2.13)."""
    key = (name, like.dtype, like.device)
    out = geom.__dict__.get("_tensors", {}).get(key)  # a read: no mutation for Dynamo to replay
    if out is not None:
        return out
    if torch.compiler.is_compiling():
        return torch.tensor(getattr(geom, name).tolist(), dtype=like.dtype, device=like.device)
    with torch._C._DisableFuncTorch():
        out = geom.__dict__.setdefault("_tensors", {})[key] = torch.as_tensor(
            getattr(geom, name), dtype=like.dtype, device=like.device
        )
    return out


def _box_sdf(x, lo, hi):
    """Exact SDF of an axis-aligned box: ``|max(q,0)| + min(max_i q_i, 0)``, ``q = |x-c| - h``."""
    q = (x - (lo + hi) / 2).abs() - (hi - lo) / 2
    return q.clamp(min=0).norm(dim=1) + q.max(dim=1).values.clamp(max=0)


def _ball_sdf(x, c, radius):
    return (x - c).norm(dim=1) - radius


def _box_adf(x, lo, hi):
    """Smooth distance-like factor of a box: prod_i (x_i - lo_i)(hi_i - x_i)/(hi_i - lo_i)."""
    return ((x - lo) * (hi - x) / (hi - lo)).prod(dim=1, keepdim=True)


def _ball_adf(x, c, radius):
    """Smooth distance of a ball, (R^2 - |x-c|^2) / 2R: unit normal derivative on the sphere."""
    return (radius**2 - (x - c).pow(2).sum(dim=1, keepdim=True)) / (2 * radius)


def _polygon_sdf(x, v):
    """Exact SDF of a simple polygon: distance to the nearest edge, sign from crossings."""
    a, b = v, torch.roll(v, -1, dims=0)  # edges a -> b, (M, 2)
    e = b - a
    w = x[:, None, :] - a[None]  # (N, M, 2)
    t = ((w * e).sum(-1) / (e * e).sum(-1)).clamp(0, 1)
    dist = (w - t[..., None] * e).norm(dim=-1).min(dim=1).values
    py = x[:, 1:2]
    crosses = (a[:, 1] > py) != (b[:, 1] > py)
    x_at = a[:, 0] + (py - a[:, 1]) * e[:, 0] / torch.where(
        e[:, 1] == 0, torch.ones_like(e[:, 1]), e[:, 1]
    )
    inside = ((crosses & (x[:, 0:1] < x_at)).sum(dim=1) % 2) == 1
    return torch.where(inside, -dist, dist)


def _polygon_adf(x, v, m: float = 1.0):
    r"""Smooth approximate distance to a polygon's boundary (positive inside), shape (N, 1).

    Sukumar & Srivastava, "Exact imposition of boundary conditions with distance functions in
    physics-informed deep neural networks", CMAME 389 (2022), eqs. (8)-(11): per edge of length
    :math:`L` with centre :math:`x_c`, :math:`f` the signed distance to its line,
    :math:`t = ((L/2)^2 - |x-x_c|^2)/L`, :math:`\phi_i = \sqrt{f^2 + ((\sqrt{t^2+f^4}-t)/2)^2}`
    (the trimmed segment), joined by R-equivalence :math:`\phi = (\sum_i \phi_i^{-m})^{-1/m}`.
    Smooth except at the vertices; normalized to first order (unit normal derivative).
    """
    a, b = v, torch.roll(v, -1, dims=0)
    e = b - a
    L = e.norm(dim=1)
    w = x[:, None, :] - a[None]
    f = (w[..., 0] * e[:, 1] - w[..., 1] * e[:, 0]) / L
    t = ((L / 2) ** 2 - (x[:, None, :] - (a + b)[None] / 2).pow(2).sum(-1)) / L
    phi = torch.sqrt(f**2 + ((torch.sqrt(t**2 + f**4) - t) / 2) ** 2).clamp(min=1e-12)
    return phi.pow(-m).sum(dim=1, keepdim=True).pow(-1 / m)


def _box_args(name_lo, lo, name_hi, hi, dim=None):
    lo, hi = finite_array(name_lo, lo).reshape(-1), finite_array(name_hi, hi).reshape(-1)
    if lo.shape != hi.shape or (dim is not None and lo.size != dim):
        fail(
            f"({name_lo}, {name_hi})",
            (lo.tolist(), hi.tolist()),
            "have mismatched lengths",
            f"give both as sequences of {dim or lo.size} numbers",
        )
    if not np.all(hi > lo):
        fail(
            name_hi,
            hi.tolist(),
            f"must be greater than {name_lo}={lo.tolist()} in every coordinate",
            "swap the corners or widen the box",
        )
    return lo, hi


class _Box(AbstractGeometry):
    """Shared by the axis-aligned boxes (``lo``, ``hi``): exact SDF and the product-of-slabs
    smooth distance."""

    def sdf(self, x):
        return _box_sdf(x, _tensor(self, "lo", x), _tensor(self, "hi", x))

    def smooth_distance(self, x):
        return _box_adf(x, _tensor(self, "lo", x), _tensor(self, "hi", x))

    def smooth_distance_jet(self, jet):
        r"""Exact jet of :math:`\prod_i (x_i - l_i)(h_i - x_i)/(h_i - l_i)`: each factor the
        product of two affine jets of one coordinate, all multiplied by the Leibniz rule (one-hot
        tangents stay lookups). Without it the hard constraint took the nested-jvp fallback,
        which torch.compile cannot trace."""
        from ..derivatives import jets as J

        lo, hi = _tensor(self, "lo", jet.c[0]), _tensor(self, "hi", jet.c[0])
        out = None
        for i in range(self.dim):
            t = J.select(jet, i)
            q = J.scale(
                J.multiply(J.shift(t, -lo[i]), J.shift(J.scale(t, -1.0), hi[i])),
                1 / (hi[i] - lo[i]),
            )
            out = q if out is None else J.multiply(out, q)
        return out


class Interval(_Box):
    """The interval [l, r]."""

    def __init__(self, l: float, r: float):
        lo, hi = _box_args("l", [l], "r", [r], 1)
        self.dim, self.lo, self.hi = 1, lo, hi
        self._dde = dde().Interval(float(lo[0]), float(hi[0]))


class Rectangle(_Box):
    """Axis-aligned rectangle with corners ``xmin`` and ``xmax``."""

    def __init__(self, xmin, xmax):
        self.lo, self.hi = _box_args("xmin", xmin, "xmax", xmax, 2)
        self.dim = 2
        self._dde = dde().Rectangle(self.lo.tolist(), self.hi.tolist())


class Cuboid(_Box):
    """Axis-aligned box in 3-D with corners ``xmin`` and ``xmax``."""

    def __init__(self, xmin, xmax):
        self.lo, self.hi = _box_args("xmin", xmin, "xmax", xmax, 3)
        self.dim = 3
        self._dde = dde().Cuboid(self.lo.tolist(), self.hi.tolist())


class Hypercube(_Box):
    """Axis-aligned box in any dimension."""

    def __init__(self, xmin, xmax):
        self.lo, self.hi = _box_args("xmin", xmin, "xmax", xmax)
        self.dim = self.lo.size
        self._dde = dde().Hypercube(self.lo.tolist(), self.hi.tolist())


def _ball_args(center, radius, dim=None):
    c = finite_array("center", center).reshape(-1)
    if dim is not None and c.size != dim:
        fail("center", c.tolist(), f"must have {dim} coordinates", f"pass {dim} numbers")
    r = finite_scalar("radius", radius)
    if r <= 0:
        fail("radius", radius, "must be positive", "pass a radius > 0")
    return c, r


class _Ball(AbstractGeometry):
    """Shared by the balls: exact SDF, the quadratic smooth distance and its exact jet."""

    def sdf(self, x):
        return _ball_sdf(x, _tensor(self, "center", x), self.radius)

    def smooth_distance(self, x):
        return _ball_adf(x, _tensor(self, "center", x), self.radius)

    def smooth_distance_jet(self, jet):
        r"""Exact jet of :math:`(R^2 - \lVert x - c\rVert^2) / 2R` (one-hot tangents stay
        lookups)."""
        from ..derivatives import jets as J

        c = _tensor(self, "center", jet.c[0])
        q = J.sq_norm(jet, c)
        R = self.radius
        return jet.like(
            [(R * R - q.c[0]) / (2 * R)] + [None if h is None else -h / (2 * R) for h in q.c[1:]]
        )


class Disk(_Ball):
    """Disk of ``radius`` around ``center``."""

    def __init__(self, center, radius):
        self.center, self.radius = _ball_args(center, radius, 2)
        self.dim = 2
        self._dde = dde().Disk(self.center.tolist(), self.radius)


class Sphere(_Ball):
    """Solid ball in 3-D."""

    def __init__(self, center, radius):
        self.center, self.radius = _ball_args(center, radius, 3)
        self.dim = 3
        self._dde = dde().Sphere(self.center.tolist(), self.radius)


class Hypersphere(_Ball):
    """Solid ball in any dimension."""

    def __init__(self, center, radius):
        self.center, self.radius = _ball_args(center, radius)
        self.dim = self.center.size
        self._dde = dde().Hypersphere(self.center.tolist(), self.radius)

    def sample_interior(
        self, n: int, rng: np.random.Generator, method: str = "random"
    ) -> np.ndarray:
        r"""``n`` points inside the ball, shape (n, dim), float64. ``"random"`` is drawn here, the
        other methods by deepxde.

        Uniform in the ball: a direction :math:`g/\lVert g\rVert` with :math:`g \sim N(0, I_D)`, at
        radius :math:`R\,u^{1/D}` with :math:`u \sim U(0, 1)`, so that :math:`P(\lVert x - c\rVert
        \le r) = (r/R)^D`
        (deepxde's algorithm). The normals come from torch's float32 generator, seeded from
        ``rng``: deepxde draws them with numpy's legacy polar method, 1.2 ms for 100 points at
        D = 1000, most of a compiled STDE step's sampling (0.3 ms here). A direction needs no
        float64 normals; the radius and the arithmetic are float64."""
        if self._method(method) != "pseudo":
            return super().sample_interior(n, rng, method)
        n = positive_int("n", n)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        g = torch.randn(n, self.dim, generator=gen).double()
        u = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        x = g * (
            self.radius * u ** (1 / self.dim) / torch.linalg.vector_norm(g, dim=1, keepdim=True)
        )
        return x.numpy() + self.center


class Ellipse(AbstractGeometry):
    r"""Ellipse with semi-axes ``semimajor`` >= ``semiminor``, rotated by ``angle``.

    SDF: a lower bound, :math:`b\,(\lVert (x'/a, y'/b)\rVert - 1)` in the rotated frame. The map
    :math:`p\mapsto (x'/a, y'/b)` is :math:`1/b`-Lipschitz, so this is zero on the ellipse and
    never exceeds the true distance in magnitude.
    """

    sdf_exact = False

    def __init__(self, center, semimajor, semiminor, angle=0.0):
        self.center = finite_array("center", center).reshape(2)
        a, b = finite_scalar("semimajor", semimajor), finite_scalar("semiminor", semiminor)
        if not a >= b > 0:
            fail(
                "(semimajor, semiminor)",
                (a, b),
                "must satisfy semimajor >= semiminor > 0",
                "pass positive semi-axes, the larger first",
            )
        self.a, self.b, self.angle, self.dim = a, b, finite_scalar("angle", angle), 2
        self._dde = dde().Ellipse(self.center.tolist(), a, b, self.angle)

    def sdf(self, x):
        c = _tensor(self, "center", x)
        cs, sn = float(np.cos(self.angle)), float(np.sin(self.angle))
        d = x - c
        u = (cs * d[:, 0] - sn * d[:, 1]) / self.a  # deepxde: positive angle turns clockwise
        v = (sn * d[:, 0] + cs * d[:, 1]) / self.b
        return self.b * (torch.sqrt(u * u + v * v) - 1)

    def boundary_normal(self, x) -> np.ndarray:
        r"""The outward unit normal: the gradient of :math:`u^2 + v^2` (the rotated frame's
        :math:`u = x'/a, v = y'/b`), normalized (deepxde has none for ellipses)."""
        d = self._check_points(x) - self.center
        cs, sn = np.cos(self.angle), np.sin(self.angle)
        u = (cs * d[:, 0] - sn * d[:, 1]) / self.a
        v = (sn * d[:, 0] + cs * d[:, 1]) / self.b
        g = np.stack([u / self.a * cs + v / self.b * sn, -u / self.a * sn + v / self.b * cs], 1)
        return g / np.linalg.norm(g, axis=1, keepdims=True)


class Polygon(AbstractGeometry):
    """Simple polygon from its vertices (either orientation); exact SDF."""

    def __init__(self, vertices):
        v = finite_array("vertices", vertices)
        if v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 3:
            fail(
                "vertices",
                vertices,
                "must be a list of at least 3 (x, y) pairs",
                "pass e.g. [(0, 0), (1, 0), (0, 1)]",
            )
        self.vertices, self.dim = v, 2
        self._dde = dde().Polygon(v.tolist()) if v.shape[0] > 3 else dde().Triangle(*v.tolist())

    def sdf(self, x):
        return _polygon_sdf(x, _tensor(self, "vertices", x))

    def smooth_distance(self, x):
        return _polygon_adf(x, _tensor(self, "vertices", x))

    @classmethod
    def read(cls, path) -> Polygon:
        """The polygon bounded by the closed loop of line cells in a mesh file (VTK, VTU, ...
        via meshio; z is dropped): a 2-D domain from a file, as :class:`pdeml.geometry.Mesh` is
        a 3-D one."""
        from .mesh import read_cells

        points, edges = read_cells(
            path, "line", "pass a closed polyline (3-D surfaces: pl.geometry.Mesh(path))"
        )
        nxt: dict[int, list[int]] = {}
        for a, b in edges:
            nxt.setdefault(int(a), []).append(int(b))
            nxt.setdefault(int(b), []).append(int(a))
        if any(len(v) != 2 for v in nxt.values()):
            fail(
                "path",
                str(path),
                "is not one closed loop (a vertex has other than two lines)",
                "pass a single closed polyline",
            )
        start = int(edges[0, 0])
        loop, prev, cur = [start], None, start
        while True:
            a, b = nxt[cur]
            step = b if a == prev else a
            if step == start:
                break
            loop.append(step)
            prev, cur = cur, step
        if len(loop) != len(nxt):
            fail(
                "path",
                str(path),
                f"holds {len(nxt) - len(loop)} vertices outside the first loop",
                "pass one closed loop (holes: subtract polygons)",
            )
        return cls(points[loop, :2])


class Triangle(AbstractGeometry):
    """Triangle with vertices ``x1, x2, x3``; exact SDF."""

    def __init__(self, x1, x2, x3):
        v = finite_array("vertices", [x1, x2, x3])
        if v.shape != (3, 2):
            fail("vertices", v.tolist(), "must be three (x, y) pairs", "pass three 2-D points")
        a, b = v[1] - v[0], v[2] - v[0]
        if abs(a[0] * b[1] - a[1] * b[0]) < 1e-14:
            fail("vertices", v.tolist(), "are collinear", "pass three points that span a triangle")
        self.vertices, self.dim = v, 2
        self._dde = dde().Triangle(*v.tolist())

    def sdf(self, x):
        return _polygon_sdf(x, _tensor(self, "vertices", x))

    def smooth_distance(self, x):
        return _polygon_adf(x, _tensor(self, "vertices", x))
