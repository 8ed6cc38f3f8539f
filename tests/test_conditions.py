import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml.samplers import Uniform
from pdeml.sampling import to_torch
from pdeml.solvers import PINN, PINNBackend


def test_exact_solution_gives_zero_condition_residuals():
    """Dirichlet, Neumann, Robin and Periodic residuals of the exact solution vanish."""
    pi = np.pi
    exact = lambda x: torch.sin(pi * x[:, 0:1]) * torch.exp(x[:, 1:2])

    def grad_n(x):  # outward normal derivative on the right face x = 1 (n = e_x)
        return pi * torch.cos(pi * x[:, 0:1]) * torch.exp(x[:, 1:2])

    right = lambda x: x[:, 0] > 1 - 1e-6
    conds = [
        pl.Dirichlet(exact, on=lambda x: ~right(x)),
        pl.Neumann(grad_n, on=right),
        pl.Robin(2.0, lambda x: grad_n(x) + 2 * exact(x), on=right, name="robin_right"),
    ]
    prob = pl.Problem(pl.geometry.Rectangle([0, 0], [1, 1]), lambda x, u: u.laplacian(), conds)

    class Exact(torch.nn.Module):  # the "network" is the exact solution
        def forward(self, xn):  # PINN feeds inputs mapped to [-1, 1]
            return exact(0.5 * xn + 0.5)

    backend = PINNBackend(prob, Exact(), dtype=torch.float64)
    s = Uniform(50, 64).init(prob, np.random.default_rng(0))
    losses = backend.losses(to_torch(s.current(), torch.float64, "cpu"))
    for name in ("dirichlet", "neumann", "robin_right"):
        assert losses[name] < 1e-20, (name, losses[name])
    assert s.current()["neumann"]["x"][:, 0].min() > 1 - 1e-6


def test_periodic_pairs_points_on_opposite_faces():
    prob = pl.Problem(
        pl.geometry.Interval(0, 2 * np.pi),
        lambda x, u: u.dt(),
        time=(0, 1),
        conditions=[pl.Periodic(0, derivative_order=1)],
    )
    pts = prob.conditions[0].sample(prob, 10, np.random.default_rng(0), "random")["x"]
    a, b = pts[:10], pts[10:]
    assert np.all(a[:, 0] == 0) and np.allclose(b[:, 0], 2 * np.pi)
    assert np.array_equal(a[:, 1], b[:, 1])
    # a 2π-periodic function has zero periodic residual (value and derivative)
    x = torch.as_tensor(pts).requires_grad_(True)
    u = pl.Field(
        x,
        torch.sin(x[:, 0:1] + x[:, 1:2]),
        estimator=pl.derivatives.Autograd(),
        input_names=("x", "t"),
        output_names=("u",),
        spatial_dims=(0,),
    )
    r = prob.conditions[0].residual(u, {"x": x})
    assert r.shape == (10, 2) and r.abs().max() < 1e-12


def test_condition_selecting_no_points_is_a_clear_error():
    prob = pl.Problem(
        pl.geometry.Rectangle([0, 0], [1, 1]),
        lambda x, u: u.laplacian(),
        [pl.Dirichlet(0.0, on=lambda x: x[:, 0] > 5)],
    )
    with pytest.raises(ValueError, match="selects no points"):
        Uniform(10, 10).init(prob, np.random.default_rng(0))


def test_predicate_with_wrong_return_is_a_clear_error():
    prob = pl.Problem(
        pl.geometry.Rectangle([0, 0], [1, 1]),
        lambda x, u: u.laplacian(),
        [pl.Dirichlet(0.0, on=lambda x: x[:, 0])],
    )
    with pytest.raises(ValueError, match="bool"):
        Uniform(10, 10).init(prob, np.random.default_rng(0))


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda: pl.Dirichlet(float("inf")), "finite"),
        (lambda: pl.Neumann(float("nan")), "finite"),
        (lambda: pl.Data(np.zeros((5, 2)), np.ones(4)), "does not match"),
        (lambda: pl.Data(np.zeros((3, 2)), [1.0, np.nan, 2.0]), "finite"),
        (lambda: pl.Parameter(float("nan")), "finite"),
    ],
)
def test_non_finite_or_mismatched_values_are_rejected(make, word):
    with pytest.raises(ValueError, match=word):
        make()


def test_callable_value_returning_nonfinite_is_caught():
    prob = pl.Problem(
        pl.geometry.Interval(0, 1),
        lambda x, u: u.d2(0),
        [pl.Dirichlet(lambda x: 1 / (x[:, 0:1] * 0))],
    )
    b = PINNBackend(prob, pl.nn.MLP(4, 1))
    s = Uniform(10, 10).init(prob, np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-finite"):
        b.losses(to_torch(s.current(), torch.float32, "cpu"))


def test_wrong_residual_shape_is_a_clear_error():
    # x[:, 0] is (N,), u.value is (N, 1): broadcasting gives (N, N)
    prob = pl.Problem(
        pl.geometry.Rectangle([0, 0], [1, 1]),
        lambda x, u: u.laplacian() - x[:, 0],
        [pl.Dirichlet(0.0)],
    )
    with pytest.raises(ValueError, match=r"x\[:, 0:1\]"):
        PINNBackend(prob, pl.nn.MLP(8, 1))


def test_problem_validation_messages():
    g = pl.geometry.Interval(0, 1)
    with pytest.raises(ValueError, match="pde"):
        pl.Problem(g, lambda x, u, p: u.value)  # 3 arguments, no parameters
    with pytest.raises(ValueError, match="time"):
        pl.Problem(g, lambda x, u: u.value, time=(1, 0))
    with pytest.raises(ValueError, match="not a condition"):
        pl.Problem(g, lambda x, u: u.value, ["dirichlet"])
    with pytest.raises(ValueError, match="lr"):
        pl.Case(pl.Problem(g, lambda x, u: u.value), PINN(), optimizer=pl.Adam(-1.0))


@pytest.mark.parametrize(
    "geom",
    [
        pl.geometry.Disk([0, 0], 1.0),
        pl.geometry.Polygon([(0, 0), (1, 0), (1, -1), (-1, -1), (-1, 1), (0, 1)]),
    ],
    ids=["disk", "lshape"],
)
def test_hard_dirichlet_holds_exactly_on_the_boundary(geom):
    g = lambda x: x[:, 0:1] ** 2 + 1.0
    prob = pl.Problem(geom, lambda x, u: -u.laplacian(), [pl.Dirichlet(g)])
    backend = PINNBackend(prob, pl.nn.MLP(16, 2), hard_dirichlet=True, dtype=torch.float64)
    assert backend.term_names == ["pde"]  # no soft boundary term left
    b = geom.sample_boundary(300, np.random.default_rng(1))
    np.testing.assert_allclose(backend.predict(b)[:, 0], b[:, 0] ** 2 + 1.0, atol=1e-5)
    inner = geom.sample_interior(300, np.random.default_rng(2))
    phi = geom.smooth_distance(torch.as_tensor(inner))
    assert (phi > 0).all()


def test_hard_dirichlet_trains_on_a_disk():
    # -Δu = 4 on the unit disk, u = 0 on the circle: u = 1 - r²
    prob = pl.Problem(
        pl.geometry.Disk([0, 0], 1.0),
        lambda x, u: -u.laplacian() - 4.0,
        [pl.Dirichlet(0.0)],
        exact=lambda x: 1 - (x**2).sum(1, keepdim=True),
    )
    backend = PINNBackend(prob, pl.nn.MLP(16, 2), hard_dirichlet=True)
    r = pl.fit(
        backend,
        [(800, pl.FirstOrder(pl.Adam(5e-3)))],
        sampler=Uniform(500, 10),
        truth=prob.truth(1000, np.random.default_rng(0)),
        eval_every=800,
    )
    assert r.l2_relative_error < 1e-2


def _wave_backend(model, estimator=None):
    from pdeml.cases.wave_1d import problem

    return problem, PINNBackend(problem, model, dtype=torch.float64, estimator=estimator)


@pytest.mark.parametrize("estimator", ["taylor", "autograd"])
def test_initial_velocity_and_operator_conditions_of_the_wave_case(estimator):
    """The exact solution zeroes every term; a field with the right shape but no velocity
    (u = sin(pi x) cos(pi t)) is caught by the velocity term alone, by exactly u_t - v = -v."""
    from pdeml.cases.wave_1d import exact, velocity

    problem, backend = _wave_backend(_Scaled(exact, problem_box=((0, 0), (1, 1))), estimator)
    batch = to_torch(
        Uniform(64, 32, 48).init(problem, np.random.default_rng(0)).current(), torch.float64, "cpu"
    )
    assert torch.allclose(
        batch["velocity"]["x"][:, 1], torch.zeros(48, dtype=torch.float64)
    )  # at t = t0
    losses = backend.losses(batch)
    assert max(float(v) for v in losses.values()) < 1e-20, losses
    still = lambda x: torch.sin(np.pi * x[:, :1]) * torch.cos(np.pi * x[:, 1:2])
    _, wrong = _wave_backend(_Scaled(still, problem_box=((0, 0), (1, 1))), estimator)
    terms = wrong.residual_terms(batch)
    assert float(terms["pde"].abs().max()) < 1e-9 and float(terms["initial"].abs().max()) < 1e-12
    assert torch.allclose(terms["velocity"], -velocity(batch["velocity"]["x"]), atol=1e-12)
    # the same velocity condition stated as an operator on the initial slice
    op = pl.Operator(lambda x, u: u.dt() - velocity(x), where="initial", name="v_op")
    assert (
        op.count == "initial"
        and op.sample(problem, 8, np.random.default_rng(1), "random")["x"][:, 1].max() == 0
    )
    prob2 = pl.Problem(problem.geometry, problem.pde, [op], time=problem.time)
    be2 = PINNBackend(
        prob2,
        _Scaled(still, problem_box=((0, 0), (1, 1))),
        dtype=torch.float64,
        estimator=estimator,
    )
    b2 = {"domain": batch["domain"], "v_op": batch["velocity"]}
    assert torch.allclose(be2.residual_terms(b2)["v_op"], terms["velocity"], atol=1e-12)
    with pytest.raises(ValueError, match="order"):
        pl.Initial(0.0, order=3)
    with pytest.raises(ValueError, match="where"):
        pl.Operator(lambda x, u: u.value, where="inside")


class _Scaled(torch.nn.Module):
    """A known function as the "network": the PINN feeds inputs mapped to [-1, 1]."""

    def __init__(self, fn, problem_box):
        super().__init__()
        lo, hi = (torch.tensor(v, dtype=torch.float64) for v in problem_box)
        self.fn, self.c, self.h = fn, (lo + hi) / 2, (hi - lo) / 2
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, xn):
        return self.fn(self.c + self.h * xn) + 0 * self.dummy


@pytest.mark.parametrize(
    "make",
    [
        pl.Dirichlet,
        pl.Neumann,
        lambda v: pl.Adam(v),
        lambda v: pl.samplers.R3(10, alpha=v),
    ],
)
def test_a_number_given_as_a_string_is_an_error_that_names_it(make):
    """``Dirichlet("0")`` used to be taken as 0: a string where a number belongs is a mistake
    (a quoted value, a CLI string passed through), named with its argument."""
    with pytest.raises(TypeError, match="'0.5' is a string, not a number"):
        make("0.5")
