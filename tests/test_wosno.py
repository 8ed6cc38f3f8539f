"""WoS-NO (issue 16): the running walk-on-spheres targets are unbiased with honest standard errors
and resume exactly; the physics-informed baseline's pieces are exact where they should be and
its loss has a unique minimizer near the truth; training on walks learns; export reads back."""

import numpy as np
import pytest
import torch

pytest.importorskip("skfem")

from pdeml.families.star_poisson import StarFamily, StarProblem, grid, grid_features
from pdeml.operators.wosno import (
    DomainDraws,
    WoSNO,
    bilinear,
    five_point_residual,
    physics_floor,
    relative_l2_masked,
)


def disk_star(b=(0.3, 1.0, -0.5, 0.2, 0.4)):
    """c = 0: the unit disk, with a source and boundary data."""
    return StarProblem(
        c=np.zeros(2),
        mu=np.array([[0.2, -0.1], [-0.4, 0.3]]),
        beta=np.array([1.0, -0.5]),
        b=np.asarray(b, float),
    )


def test_features_are_distance_nearest_boundary_value_and_source():
    star = disk_star()
    feats, inside = grid_features(star, 24)
    x = grid(24).reshape(-1, 2)
    r = np.linalg.norm(x, axis=1)
    assert np.array_equal(inside.ravel(), r < 1)
    np.testing.assert_allclose(feats[1].ravel(), 1 - r, atol=1e-5)  # the 1024-gon's chords
    # nearest point: the same angle, up to the 1024-gon (a vertex is within pi/1024 of it; |g'| <=
    # 0.6)
    np.testing.assert_allclose(feats[0].ravel(), star.boundary(x), atol=2e-3)
    np.testing.assert_allclose(feats[2].ravel(), star.source(x), atol=1e-12)


def test_fem_reads_points_between_chord_and_star_and_refuses_outside():
    star = disk_star()
    at = star.fem(3)
    t = np.linspace(0, 2 * np.pi, 50, endpoint=False)
    edge = 0.99999 * np.stack(
        [np.cos(t), np.sin(t)], 1
    )  # outside the mesh's chords, inside the disk
    np.testing.assert_allclose(at(edge), star.boundary(edge), atol=2e-3)
    with pytest.raises(ValueError, match="outside the star"):
        at(np.array([[1.01, 0.0]]))


def _run(targets="wos", domains=2, batch=1, walks=5, seed=0):
    return DomainDraws(domains, batch, targets=targets, walks=walks).init(
        StarFamily(16), np.random.default_rng(seed)
    )


def test_running_means_fold_walks_and_are_unbiased_with_honest_standard_errors(monkeypatch):
    from pdeml.solvers.wos import WoSBackend

    seen, estimate = [], WoSBackend.estimate

    def record(self, x, samples=False):
        out = estimate(self, x, samples)
        seen.append(out["samples"])
        return out

    monkeypatch.setattr(WoSBackend, "estimate", record)
    run = _run(domains=1, walks=20)
    fam, star, inside = run.problem, run.draws[0], run.inside[0]
    truth = fam.truth(star, inside)[inside]
    se = []
    for step in range(12):
        b = run.batch(step)["data"]
        assert run.count[0] == 20 * (step + 1)  # 20 fresh walks per draw
        se.append(np.median(b["std_error"][0][inside]))
    walks = np.concatenate(seen, axis=1)  # every walk folded in: (points, 240)
    assert (
        walks.shape[1] == 240 and len({float(w[0, 0]) for w in seen}) == 12
    )  # fresh walks each time
    np.testing.assert_allclose(b["target"][0][inside], walks.mean(1), atol=1e-12)
    np.testing.assert_allclose(
        b["std_error"][0][inside], walks.std(1, ddof=1) / np.sqrt(240), atol=1e-12
    )
    assert se[-1] < se[0] / 2.9  # sqrt(12) = 3.5 less
    # unbiased: over the points off the epsilon shell, the mean deviation is within 4 standard
    # errors;
    # each point's own z is not Gaussian near the boundary at 240 walks (rare long walks carry half
    # the variance there), so only most points are asked to be within 2
    inner = run.features[0, 1][inside] > 0.01
    dev, s = (b["target"][0][inside] - truth)[inner], b["std_error"][0][inside][inner]
    assert abs(dev.mean()) < 4 * np.sqrt((s**2).sum()) / len(s)
    assert np.mean(np.abs(dev / s) < 2) > 0.85


def test_resumed_draws_give_the_same_targets():
    a = _run(domains=3, batch=2)
    batches = [a.batch(s)["data"]["target"] for s in range(5)]
    b = _run(domains=3, batch=2)
    for s in range(3):
        b.batch(s)
    state = b.state_dict()
    c = _run(domains=3, batch=2)
    c.load_state_dict(state)
    np.testing.assert_array_equal(
        c.current()["data"]["target"], batches[2]
    )  # no walks folded in twice
    for s in (3, 4):
        np.testing.assert_array_equal(c.batch(s)["data"]["target"], batches[s])


def test_five_point_residual_and_bilinear_reads_are_exact_on_polynomials():
    n, h = 12, 0.25
    x = (np.arange(n) + 0.5) * h - 1.5
    X, Y = np.meshgrid(x, x, indexing="ij")
    u = torch.as_tensor(X**2 + 3 * Y**2 + X * Y)[None]  # -Δu = -8
    inside = torch.ones(1, n, n, dtype=torch.float64)
    inside[0, 0, 5] = 0
    r, m = five_point_residual(u, torch.full((1, n, n), -8.0, dtype=torch.float64), inside, h)
    assert (
        float(r.abs().max()) < 1e-10 and float(m.sum()) == (n - 2) ** 2 - 1
    )  # node (1, 5) loses its stencil
    lin = torch.as_tensor(0.5 + 2 * X - Y)[None]
    pts = torch.tensor([[[0.3, -0.7], [-1.2, 1.1], [0.0, 0.0]]], dtype=torch.float64)
    np.testing.assert_allclose(
        bilinear(lin, pts, 1.5)[0], 0.5 + 2 * pts[0, :, 0] - pts[0, :, 1], atol=1e-12
    )


def test_physics_loss_has_one_minimizer_and_it_is_near_the_truth():
    fam = StarFamily(32)
    star = fam.draw(np.random.default_rng(5))
    u, rank, unknowns = physics_floor(fam, star)
    truth = fam.truth(star, fam.features(star)[1])
    assert rank == unknowns
    assert np.linalg.norm(u - truth) / np.linalg.norm(truth) < 0.1  # its discretization error


def test_weighted_relative_l2_is_zero_at_the_target_and_ignores_outside():
    t = torch.randn(2, 5, 5)
    mask = (torch.rand(2, 5, 5) > 0.3).double()
    assert float(relative_l2_masked(t.double(), t.double(), mask)) == 0
    p = t.double() + 10 * (1 - mask)
    assert (
        float(relative_l2_masked(p, t.double(), mask, torch.rand(2, 5, 5).double() + 0.1)) < 1e-12
    )


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="weighting"):
        WoSNO(targets="residual", weighting="std_error")
    with pytest.raises(ValueError, match="targets"):
        WoSNO(targets="fem")
    with pytest.raises(ValueError, match="modes"):
        WoSNO(modes=12).build(StarFamily(16))
    with pytest.raises(ValueError, match="batch_size"):
        WoSNO(domains=4, batch_size=8)


def test_wos_targets_train_the_operator_and_export_reads_back(tmp_path):
    import pdeml as pl
    from pdeml.export.image import read_image_data

    method = WoSNO(
        targets="wos", domains=8, batch_size=4, modes=6, width=16, layers=2, test_domains=3
    )
    backend = method.build(StarFamily(16), seed=0)
    first = backend.errors().mean()
    pl.fit(backend, [(80, pl.FirstOrder(pl.Adam(1e-2)))], seed=0)
    last = backend.errors().mean()
    assert last < first / 3 and last < 0.3, (first, last)  # measured 1.0 -> 0.12
    files = backend.export(tmp_path, 0, sample=1, walks=64)
    f = read_image_data(tmp_path / "test_001.vti")
    inside = f["inside"] > 0
    assert np.isnan(f["prediction"][~inside]).all() and not np.isnan(f["prediction"][inside]).any()
    np.testing.assert_allclose(
        f["error"][inside], (f["prediction"] - f["truth"])[inside], atol=1e-12
    )
    z = (f["wos_mean"] - f["truth"])[inside] / np.maximum(f["wos_std_error"][inside], 1e-9)
    assert np.mean(np.abs(z) < 3) > 0.9
    assert any(p.name == "field.png" for p in files)


def test_case_options_select_the_targets_and_walks_a_run_uses():
    from pdeml.run import apply_overrides, load_case

    case, _ = load_case(
        "poisson_star_family", {"targets": "residual", "n": 16, "domains": 4, "batch": 2}
    )
    backend = case.method.build(case.problem)
    assert backend.term_names == ["pde", "boundary"] and backend.n == 16
    run = backend.batches(None, np.random.default_rng(0))
    assert (
        run.targets == "residual" and len(run.draws) == 4 and "target" not in run.current()["data"]
    )
    case, _ = load_case(
        "poisson_star_family",
        {"walks": 3, "n": 16, "domains": 3, "batch": 2, "weighting": "std_error"},
    )
    case = apply_overrides(case, {"steps": 5, "lr": 1e-2})
    run = case.method.build(case.problem).batches(None, np.random.default_rng(0))
    assert (
        run.walks == 3
        and set(run.count.tolist()) <= {0, 3}
        and run.count.sum() == 3 * run.batch_size
    )
    assert case.steps == 5 and case.method.weighting == "std_error"
