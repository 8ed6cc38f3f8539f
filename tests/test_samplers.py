"""Adaptive samplers: R3 and causal R3 follow their rules exactly."""

import json
import math

import numpy as np
import pytest
import torch

import pdeml as pl
import pdeml.run as R
from pdeml.samplers import R3


@pytest.fixture
def problem():
    case, _ = R.load_case("convection_1d", {"beta": "5"})
    return case.problem


def residuals_for(x, seed=0):
    r = np.random.default_rng(seed).standard_normal((len(x), 1))
    return {"pde": torch.as_tensor(r)}, np.abs(r[:, 0])


def test_r3_retains_exactly_the_above_mean_points_and_refills(problem):
    s = R3(200, 10, 10).init(problem, np.random.default_rng(0))
    x = s.points["domain"]["x"].copy()
    res, fit = residuals_for(x)
    s.observe(0, res)
    keep = fit > fit.mean()
    new = s.points["domain"]["x"]
    assert new.shape == x.shape  # population size kept
    assert np.array_equal(new[: keep.sum()], x[keep])  # exactly the retained points
    assert problem.domain.inside(new[keep.sum() :]).all()  # refilled inside the domain
    assert s.history[-1][1] == pytest.approx(keep.mean())


def test_causal_gate_and_beta_update_follow_the_formulas(problem):
    s = R3(300, 10, 10, causal=True, alpha=5.0, beta=-0.5, eta=1e-3, eps=20.0).init(
        problem, np.random.default_rng(1)
    )
    x = s.points["domain"]["x"].copy()
    tt = (x[:, 1] - 0.0) / 1.0
    g = 0.5 * (1 - np.tanh(5.0 * (tt + 0.5)))
    assert np.allclose(s.gate(x), g) and np.allclose(s.points["domain"]["w"][:, 0], g)
    res, fit = residuals_for(x, seed=2)
    s.observe(0, res)
    f = fit * g
    assert s.beta == pytest.approx(-0.5 + 1e-3 * min(math.exp(-20 * np.mean(f**2)), 0.1))
    keep = f > f.mean()
    assert np.array_equal(s.points["domain"]["x"][: keep.sum()], x[keep])
    assert np.allclose(s.points["domain"]["w"][:, 0], s.gate(s.points["domain"]["x"]))  # new beta


def test_causal_weights_enter_the_pde_loss(problem):
    from pdeml.solvers import PINNBackend

    be = PINNBackend(problem, pl.nn.MLP(16, 2), seed=0, dtype=torch.float64)
    x = torch.as_tensor(problem.domain.sample_interior(50, np.random.default_rng(0)))
    w = torch.rand(50, 1, dtype=torch.float64)
    cond = {
        name: {"x": torch.as_tensor(c.sample(problem, 8, np.random.default_rng(1), "random")["x"])}
        for name, c in zip(problem.condition_names, problem.conditions)
    }
    seen = {}
    plain = be.losses({"domain": {"x": x}, **cond})["pde"]
    weighted = be.losses({"domain": {"x": x, "w": w}, **cond}, seen)["pde"]
    r = be.residual_at(x.numpy())[:, 0]
    assert float(plain.detach()) == pytest.approx(np.mean(r**2))
    assert float(weighted.detach()) == pytest.approx(np.mean((w[:, 0].numpy() * r) ** 2))
    assert np.allclose(seen["pde"][:, 0].numpy(), r)  # observe() gets |r|, unweighted


def test_r3_state_round_trip_and_causal_needs_time(problem):
    s = R3(100, 10, 10, causal=True).init(problem, np.random.default_rng(0))
    s.observe(0, residuals_for(s.points["domain"]["x"])[0])
    t = R3(100, 10, 10, causal=True).init(problem, np.random.default_rng(5))
    t.load_state_dict(s.state_dict())
    assert t.beta == s.beta
    assert np.array_equal(t.points["domain"]["x"], s.points["domain"]["x"])
    steady = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: u.d2(0), [pl.Dirichlet(0.0)])
    with pytest.raises(ValueError, match="R3\\(causal\\)=True needs a time-dependent problem"):
        R3(10, causal=True).init(steady, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["r3-causal", "rad"])
def test_cli_sampler_option_trains(tmp_path, name):
    from pdeml import cli

    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "convection_1d",
                "--beta",
                "2",
                "--steps",
                "30",
                "--sampler",
                name,
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((out / "run.json").read_text())["overrides"]["sampler"] == name
    with pytest.raises(ValueError, match="--sampler='nope'"):
        R.apply_overrides(R.load_case("heat_1d")[0], {"sampler": "nope"})


def _interval_problem():
    return pl.Problem(
        geometry=pl.geometry.Interval(0.0, 1.0),
        pde=lambda x, u: u.value,
        conditions=[pl.Dirichlet(0.0)],
    )


@pytest.mark.parametrize("k, c", [(2.0, 0.0), (1.0, 1.0)])
def test_rad_density_matches_residual_power_sampling(k, c):
    """With r(x) = x on [0, 1], p(x) = ((k+1) x^k + c) / (1 + c): CDF (x^(k+1) + c x) / (1 + c).
    Kolmogorov-Smirnov over five fixed seeds (Fisher-combined); uniform sampling is rejected."""
    from scipy import stats

    from pdeml.samplers import RAD

    cdf = lambda t: (t ** (k + 1) + c * t) / (1 + c)
    p_rad, p_uniform = [], []
    for seed in range(5):
        s = RAD(2000, 2, 2, every=1, k=k, c=c, candidates=50)
        s = s.init(_interval_problem(), np.random.default_rng(seed), lambda x: x[:, :1])
        version = s.version
        s.batch(1)
        x = s.points["domain"]["x"][:, 0]
        assert s.version == version + 1 and len(x) == 2000 and ((x >= 0) & (x <= 1)).all()
        p_rad.append(stats.kstest(x, cdf).pvalue)
        p_uniform.append(stats.kstest(x, "uniform").pvalue)
    assert stats.combine_pvalues(p_rad).pvalue > 1e-3
    assert stats.combine_pvalues(p_uniform).pvalue < 1e-10


def test_rard_grows_and_rad_needs_residuals():
    from pdeml.samplers import RAD, RARD

    settings = RARD(100, 2, 2, every=10, add=7)
    s = settings.init(_interval_problem(), np.random.default_rng(0), lambda x: np.sin(5 * x[:, :1]))
    assert not hasattr(settings, "points")  # the settings hold no run state
    first = s.points["domain"]["x"].copy()
    s.batch(10)
    s.batch(20)
    x = s.points["domain"]["x"]
    assert len(x) == 114 and np.array_equal(x[:100], first)  # kept, plus 2 x 7 added
    state = s.state_dict()
    t = RARD(100, 2, 2).init(_interval_problem(), np.random.default_rng(5), lambda x: x[:, :1])
    t.load_state_dict(state)
    assert np.array_equal(t.points["domain"]["x"], x)  # the grown population resumes
    assert t.rng.random() == s.rng.random()  # ... and so does its generator
    with pytest.raises(ValueError, match="residual_at"):
        RAD(100, 2, 2, every=1).init(_interval_problem(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="k, c"):
        RAD(k=-1)


def test_rad_resamples_from_the_models_residual_inside_fit(problem):
    """the PINN backend starts RAD with its residual_at; RAD's points then carry a larger mean
    residual
    than uniform points (for k = 1, c = 0 the expected value is E[r^2] / E[r] >= E[r])."""
    from pdeml.samplers import RAD
    from pdeml.solvers import PINNBackend

    be = PINNBackend(problem, pl.nn.MLP(16, 2), seed=0)
    s = RAD(400, 10, 10, every=10, k=1.0, c=0.0, candidates=10)

    class Last(pl.AbstractCallback):
        def on_end(self, state):
            self.points = state.points

    last = Last()
    pl.fit(be, [(11, pl.FirstOrder())], sampler=s, callbacks=[last])
    x = last.points["domain"]["x"]
    assert len(x) == 400 and problem.domain.inside(x).all()
    uniform = problem.domain.sample_interior(4000, np.random.default_rng(5))
    assert np.abs(be.residual_at(x)).mean() > 1.2 * np.abs(be.residual_at(uniform)).mean()


def test_point_snapshots_write_png_and_vtk_that_read_back(tmp_path):
    import meshio

    from pdeml import cli

    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "peak_2d",
                "--alpha",
                "50",
                "--points",
                "64",
                "--steps",
                "20",
                "--sampler",
                "aas",
                "--snapshots",
                "10",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    snaps = out / "snapshots"
    assert sorted(p.name for p in snaps.glob("*.png")) == [
        f"points_{s:06d}.png" for s in (0, 10, 20)
    ]
    m = meshio.read(snaps / "points_000020.vtu")
    assert m.points.shape == (64, 3) and m.point_data["residual"].shape == (64,)
    assert np.all(m.point_data["residual"] >= 0) and np.all(np.isfinite(m.point_data["residual"]))
    with pytest.raises(ValueError, match="snapshots"):
        from pdeml.export.points import PointSnapshots

        PointSnapshots(None, tmp_path, every=0)


def _perturbed_flow(seed, scale=0.15):
    from pdeml.samplers.flow import BoxFlow

    torch.manual_seed(seed)
    flow = BoxFlow([-1.0, 0.0], [1.0, 2.0], layers=4)
    with torch.no_grad():
        for net in flow.nets:
            net[-1].weight.normal_(0, scale)
            net[-1].bias.normal_(0, scale)
    return flow


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aas_flow_density_integrates_to_one_and_samples_stay_inside(seed):
    flow = _perturbed_flow(seed)
    # quadrature on [-1, 1] x [0, 2], graded towards the faces (the density may grow like
    # y^-0.22 there): y = (1 - cos(pi xi)) / 2, midpoint rule in xi
    n = 600
    xi = (np.arange(n) + 0.5) / n
    y, dy = (1 - np.cos(np.pi * xi)) / 2, np.pi / 2 * np.sin(np.pi * xi) / n
    X, Y = np.meshgrid(-1 + 2 * y, 2 * y)
    W = np.outer(2 * dy, 2 * dy)
    with torch.no_grad():
        p = torch.exp(flow.log_prob(torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1))))[
            :, 0
        ].numpy()
        x, lq = flow.sample(20000, torch.Generator().manual_seed(seed))
        y = (x - torch.tensor([-1.0, 0.0], dtype=torch.float64)) / 2
        far = (torch.minimum(y, 1 - y) > 1e-7).all(1)  # 1 - y keeps 9 digits there
        assert float(far.double().mean()) > 0.99
        assert float((flow.log_prob(x) - lq)[far].abs().max()) < 1e-6  # sampling and density agree
    assert float((p * W.ravel()).sum()) == pytest.approx(1.0, abs=1e-3)
    assert bool(((x[:, 0] > -1) & (x[:, 0] < 1) & (x[:, 1] > 0) & (x[:, 1] < 2)).all())
    # the samples follow the density: mass of the left half, empirical vs integrated
    left = float((p.reshape(n, n) * W)[:, : n // 2].sum())
    assert float((x[:, 0] < 0).double().mean()) == pytest.approx(left, abs=0.015)


def test_new_flow_is_nearly_uniform_and_an_update_moves_mass_to_the_residual():
    """The maximization step raises E_p[r^2] for a fixed residual concentrated near the origin."""
    from pdeml.cases.peak_2d import make
    from pdeml.samplers import AAS

    problem = make().problem
    rng = np.random.default_rng(0)
    s = AAS(400, 1, 1, every=1, flow_steps=30).init(problem, rng)
    grid = torch.as_tensor(problem.domain.sample_interior(200, rng) * 0.96)
    ratio = torch.exp(s.flow.log_prob(grid)) * 4.0  # to the uniform density 1/4
    assert float(ratio.min()) > 0.75 and float(ratio.max()) < 1.6  # a new flow is nearly flat
    r2 = lambda x: np.exp(-20 * (x**2).sum(1, keepdims=True)) + 1e-3
    before = r2(s.draw_domain(20000)).mean()
    for step in range(5):
        x = s.points["domain"]["x"]
        s.observe(step, {"pde": torch.as_tensor(np.sqrt(r2(x)))})
        s.batch(step + 1)
    after = r2(s.draw_domain(20000)).mean()
    assert after > 1.5 * before
    state = s.state_dict()
    t = AAS(400, 1, 1, every=1, flow_steps=30).init(problem, np.random.default_rng(1))
    t.load_state_dict(state)
    assert torch.allclose(t.flow.log_prob(grid), s.flow.log_prob(grid))
    assert np.array_equal(t.points["domain"]["x"], s.points["domain"]["x"])
    with pytest.raises(ValueError, match="box domain"):
        AAS(10).init(
            pl.Problem(
                geometry=pl.geometry.Disk([0, 0], 1),
                pde=lambda x, u: u.value,
                conditions=[pl.Dirichlet(0.0)],
            ),
            rng,
        )


def test_a_named_sampler_needs_point_counts_to_keep():
    case, _ = R.load_case("heat_semilinear_highdim", {"dim": "4"})  # its own BrownianPaths sampler
    with pytest.raises(ValueError, match="--sampler='BrownianPaths' is the case's own sampler"):
        R.apply_overrides(case, {"sampler": "r3"})
