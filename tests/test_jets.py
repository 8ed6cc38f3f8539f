"""Taylor-mode jet rules against nested reverse-mode autograd (float64)."""

import math

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml.derivatives import jets as J
from pdeml.nn import MLP, FourierFeatures, PeriodicFeatures
from pdeml.solvers import PINNBackend

D64 = torch.float64


def curve_derivatives(f, x, vs):
    """d^k/dt^k f(x + sum_j v_j t^j / j!) at t = 0, k = 0..K, by nested autograd (one output)."""
    t = torch.zeros(x.shape[0], 1, dtype=x.dtype, requires_grad=True)
    xt = x + sum(v * t ** (j + 1) / math.factorial(j + 1) for j, v in enumerate(vs))
    y = f(xt)
    out = [y]
    for _ in vs:
        (y,) = torch.autograd.grad(y.sum(), t, create_graph=True)
        out.append(y)
    return out


def rel(a, b):
    return float((a - b).detach().abs().max() / (1 + b.detach().abs().max()))


@pytest.mark.parametrize("act", ["tanh", "sin", "silu", "gelu"])
@pytest.mark.parametrize("fourier", [None, "random", "periodic"])
def test_jet_rules_match_autograd_orders_1_to_4(act, fourier):
    torch.manual_seed(0)
    emb = {None: None, "random": FourierFeatures(6, 0.5), "periodic": PeriodicFeatures((0, 2), 2)}[
        fourier
    ]
    net = MLP(12, 3, act, fourier=emb).bind(3, 1).double()
    N, S, d, K = 4, 3, 3, 4
    x = torch.randn(N, d, dtype=D64)
    V = [torch.randn(N, S, d, dtype=D64) for _ in range(K)]
    jet = net.jet(J.Jet([x] + V))
    for s in range(S):
        ref = curve_derivatives(net, x, [v[:, s] for v in V])
        for k in range(K + 1):
            got = jet.c[0] if k == 0 else jet.c[k][:, s]
            assert rel(got, ref[k]) < 1e-10, (k, s)
    # collapsed top coefficient = the weighted sum of the separate ones
    w = torch.randn(S, dtype=D64)
    top = (w[None, :, None] * V[-1]).sum(1)
    jc = net.jet(J.Jet([x] + V[:-1] + [top], w))
    assert rel(jc.c[K], (w[None, :, None] * jet.c[K]).sum(1)) < 1e-12
    # the nested-jvp fallback agrees with the rules, collapsed or not
    assert max(rel(a, b) for a, b in zip(J.function_jet(net, [J.Jet([x] + V)]).c, jet.c)) < 1e-12
    assert rel(J.function_jet(net, [J.Jet([x] + V[:-1] + [top], w)]).c[K], jc.c[K]) < 1e-12


def test_periodic_features_make_the_network_exactly_periodic():
    torch.manual_seed(3)
    net = MLP(16, 2, fourier=PeriodicFeatures((0,), 3)).bind(2, 1).double()
    x = torch.rand(50, 2, dtype=D64) * 2 - 1
    shift = torch.tensor([2.0, 0.0], dtype=D64)
    assert float((net(x) - net(x + shift)).abs().max()) < 1e-13  # period 2 in x ...
    assert float((net(x) - net(x + shift.flip(0))).abs().max()) > 1e-3  # ... not in t
    with pytest.raises(ValueError, match="PeriodicFeatures"):
        PeriodicFeatures((5,)).bind(2)


def test_one_hot_tangents_are_column_lookups():
    torch.manual_seed(1)
    net = MLP(8, 2).bind(5, 1).double()
    x = torch.randn(6, 5, dtype=D64)
    oh = J.OneHot(torch.tensor([4, 0]), torch.tensor([2.0, -1.0], dtype=D64))
    a = net.jet(J.Jet([x, oh, None]))
    b = net.jet(J.Jet([x, oh.dense(5, D64, "cpu").expand(6, 2, 5), None]))
    assert all(torch.allclose(p, q, atol=1e-14) for p, q in zip(a.c, b.c))
    first = J.linear(J.Jet([x, oh]), net.layers[0].weight, net.layers[0].bias)
    assert first.c[1].shape == (2, 8)  # shared by all points: no N x d x S tensor


def test_tanh_fast_path_matches_generic_rule():
    torch.manual_seed(2)
    h = [
        torch.randn(5, 7, dtype=D64),
        torch.randn(5, 3, 7, dtype=D64),
        torch.randn(5, 7, dtype=D64),
    ]
    for w in (J.Prefix(2, 1.5), torch.tensor([1.5, 1.5, 0.0], dtype=D64)):
        fast = J.elementwise(J.Jet(h, w), J.tanh_derivatives)
        slow = J.elementwise(J.Jet(h, w), lambda z, K: J.tanh_derivatives(z, 4)[: K + 1])
        assert all(rel(a, b) < 1e-14 for a, b in zip(fast.c, slow.c))


def test_seventh_order_jet_gives_a_mixed_third_derivative():
    # d^3u/dx_i^2 dx_j = d^7 u(x, 0, e_i, e_j, 0, 0, 0, 0)_(7) / 105   (STDE, mixed partials)
    torch.manual_seed(3)
    net = MLP(10, 2).bind(3, 1).double()
    x = torch.randn(3, 3, dtype=D64, requires_grad=True)
    i, j = 0, 2
    e = torch.eye(3, dtype=D64)
    c = [x] + [None] * 7
    c[2], c[3] = e[i].expand(3, 1, 3), e[j].expand(3, 1, 3)
    got = net.jet(J.Jet(c)).c[7][:, 0] / 105
    g = torch.autograd.grad(net(x).sum(), x, create_graph=True)[0][:, i]
    g = torch.autograd.grad(g.sum(), x, create_graph=True)[0][:, i]
    ref = torch.autograd.grad(g.sum(), x)[0][:, j : j + 1]
    assert rel(got, ref) < 1e-10


@pytest.mark.parametrize(
    "geometry",
    [
        pl.geometry.Hypersphere([0.1, 0.0, -0.2], 1.3),
        pl.geometry.Polygon([[0, 0], [2, 0], [1, 1], [0, 1]]),
        pl.geometry.Interval(-0.5, 2.0),
        pl.geometry.Rectangle([0, -1], [2, 0.5]),
        pl.geometry.Cuboid([0, 0, -1], [1, 2, 0.5]),
    ],
    ids=lambda g: type(g).__name__,
)
def test_hard_constraint_jets_match_autograd(geometry):
    d = geometry.dim
    prob = pl.Problem(geometry, lambda x, u: u.laplacian(), [pl.Dirichlet(lambda x: x[:, :1] ** 2)])
    be = PINNBackend(prob, MLP(8, 2), hard_dirichlet=True, dtype=D64, seed=4)
    x = torch.as_tensor(geometry.sample_interior(5, np.random.default_rng(0)))
    V = [torch.randn(5, 2, d, dtype=D64) for _ in range(2)]
    with J.fallbacks_taken() as fallbacks:
        jet = be.jet(x, V)
    if not isinstance(geometry, pl.geometry.Polygon):  # balls and boxes: exact rules
        assert not [f for f in fallbacks if "smooth_distance" in f]
        assert fallbacks  # the callable boundary value's fallback was noted: the list is live
    for s in range(2):
        ref = curve_derivatives(be, x, [v[:, s] for v in V])
        for k in (1, 2):
            assert rel(jet.c[k][:, s], ref[k]) < 1e-10


@pytest.mark.parametrize(
    "geometry",
    [pl.geometry.Rectangle([0, -1], [2, 0.5]), pl.geometry.Cuboid([0, 0, -1], [1, 2, 0.5])],
    ids=lambda g: type(g).__name__,
)
def test_box_hard_constraint_laplacian_by_one_hot_jets_is_exact(geometry):
    """Taylor mode's unit directions are one-hot lookups: the box's jet rule takes them as
    they come, and the Laplacian is autograd's."""
    prob = pl.Problem(geometry, lambda x, u: u.laplacian(), [pl.Dirichlet(0.3)])
    taylor, auto = (
        PINNBackend(prob, MLP(8, 2), hard_dirichlet=True, dtype=D64, seed=4, estimator=e)
        for e in (pl.derivatives.Taylor(), pl.derivatives.Autograd())
    )
    x = torch.as_tensor(geometry.sample_interior(6, np.random.default_rng(1))).requires_grad_(True)
    with J.fallbacks_taken() as fallbacks:
        got = taylor.pde_residuals(x)[0]
    assert fallbacks == []
    assert rel(got, auto.pde_residuals(x)[0]) < 1e-10


def test_output_transform_falls_back_to_jvp_with_a_warning():
    prob = pl.Problem(pl.geometry.Interval(-1, 1), lambda x, u: u.laplacian(), [pl.Dirichlet(0.0)])
    be = PINNBackend(prob, MLP(8, 2), transform=lambda x, y: (1 - x**2) * y + x, dtype=D64)
    assert isinstance(
        be.estimator.settings, pl.derivatives.Autograd
    )  # no jet rule: default is autograd
    J._WARNED.discard("OutputTransform")
    x = torch.linspace(-0.9, 0.9, 7, dtype=D64)[:, None]
    with pytest.warns(UserWarning, match="OutputTransform has no Taylor-mode jet rule"):
        jet = be.jet(x, [torch.ones(7, 1, 1, dtype=D64), None])
    ref = curve_derivatives(be, x, [torch.ones(7, 1, dtype=D64), torch.zeros(7, 1, dtype=D64)])
    assert rel(jet.c[2][:, 0], ref[2]) < 1e-10
