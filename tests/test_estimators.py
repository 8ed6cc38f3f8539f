"""Stochastic derivative estimators: unbiased, with the variance theory predicts, over fixed
seeds."""

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml.derivatives import SDGD, STDE, Autograd, Taylor
from pdeml.solvers import PINNBackend

D = 10  # dimensions
R = 300  # independent draws
D64 = torch.float64


def backend(estimator, seed=0):
    geom = pl.geometry.Hypersphere(np.zeros(D), 1.0)
    prob = pl.Problem(geom, lambda x, u: u.laplacian(), [pl.Dirichlet(0.0)])
    return PINNBackend(
        prob, pl.nn.MLP(16, 2), estimator=estimator, hard_dirichlet=True, seed=seed, dtype=D64
    )


@pytest.fixture(scope="module")
def points():
    geom = pl.geometry.Hypersphere(np.zeros(D), 1.0)
    return torch.as_tensor(geom.sample_interior(6, np.random.default_rng(1)))


def hessian(be, x):
    x = x.clone().requires_grad_(True)
    g = torch.autograd.grad(be(x).sum(), x, create_graph=True)[0]
    return torch.stack(
        [torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0] for i in range(D)], 1
    )


def draws(be, x, op, n=R):
    out = []
    for _ in range(n):
        u = be.field(x.clone().requires_grad_(True), "pde")[0]
        out.append(op(u).detach()[:, 0])
    return torch.stack(out)  # (n, N)


def check_mean(samples, exact):
    se = samples.std(0) / len(samples) ** 0.5
    assert ((samples.mean(0) - exact).abs() <= 5 * se + 1e-12).all(), (samples.mean(0), exact, se)


@pytest.mark.parametrize("est", [SDGD(3), STDE(3), STDE(3, dense=True)], ids=repr)
def test_laplacian_estimators_are_unbiased_with_the_predicted_variance(est, points):
    be = backend(est)
    H = hessian(be, points)
    diag = torch.diagonal(H, dim1=1, dim2=2)
    exact = diag.sum(1)
    s = draws(be, points, lambda u: u.laplacian())
    check_mean(s, exact)
    B = 3
    if getattr(est, "dense", False):  # Hutchinson: 2 sum_{i != j} H_ij^2 / S
        var = 2 * (H.pow(2).sum((1, 2)) - diag.pow(2).sum(1)) / B
    else:  # without replacement: d^2/B (d-B)/(d-1) Var_i(H_ii)
        var = D**2 / B * (D - B) / (D - 1) * diag.var(1, unbiased=False)
    ratio = s.var(0) / var
    assert ((ratio > 0.7) & (ratio < 1.4)).all(), ratio
    assert not est.exact and est.unbiased_laplacian


def test_exact_estimators_agree(points):
    ref = draws(backend(Autograd()), points, lambda u: u.laplacian(), 1)
    for est in (Taylor(), STDE(D), SDGD(D)):  # B = d: every dimension, no randomness
        got = draws(backend(est), points, lambda u: u.laplacian(), 2)
        assert torch.allclose(got, ref.expand_as(got), atol=1e-10)


@pytest.mark.parametrize("est", [STDE(3), STDE(3, dense=True)], ids=repr)
def test_diffusion_operator_is_unbiased(est, points):
    torch.manual_seed(0)
    sigma = torch.randn(D, D, dtype=D64) / D**0.5
    be = backend(est)
    exact = 0.5 * (sigma @ sigma.T * hessian(be, points)).sum((1, 2))
    check_mean(draws(be, points, lambda u: u.diffusion(sigma)), exact)
    assert torch.allclose(
        draws(backend(Taylor()), points, lambda u: u.diffusion(sigma), 1)[0], exact
    )
    assert torch.allclose(
        draws(backend(Autograd()), points, lambda u: u.diffusion(sigma), 1)[0], exact
    )


def test_biharmonic_gaussian_4_jets_are_unbiased(points):
    x = points[:3]
    exact = draws(backend(Autograd()), x, lambda u: u.biharmonic(), 1)[0]
    assert torch.allclose(
        draws(backend(Taylor()), x, lambda u: u.biharmonic(), 1)[0], exact, atol=1e-9
    )
    check_mean(draws(backend(STDE(4)), x, lambda u: u.biharmonic(), 200), exact)


def test_paired_loss_has_an_unbiased_gradient(points):
    """E[2 R_J grad R_I] = grad mean(R^2) exactly; the biased R_I^2 overestimates the loss."""
    exact_be = backend(Autograd())
    batch = {"domain": {"x": points}}
    loss = exact_be.losses(batch)["pde"]
    g_exact = torch.autograd.grad(loss, list(exact_be.net.parameters()))
    g_exact = torch.cat([g.flatten() for g in g_exact])
    be = backend(STDE(2, unbiased=True))
    vals, grads = [], []
    for _ in range(R):
        val = be.losses(batch)["pde"]
        grads.append(
            torch.cat([g.flatten() for g in torch.autograd.grad(val, list(be.net.parameters()))])
        )
        vals.append(val.detach())
    vals, grads = torch.stack(vals), torch.stack(grads)
    check_mean(vals[:, None], loss.detach()[None])
    check_mean(grads, g_exact)
    be = backend(STDE(2, unbiased=False))  # E[R_I^2] = R^2 + Var > R^2: values only, 4R draws
    with torch.no_grad():  # (the bias is ~5 standard errors at R draws)
        vals = torch.stack([be.losses(batch)["pde"] for _ in range(4 * R)])
    assert vals.mean() - loss > 5 * vals.std() / (4 * R) ** 0.5


def test_estimator_specs_and_errors():
    assert repr(pl.derivatives.parse("stde:16")) == "STDE(samples=16, dense=False, unbiased=False)"
    assert pl.derivatives.parse("sdgd:4:unbiased").paired
    assert pl.derivatives.parse("stde-dense:8").dense
    with pytest.raises(ValueError, match="derivatives='nope'.*Fix"):
        pl.derivatives.parse("nope")
    with pytest.raises(ValueError, match="STDE\\(samples\\)"):
        STDE(0)


def test_stochastic_runs_resume_their_generator(points):
    a, b = backend(STDE(2), seed=3), backend(STDE(2), seed=3)
    draws(a, points, lambda u: u.laplacian(), 5)
    b.load_state_dict(a.state_dict())  # generator state travels with the weights
    assert torch.equal(
        draws(a, points, lambda u: u.laplacian(), 3), draws(b, points, lambda u: u.laplacian(), 3)
    )


@pytest.mark.parametrize("est", [Taylor(), STDE(3), STDE(3, dense=True)], ids=repr)
def test_first_and_diagonal_derivatives_beside_the_laplacian_are_exact(est, points):
    """The extra one-hot directions appended to the Laplacian's (reused where the Laplacian's
    are known, appended after random ones) give exact u_i and u_ii whatever was drawn."""
    be = backend(est)
    x = points.clone().requires_grad_(True)
    g = torch.autograd.grad(be(x).sum(), x, create_graph=True)[0]
    h = hessian(be, points)
    for _ in range(4):  # several draws of the random directions
        u = be.field(points.clone().requires_grad_(True), "pde")[0]
        lap = u.laplacian()
        for i in (0, 7):
            assert torch.allclose(u.d(i)[:, 0], g[:, i].detach(), atol=1e-12)
            assert torch.allclose(u.d2(i)[:, 0], h[:, i, i], atol=1e-10)
        if est.exact:
            assert torch.allclose(lap[:, 0], torch.diagonal(h, dim1=1, dim2=2).sum(1), atol=1e-10)


@pytest.mark.parametrize(
    "make",
    [
        lambda stack: Taylor(stack=stack),
        lambda stack: STDE(3, stack=stack),
        lambda stack: STDE(3, dense=True, stack=stack),
    ],
    ids=["taylor", "stde", "stde-dense"],
)
def test_stacked_rows_give_the_unstacked_jets(make, points, monkeypatch):
    """``stack=True`` multiplies each layer's value and per-point jet coefficients as one
    stacked matrix: the same Laplacian, first and diagonal second derivatives, diffusion term and
    parameter gradient as one product per coefficient, in float64 to 1e-12, over three draws
    of the random directions (the same stream); and no per-point coefficient is multiplied on
    its own by a hidden layer (the one-output layer keeps its dot product)."""
    from pdeml.derivatives import jets

    alone = []
    tangent = jets._tangent
    monkeypatch.setattr(  # per-point coefficients multiplied alone by a layer of several outputs
        jets,
        "_tangent",
        lambda h, w: alone.append(getattr(h, "ndim", 0) == 3 and w.shape[0] > 1) or tangent(h, w),
    )
    sigma = torch.eye(D, dtype=D64) * 0.5 + 0.1 * torch.ones(D, D, dtype=D64)
    out = {}
    for stack in (False, True):
        be, rows = backend(make(stack)), []
        alone.clear()
        for _ in range(3):
            u = be.field(points.clone().requires_grad_(True), "pde")[0]
            cols = torch.cat([u.laplacian(), u.d(0), u.d2(7), u.diffusion(sigma)], 1)
            grads = torch.autograd.grad(cols.square().sum(), list(be.net.parameters()))
            rows.append(torch.cat([cols.flatten()] + [g.flatten() for g in grads]))
        out[stack] = torch.stack(rows)
        assert (not any(alone)) == stack, (stack, alone)
    torch.testing.assert_close(out[True], out[False], rtol=1e-12, atol=1e-12)
    assert pl.derivatives.parse(_spec(make(True))) == make(True)  # --derivatives ...:stack


def _spec(est) -> str:
    """The --derivatives spelling of a stacked Taylor-mode estimator."""
    if isinstance(est, Taylor):
        return "taylor:stack"
    return f"{'stde-dense' if est.dense else 'stde'}:{est.samples}:stack"
