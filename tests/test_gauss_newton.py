"""Operator preconditioning: the Gauss-Newton matrix, the kappa report, ENGD."""

import math

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml.gauss_newton import ENGD, conditioning, jacobian, residual_vector, term_jacobians
from pdeml.sampling import draw, to_torch
from pdeml.solvers import PINNBackend

D64 = torch.float64


def _poisson(n_domain=120, n_boundary=40, seed=0, width=16):
    from pdeml.cases.poisson_sin_2d import problem

    be = PINNBackend(problem, pl.nn.MLP(width=width, depth=1), seed=seed, dtype=D64)
    counts = {"domain": n_domain, "boundary": n_boundary, "initial": 1}
    batch = to_torch(draw(problem, counts, np.random.default_rng(seed), "random"), D64, "cpu")
    return be, batch


def test_gram_matrix_equals_jtj_from_autograd_jacobians():
    be, batch = _poisson()
    params = [p for p in be.parameters() if p.requires_grad]
    weights = {"dirichlet": 10.0}
    r, J = term_jacobians(be, batch, weights)
    # reference: one reverse pass per residual row of the same weighted vector
    rv = residual_vector(be, batch, weights)
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(rv[i], params, retain_graph=True)])
        for i in range(len(rv))
    ]
    J_ref = torch.stack(rows)
    assert torch.allclose(r, rv.detach(), atol=1e-14)
    assert torch.allclose(J.T @ J, J_ref.T @ J_ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(jacobian(rv, params), J_ref, atol=1e-12)  # the batched fallback
    # the loss is the squared norm of the weighted residual vector
    losses = be.losses(batch)
    assert float((r**2).sum()) == pytest.approx(
        float((losses["pde"] + 10 * losses["dirichlet"]).detach()), rel=1e-12
    )


def test_hessian_free_direction_matches_the_dense_one():
    be, batch = _poisson(60, 20, width=8)
    _, dense = ENGD(damping=1e-8).init(be, {}).direction(batch)
    _, cg = (
        ENGD(
            damping=1e-8 * float(torch.linalg.matrix_norm(term_jacobians(be, batch)[1], 2)) ** 2,
            solver="cg",
            cg_iters=500,
            cg_tol=1e-12,
        )
        .init(be, {})
        .direction(batch)
    )
    assert float((cg - dense).norm() / dense.norm()) < 1e-4


def test_kappa_report_reproduces_the_k4_law_and_jacobi_bounds_it():
    """Fourier model u = sum_k a_k sin(kx) + b_k cos(kx) on [-pi, pi], -u'' = f: the Gram matrix of
    the operator on the features has eigenvalues ~k^4 / 2, so kappa(A) ~ K^4; the diagonal
    (operator-symbol) preconditioner makes it O(1)."""
    problem = pl.Problem(
        geometry=pl.geometry.Interval(-math.pi, math.pi),
        pde=lambda x, u: -u.d2("x"),
        conditions=[pl.Dirichlet(0.0)],
    )
    x = torch.linspace(-math.pi, math.pi, 2001, dtype=D64)[1:, None]  # a periodic grid
    batch = {"domain": {"x": x}, "dirichlet": {"x": torch.tensor([[-math.pi]], dtype=D64)}}
    ks, kappas, jacobi = [4, 8, 16, 32], [], []
    for K in ks:
        model = pl.nn.MLP(1, 0, fourier=pl.nn.PeriodicFeatures((0,), K))
        rep = conditioning(PINNBackend(problem, model, seed=0, dtype=D64), batch)
        kappas.append(rep["kappa"])
        jacobi.append(rep["kappa_jacobi"])
    slope = np.polyfit(np.log(ks), np.log(kappas), 1)[0]
    assert slope == pytest.approx(4.0, abs=0.05)
    assert kappas[-1] == pytest.approx(32.0**4, rel=0.02)
    assert max(jacobi) < 1.01


def test_engd_reaches_high_accuracy_fast_and_plugs_into_fit():
    from pdeml.cases.poisson_sin_2d import case

    be = PINNBackend(case.problem, pl.nn.MLP(width=16, depth=1), seed=0, dtype=D64)
    from pdeml.samplers import Uniform

    res = pl.fit(
        be,
        [(40, pl.ENGD())],
        sampler=Uniform(300, 60, 1),
        truth=case.problem.truth(2000, np.random.default_rng(1)),
        eval_every=20,
    )
    assert res.l2_relative_error < 1e-3
    adam = PINNBackend(case.problem, pl.nn.MLP(width=16, depth=1), seed=0, dtype=D64)
    ref = pl.fit(
        adam,
        [(40, pl.FirstOrder(pl.Adam(1e-2)))],
        sampler=Uniform(300, 60, 1),
        truth=case.problem.truth(2000, np.random.default_rng(1)),
        eval_every=20,
    )
    assert res.l2_relative_error < 1e-2 * ref.l2_relative_error
    with pytest.raises(ValueError, match="solver"):
        ENGD(solver="lu")


def test_condition_command_reports_kappa_for_a_case_and_refuses_large_models(capsys):
    import json

    from pdeml import cli, run

    assert cli.main(["condition", "poisson_sin_2d", "--points", "200"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["parameters"] == 257 and rep["points"] == 200
    assert 1 < rep["kappa"] < float("inf") and 0 < rep["rank"] <= 257
    assert rep["kappa"] == pytest.approx(rep["eigenvalue_max"] / rep["eigenvalue_min"])
    with pytest.raises(ValueError, match="too many for the dense"):
        run.condition_report("poisson_sin_2d", max_parameters=100)
