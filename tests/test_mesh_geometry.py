"""``pl.geometry.Mesh``: the signed distance of a triangle surface against exact distances (a
box: exact; a subdivided icosahedron: within its distance to the sphere), sampling on and
inside the surface, files read through meshio, and walk-on-spheres and a PINN running on it."""

import math

import numpy as np
import pytest
import torch

import pdeml as pl

D64 = torch.float64


def box_mesh(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tri = [(a, b, c) for a, b, c, _ in quads] + [(a, c, d) for a, _, c, d in quads]
    return lo + v * (hi - lo), np.array(tri)


def icosphere(level: int):
    t = (1 + 5**0.5) / 2
    pts = [
        (-1, t, 0),
        (1, t, 0),
        (-1, -t, 0),
        (1, -t, 0),
        (0, -1, t),
        (0, 1, t),
        (0, -1, -t),
        (0, 1, -t),
        (t, 0, -1),
        (t, 0, 1),
        (-t, 0, -1),
        (-t, 0, 1),
    ]
    pts = [np.array(p, float) / np.linalg.norm(p) for p in pts]
    faces = [
        (0, 11, 5),
        (0, 5, 1),
        (0, 1, 7),
        (0, 7, 10),
        (0, 10, 11),
        (1, 5, 9),
        (5, 11, 4),
        (11, 10, 2),
        (10, 7, 6),
        (7, 1, 8),
        (3, 9, 4),
        (3, 4, 2),
        (3, 2, 6),
        (3, 6, 8),
        (3, 8, 9),
        (4, 9, 5),
        (2, 4, 11),
        (6, 2, 10),
        (8, 6, 7),
        (9, 8, 1),
    ]
    for _ in range(level):
        cache, new = {}, []

        def mid(i, j):
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = pts[i] + pts[j]
                pts.append(m / np.linalg.norm(m))
                cache[key] = len(pts) - 1
            return cache[key]

        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(pts), np.array(faces)


def test_box_mesh_signed_distance_is_the_exact_box_distance_inside_and_out():
    pts, tri = box_mesh([0, 0, 0], [1, 2, 0.5])
    mesh, box = (
        pl.geometry.Mesh(points=pts, triangles=tri),
        pl.geometry.Cuboid([0, 0, 0], [1, 2, 0.5]),
    )
    x = (
        torch.rand(3000, 3, generator=torch.Generator().manual_seed(0), dtype=D64)
        * torch.tensor([1.6, 2.6, 1.1])
        - 0.3
    )
    torch.testing.assert_close(mesh.sdf(x), box.sdf(x), rtol=0, atol=1e-12)
    # the orientation of the file's triangles does not matter
    flipped = pl.geometry.Mesh(points=pts, triangles=tri[:, [0, 2, 1]])
    torch.testing.assert_close(flipped.sdf(x), box.sdf(x), rtol=0, atol=1e-12)


def test_icosphere_signed_distance_is_within_the_meshing_error_of_the_sphere():
    pts, tri = icosphere(3)  # 1280 triangles
    mesh = pl.geometry.Mesh(points=pts, triangles=tri)
    x = torch.randn(2000, 3, generator=torch.Generator().manual_seed(1), dtype=D64)
    x = (
        x
        / x.norm(dim=1, keepdim=True)
        * torch.rand(2000, 1, generator=torch.Generator().manual_seed(2), dtype=D64)
        * 1.6
    )
    exact = x.norm(dim=1) - 1
    gap = float((mesh.sdf(x) - exact).abs().max())
    edge = float(np.linalg.norm(pts[tri[:, 0]] - pts[tri[:, 1]], axis=1).max())
    sagitta = 1 - math.sqrt(1 - (edge / math.sqrt(3)) ** 2)  # the flat faces' largest gap
    assert 1e-4 < gap <= sagitta * 1.01, (gap, sagitta)
    assert torch.equal(mesh.sdf(x) < 0, mesh.winding_number(x) > 0.5)


@pytest.mark.parametrize("shape", ["box", "icosphere"])
def test_inside_is_the_winding_number_or_a_point_on_the_surface(shape):
    """The numba inside test (the distance only where the winding number is fractional; a point
    in a triangle's plane tested against the triangle) against the definition, the winding
    number > 1/2 or the distance <= 1e-9, computed in torch for every point: random points,
    the vertices, edge midpoints and face centroids, and a grid whose nodes lie in the box's
    face planes, on its edges and corners (where one triangle's angle sign is rounding)."""
    from pdeml.export import mesh as cover

    pts, tri = box_mesh([0, 0, 0], [1, 2, 1]) if shape == "box" else icosphere(2)
    g = pl.geometry.Mesh(points=pts, triangles=tri)
    lo, hi = g.bbox
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(a, b, 9) for a, b in zip(lo, hi)]), -1)
    surface = np.concatenate([pts, (pts[tri[:, 0]] + pts[tri[:, 1]]) / 2, pts[tri].mean(1)])
    x = np.concatenate(
        [lo - 0.1 + (hi - lo + 0.2) * rng.random((3000, 3)), surface, grid.reshape(-1, 3)]
    )
    xt = torch.as_tensor(x, dtype=D64)
    want = (g.winding_number(xt) > 0.5) | (g.unsigned_distance(xt) <= 1e-9 * g._scale())
    np.testing.assert_array_equal(g.inside(x), want.numpy())
    assert g.inside(surface).all() and 0.2 < g.inside(x[:3000]).mean() < 0.9
    nodes, _, _ = cover(g, 10)  # a 3-D export writes no node outside
    assert len(nodes) and g.inside(nodes).all()


def test_sampling_lies_on_and_inside_the_mesh_with_outward_normals():
    pts, tri = icosphere(2)
    mesh = pl.geometry.Mesh(points=pts, triangles=tri)
    rng = np.random.default_rng(0)
    b = mesh.sample_boundary(2000, rng)
    assert (
        float(mesh.unsigned_distance(torch.as_tensor(b)).max()) < 1e-12
        and mesh.on_boundary(b).all()
    )
    n = mesh.boundary_normal(b)
    assert np.all(
        np.einsum("ij,ij->i", n, b / np.linalg.norm(b, axis=1, keepdims=True)) > 0.95
    )  # radial, outward
    i = mesh.sample_interior(2000, rng)
    assert i.shape == (2000, 3) and bool((mesh.sdf(torch.as_tensor(i)) < 0).all())
    # uniform in the volume: the fraction within radius 0.5 is about 0.5^3
    assert abs(float(np.mean(np.linalg.norm(i, axis=1) < 0.5)) - 0.125) < 0.03
    with pytest.raises(ValueError, match="random sampling only"):
        mesh.sample_interior(10, rng, "sobol")


def test_mesh_files_are_read_through_meshio(tmp_path):
    import meshio

    pts, tri = icosphere(1)
    path = tmp_path / "ball.stl"
    meshio.write(path, meshio.Mesh(pts, [("triangle", tri)]), binary=True)
    mesh = pl.geometry.Mesh(path)
    assert len(mesh.triangles) == 80 and mesh.volume == pytest.approx(4 / 3 * math.pi, rel=0.15)
    assert float(mesh.sdf(torch.zeros(1, 3, dtype=D64))[0]) < -0.9
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pl.geometry.Mesh(tmp_path / "none.stl")
    lines = tmp_path / "lines.vtu"
    meshio.write(lines, meshio.Mesh(pts, [("line", tri[:, :2])]))
    with pytest.raises(ValueError, match="has no triangles"):
        pl.geometry.Mesh(lines)


def test_walk_on_spheres_and_a_pinn_run_on_a_mesh():
    from pdeml.solvers import PINN
    from pdeml.solvers.wos import WalkOnSpheres

    pts, tri = box_mesh([0, 0, 0], [1, 1, 1])
    mesh = pl.geometry.Mesh(points=pts, triangles=tri)
    g = lambda x: x[:, 0] ** 2 - x[:, 1] ** 2
    problem = pl.Problem(geometry=mesh, pde=pl.pde.Poisson(), conditions=[pl.Dirichlet(g)])
    x = np.array([[0.5, 0.5, 0.5], [0.2, 0.7, 0.3]])
    est = WalkOnSpheres(walks=2000).build(problem, dtype=D64).estimate(x)
    assert np.all(np.abs(est["mean"] - (x[:, 0] ** 2 - x[:, 1] ** 2)) < 4 * est["std_error"])
    from pdeml.samplers import Uniform

    case = pl.Case(problem, PINN(pl.nn.MLP(width=16, depth=2), sampler=Uniform(256, 128)), steps=5)
    backend = case.method.build(problem, seed=0)
    result = pl.fit(backend, case.phases)
    assert result.steps == 5 and all(np.isfinite(v) for v in result.losses.values())


def test_a_2d_outline_file_reads_as_a_polygon(tmp_path):
    import meshio

    t = 2 * np.pi * np.arange(40) / 40
    r = 1 + 0.2 * np.cos(4 * t)
    pts = np.stack([r * np.cos(t), r * np.sin(t), np.zeros_like(t)], 1)
    order = np.random.default_rng(0).permutation(40)  # lines in any order
    lines = np.stack([np.arange(40), (np.arange(40) + 1) % 40], 1)[order]
    path = tmp_path / "outline.vtu"
    meshio.write(path, meshio.Mesh(pts, [("line", lines)]))
    poly = pl.geometry.Polygon.read(path)
    direct = pl.geometry.Polygon(pts[:, :2])
    x = torch.rand(500, 2, dtype=D64) * 3 - 1.5
    torch.testing.assert_close(poly.sdf(x), direct.sdf(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="pl.geometry.Polygon.read"):
        pl.geometry.Mesh(path)
    meshio.write(tmp_path / "open.vtu", meshio.Mesh(pts, [("line", lines[1:])]))
    with pytest.raises(ValueError, match="not one closed loop"):
        pl.geometry.Polygon.read(tmp_path / "open.vtu")


def _broken(kind):
    """A closed box surface broken one way."""
    pts, tri = box_mesh([0, 0, 0], [1, 1, 1])
    pts, tri = pts.copy(), tri.copy()
    if kind == "nan vertex":
        pts[3, 1] = np.nan
    elif kind == "degenerate":
        tri = np.vstack([tri, [[0, 1, 1]]])
    elif kind == "collinear":
        pts = np.vstack([pts, [0.5, 0, 0]])  # a zero-area sliver on the box's edge
        tri = np.vstack([tri, [[0, 8, 4]]])
    elif kind == "open":
        tri = tri[1:]
    elif kind == "flipped":
        tri[5] = tri[5][[0, 2, 1]]
    elif kind == "non-manifold":
        pts = np.vstack([pts, [0.5, 0.5, 2.0]])
        tri = np.vstack([tri, [[1, 3, 8]], [[3, 1, 8]]])
    return pts, tri


@pytest.mark.parametrize(
    "kind, says",
    [
        ("nan vertex", r"vertex 3 = .*of triangle .*is not finite"),
        ("degenerate", r"triangle 12 \[0, 1, 1\].*is degenerate"),
        ("collinear", r"triangle 12 \[0, 8, 4\].*is degenerate"),
        ("open", r"triangle .*is open"),
        ("flipped", r"triangle .*oriented against its neighbour"),
        ("non-manifold", r"is not manifold \(an edge belongs to [34] triangles\)"),
    ],
)
def test_a_broken_surface_is_refused_naming_the_first_bad_triangle(kind, says):
    pts, tri = _broken(kind)
    with pytest.raises(ValueError, match=says):
        pl.geometry.Mesh(points=pts, triangles=tri)


def test_a_surface_with_repeated_vertices_per_facet_is_closed():
    """STL repeats each vertex per facet: the topology is checked on merged vertices."""
    pts, tri = box_mesh([0, 0, 0], [1, 1, 1])
    soup = pts[tri.reshape(-1)]
    mesh = pl.geometry.Mesh(points=soup, triangles=np.arange(len(soup)).reshape(-1, 3))
    assert mesh.volume == pytest.approx(1.0)
