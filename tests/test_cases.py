"""The cases' own truths are right: references converge, manufactured forcings match autograd."""

import numpy as np
import torch

import pdeml as pl


def test_burgers_cole_hopf_quadrature_has_converged():
    from pdeml.cases.burgers_1d import cole_hopf

    x = np.array([-0.5, -0.01, 0.01, 0.3, 0.9, -0.001])
    t = np.array([0.25, 1.0, 1.0, 0.75, 0.1, 1.0])
    a, b = cole_hopf(x, t), cole_hopf(x, t, nodes=16000, width=30.0)
    assert np.abs(a - b).max() < 1e-8
    assert np.all(np.abs(a) <= 1)  # maximum principle
    np.testing.assert_allclose(cole_hopf(x, 0 * t), -np.sin(np.pi * x))


def test_lshape_fd_reference_converges_at_second_order_away_from_the_corner():
    from pdeml.cases.poisson_lshape import fd_reference

    p1, u1 = fd_reference(64)
    p2, u2 = fd_reference(128)
    p4, u4 = fd_reference(256)
    probe = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5]])
    pick = lambda p, u: np.array([u[np.argmin(((p - q) ** 2).sum(1)), 0] for q in probe])
    e1, e2 = np.abs(pick(p1, u1) - pick(p4, u4)), np.abs(pick(p2, u2) - pick(p4, u4))
    assert np.all(e2 < e1 / 2.5) and e2.max() < 1e-3


def test_manufactured_3d_forcing_and_flux_match_autograd():
    from pdeml.cases import poisson_manufactured_3d as c

    x = torch.rand(50, 3, dtype=torch.float64, requires_grad=True)
    u = c.exact(x)
    g = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    lap = sum(torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(3))
    f = 3 * np.pi**2 * torch.sin(np.pi * x).prod(1)
    torch.testing.assert_close(-lap, f)
    torch.testing.assert_close(c.exact_grad(x), g)


def test_exact_solutions_solve_their_pdes():
    from pdeml.cases import heat_1d, inverse_diffusion

    for mod, pde in ((heat_1d, heat_1d.pde), (inverse_diffusion, None)):
        x = torch.rand(40, 2, dtype=torch.float64, requires_grad=True)
        u = pl.Field(
            x,
            mod.exact(x),
            estimator=pl.derivatives.Autograd(),
            input_names=("x", "t"),
            output_names=("u",),
            spatial_dims=(0,),
        )
        r = (
            pde(x, u)
            if pde
            else inverse_diffusion.pde(x, u, {"kappa": inverse_diffusion.KAPPA_TRUE})
        )
        assert r.abs().max() < 1e-10


def test_peak_2d_forcing_is_minus_the_laplacian_of_the_exact_solution():
    from pdeml.cases.peak_2d import make

    case = make(alpha=50.0)  # a milder peak: residual ~ 1e-10 * |f| in float64
    x = (torch.rand(60, 2, dtype=torch.float64) * 0.6 - 0.3).requires_grad_(True)
    u = pl.Field(
        x,
        case.problem.exact(x),
        estimator=pl.derivatives.Autograd(),
        input_names=("x", "y"),
        output_names=("u",),
        spatial_dims=(0, 1),
    )
    assert case.problem.pde(x, u).abs().max() < 1e-10


def test_allen_cahn_etdrk4_reference_has_converged_in_time():
    """Halving dt changes the ETDRK4 solution by far less than 1e-6 (fourth order: ~1e-11)."""
    from pdeml.cases.allen_cahn_1d import etdrk4

    x, t, u = etdrk4()
    _, _, half = etdrk4(dt=5e-4)
    assert u.shape == (201, 512) and t[-1] == 1.0
    assert np.allclose(u[0], x**2 * np.cos(np.pi * x), atol=1e-14)
    assert np.abs(u - half).max() < 1e-9
    assert np.abs(u[-1]).max() > 0.99  # the interfaces have formed (u near +-1)
    _, _, coarse = etdrk4(dt=1e-2, snapshots=101)
    assert np.abs(coarse[-1] - u[-1]).max() > 1e-9  # ... and dt matters at all


def test_allen_cahn_model_is_exactly_periodic_and_uses_taylor_mode():
    from pdeml.cases.allen_cahn_1d import case
    from pdeml.solvers import PINNBackend

    kw = dict(seed=0, dtype=torch.float64)
    taylor = PINNBackend(case.problem, case.method.model, **kw)
    auto = PINNBackend(case.problem, case.method.model, estimator=pl.derivatives.Autograd(), **kw)
    assert type(taylor.estimator.settings).__name__ == "Taylor"
    x = torch.rand(40, 2, dtype=torch.float64) * torch.tensor([2.0, 1.0]) - torch.tensor([1.0, 0.0])
    x.requires_grad_(True)
    assert float((taylor.pde_residuals(x)[0] - auto.pde_residuals(x)[0]).abs().max()) < 1e-11
    t = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None]
    left, right = torch.cat([-torch.ones_like(t), t], 1), torch.cat([torch.ones_like(t), t], 1)
    assert torch.allclose(taylor(left), taylor(right), atol=1e-12)


def test_kovasznay_exact_solution_solves_navier_stokes():
    from pdeml.cases.kovasznay_2d import exact, problem

    x = (torch.rand(50, 2, dtype=torch.float64) * torch.tensor([1.5, 2.0]) - 0.5).requires_grad_(
        True
    )
    u = pl.Field(
        x,
        exact(x),
        estimator=pl.derivatives.Autograd(),
        input_names=("x", "y"),
        output_names=("u", "v", "p"),
        spatial_dims=(0, 1),
    )
    assert max(float(r.detach().abs().max()) for r in problem.pde(x, u)) < 1e-12


def test_kovasznay_boundary_values_are_each_components_own():
    from pdeml.cases.kovasznay_2d import exact, problem

    x = torch.tensor([[-0.5, 0.3], [1.0, -0.5]], dtype=torch.float64)
    for i, cond in enumerate(problem.conditions):
        assert torch.allclose(cond.value(x), exact(x)[:, i : i + 1])
