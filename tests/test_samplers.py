"""Adaptive samplers: R3 and causal R3 follow their rules exactly."""
import json
import math

import numpy as np
import pytest
import torch

import pdeml as pl
import pdeml.run as R
from samplers import R3


@pytest.fixture
def problem():
    case, _ = R.load_case("convection_1d", {"beta": "5"})
    return case.problem


def residuals_for(x, seed=0):
    r = np.random.default_rng(seed).standard_normal((len(x), 1))
    return {"pde": torch.as_tensor(r)}, np.abs(r[:, 0])


def test_r3_retains_exactly_the_above_mean_points_and_refills(problem):
    s = R3(200, 10, 10)
    s.reset(problem, np.random.default_rng(0))
    x = s.points["domain"]["x"].copy()
    res, fit = residuals_for(x)
    s.observe(0, res)
    keep = fit > fit.mean()
    new = s.points["domain"]["x"]
    assert new.shape == x.shape                                    # population size kept
    assert np.array_equal(new[:keep.sum()], x[keep])               # exactly the retained points
    assert problem.domain.inside(new[keep.sum():]).all()           # refilled inside the domain
    assert s.history[-1][1] == pytest.approx(keep.mean())


def test_causal_gate_and_beta_update_follow_the_formulas(problem):
    s = R3(300, 10, 10, causal=True, alpha=5.0, beta=-0.5, eta=1e-3, eps=20.0)
    s.reset(problem, np.random.default_rng(1))
    x = s.points["domain"]["x"].copy()
    tt = (x[:, 1] - 0.0) / 1.0
    g = 0.5 * (1 - np.tanh(5.0 * (tt + 0.5)))
    assert np.allclose(s.gate(x), g) and np.allclose(s.points["domain"]["w"][:, 0], g)
    res, fit = residuals_for(x, seed=2)
    s.observe(0, res)
    f = fit * g
    assert s.beta == pytest.approx(-0.5 + 1e-3 * min(math.exp(-20 * np.mean(f ** 2)), 0.1))
    keep = f > f.mean()
    assert np.array_equal(s.points["domain"]["x"][:keep.sum()], x[keep])
    assert np.allclose(s.points["domain"]["w"][:, 0], s.gate(s.points["domain"]["x"]))  # new beta


def test_causal_weights_enter_the_pde_loss(problem):
    from solvers import PINN
    be = PINN(problem, pl.nn.MLP(16, 2), seed=0, dtype=torch.float64)
    x = torch.as_tensor(problem.domain.sample_interior(50, np.random.default_rng(0)))
    w = torch.rand(50, 1, dtype=torch.float64)
    cond = {name: {"x": torch.as_tensor(c.sample(problem, 8, np.random.default_rng(1), "random")["x"])}
            for name, c in zip(problem.condition_names, problem.conditions)}
    seen = {}
    plain = be.losses({"domain": {"x": x}, **cond})["pde"]
    weighted = be.losses({"domain": {"x": x, "w": w}, **cond}, seen)["pde"]
    r = be.residual_at(x.numpy())[:, 0]
    assert float(plain.detach()) == pytest.approx(np.mean(r ** 2))
    assert float(weighted.detach()) == pytest.approx(np.mean((w[:, 0].numpy() * r) ** 2))
    assert np.allclose(seen["pde"][:, 0].numpy(), r)               # observe() gets |r|, unweighted


def test_r3_state_round_trip_and_causal_needs_time(problem):
    s = R3(100, 10, 10, causal=True)
    s.reset(problem, np.random.default_rng(0))
    s.observe(0, residuals_for(s.points["domain"]["x"])[0])
    t = R3(100, 10, 10, causal=True)
    t.reset(problem, np.random.default_rng(5))
    t.load_state_dict(s.state_dict())
    assert t.beta == s.beta
    assert np.array_equal(t.points["domain"]["x"], s.points["domain"]["x"])
    steady = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: u.d2(0), [pl.Dirichlet(0.0)])
    with pytest.raises(ValueError, match="R3\\(causal\\)=True needs a time-dependent problem"):
        R3(10, causal=True).reset(steady, np.random.default_rng(0))


def test_cli_sampler_option_trains_with_r3(tmp_path):
    from pdeml import cli
    out = tmp_path / "run"
    assert cli.main(["train", "convection_1d", "--beta", "2", "--steps", "30", "--sampler", "r3-causal",
                     "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["overrides"]["sampler"] == "r3-causal"
    with pytest.raises(ValueError, match="sampler='nope'"):
        R.default_sampler(R.load_case("heat_1d")[0].replace(sampler="nope"))
