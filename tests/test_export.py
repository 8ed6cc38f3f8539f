"""VTK and PNG export: every file is read back and checked against the model."""

import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
import meshio
import numpy as np
import pytest

import pdeml as pl
from pdeml.export import export, mesh, plot_field, plot_history
from pdeml.solvers import PINNBackend

LSHAPE = [(0, 0), (1, 0), (1, -1), (-1, -1), (-1, 1), (0, 1)]


def _check(backend, path, time=None):
    m = meshio.read(path)
    x = m.points[:, : backend.problem.geometry.dim]
    if time is not None:
        x = np.hstack([x, np.full((len(x), 1), time)])
    pred = backend.predict(x)
    np.testing.assert_allclose(m.point_data["u"], pred[:, 0], rtol=1e-5, atol=1e-6)
    assert np.isfinite(m.point_data["residual"]).all()
    return m


def test_lshape_mesh_respects_the_reentrant_corner():
    g = pl.geometry.Polygon(LSHAPE)
    pts, kind, cells = mesh(g, 40)
    assert kind == "triangle"
    c = pts[cells].mean(1)
    assert g.inside(c).all()
    assert not ((c[:, 0] > 0) & (c[:, 1] > 0)).any()
    area = (
        0.5
        * np.abs(
            np.cross(pts[cells[:, 1]] - pts[cells[:, 0]], pts[cells[:, 2]] - pts[cells[:, 0]])
        ).sum()
    )
    assert abs(area - 3.0) < 1e-2  # the triangles cover the domain
    assert (np.abs(pts - [0, 0]).sum(1) < 1e-9).any()  # the corner itself is a node


def test_hole_stays_empty_in_2d_and_3d():
    g2 = pl.geometry.Rectangle([0, 0], [1, 1]) - pl.geometry.Disk([0.5, 0.5], 0.3)
    pts, _, cells = mesh(g2, 48)
    c = pts[cells].mean(1)
    assert (np.linalg.norm(c - 0.5, axis=1) > 0.3 - 1e-3).all()  # up to a chord's sagitta
    area = (
        0.5
        * np.abs(
            np.cross(pts[cells[:, 1]] - pts[cells[:, 0]], pts[cells[:, 2]] - pts[cells[:, 0]])
        ).sum()
    )
    assert abs(area - (1 - np.pi * 0.09)) < 0.02
    g3 = pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]) - pl.geometry.Sphere([0.5, 0.5, 0.5], 0.25)
    pts, kind, cells = mesh(g3, 12)
    assert kind == "hexahedron"
    assert (np.linalg.norm(pts[cells].mean(1) - 0.5, axis=1) > 0.25).all()


def test_2d_solution_with_reference_error(tmp_path, square_problem):
    backend = PINNBackend(square_problem, pl.nn.MLP(8, 2))
    (path,) = export(backend, tmp_path, resolution=24)
    m = _check(backend, path)
    x = m.points[:, :2]
    exact = np.sin(np.pi * x[:, 0]) * np.sin(np.pi * x[:, 1])
    np.testing.assert_allclose(m.point_data["exact_u"], exact, atol=1e-6)
    np.testing.assert_allclose(m.point_data["error_u"], m.point_data["u"] - exact, atol=1e-5)
    res = backend.residual_at(np.hstack([x]))[:, 0]
    np.testing.assert_allclose(m.point_data["residual"], res, rtol=1e-5, atol=1e-5)


def test_3d_solution(tmp_path):
    g = pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]) - pl.geometry.Sphere([0.5, 0.5, 0.5], 0.25)
    prob = pl.Problem(g, lambda x, u: -u.laplacian(), [pl.Dirichlet(0.0)], exact=lambda x: x[:, 0])
    backend = PINNBackend(prob, pl.nn.MLP(8, 2))
    (path,) = export(backend, tmp_path, resolution=10)
    m = _check(backend, path)
    assert "hexahedron" in m.cells_dict


NOTCHED = pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]) - pl.geometry.Cuboid([0.5, 0.5, 0.5], [1, 1, 1])
HOLED = pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]) - pl.geometry.Sphere([0.5, 0.5, 0.5], 0.25)


@pytest.mark.parametrize("geometry, volume", [(NOTCHED, 7 / 8), (HOLED, 1 - np.pi / 48)])
@pytest.mark.parametrize("n", [7, 12])
def test_a_3d_export_writes_no_node_outside_the_body(geometry, volume, n):
    """Only voxels whose eight corners lie inside: every node is in the body (the old voxel-centre
    rule wrote nodes in the notch and the hole), and the voxels still fill the body up to a
    layer of about one voxel at its curved or off-grid surface."""
    pts, kind, cells = mesh(geometry, n)
    assert kind == "hexahedron" and geometry.inside(pts).all()
    assert len(np.unique(cells)) == len(pts)  # no node without a voxel
    filled = len(cells) / n**3
    assert volume - 6 / n < filled <= volume + 1e-12


def test_a_3d_export_keeps_to_its_point_budget_and_pictures_a_slice(tmp_path):
    """--resolution 128 on a 3-D body writes at most VOLUME_POINTS nodes (45 a side), not
    129³ = 2.1M; field.png is the mid-plane slice, sampled on its own plane: its points lie in
    the body on z = 1/2 (the slice is not cut out of a 3-D mesh)."""
    from pdeml.export.mesh import plane_slice
    from pdeml.export.vtk import VOLUME_POINTS, volume_resolution

    assert volume_resolution(128) == 45 and (45 + 1) ** 3 <= VOLUME_POINTS < (46 + 1) ** 3
    assert volume_resolution(20) == 20
    prob = pl.Problem(
        HOLED, lambda x, u: -u.laplacian(), [pl.Dirichlet(0.0)], exact=lambda x: x[:, :1]
    )
    backend = PINNBackend(prob, pl.nn.MLP(8, 2))
    (path,) = export(backend, tmp_path, resolution=128)
    m = meshio.read(path)
    assert len(m.points) <= VOLUME_POINTS and np.ptp(m.points[:, 0]) == pytest.approx(1.0)
    assert np.unique(m.points[:, 0]).size == 46
    pts, kind, cells, z = plane_slice(HOLED, 64)
    assert z == 0.5 and (pts[:, 2] == 0.5).all() and HOLED.inside(pts).all()
    assert not (np.linalg.norm(pts[cells].mean(1) - 0.5, axis=1) < 0.25).any()  # the hole
    edges = [pts[cells[:, k]] - pts[cells[:, 0]] for k in (1, 2)]
    area = 0.5 * np.linalg.norm(np.cross(*edges), axis=1)
    assert area.sum() == pytest.approx(1 - np.pi / 16, abs=0.05)
    assert mpimg.imread(plot_field(backend, tmp_path / "field.png", 64)).ndim == 3


def test_time_dependent_writes_a_pvd_series_and_spacetime_grid(tmp_path):
    prob = pl.Problem(
        pl.geometry.Interval(0, 1),
        lambda x, u: u.dt() - u.d2(0),
        time=(0, 2),
        conditions=[pl.Dirichlet(0.0)],
    )
    backend = PINNBackend(prob, pl.nn.MLP(8, 2))
    files = export(backend, tmp_path, resolution=16, snapshots=5)
    pvd = tmp_path / "solution.pvd"
    assert files[0] == pvd
    sets = ET.parse(pvd).getroot().findall(".//DataSet")
    assert [float(s.get("timestep")) for s in sets] == [0.0, 0.5, 1.0, 1.5, 2.0]
    for s in sets:
        _check(backend, tmp_path / s.get("file"), time=float(s.get("timestep")))
    st = meshio.read(tmp_path / "spacetime.vtu")
    np.testing.assert_allclose(
        st.point_data["u"], backend.predict(st.points[:, :2])[:, 0], rtol=1e-5, atol=1e-6
    )


def test_pictures_are_png(tmp_path, square_problem):
    backend = PINNBackend(square_problem, pl.nn.MLP(8, 1))
    p = plot_field(backend, tmp_path / "field.png", 32)
    img = mpimg.imread(p)
    assert img.ndim == 3 and img.shape[0] > 100
    hist = [
        {
            "step": s,
            "loss": 1.0 / s,
            "pde": 0.5 / s,
            "dirichlet": 0.5 / s,
            "l2_relative_error": 1 / s,
        }
        for s in range(1, 10)
    ]
    assert mpimg.imread(plot_history(hist, ["pde", "dirichlet"], tmp_path / "loss.png")).ndim == 3


@pytest.mark.parametrize("layout", ["grid", "scattered"])
def test_reference_truth_is_interpolated_linearly_and_built_once(layout):
    """A reference of a linear function is reproduced exactly inside its hull, on a tensor grid
    (RegularGridInterpolator) and on scattered points (one Delaunay triangulation). On the
    Allen-Cahn reference the grid path (bilinear) agrees with scipy's griddata (linear on
    triangles) to the interpolation error, O(h^2)."""
    from scipy.interpolate import griddata

    from pdeml.export.vtk import truth_function

    rng = np.random.default_rng(0)
    if layout == "grid":
        X, T = np.meshgrid(np.linspace(-1, 1, 17), np.linspace(0, 1, 9), indexing="ij")
        pts = np.stack([X.ravel(), T.ravel()], 1)
    else:
        pts = np.vstack(
            [[[-1, 0], [1, 0], [-1, 1], [1, 1]], rng.uniform([-1, 0], [1, 1], (300, 2))]
        )
    f = lambda p: 2 * p[:, :1] + 3 * p[:, 1:2] - 1
    prob = pl.Problem(
        pl.geometry.Interval(-1, 1), lambda x, u: u.value, time=(0, 1), reference=(pts, f(pts))
    )
    truth = truth_function(prob)
    x = rng.uniform([-1, 0], [1, 1], (500, 2))
    np.testing.assert_allclose(truth(x), f(x), atol=1e-12)
    if layout == "grid":
        from pdeml.cases.allen_cahn_1d import reference

        ref_pts, ref_vals = reference()
        ac = pl.Problem(
            pl.geometry.Interval(-1, 1),
            lambda x, u: u.value,
            time=(0, 1),
            reference=(ref_pts, ref_vals),
        )
        y = rng.uniform([-0.99, 0.0], [0.99, 1.0], (300, 2))
        diff = np.abs(truth_function(ac)(y) - griddata(ref_pts, ref_vals, y, method="linear"))
        assert 0 < diff.max() < 1e-3


def test_error_pictures_are_centred_on_zero():
    """The error panel's colours are symmetric about zero (its sign reads off the colour, white
    is no error); other panels keep their own range."""
    from pdeml.export.plots import colors

    e = np.array([-0.1, 0.02, 0.3])
    c = colors("error", e)
    assert c["cmap"] == "RdBu_r" and c["vmin"] == -0.3 and c["vmax"] == 0.3
    assert colors("error", np.zeros(3))["vmax"] == 1.0  # an exact field still draws
    assert colors("prediction", e) == {"cmap": "viridis"}
