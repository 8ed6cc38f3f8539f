"""The backend contract: phases of steppers resume exactly, settings objects hold no run state,
overrides land on real fields, and a diverging step never leaves non-finite parameters."""

import json
import warnings
from typing import ClassVar

import numpy as np
import pytest
import torch
from test_training import StopAt

import pdeml as pl
from pdeml import checkpoint as ckpt
from pdeml import run as R
from pdeml.samplers import R3, Uniform
from pdeml.settings import describe, replace
from pdeml.solvers import PINN, PINNBackend

D64 = torch.float64


def _problem():
    def exact(x):
        return torch.sin(np.pi * x[:, 0:1]) * torch.sin(np.pi * x[:, 1:2])

    return pl.Problem(
        pl.geometry.Rectangle([0, 0], [1, 1]),
        lambda x, u: -u.laplacian() - 2 * np.pi**2 * exact(x),
        [pl.Dirichlet(0.0)],
        exact=exact,
    )


STEPPERS = {
    "adam-sum": lambda: [(12, pl.FirstOrder(pl.Adam(1e-2)))],
    "sgd": lambda: [(12, pl.FirstOrder(pl.SGD(1e-3)))],
    "adam-config": lambda: [(12, pl.FirstOrder(pl.Adam(1e-2), pl.ConFIG()))],
    "sgd-mconfig": lambda: [(12, pl.FirstOrder(pl.SGD(1e-2), pl.MConFIG()))],
    "adam-pcgrad": lambda: [(12, pl.FirstOrder(pl.Adam(1e-2), pl.PCGrad(seed=3)))],
    "adam-gradnorm": lambda: [(12, pl.FirstOrder(pl.Adam(1e-2), pl.GradNorm()))],
    "adam-lbfgs": lambda: [(6, pl.FirstOrder(pl.Adam(1e-2))), (6, pl.LBFGS())],
    "engd-dense": lambda: [(12, pl.ENGD())],
    "engd-cg": lambda: [(12, pl.ENGD(solver="cg", cg_iters=30))],
}


def _run(path, phases, stop=None, resume=False, sampler=None):
    backend = PINNBackend(_problem(), pl.nn.MLP(8, 1), seed=1, dtype=D64)
    result = pl.fit(
        backend,
        phases,
        sampler=sampler or R3(64, 16, every=4),
        weights={"dirichlet": 3.0},
        seed=2,
        checkpoint=path / "checkpoint.pt",
        checkpoint_every=1000,
        eval_every=1,
        callbacks=[StopAt(stop)] if stop else [],
        resume=resume,
    )
    return backend, result


@pytest.mark.parametrize("name", sorted(STEPPERS))
def test_every_stepper_and_combiner_resumes_bit_for_bit(tmp_path, name):
    ref, ref_result = _run(tmp_path / "a", STEPPERS[name]())
    for stop in (3, 8):  # inside the first phase; inside L-BFGS where there is one
        d = tmp_path / f"b{stop}"
        _, r1 = _run(d, STEPPERS[name](), stop=stop)
        assert r1.steps == stop and r1.status == "stopped"
        b2, r2 = _run(d, STEPPERS[name](), resume=True)
        assert r2.steps == 12
        for (k, p), q in zip(ref.state_dict().items(), b2.state_dict().values()):
            assert torch.equal(p, q), (name, stop, k)
        assert [h["loss"] for h in r2.history] == [h["loss"] for h in ref_result.history]


def test_a_resume_with_nothing_left_keeps_the_checkpoint_and_a_later_extension_matches(tmp_path):
    phases = lambda n: [(6, pl.FirstOrder(pl.Adam(1e-2))), (n, pl.LBFGS())]
    _run(tmp_path / "a", phases(4))
    before = (tmp_path / "a" / "checkpoint.pt").read_bytes()
    _, r = _run(tmp_path / "a", phases(4), resume=True)  # nothing left to do
    assert r.steps == 10 and "nothing left" in r.message
    assert (tmp_path / "a" / "checkpoint.pt").read_bytes() == before
    _, r = _run(tmp_path / "a", [(6, pl.FirstOrder(pl.Adam(1e-2)))], resume=True)  # --lbfgs-steps 0
    assert r.steps == 10 and (tmp_path / "a" / "checkpoint.pt").read_bytes() == before
    extended, _ = _run(tmp_path / "a", phases(7), resume=True)
    straight, _ = _run(tmp_path / "b", phases(7))
    for p, q in zip(extended.state_dict().values(), straight.state_dict().values()):
        assert torch.equal(p, q)
    saved = ckpt.load(tmp_path / "a" / "checkpoint.pt")
    assert (
        saved["stepper"] == "lbfgs"
        and int(saved["phase"]) == 1
        and saved["stepper_state"]["optimizer"]["state"]
    )


def test_a_resume_into_a_phase_that_changed_kind_is_a_clear_error(tmp_path):
    _run(tmp_path, [(4, pl.FirstOrder(pl.Adam(1e-2))), (6, pl.LBFGS())], stop=7)
    with pytest.raises(ValueError, match="phase 1 \\(lbfgs\\).*falls in phase 0 \\(adam\\)"):
        _run(tmp_path, [(9, pl.FirstOrder(pl.Adam(1e-2))), (6, pl.LBFGS())], resume=True)


def test_cli_resume_of_an_lbfgs_checkpoint_with_lbfgs_steps_0(tmp_path, capsys):
    from pdeml.cli import main

    out = tmp_path / "run"
    args = ["train", "heat_1d", "--steps", "10", "--out", str(out), "--no-progress"]
    assert main(args + ["--lbfgs-steps", "5"]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert main(args + ["--lbfgs-steps", "0", "--resume"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 15 and "nothing left" in m["message"]
    assert (out / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_engd_divergence_keeps_finite_parameters_in_memory_and_checkpoint(tmp_path, solver):
    flag = {"bad": False}
    base = _problem()

    def pde(x, u):
        r = base.pde(x, u)
        return r * float("nan") if flag["bad"] else r

    class Poison(pl.AbstractCallback):
        def on_step(self, state):
            if state.step == 3:
                flag["bad"] = True

    prob = pl.Problem(base.geometry, pde, base.conditions, exact=base.exact)
    backend = PINNBackend(prob, pl.nn.MLP(8, 1), seed=0, dtype=D64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Converting a tensor with requires_grad" either
        with pytest.raises(pl.DivergenceError, match="step 3 \\(engd\\)"):
            pl.fit(
                backend,
                [(10, pl.ENGD(solver=solver, cg_iters=20))],
                sampler=Uniform(40, 10),
                callbacks=[Poison()],
                checkpoint=tmp_path / "checkpoint.pt",
                checkpoint_every=1,
            )
    saved = ckpt.load(tmp_path / "checkpoint.pt")
    assert int(saved["step"]) == 3
    for k, v in backend.state_dict().items():
        assert torch.isfinite(v).all(), k
        assert torch.equal(v, saved["model"][k]), k


def test_one_estimator_object_serves_two_backends_of_different_dimension():
    est = pl.derivatives.Taylor()
    p2 = _problem()
    p3 = pl.Problem(
        pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]),
        lambda x, u: -u.laplacian() - 1.0,
        [pl.Dirichlet(0.0)],
    )
    a = PINN(pl.nn.MLP(8, 1), estimator=est).build(p2)
    b = PINN(pl.nn.MLP(8, 1), estimator=est).build(p3)
    for be, d in ((a, 2), (b, 3), (a, 2)):
        x = torch.rand(5, d)
        batch = {"domain": {"x": x}, "dirichlet": {"x": x}}
        assert all(torch.isfinite(v) for v in be.losses(batch).values())
    assert not hasattr(est, "plans") and a.estimator.plans and a.estimator is not b.estimator


def test_settings_objects_are_unchanged_by_a_run_and_serve_two_runs_alike(tmp_path):
    sampler, combiner, engd = R3(64, 16, every=4), pl.PCGrad(seed=1), pl.ENGD()
    before = [json.dumps(describe(o)) for o in (sampler, combiner, engd)]
    results = []
    for _ in range(2):
        backend = PINNBackend(_problem(), pl.nn.MLP(8, 1), seed=1, dtype=D64)
        r = pl.fit(
            backend, [(5, pl.FirstOrder(pl.Adam(1e-2), combiner)), (3, engd)], sampler=sampler
        )
        results.append([h["loss"] for h in r.history])
    assert results[0] == results[1]
    assert [json.dumps(describe(o)) for o in (sampler, combiner, engd)] == before
    assert not hasattr(sampler, "points") and not hasattr(combiner, "gen")
    assert not hasattr(engd, "lam")  # the run state lives in the runs, not the settings


class Recording(pl.Sum):
    seen: ClassVar[list] = []

    def backward(self, run, losses, params):
        Recording.seen.append({k: float(v.detach()) for k, v in losses.items()})
        return super().backward(run, losses, params)


def test_loss_weights_reach_every_combiner_and_lbfgs():
    backend = PINNBackend(_problem(), pl.nn.MLP(8, 1), seed=1, dtype=D64)
    batch = pl.sampling.to_torch(
        Uniform(32, 8).init(backend.problem, np.random.default_rng(0)).current(), D64, "cpu"
    )
    raw = {k: float(v.detach()) for k, v in backend.losses(batch).items()}
    Recording.seen = []
    pl.FirstOrder(pl.Adam(1e-3), Recording()).init(backend, {"dirichlet": 7.0}).step(batch, 0)
    assert Recording.seen[0]["dirichlet"] == pytest.approx(7.0 * raw["dirichlet"])
    assert Recording.seen[0]["pde"] == pytest.approx(raw["pde"])
    backend2 = PINNBackend(_problem(), pl.nn.MLP(8, 1), seed=1, dtype=D64)
    out = pl.LBFGS().init(backend2, {"dirichlet": 7.0}).step(batch, 0)
    assert float(out.total) == pytest.approx(
        float(out.losses["pde"] + 7.0 * out.losses["dirichlet"])
    )
    with pytest.raises(ValueError, match="negative"):
        pl.fit(backend, [(1, pl.FirstOrder())], weights={"dirichlet": -1.0})
    with pytest.raises(ValueError, match="unknown loss terms"):
        pl.fit(backend, [(1, pl.FirstOrder())], weights={"neumann": 1.0})


def test_overrides_land_on_real_fields_or_fail(tmp_path):
    case, _ = R.load_case("poisson_lshape")
    c = R.apply_overrides(
        case,
        {
            "lr": 1e-5,
            "steps": 7,
            "lbfgs_steps": 0,
            "derivatives": "stde:4",
            "sampler": "r3",
            "compile": True,
        },
    )
    assert (
        c.optimizer.lr == 1e-5 and c.optimizer.decay == 0.5 and c.steps == 7 and c.lbfgs_steps == 0
    )
    assert isinstance(c.method.estimator, pl.derivatives.STDE) and c.method.estimator.samples == 4
    assert (
        isinstance(c.method.sampler, R3)
        and c.method.sampler.n_boundary == 400
        and c.method.sampler.every == 100
    )
    assert c.method.compile is True and c.weights == {"dirichlet": 10.0}
    m = R.apply_overrides(case, {"combiner": "mconfig"})
    assert (
        isinstance(m.combiner, pl.MConFIG)
        and isinstance(m.optimizer, pl.SGD)
        and m.optimizer.lr == 2e-3
    )
    e = R.apply_overrides(case, {"optimizer": "engd"})
    assert isinstance(e.phases[0][1], pl.ENGD)
    with pytest.raises(ValueError, match="--lr.*no learning rate"):
        R.apply_overrides(case, {"optimizer": "engd", "lr": 1e-3})
    with pytest.raises(ValueError, match="does not apply to ENGD"):
        R.apply_overrides(case, {"optimizer": "engd", "combiner": "config"})
    # the learning rate given is the one the optimizer used (the history's lr column)
    m = R.train_case(
        "heat_1d", tmp_path / "lr", steps=3, lbfgs_steps=0, lr=1e-5, progress=False, export=False
    )
    import csv

    last = list(csv.DictReader(open(tmp_path / "lr" / "history.csv")))[-1]
    assert float(last["lr"]) == pytest.approx(
        1e-5 * 0.5 ** (2 / 1000), rel=1e-12
    )  # step 3 used k = 2


def test_python_overrides_with_objects_are_recorded_by_their_fields(tmp_path):
    R.train_case(
        "heat_1d",
        tmp_path,
        steps=2,
        lbfgs_steps=0,
        sampler=Uniform(64, 8),
        progress=False,
        export=False,
    )
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["overrides"]["sampler"] == {
        "type": "Uniform",
        "n_domain": 64,
        "n_boundary": 8,
        "n_initial": 200,
        "every": 0,
        "method": "random",
    }
    assert info["case"]["method"]["sampler"]["n_domain"] == 64
    first = info["case"]["phases"][0]  # {"type": "Phase", "steps": 2, "stepper": FirstOrder(...)}
    assert first["type"] == "Phase" and first["stepper"]["type"] == "FirstOrder"
    assert first["stepper"]["optimizer"] == {
        "type": "Adam",
        "lr": 0.002,
        "decay": 0.5,
        "decay_every": 1000,
        "betas": [0.9, 0.999],
        "schedule": None,
    }


def test_case_errors_name_the_field_and_the_fix():
    case, _ = R.load_case("heat_1d")
    with pytest.raises(ValueError, match="step=100 is not a Case field. Fix: did you mean steps="):
        pl.Case(case.problem, case.method, step=100)
    with pytest.raises(TypeError, match="lr=0.1 is no longer a Case field.*optimizer=pl.Adam"):
        pl.Case(case.problem, case.method, lr=0.1)
    with pytest.raises(TypeError, match="method=None is missing"):
        pl.Case(case.problem)
    with pytest.raises(ValueError, match="weights\\['pde'\\]=-1 is negative"):
        case.replace(weights={"pde": -1})
    with pytest.raises(ValueError, match="time=5 is not a \\(t0, t1\\) pair"):
        pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: u.value, time=5)
    with pytest.raises(ValueError, match="M-ConFIG"):
        case.replace(combiner=pl.MConFIG())
    with pytest.raises(ValueError, match="estimator='stde:4' is not a derivative estimator object"):
        replace(case.method, estimator="stde:4")


def test_plots_leave_matplotlib_global_state_alone(tmp_path):
    import matplotlib

    from pdeml.export import plot_history

    before = matplotlib.get_backend()
    rows = [
        {"step": s, "phase": "adam" if s < 3 else "lbfgs", "loss": 1.0 / s, "pde": 1.0 / s}
        for s in range(1, 6)
    ]
    plot_history(rows, ["pde"], tmp_path / "loss.png")
    assert matplotlib.get_backend() == before
    import sys

    assert "matplotlib.pyplot" not in sys.modules or matplotlib.pyplot.get_fignums() == []
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_describe_never_records_a_class_flag_as_a_setting():
    """STDE's ``unbiased`` setting asks for the paired gradient; the class flag
    ``unbiased_laplacian`` is the estimator's theory. run.json records the setting only, and a
    changed copy keeps it."""
    d = describe(pl.derivatives.STDE(4, unbiased=True))
    assert d["type"] == "STDE" and d["unbiased"] is True and "unbiased_laplacian" not in d
    assert describe(pl.derivatives.STDE(4))["unbiased"] is False
    copy = replace(pl.derivatives.STDE(4, unbiased=True), samples=8)
    assert copy.samples == 8 and copy.unbiased and copy.paired


def test_one_cycle_schedule_spans_the_phase_and_matches_torch():
    """The rates the FirstOrder stepper uses under pl.OneCycle equal torch's OneCycleLR (cosine
    annealing, same defaults) step for step."""
    total, peak = 50, 1e-2
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=peak, total_steps=total, cycle_momentum=False, three_phase=False
    )
    ours = pl.Adam(peak, schedule=pl.OneCycle())
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert np.allclose([ours.lr_at(k, total) for k in range(total)], theirs, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="schedule"):
        pl.Adam(1e-3, decay=0.5, schedule=pl.OneCycle())


def test_a_case_takes_any_schedule_of_phases_and_the_overrides_land_on_them(tmp_path):
    """Case(phases=[...]) trains exactly those phases; the shortcut's overrides change the phase
    they name; giving both, or an ambiguous L-BFGS phase, is an error."""
    import pdeml as pl

    problem = pl.Problem(
        pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 2.0, [pl.Dirichlet(0.0)]
    )
    method = pl.PINN(pl.nn.MLP(8, 2), sampler=pl.samplers.Uniform(32, 2))
    phases = [pl.Phase(3, pl.FirstOrder(pl.Adam(1e-2))), pl.Phase(2, pl.ENGD()), (4, pl.LBFGS())]
    case = pl.Case(problem, method, phases=phases, eval_every=1)
    assert [p.steps for p in case.phases] == [3, 2, 4] and isinstance(case.phases[2], pl.Phase)
    m = R.train_case(case, tmp_path / "run", progress=False, export=False)
    rows = json.loads((tmp_path / "run" / "run.json").read_text())["case"]["phases"]
    assert m["steps"] == 9 and [r["stepper"]["type"] for r in rows] == [
        "FirstOrder",
        "ENGD",
        "LBFGS",
    ]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in history] == ["adam"] * 3 + ["engd"] * 2 + ["lbfgs"] * 4
    o = R.apply_overrides(case, {"steps": 7, "lbfgs_steps": 1, "lr": 5e-3})
    assert [p.steps for p in o.phases] == [7, 2, 1] and o.optimizer.lr == 5e-3
    assert isinstance(o.phases[1].stepper, pl.ENGD)  # the other phase untouched
    with pytest.raises(ValueError, match="phases= both"):
        pl.Case(problem, method, phases=phases, steps=5)
    twice = pl.Case(problem, method, phases=[(2, pl.LBFGS()), (2, pl.LBFGS())])
    with pytest.raises(ValueError, match="2 L-BFGS phases"):
        R.apply_overrides(twice, {"lbfgs_steps": 5})
    with pytest.raises(ValueError, match=r"phases\[0\] stepper"):
        pl.Case(problem, method, phases=[(2, pl.Adam())])


def _settings_classes():
    """Every public settings class pdeml ships: the concrete subclasses of the settings bases."""
    import inspect as _inspect

    from pdeml import backend, combine, family, optim, sampling, steppers
    from pdeml.derivatives import base

    for name in ("samplers", "solvers", "operators", "families"):
        getattr(pl, name)  # import the packages that define them
    import importlib

    for module in ("navier_stokes", "rve", "sorption", "star_poisson"):
        importlib.import_module(f"pdeml.families.{module}")
    importlib.import_module("pdeml.solvers.dcdm.solver")

    roots = (
        sampling.AbstractSampler,
        combine.AbstractCombiner,
        steppers.AbstractStepper,
        optim.AbstractOptimizer,
        optim.AbstractSchedule,
        base.AbstractEstimator,
        backend.AbstractMethod,
        family.AbstractFamily,
    )
    seen, todo = set(), list(roots)
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return sorted(
        (
            c
            for c in seen
            if c.__module__.startswith("pdeml")
            and not c.__name__.startswith("_")
            and not _inspect.isabstract(c)
        ),
        key=lambda c: c.__qualname__,
    )


def test_every_settings_class_is_a_frozen_dataclass():
    """Methods, samplers, optimizers, schedules, combiners, steppers, estimators and families
    are frozen dataclasses: a run cannot change what the user chose (its state is the object
    ``init`` returns)."""
    import dataclasses

    classes = _settings_classes()
    names = {c.__name__ for c in classes}
    assert {"R3", "AAS", "ConFIG", "MConFIG", "LBFGS", "ENGD", "Adam", "STDE", "PINN"} <= names
    loose = [c.__name__ for c in classes if not dataclasses.is_dataclass(c)]
    thawed = [
        c.__name__
        for c in classes
        if dataclasses.is_dataclass(c) and not c.__dataclass_params__.frozen
    ]
    assert loose == [] and thawed == []
    for obj in (R3(64), pl.MConFIG(), pl.LBFGS(), pl.Adam(), pl.derivatives.STDE(4)):
        field = dataclasses.fields(obj)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, getattr(obj, field))


def test_a_run_holds_its_state_and_reads_its_settings():
    """``init`` returns a run object separate from the settings: two runs of one sampler differ
    in state, share the settings, and a settings method that takes the run comes bound to it."""
    problem = _problem()
    settings = R3(64, 8, causal=False)
    a = settings.init(problem, np.random.default_rng(0))
    b = settings.init(problem, np.random.default_rng(1))
    assert a.settings is settings and b.settings is settings and a is not settings
    assert not np.array_equal(a.points["domain"]["x"], b.points["domain"]["x"])
    assert a.n_domain == 64  # a setting, read through the run
    assert a.batch(0) is a.points  # step 0 keeps the drawn points
    a.observe(0, {"pde": torch.ones(64, 1)})  # R3 on flat residuals: releases every point
    assert not np.array_equal(a.points["domain"]["x"], b.points["domain"]["x"])
    assert a.version == 2 and b.version == 1  # only the observed run moved
