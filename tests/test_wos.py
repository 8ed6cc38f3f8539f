"""Walk-on-spheres: unbiased on harmonic functions and on Poisson and screened Poisson problems
with known solutions (the mean within 4 standard errors at several points, 2-D and 3-D), the
standard error falls as N^(-1/2), and the structured-PDE contract."""

import math

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml.solvers.wos import WalkOnSpheres

D64 = torch.float64


def _estimate(problem, x, walks=4000, seed=0):
    return (
        WalkOnSpheres(walks=walks)
        .build(problem, seed=seed, dtype=D64)
        .estimate(np.asarray(x, dtype=float))
    )


def _within(est, exact, k=4.0):
    z = np.abs(est["mean"] - exact) / est["std_error"]
    assert np.all(z < k), (est["mean"], exact, est["std_error"])
    return z


def test_unbiased_on_harmonic_boundary_data_in_2d_and_3d():
    g = lambda x: x[:, 0] ** 2 - x[:, 1] ** 2 + 0.5 * x[:, 0]
    square = pl.Problem(
        geometry=pl.geometry.Rectangle([0, 0], [1, 1]),
        pde=pl.pde.Poisson(),
        conditions=[pl.Dirichlet(g)],
    )
    x = np.array([[0.5, 0.5], [0.2, 0.7], [0.9, 0.1], [0.05, 0.5]])
    est = _estimate(square, x)
    _within(est, x[:, 0] ** 2 - x[:, 1] ** 2 + 0.5 * x[:, 0])
    assert est["unfinished"] == 0 and est["std_error"].max() < 0.02
    cube = pl.Problem(
        geometry=pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]),
        pde=pl.pde.Poisson(),
        conditions=[pl.Dirichlet(g)],
    )
    x3 = np.array([[0.5, 0.5, 0.5], [0.2, 0.7, 0.3]])
    _within(_estimate(cube, x3), x3[:, 0] ** 2 - x3[:, 1] ** 2 + 0.5 * x3[:, 0])


def test_unbiased_on_poisson_problems_with_known_solutions():
    # -lap u = 2 pi^2 sin(pi x) sin(pi y) on the unit square, u = 0 on the boundary
    f = lambda x: 2 * math.pi**2 * torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1])
    square = pl.Problem(
        geometry=pl.geometry.Rectangle([0, 0], [1, 1]),
        pde=pl.pde.Poisson(source=f),
        conditions=[pl.Dirichlet(0.0)],
    )
    x = np.array([[0.5, 0.5], [0.25, 0.6], [0.8, 0.15]])
    _within(_estimate(square, x), np.sin(math.pi * x[:, 0]) * np.sin(math.pi * x[:, 1]))
    # -lap u = 6 in the unit ball, u = 1 - |x|^2 (the 3-D Green's mass R^2/6 and radial law)
    ball = pl.Problem(
        geometry=pl.geometry.Sphere([0, 0, 0], 1.0),
        pde=pl.pde.Poisson(source=6.0),
        conditions=[pl.Dirichlet(0.0)],
    )
    x3 = np.array([[0.3, 0.2, -0.4], [0.0, 0.8, 0.1]])
    _within(_estimate(ball, x3), 1 - (x3**2).sum(1))


def test_screened_poisson_with_russian_roulette_is_unbiased():
    # -lap u + 4u = 4 + 4(1 - r^2) in the unit disk / ball with u = 1 - r^2; 3-D: 6 + 4(1 - r^2)
    disk = pl.Problem(
        geometry=pl.geometry.Disk([0, 0], 1.0),
        pde=pl.pde.ScreenedPoisson(4.0, source=lambda x: 4 + 4 * (1 - (x**2).sum(1))),
        conditions=[pl.Dirichlet(0.0)],
    )
    x = np.array([[0.1, 0.2], [0.5, 0.2], [-0.3, 0.7]])
    _within(_estimate(disk, x), 1 - (x**2).sum(1))
    ball = pl.Problem(
        geometry=pl.geometry.Sphere([0, 0, 0], 1.0),
        pde=pl.pde.ScreenedPoisson(4.0, source=lambda x: 6 + 4 * (1 - (x**2).sum(1))),
        conditions=[pl.Dirichlet(0.0)],
    )
    x3 = np.array([[0.3, 0.2, -0.4], [0.0, 0.6, 0.1]])
    _within(_estimate(ball, x3), 1 - (x3**2).sum(1))
    # screening with harmonic-free data: u = e^{2x} solves -lap u + 4u = 0; boundary data only
    square = pl.Problem(
        geometry=pl.geometry.Rectangle([0, 0], [1, 1]),
        pde=pl.pde.ScreenedPoisson(4.0),
        conditions=[pl.Dirichlet(lambda x: torch.exp(2 * x[:, 0]))],
    )
    xs = np.array([[0.5, 0.5], [0.3, 0.8]])
    _within(_estimate(square, xs), np.exp(2 * xs[:, 0]))


def test_standard_error_falls_as_one_over_root_n_and_runs_are_reproducible():
    problem = pl.Problem(
        geometry=pl.geometry.Rectangle([0, 0], [1, 1]),
        pde=pl.pde.Poisson(source=1.0),
        conditions=[pl.Dirichlet(lambda x: x[:, 0])],
    )
    x = np.array([[0.3, 0.4], [0.6, 0.6], [0.5, 0.2]])
    small, large = _estimate(problem, x, walks=256), _estimate(problem, x, walks=4096)
    ratio = small["std_error"] / large["std_error"]
    assert np.all(np.abs(ratio - 4.0) < 0.6), ratio  # sqrt(4096 / 256) = 4
    again = _estimate(problem, x, walks=256)
    np.testing.assert_array_equal(small["mean"], again["mean"])
    assert not np.array_equal(small["mean"], _estimate(problem, x, walks=256, seed=1)["mean"])


def test_walk_on_spheres_needs_a_structured_pde_and_dirichlet_conditions():
    rect = pl.geometry.Rectangle([0, 0], [1, 1])
    plain = pl.Problem(
        geometry=rect, pde=lambda x, u: -u.laplacian() - 1.0, conditions=[pl.Dirichlet(0.0)]
    )
    with pytest.raises(
        ValueError, match="plain function; walk-on-spheres needs the equation's coefficients"
    ):
        WalkOnSpheres().build(plain)
    neumann = pl.Problem(
        geometry=rect,
        pde=pl.pde.Poisson(source=1.0),
        conditions=[pl.Dirichlet(0.0, on=lambda x: x[:, 0] < 1e-6), pl.Neumann(0.0)],
    )
    with pytest.raises(ValueError, match="conditions='Neumann' is not a Dirichlet condition"):
        WalkOnSpheres().build(neumann)
    with pytest.raises(ValueError, match="epsilon=0.7"):
        WalkOnSpheres(epsilon=0.7)


def test_structured_pdes_are_pinn_residuals_too():
    x = torch.rand(6, 2, dtype=D64, requires_grad=True)
    u = pl.Field(
        x,
        (x**2).sum(1, keepdim=True) + x[:, :1],
        estimator=pl.derivatives.Autograd(),
        input_names=("x", "y"),
        output_names=("u",),
        spatial_dims=(0, 1),
    )
    torch.testing.assert_close(pl.pde.Poisson(source=-4.0)(x, u), torch.zeros(6, 1, dtype=D64))
    value = (x**2).sum(1, keepdim=True) + x[:, :1]
    r = pl.pde.ScreenedPoisson(2.0, source=lambda p: p[:, 0])(x, u)
    torch.testing.assert_close(r, -4.0 + 2.0 * value - x[:, :1])
    with pytest.raises(ValueError, match="sigma=-1.0 is negative"):
        pl.pde.ScreenedPoisson(-1.0)


def test_solve_cli_writes_value_and_standard_error_against_the_case_truth(tmp_path, capsys):
    import json

    import meshio

    from pdeml.cli import main

    out = tmp_path / "wos"
    assert (
        main(
            [
                "solve",
                "poisson_lshape",
                "--method",
                "wos",
                "--walks",
                "128",
                "--points",
                "200",
                "--resolution",
                "24",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["points"] == 200 and m["unfinished_walks"] == 0
    assert m["l2_relative_error"] < 0.12  # 5.5% at 256 walks measured
    assert m["within_4_std_errors"] > 0.95
    vtk = next(p for p in m["files"] if p.endswith((".vtu", ".vtk")))
    mesh = meshio.read(out / vtk)
    assert {"u", "std_error", "error_u"} <= set(mesh.point_data)
    inside = mesh.point_data["std_error"] > 0
    assert inside.mean() > 0.5 and np.all(
        mesh.point_data["u"][inside] > 0
    )  # -lap u = 1, u = 0: positive
    # the export's walk budget: as many walks in all as the solve's 200 points x 128 walks
    assert m["export_points"] == len(mesh.points)
    assert m["export_walks"] == max(16, min(128, 200 * 128 // len(mesh.points))) < 128
    # its standard errors are those of export_walks walks, not 128
    widen = float(np.mean(mesh.point_data["std_error"][inside]) / m["std_error_mean"])
    assert 0.75 < widen / np.sqrt(128 / m["export_walks"]) < 1.35, widen  # measured 1.04
    plain = tmp_path / "plain.py"
    plain.write_text(
        "import pdeml as pl\n"
        "problem = pl.Problem(geometry=pl.geometry.Rectangle([0, 0], [1, 1]), "
        "pde=lambda x, u: -u.laplacian() - 1.0, conditions=[pl.Dirichlet(0.0)])\n"
        "case = pl.Case(problem, pl.PINN(pl.nn.MLP()), steps=10)\n"
    )
    assert main(["solve", str(plain), "--method", "wos", "--out", str(tmp_path / "p")]) == 2
    assert "walk-on-spheres needs the equation's coefficients" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["lshape", "ball_screened", "mesh_box"])
def test_numba_and_torch_kernels_agree_in_distribution(name):
    """The same estimator in two kernels: the per-walk estimates at a point have the same law
    (two-sample Kolmogorov-Smirnov), and the means agree within their standard errors."""
    pytest.importorskip("numba")
    from scipy.stats import ks_2samp

    from pdeml.solvers._wos_numba import geometry_spec, walk_numba
    from pdeml.solvers.wos import walk

    if name == "lshape":
        from pdeml.cases import poisson_lshape

        geom, sigma = poisson_lshape.geometry, 0.0
        f = lambda x: 1.0 + x[:, 0] ** 2
        g = lambda x: x[:, 1]
        x0 = np.array([[-0.5, -0.5], [0.3, -0.6]])
    elif name == "ball_screened":
        geom, sigma = pl.geometry.Sphere([0, 0, 0], 1.0), 4.0
        f = lambda x: 6 + 4 * (1 - (x**2).sum(1))
        g = lambda x: torch.zeros(len(x), dtype=x.dtype)
        x0 = np.array([[0.3, 0.2, -0.4]])
    else:
        from test_mesh_geometry import box_mesh

        pts, tri = box_mesh([0, 0, 0], [1, 1, 1])
        geom, sigma = pl.geometry.Mesh(points=pts, triangles=tri), 0.0
        f = lambda x: torch.ones(len(x), dtype=x.dtype)
        g = lambda x: x[:, 0] ** 2 - x[:, 1] ** 2
        x0 = np.array([[0.5, 0.4, 0.5]])
    lo, hi = geom.bbox
    eps = 1e-3 * float(np.linalg.norm(np.asarray(hi) - np.asarray(lo)))
    walks = 3000 if name != "mesh_box" else 1500
    t = walk(
        torch.as_tensor(x0),
        walks,
        distance=lambda x: -geom.sdf(x).reshape(-1),
        boundary_value=g,
        source=f,
        sigma=sigma,
        epsilon=eps,
        generator=torch.Generator().manual_seed(0),
    )
    n = walk_numba(
        x0,
        walks,
        geometry_spec(geom),
        boundary_value=g,
        source=f,
        sigma=sigma,
        epsilon=eps,
        max_steps=100_000,
        seed=7,
    )
    for i in range(len(x0)):
        assert ks_2samp(t["samples"][i].numpy(), n["samples"][i]).pvalue > 1e-3
        se = math.hypot(float(t["std_error"][i]), float(n["std_error"][i]))
        assert abs(float(t["mean"][i]) - n["mean"][i]) < 4 * se
    assert abs(t["steps"] - n["steps"]) < 0.1 * t["steps"]


def test_walks_of_different_chunks_are_independent():
    """The same point three times, one chunk each in the numba kernel: independent walks (a
    chunk's walks once re-used the previous chunk's seeds shifted by one point, so 255 of the 256
    walks of neighbouring chunks were the same walks)."""
    pytest.importorskip("numba")
    problem = pl.Problem(
        geometry=pl.geometry.Rectangle([0, 0], [1, 1]),
        pde=pl.pde.Poisson(source=1.0),
        conditions=[pl.Dirichlet(lambda x: x[:, 0])],
    )
    backend = WalkOnSpheres(walks=256, chunk=4 * 256, kernel="numba").build(
        problem, dtype=D64
    )  # 1 point a chunk
    est = backend.estimate(np.array([[0.3, 0.4], [0.3, 0.4], [0.3, 0.4]]), samples=True)
    rows = est["samples"]
    shared = [len(np.intersect1d(rows[a], rows[b])) for a, b in ((0, 1), (1, 2), (0, 2))]
    assert max(shared) <= 2, shared  # 255 shared before the fix
