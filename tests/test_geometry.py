import subprocess
import sys

import numpy as np
import pytest
import torch

from pdeml import geometry as G

LSHAPE = [(0, 0), (1, 0), (1, -1), (-1, -1), (-1, 1), (0, 1)]


def _true_distance(geom, x, rng, n=20000):
    """Distance from points to a dense boundary sample (converges to the true distance)."""
    b = geom.sample_boundary(n, rng)
    return np.sqrt(((x[:, None, :] - b[None]) ** 2).sum(-1)).min(1)


EXACT = [
    G.Interval(-1, 2),
    G.Rectangle([0, 0], [2, 1]),
    G.Disk([0.3, -0.2], 0.7),
    G.Polygon(LSHAPE),
    G.Triangle([0, 0], [1, 0], [0.2, 0.9]),
    G.Cuboid([0, 0, 0], [1, 2, 1]),
    G.Sphere([0, 0, 0], 1.0),
    G.Hypercube([0] * 4, [1] * 4),
    G.Hypersphere([0] * 4, 1.0),
]


@pytest.mark.parametrize("geom", EXACT, ids=lambda g: type(g).__name__)
def test_exact_sdf_is_the_distance_with_the_right_sign(geom, rng):
    lo, hi = geom.bbox
    x = lo - 0.3 + (hi - lo + 0.6) * rng.random((300, geom.dim))
    x = x[np.abs(geom.sdf(torch.as_tensor(x)).numpy()) > 1e-3]  # off deepxde's boundary band
    sdf = geom.sdf(torch.as_tensor(x)).numpy()
    assert np.array_equal(sdf < 0, geom.inside(x) & ~geom.on_boundary(x))
    if geom.dim <= 3:
        d = _true_distance(geom, x, rng)
        tol = 0.03 if geom.dim == 3 else 2e-3
        np.testing.assert_allclose(np.abs(sdf), d, atol=tol)


@pytest.mark.parametrize(
    "geom",
    [
        G.Rectangle([0, 0], [1, 1]) - G.Disk([0.5, 0.5], 0.25),
        G.Disk([0, 0], 1) | G.Rectangle([0, -0.5], [1.5, 0.5]),
        G.Disk([0, 0], 1) & G.Rectangle([0, -2], [2, 2]),
        G.Ellipse([0, 0], 2.0, 0.5, 0.3),
    ],
    ids=lambda g: type(g).__name__,
)
def test_csg_and_ellipse_sdf_is_a_signed_lower_bound(geom, rng):
    lo, hi = geom.bbox
    x = lo - 0.3 + (hi - lo + 0.6) * rng.random((400, 2))
    sdf = geom.sdf(torch.as_tensor(x)).numpy()
    keep = np.abs(sdf) > 1e-3
    x, sdf = x[keep], sdf[keep]
    assert np.array_equal(sdf < 0, geom.inside(x) & ~geom.on_boundary(x))
    d = _true_distance(geom, x, rng, 40000)
    assert np.all(np.abs(sdf) <= d + 2e-3)
    assert geom.sdf_exact is False
    # zero on the boundary
    b = geom.sample_boundary(200, rng)
    assert np.abs(geom.sdf(torch.as_tensor(b)).numpy()).max() < 1e-5


def test_sdf_follows_input_dtype_and_is_differentiable():
    g = G.Polygon(LSHAPE)
    x = torch.tensor([[-0.5, -0.5]], dtype=torch.float64, requires_grad=True)
    d = g.sdf(x)
    assert d.dtype == torch.float64
    (gx,) = torch.autograd.grad(d.sum(), x)
    assert torch.allclose(gx.norm(), torch.tensor(1.0, dtype=torch.float64))


def test_sampling_is_seeded_and_leaves_numpy_global_state_alone():
    g = G.Polygon(LSHAPE)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = g.sample_interior(50, np.random.default_rng(5))
    b = g.sample_interior(50, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert np.array_equal(np.random.get_state()[1], before)
    assert g.inside(a).all()
    for m in ("sobol", "halton", "lhs", "uniform"):
        assert g.inside(g.sample_interior(64, np.random.default_rng(0), m)).all()


def test_hypersphere_random_points_are_uniform_in_the_ball_and_seeded():
    """The ball's own random sampler (torch normals, not deepxde's): inside, uniform in volume
    (the radius law P(|x - c| <= r) = (r/R)^D, so (|x - c|/R)^D is U(0, 1)), isotropic
    (mean c, covariance R^2/(D+2) I), seeded by the generator alone, and float64."""
    D, R, n = 8, 1.5, 40000
    c = np.linspace(-1, 1, D)
    g = G.Hypersphere(c, R)
    torch.manual_seed(0)  # torch's global stream plays no part
    a = g.sample_interior(n, np.random.default_rng(3))
    torch.manual_seed(1)
    assert np.array_equal(a, g.sample_interior(n, np.random.default_rng(3)))
    assert not np.array_equal(a, g.sample_interior(n, np.random.default_rng(4)))
    assert a.dtype == np.float64 and a.shape == (n, D)
    r = np.linalg.norm(a - c, axis=1) / R
    assert r.max() <= 1.0
    u = r**D  # U(0, 1): mean 1/2, variance 1/12
    se = 1 / np.sqrt(12 * n)
    assert abs(u.mean() - 0.5) < 5 * se and abs((u < 0.25).mean() - 0.25) < 5 * np.sqrt(0.1875 / n)
    cov = np.cov((a - c).T)
    var = R**2 / (D + 2)
    assert np.abs(a.mean(0) - c).max() < 5 * np.sqrt(var / n)
    assert (
        np.abs(np.diag(cov) - var).max() < 0.05 * var
        and np.abs(cov - np.diag(np.diag(cov))).max() < 0.05 * var
    )
    assert (
        G.Hypersphere(c, R).inside(g.sample_interior(64, np.random.default_rng(0), "sobol")).all()
    )


def test_import_is_quiet_and_ignores_dde_backend_variable():
    code = (
        "import torch, pdeml as pl; d = torch.get_default_dtype();"
        "g = pl.geometry.Disk([0, 0], 1); g.sample_interior(5, "
        "__import__('numpy').random.default_rng(0));"
        "assert torch.get_default_dtype() == d; assert str(torch.get_default_device()) == 'cpu';"
        "assert torch._C._len_torch_function_stack() == 0;"  # no device mode left behind
        "print('OK')"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "DDE_BACKEND": "tensorflow"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"
    assert "backend" not in r.stderr.lower()


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda: G.Rectangle([1, 0], [0, 1]), "xmax"),
        (lambda: G.Disk([0, 0], -1), "radius"),
        (lambda: G.Rectangle([0, float("nan")], [1, 1]), "finite"),
        (lambda: G.Polygon([(0, 0), (1, 1)]), "vertices"),
        (lambda: G.Disk([0, 0], 1) - G.Sphere([0, 0, 0], 1), "dim"),
    ],
)
def test_bad_geometry_errors_name_the_argument(make, word):
    with pytest.raises(ValueError, match=word):
        make()


def test_normals_point_out_of_a_csg_hole(rng):
    g = G.Cuboid([0, 0, 0], [1, 1, 1]) - G.Sphere([0.5, 0.5, 0.5], 0.25)
    b = g.sample_boundary(500, rng)
    n = g.boundary_normal(b)
    on_hole = np.linalg.norm(b - 0.5, axis=1) < 0.25 + 1e-4
    assert on_hole.any()
    radial = (b[on_hole] - 0.5) / 0.25
    np.testing.assert_allclose((n[on_hole] * radial).sum(1), -1.0, atol=1e-4)


def test_ellipse_normals_alone_and_as_a_hole():
    """deepxde has no normal for an ellipse (a Neumann condition stopped with its bare
    "to be implemented"): ours is the normalized gradient of the implicit function, and on a
    hole's rim the domain's normal points into the hole."""
    e = G.Ellipse([0.5, 0.0], 1.0, 0.5, angle=0.3)
    x = e.sample_boundary(200, np.random.default_rng(0))
    n = e.boundary_normal(x)
    assert np.allclose(np.linalg.norm(n, axis=1), 1)
    h = 1e-6  # outward: stepping along n leaves the ellipse, against it enters
    t = lambda p: e.sdf(torch.as_tensor(p)).numpy()
    assert (t(x + h * n) > 0).all() and (t(x - h * n) < 0).all()
    # the SDF's gradient direction agrees (finite differences)
    g = np.stack([(t(x + h * ax) - t(x - h * ax)) / (2 * h) for ax in np.eye(2)], 1)
    assert np.allclose(n, g / np.linalg.norm(g, axis=1, keepdims=True), atol=1e-5)
    box = G.Rectangle([-2, -2], [3, 2]) - e
    xb = box.sample_boundary(400, np.random.default_rng(1))
    nb = box.boundary_normal(xb)
    rim = np.abs(t(xb)) < 1e-6
    assert rim.sum() > 10 and np.allclose(nb[rim], -e.boundary_normal(xb[rim]))
    edge = np.isclose(xb[:, 0], 3)
    assert np.allclose(nb[edge], [1, 0])
