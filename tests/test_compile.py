"""``compile_losses``: the compiled PINN loss is the eager one, step by step, and reverse-mode
estimators stay eager with a warning instead of failing inside torch.compile."""

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml.families.highdim import make_case
from pdeml.settings import replace
from pdeml.solvers import PINNBackend

# a whole step that fails to compile falls back to eager with this warning: here it is a failure
pytestmark = pytest.mark.filterwarnings("error:compiling the training step failed")


def _pair(spec, dim=6):
    case = make_case("allen_cahn", dim, 0)
    model = pl.nn.MLP(width=16, depth=2)
    make = lambda compiled: PINNBackend(
        case.problem, model, estimator=spec, hard_dirichlet=True, seed=0, compile_losses=compiled
    )
    return make(False), make(True)


def _train(backend, x, steps=4):
    """Losses and the final weights after ``steps`` Adam steps on fixed points."""
    opt = torch.optim.Adam(backend.parameters(), 1e-2)
    out = []
    for _ in range(steps):
        loss = backend.losses({"domain": {"x": x}})["pde"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out, torch.cat([p.detach().flatten() for p in backend.parameters()])


def test_compiled_stde_training_matches_eager():
    eager, compiled = _pair("stde:3")
    x = torch.rand(32, 6) * 0.5
    le, we = _train(eager, x)
    lc, wc = _train(compiled, x)
    assert compiled._compiled not in (None, False)  # the later steps did run compiled
    # stochastic estimator: each backend's generator starts from the same seed, so the index
    # draws agree; a compiled graph that froze or skipped a draw would change the loss far more
    assert len(set(le)) == len(le)  # the draws do change from step to step
    torch.testing.assert_close(torch.tensor(lc), torch.tensor(le), rtol=1e-5, atol=0)
    torch.testing.assert_close(wc, we, rtol=1e-4, atol=1e-6)


def test_reverse_mode_estimator_stays_eager_with_a_warning():
    eager, compiled = _pair("sdgd:3")
    x = torch.rand(32, 6) * 0.5
    with pytest.warns(UserWarning, match="double backward"):
        lc, _ = _train(compiled, x, steps=2)
    assert compiled._compiled is False
    le, _ = _train(eager, x, steps=2)
    assert lc == le


def test_compile_flag_reaches_the_backend_and_is_validated():
    from pdeml.run import build

    case = make_case("poisson", 3, 0)
    assert (
        build(case.replace(method=replace(case.method, compile=True)))._compiled is None
    )  # after 1st call
    assert build(case)._compiled is False
    with pytest.raises(ValueError, match="compile"):
        replace(case.method, compile="yes")
    with pytest.raises(ValueError, match="compile_losses"):
        PINNBackend(case.problem, pl.nn.MLP(8, 2), compile_losses=1)


def test_cli_compile_flag():
    from pdeml.cli import _parser

    assert _parser().parse_args(["train", "case.py", "--compile"]).compile is True
    assert _parser().parse_args(["train", "case.py"]).compile is None  # the case's own setting


# --------------------------------------------------------------------- the whole step compiled
def _lshape(compile, width=16, seed=0, every=10):
    from pdeml.cases.poisson_lshape import VERTICES
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN

    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES), lambda x, u: -u.laplacian() - 1.0, [pl.Dirichlet(0.0)]
    )
    return PINN(pl.nn.MLP(width, 3), sampler=Uniform(200, 40, every=every), compile=compile).build(
        prob, seed=seed
    )


def _stepped_whole(backend) -> bool:
    """The run took its steps through the compiled whole step: it compiled, and the losses were
    never called compiled on their own (the path a refused whole step falls back to)."""
    return backend.compile_s > 0 and not backend._compile_timed


def _graphs():
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def test_whole_step_trains_as_the_eager_step_does_for_100_steps():
    """Forward, backward and Adam in one graph: the same run as eager to float32 round-off over
    100 steps with redraws every 10 (measured 7e-6 on the full L-shape benchmark), and the
    torch optimizer's own state carries the moments (the checkpoint is the eager one's)."""
    eager, whole = _lshape(False), _lshape(True)
    r_e = pl.fit(eager, [(100, pl.FirstOrder(pl.Adam(3e-3)))], seed=1, eval_every=1)
    r_w = pl.fit(whole, [(100, pl.FirstOrder(pl.Adam(3e-3)))], seed=1, eval_every=1)
    assert _stepped_whole(whole) and not eager.compile_s
    le, lw = (np.array([h["loss"] for h in r.history]) for r in (r_e, r_w))
    assert le[-1] < 0.5 * le[0]  # it trains
    np.testing.assert_allclose(lw, le, rtol=2e-4)
    for p, q in zip(eager.parameters(), whole.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5)


@pytest.mark.filterwarnings("ignore:parameter .c. is still drifting")
def test_a_parameter_learning_at_its_own_rate_compiles_and_steps_as_eager():
    """An inverse problem's unknown coefficient at 10x the rate (pl.Parameter's lr_scale): the
    compiled whole step scales its update as the eager step's parameter group does, with the
    optimizer's state in the eager order (groups by rate): the same run over 30 steps."""
    import math

    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN

    x = np.linspace(0.02, 0.98, 20)[:, None]
    prob = pl.Problem(
        pl.geometry.Interval(0, 1),
        lambda x, u, p: -p["c"] * u.d2("x") - 3 * math.pi**2 * torch.sin(math.pi * x),
        parameters={"c": pl.Parameter(1.0)},
        conditions=[pl.Dirichlet(0.0), pl.Data(x, np.sin(math.pi * x[:, 0]))],
    )
    eager, whole = (
        PINN(pl.nn.MLP(16, 2), sampler=Uniform(100, 4, every=10), compile=c).build(prob, seed=0)
        for c in (False, True)
    )
    r_e = pl.fit(eager, [(30, pl.FirstOrder(pl.Adam(1e-3)))], seed=1, eval_every=1)
    r_w = pl.fit(whole, [(30, pl.FirstOrder(pl.Adam(1e-3)))], seed=1, eval_every=1)
    assert _stepped_whole(whole)
    c_e, c_w = ([h["param_c"] for h in r.history] for r in (r_e, r_w))
    assert c_e[-1] - 1 > 0.1  # 10x: more than 30 steps x 1e-3 would move it
    np.testing.assert_allclose(c_w, c_e, rtol=1e-5)
    np.testing.assert_allclose(
        [h["loss"] for h in r_w.history], [h["loss"] for h in r_e.history], rtol=2e-4
    )


def test_stacked_jets_compile_and_train_as_the_unstacked_eager_step():
    """Taylor mode with stacked rows (one product per layer) through the compiled whole step:
    the eager, unstacked run's losses over 20 steps, to float32 round-off."""
    from pdeml.cases.poisson_lshape import VERTICES
    from pdeml.derivatives import Taylor
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN

    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES), lambda x, u: -u.laplacian() - 1.0, [pl.Dirichlet(0.0)]
    )
    runs = {}
    for stack, compile in ((False, False), (True, True)):
        be = PINN(
            pl.nn.MLP(16, 3),
            estimator=Taylor(stack=stack),
            sampler=Uniform(200, 40, every=10),
            compile=compile,
        ).build(prob, seed=0)
        runs[stack] = pl.fit(be, [(20, pl.FirstOrder(pl.Adam(3e-3)))], seed=1, eval_every=1)
    assert _stepped_whole(be)
    np.testing.assert_allclose(
        [h["loss"] for h in runs[True].history],
        [h["loss"] for h in runs[False].history],
        rtol=2e-4,
    )


def test_config_builds_its_direction_inside_the_compiled_step():
    """ConFIG's per-term gradients (torch.func.jacrev) and its pseudo-inverse direction in the
    graph: the eager run's losses over 40 steps; PCGrad (a random order each step) stays eager."""
    eager, whole = _lshape(False), _lshape(True)
    r_e = pl.fit(eager, [(40, pl.FirstOrder(pl.Adam(3e-3), pl.ConFIG()))], seed=1, eval_every=1)
    r_w = pl.fit(whole, [(40, pl.FirstOrder(pl.Adam(3e-3), pl.ConFIG()))], seed=1, eval_every=1)
    assert _stepped_whole(whole)
    np.testing.assert_allclose(
        [h["loss"] for h in r_w.history], [h["loss"] for h in r_e.history], rtol=2e-4
    )
    run = pl.FirstOrder(pl.Adam(1e-3), pl.PCGrad()).init(whole, {}, 5)
    assert run._whole_step({"domain": {"x": torch.zeros(4, 2)}}) is False


def test_whole_step_draws_the_stde_directions_of_the_eager_step():
    """STDE's random directions are drawn ahead of each compiled step, from the same stream: the
    compiled run sees the eager run's directions (a frozen or skipped draw would change the
    losses by far more than round-off) and leaves the generator where eager leaves it."""
    from pdeml.run import build

    case = make_case("allen_cahn", 6, 0)
    runs = {}
    for mode in (False, True):
        be = build(
            case.replace(
                method=replace(case.method, compile=mode, estimator=pl.derivatives.STDE(3))
            ),
            seed=0,
        )
        r = pl.fit(be, [(30, pl.FirstOrder(pl.Adam(1e-2)))], seed=0, eval_every=1)
        runs[mode] = (be, np.array([h["loss"] for h in r.history]))
    assert _stepped_whole(runs[True][0])
    np.testing.assert_allclose(runs[True][1], runs[False][1], rtol=1e-4)
    assert torch.equal(
        runs[True][0].estimator.state_dict()["generator"],
        runs[False][0].estimator.state_dict()["generator"],
    )


@pytest.mark.parametrize("name", ["poisson_lshape", "kovasznay_2d", "wave_1d"])
def test_no_graph_break_and_no_recompile_after_the_first_step(name):
    """The built-in 2-D cases (space, or space-time) compile to one graph, with no break; new
    points every 2 steps and a second phase reuse it."""
    from pdeml.run import apply_overrides, build, load_case
    from pdeml.samplers import Uniform

    case, _ = load_case(name)
    case = apply_overrides(case, {"compile": True})
    be = build(case.replace(method=replace(case.method, model=pl.nn.MLP(12, 2))), seed=0)
    graphs, breaks = _graphs()
    sampler = Uniform(128, 32, 32, every=2)
    pl.fit(be, [(7, pl.FirstOrder(pl.Adam(1e-3)))], sampler=sampler, seed=0, eval_every=10**9)
    assert _stepped_whole(be)
    after, after_breaks = _graphs()
    assert after - graphs <= 1 and after_breaks == breaks
    pl.fit(be, [(5, pl.FirstOrder(pl.Adam(1e-4)))], sampler=sampler, seed=1, eval_every=10**9)
    assert _graphs() == (after, after_breaks)


def test_the_tenth_backend_of_a_process_still_compiles():
    """torch.compile keeps a code object's graphs together and, past 8 of them, runs it eagerly
    without an error. The step is compiled on a copy of the code per backend: ten backends of
    ten sizes in one process each get their graph, and a second phase reuses its backend's."""
    counts = []
    for k in range(10):
        be = _lshape(True, width=4 + k)
        graphs, _ = _graphs()
        pl.fit(be, [(2, pl.FirstOrder(pl.Adam(1e-3)))], seed=0, eval_every=10**9)
        counts.append(_graphs()[0] - graphs)
    pl.fit(be, [(2, pl.FirstOrder(pl.Adam(1e-4)))], seed=1, eval_every=10**9)
    assert counts == [1] * 10 and _graphs()[0] - graphs == 1


def test_compile_time_is_reported_in_metrics(tmp_path):
    from pdeml.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "poisson_lshape",
                "--steps",
                "3",
                "--lbfgs-steps",
                "0",
                "--compile",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    import json

    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 3 and 0 < m["compile_s"] < m["wall_time_s"]
    assert (
        main(
            [
                "train",
                "poisson_lshape",
                "--steps",
                "3",
                "--lbfgs-steps",
                "0",
                "--compile",
                "off",
                "--no-progress",
                "--out",
                str(tmp_path / "eager"),
            ]
        )
        == 0
    )
    assert "compile_s" not in json.loads((tmp_path / "eager" / "metrics.json").read_text())


def test_a_compiled_run_resumes_bit_exactly(tmp_path):
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_training import StopAt

    def run(d, **kw):
        be = _lshape(True, every=3)
        r = pl.fit(
            be,
            [(12, pl.FirstOrder(pl.Adam(1e-2)))],
            seed=2,
            checkpoint=d / "checkpoint.pt",
            checkpoint_every=2,
            eval_every=1,
            **kw,
        )
        return be, r

    ref, r_ref = run(tmp_path / "a")
    run(tmp_path / "b", callbacks=[StopAt(5)])
    again, r_again = run(tmp_path / "b", resume=True)
    assert _stepped_whole(ref) and _stepped_whole(again)
    assert [h["loss"] for h in r_again.history] == [h["loss"] for h in r_ref.history]
    for p, q in zip(ref.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)


def test_a_non_finite_compiled_step_changes_nothing_and_stops():
    flag = {"bad": False}

    class Poison(pl.AbstractCallback):
        def on_step(self, state):
            flag["bad"] = state.step >= 3

    from pdeml.cases.poisson_lshape import VERTICES
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN

    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES),
        lambda x, u: (-u.laplacian() - 1.0) * (float("nan") if flag["bad"] else 1.0),
        [pl.Dirichlet(0.0)],
    )
    be = PINN(pl.nn.MLP(8, 2), sampler=Uniform(64, 16), compile=True).build(prob, seed=0)
    kept = {}

    class Keep(pl.AbstractCallback):
        def on_step(self, state):
            kept.update({k: v.clone() for k, v in be.state_dict().items()})

    with pytest.raises(pl.DivergenceError, match="step 3"):
        pl.fit(be, [(10, pl.FirstOrder(pl.Adam(1e-2)))], callbacks=[Poison(), Keep()], seed=0)
    assert _stepped_whole(be)
    for k, v in be.state_dict().items():
        assert torch.equal(v, kept[k]), k  # the parameters of step 3, untouched


@pytest.mark.filterwarnings("default:compile:UserWarning")
def test_a_jet_fallback_trains_eager_with_a_warning():
    """A jet by nested torch.func.jvp (here a hard constraint on an ellipse, whose smooth
    distance has no jet rule) cannot be traced inside the compiled step's gradient, nor compiled
    as losses (torch 2.13): compile=True says so and trains eager, with the eager run's losses."""
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN

    prob = pl.Problem(
        pl.geometry.Ellipse([0, 0], 1.0, 0.6, 0.3),
        lambda x, u: -u.laplacian() - 1.0,
        [pl.Dirichlet(0.0)],
    )
    runs = {}
    for mode in (False, True):
        be = PINN(
            pl.nn.MLP(12, 2), sampler=Uniform(64, 16), hard_dirichlet=True, compile=mode
        ).build(prob, seed=0)
        if mode:
            with pytest.warns(UserWarning, match="nested-jvp jet fallback"):
                r = pl.fit(be, [(3, pl.FirstOrder(pl.Adam(1e-3)))], seed=0, eval_every=1)
            assert be.compile_s == 0 and any("smooth_distance" in f for f in be._jet_fallbacks)
        else:
            r = pl.fit(be, [(3, pl.FirstOrder(pl.Adam(1e-3)))], seed=0, eval_every=1)
        runs[mode] = [h["loss"] for h in r.history]
    assert runs[True] == runs[False]


def test_auto_compiles_a_phase_only_when_it_pays():
    """The rule counts the jets' rows, not the points: an L-shape PDE point carries its value,
    2 tangent directions and the collapsed Laplacian (4 rows), a boundary point 1; an STDE point
    at D = 1000 carries 16 sampled directions (18 rows), so allen_cahn_highdim --dim 1000's
    10 000 steps compile (they ran eager at 1.5x the compiled step's time when points were
    counted)."""
    from pdeml.families.highdim import make_case
    from pdeml.run import build
    from pdeml.solvers.pinn import (
        AUTO_COMPILE_COST_S,
        AUTO_SAVING_S,
        compile_pays,
        hidden_units,
        jet_rows,
    )

    be = _lshape("auto", width=50)
    batch = {"domain": {"x": torch.zeros(1200, 2)}, "dirichlet": {"x": torch.zeros(120, 2)}}
    assert jet_rows(be, batch) == 1200 * 4 + 120
    a, b = AUTO_SAVING_S
    k = AUTO_COMPILE_COST_S / (a + b * 4920 * hidden_units(be.net))
    assert (
        hidden_units(be.net) == 150
        and compile_pays(be, batch, int(k) + 1)
        and not compile_pays(be, batch, int(k) - 1)
    )
    assert not compile_pays(be, batch, None)
    stde = build(make_case("allen_cahn", 1000, 0), seed=0, device="cpu")
    points = {"domain": {"x": torch.zeros(100, 1000)}, "boundary": {"x": torch.zeros(1, 1000)}}
    assert jet_rows(stde, points) == 100 * 18 + 1 and hidden_units(stde.net) == 512
    assert compile_pays(stde, points, 10_000) and not compile_pays(stde, points, 8_000)
    short = _lshape("auto")
    pl.fit(short, [(5, pl.FirstOrder(pl.Adam(1e-3)))], seed=0)
    assert not short.compile_s  # 5 steps do not pay for a compile


def test_compile_modes_are_validated_and_reach_the_cli():
    from pdeml.cli import _parser
    from pdeml.solvers import PINN

    with pytest.raises(ValueError, match="compile"):
        PINN(compile="always")
    assert PINN().compile == "auto"
    parse = lambda *a: _parser().parse_args(["train", "case.py", *a]).compile
    assert parse("--compile") is True and parse("--compile", "losses") == "losses"
    assert parse("--compile", "off") is False and parse("--compile", "auto") == "auto"
    with pytest.raises(SystemExit):
        parse("--compile", "sometimes")


#: the built-in PINN cases whose derivatives are all forward mode, by jet rules (the others
#: stay eager: burgers_1d's output transform has no jet rule, biharmonic_annulus's mixed
#: derivatives need reverse mode, peak_2d's hard constraint's boundary value, a Python function,
#: takes the nested-jvp fallback: test_a_jet_fallback_trains_eager_with_a_warning)
FORWARD_MODE_CASES = [
    "poisson_lshape",
    "kovasznay_2d",
    "heat_1d",
    "wave_1d",
    "fisher_kpp_1d",
    "allen_cahn_1d",
    "convection_1d",
    "poisson_sin_2d",
    "inverse_diffusion",
    "diffusion_sorption_1d",
    "poisson_manufactured_3d",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", FORWARD_MODE_CASES)
def test_every_forward_mode_case_trains_alike_compiled_and_eager(name):
    """Each built-in case's own conditions, weights, samplers and estimator, 20 Adam steps with
    the whole step compiled against eager: the same losses to round-off."""
    from pdeml.run import apply_overrides, build, load_case

    case, _ = load_case(name)
    out = {}
    for mode in (False, True):
        c = apply_overrides(case, {"compile": mode})
        be = build(c.replace(method=replace(c.method, model=pl.nn.MLP(12, 2))), seed=0)
        _, breaks = _graphs()
        r = pl.fit(
            be, [(20, pl.FirstOrder(pl.Adam(1e-3)))], weights=c.weights, seed=0, eval_every=1
        )
        out[mode] = np.array([[h[k] for k in be.term_names] for h in r.history])
        if mode:
            assert _stepped_whole(be) and _graphs()[1] == breaks
    tol = 1e-9 if case.dtype == "float64" else 1e-3
    np.testing.assert_allclose(out[True], out[False], rtol=tol, atol=1e-12)
