"""The fit loop: L-BFGS keeps going, resume is exact, divergence keeps the last good state."""

import json
import warnings

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml import checkpoint as ckpt
from pdeml.samplers import Uniform
from pdeml.solvers import PINNBackend


class StopAt(pl.AbstractCallback):
    def __init__(self, step):
        self.step = step

    def on_step(self, state):
        if state.step == self.step:
            state.stop = True


def _fit(problem, tmp_path, steps=40, lbfgs=15, seed=3, **kw):
    backend = PINNBackend(problem, pl.nn.MLP(16, 2), seed=seed)
    result = pl.fit(
        backend,
        [(steps, pl.FirstOrder(pl.Adam(1e-3))), (lbfgs, pl.LBFGS())],
        sampler=Uniform(128, 32, every=10),
        seed=seed,
        checkpoint=tmp_path / "checkpoint.pt",
        checkpoint_every=7,
        eval_every=1,
        **kw,
    )
    return backend, result


def test_lbfgs_runs_every_iteration_and_keeps_lowering_the_loss(square_problem, tmp_path):
    backend, result = _fit(square_problem, tmp_path, steps=200, lbfgs=60)
    lb = [r for r in result.history if r["phase"] == "lbfgs"]
    assert len(lb) == 60 and result.steps == 260
    losses = np.array([r["loss"] for r in lb])
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1])  # monotone (Wolfe line search)
    assert losses[-1] < 0.5 * losses[0]  # and still making real progress
    assert losses[-1] < 0.2 * losses[9]


def test_resume_reaches_the_same_parameters(square_problem, tmp_path):
    ref, ref_result = _fit(square_problem, tmp_path / "a")
    for stop in (23, 47):  # inside Adam, inside L-BFGS
        d = tmp_path / f"b{stop}"
        _, r1 = _fit(square_problem, d, callbacks=[StopAt(stop)])
        assert r1.status == "stopped" and r1.steps == stop
        assert int(ckpt.load(d / "checkpoint.pt")["step"]) == stop
        b2, r2 = _fit(square_problem, d, resume=True)
        assert r2.steps == 55
        for (k, p), q in zip(ref.state_dict().items(), b2.state_dict().values()):
            assert torch.equal(p, q), k
        assert [h["loss"] for h in r2.history] == [h["loss"] for h in ref_result.history]


def test_checkpoint_loads_with_weights_only(square_problem, tmp_path):
    _fit(square_problem, tmp_path, steps=10, lbfgs=0)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 10 and "net.layers.0.weight" in saved["model"]
    assert isinstance(json.loads(saved["history"]), list)


def test_divergence_stops_and_keeps_the_last_finite_state(tmp_path):
    flag = {"bad": False}

    def pde(x, u):
        r = -u.laplacian() - 1.0
        return r * float("nan") if flag["bad"] else r

    class Poison(pl.AbstractCallback):
        def on_step(self, state):
            if state.step == 12:
                flag["bad"] = True

    prob = pl.Problem(pl.geometry.Rectangle([0, 0], [1, 1]), pde, [pl.Dirichlet(0.0)])
    backend = PINNBackend(prob, pl.nn.MLP(8, 2))
    with pytest.raises(pl.DivergenceError, match="step 12.*pde.*checkpoint.pt.*--lr"):
        pl.fit(
            backend,
            [(50, pl.FirstOrder())],
            sampler=Uniform(64, 16),
            callbacks=[Poison()],
            checkpoint=tmp_path / "checkpoint.pt",
            checkpoint_every=5,
        )
    saved = ckpt.load(tmp_path / "checkpoint.pt")
    assert saved["step"] == 12  # nothing lost after the last good step
    for k, v in backend.state_dict().items():
        assert torch.isfinite(v).all()
        assert torch.equal(v, saved["model"][k])


def test_inverse_parameter_is_trained_and_reported(tmp_path):
    # u = exp(-k t) with k unknown: the data pin k
    k_true = 0.7
    t = np.linspace(0, 1, 30)[:, None]
    prob = pl.Problem(
        pl.geometry.Interval(0, 1),
        lambda x, u, p: u.dt() + p["k"] * u.value,
        time=(0, 1),
        parameters={"k": pl.Parameter(0.1)},
        conditions=[pl.Data(np.hstack([0.5 * np.ones_like(t), t]), np.exp(-k_true * t))],
    )
    backend = PINNBackend(prob, pl.nn.MLP(16, 2))
    r = pl.fit(
        backend, [(1500, pl.FirstOrder(pl.Adam(5e-3)))], sampler=Uniform(200, 10), eval_every=500
    )
    assert abs(backend.parameter_values()["k"] - k_true) < 0.03
    assert "param_k" in r.history[-1]


def _coefficient_problem(lr_scale):
    """-c u'' = 3π² sin(πx) with u = sin(πx) observed: c = 3, started at 1 (the newcomer's
    inverse problem, whose c crawled from 1 to 1.34 in 2000 Adam steps at 1e-3)."""
    x = np.linspace(0.02, 0.98, 50)[:, None]
    return pl.Problem(
        pl.geometry.Interval(0, 1),
        lambda x, u, p: -p["c"] * u.d2("x") - 3 * np.pi**2 * torch.sin(np.pi * x),
        parameters={"c": pl.Parameter(1.0, lr_scale=lr_scale)},
        conditions=[pl.Dirichlet(0.0), pl.Data(x, np.sin(np.pi * x[:, 0]))],
    )


def test_an_unknown_parameter_learns_at_its_own_rate():
    """Adam's first step moves every weight by its learning rate (m/sqrt(v) = ±1): the network's
    by lr, the parameter by lr x lr_scale (default 10)."""
    assert pl.Parameter(1.0).lr_scale == 10.0
    for scale in (10.0, 1.0, 0.5):
        backend = PINNBackend(_coefficient_problem(scale), pl.nn.MLP(8, 2), seed=0)
        before = {n: p.detach().clone() for n, p in backend.named_parameters()}
        pl.fit(backend, [(1, pl.FirstOrder(pl.Adam(1e-3)))], sampler=Uniform(64, 4), seed=0)
        after = dict(backend.named_parameters())
        moved = {n: (after[n].detach() - p).abs() for n, p in before.items()}
        assert float(moved["params.c"]) == pytest.approx(1e-3 * scale, rel=1e-4)
        others = torch.cat([m.flatten() for n, m in moved.items() if n != "params.c"])
        assert float(others.max()) == pytest.approx(1e-3, rel=1e-4)
    with pytest.raises(ValueError, match="lr_scale"):
        pl.Parameter(1.0, lr_scale=0)
    # an optimizer state of one rate (a checkpoint from before lr_scale) does not fit two
    old = pl.FirstOrder().init(PINNBackend(_coefficient_problem(1.0), pl.nn.MLP(8, 2)), {})
    new = pl.FirstOrder().init(PINNBackend(_coefficient_problem(10.0), pl.nn.MLP(8, 2)), {})
    with pytest.raises(ValueError, match=r"lr_scale=1\)"):
        new.load_state_dict(old.state_dict())


def test_a_parameter_still_drifting_at_the_end_is_a_warning_and_its_path_is_plotted(tmp_path):
    """At the optimizer's rate (lr_scale=1) c crawls one way from 1: the run warns, naming the
    parameter and its values; at the default rate it covers most of the way in as many steps.
    loss.png gets a third panel, the parameters' paths."""
    import matplotlib.image as mpimg

    from pdeml.export import plot_history

    def train(scale):
        backend = PINNBackend(_coefficient_problem(scale), pl.nn.MLP(16, 2), seed=0)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            r = pl.fit(
                backend,
                [(400, pl.FirstOrder(pl.Adam(1e-3)))],
                sampler=Uniform(100, 4, every=50),
                seed=0,
                eval_every=20,
            )
        drift = [str(w.message) for w in seen if "still drifting" in str(w.message)]
        return backend.parameter_values()["c"], drift, r

    slow, drift, r = train(1.0)
    assert slow < 1.5 and len(drift) == 1 and "parameter 'c'" in drift[0], drift
    assert f"{slow:.6g} at step 400" in drift[0]
    fast, _, _ = train(10.0)
    assert fast - 1 > (slow - 1) + 0.5  # at least half a unit further from the start
    rows = [{k: v for k, v in h.items() if not k.startswith("param_")} for h in r.history]
    plain = mpimg.imread(plot_history(rows, ["pde"], tmp_path / "plain.png"))
    with_params = mpimg.imread(plot_history(r.history, ["pde"], tmp_path / "loss.png"))
    assert with_params.shape[1] > 1.3 * plain.shape[1]  # the parameters' panel


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="--device cpu"):
        pl.resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        pl.resolve_device("tpu")


def test_float64_training_keeps_float64(square_problem):
    backend = PINNBackend(square_problem, pl.nn.MLP(8, 1), dtype=torch.float64)
    pl.fit(backend, [(3, pl.FirstOrder())], sampler=Uniform(16, 8))
    assert all(p.dtype == torch.float64 for p in backend.parameters())


def test_lbfgs_stage_ends_when_it_cannot_move(tmp_path):
    """A loss that is exactly zero: L-BFGS never moves, and the stage ends after ``patience``
    such iterations instead of running all of them."""
    problem = pl.Problem(
        geometry=pl.geometry.Rectangle([0, 0], [1, 1]), pde=lambda x, u: 0 * u.value
    )
    backend = PINNBackend(problem, pl.nn.MLP(8, 2), seed=0)
    with pytest.warns(UserWarning, match="unchanged for 5 iterations"):
        result = pl.fit(
            backend,
            [(3, pl.FirstOrder()), (50, pl.LBFGS(patience=5))],
            sampler=Uniform(32, 8),
            checkpoint=tmp_path / "checkpoint.pt",
            eval_every=1,
        )
    assert result.status == "finished" and result.steps == 3 + 5
    assert int(ckpt.load(tmp_path / "checkpoint.pt")["step"]) == 8


def test_a_loss_that_ends_far_above_its_start_is_warned_about(square_problem):
    """``pl.Adam(1e3)`` used to finish quietly with a loss 1e4x its start: the run now warns,
    naming both losses and the fix; a run that learns does not."""
    import warnings

    def run(lr):
        backend = pl.PINN(pl.nn.MLP(8, 2), sampler=pl.samplers.Uniform(64, 16)).build(
            square_problem, seed=0, dtype=torch.float64
        )
        return pl.fit(backend, [(30, pl.FirstOrder(pl.Adam(lr)))], eval_every=10)

    with pytest.warns(UserWarning, match=r"the loss ended at .*x where it started .*--lr"):
        run(1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = run(1e-2)
    assert good.history[-1]["loss"] < good.history[0]["loss"]
