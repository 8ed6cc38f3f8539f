"""Derivatives behind Field match closed forms and finite differences."""

import pytest
import torch

import pdeml as pl
from pdeml.solvers import PINNBackend


def make_field(x, fn, inputs=("x", "y", "t"), outputs=("u",)):
    return pl.Field(
        x,
        fn(x),
        estimator=pl.derivatives.Autograd(),
        input_names=inputs,
        output_names=outputs,
        spatial_dims=(0, 1),
    )


def test_closed_forms_float64():
    x = torch.rand(64, 3, dtype=torch.float64, requires_grad=True)
    f = lambda z: (torch.sin(z[:, 0]) * torch.exp(2 * z[:, 1]) * z[:, 2] ** 2)[:, None]
    u = make_field(x, f)
    a, b, t = x[:, 0:1].detach(), x[:, 1:2].detach(), x[:, 2:3].detach()
    s, c, e = torch.sin(a), torch.cos(a), torch.exp(2 * b)
    torch.testing.assert_close(u.d("x"), c * e * t**2)
    torch.testing.assert_close(u.d(1), 2 * s * e * t**2)
    torch.testing.assert_close(u.dt(), 2 * s * e * t)
    torch.testing.assert_close(
        u.grad(), torch.cat([c * e * t**2, 2 * s * e * t**2, 2 * s * e * t], 1)
    )
    torch.testing.assert_close(u.d2("x", "x"), -s * e * t**2)
    torch.testing.assert_close(u.d2(0, 1), 2 * c * e * t**2)
    torch.testing.assert_close(u.d2(1, 0), 2 * c * e * t**2)
    torch.testing.assert_close(u.d2("t"), 2 * s * e)
    # the Laplacian is over the spatial inputs only (x, y), not t
    torch.testing.assert_close(u.laplacian(), (-s * e + 4 * s * e) * t**2)


def test_hessian_rows_are_shared():
    x = torch.rand(8, 3, dtype=torch.float64, requires_grad=True)
    u = make_field(x, lambda z: (z**3).sum(1, keepdim=True))
    u.d2(0, 1)
    u.laplacian()
    rows = sorted(k for k in u._cache if k[0] == "hrow")
    assert rows == [("hrow", 0, 0), ("hrow", 0, 1)]  # d2(0,1) reused row 0; laplacian added row 1
    u.d2(1, 0)
    assert len([k for k in u._cache if k[0] == "hrow"]) == 2


def test_multi_output_selection_and_errors():
    x = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    u = make_field(
        x, lambda z: torch.stack([z[:, 0] * z[:, 1], z[:, 2] ** 2], 1), outputs=("u", "p")
    )
    torch.testing.assert_close(u["p"].dt(), 2 * x[:, 2:3].detach())
    torch.testing.assert_close(u[0].d("y"), x[:, 0:1].detach())
    assert u.value.shape == (5, 2)
    with pytest.raises(ValueError, match="select it first"):
        u.grad()
    with pytest.raises(KeyError, match="not one of the problem's outputs"):
        u["q"]
    with pytest.raises(KeyError, match="input 'z'"):
        u[0].d("z")


def test_network_derivatives_match_finite_differences():
    torch.manual_seed(0)
    prob = pl.Problem(
        pl.geometry.Rectangle([0, 0], [1, 2]), lambda x, u: u.laplacian(), time=(0, 1)
    )
    net = PINNBackend(prob, pl.nn.MLP(16, 2), dtype=torch.float64)
    x = torch.rand(20, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 1.0])
    u = net.field(x.clone().requires_grad_(True))
    h = 1e-4

    def f(z):
        with torch.no_grad():
            return net(z)

    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = h
        fd1 = (f(x + e) - f(x - e)) / (2 * h)
        torch.testing.assert_close(u.d(i), fd1, rtol=1e-6, atol=1e-7)
        fd2 = (f(x + e) - 2 * f(x) + f(x - e)) / h**2
        torch.testing.assert_close(u.d2(i, i), fd2, rtol=1e-3, atol=1e-4)
    lap = sum(
        (f(x + e) - 2 * f(x) + f(x - e)) / h**2
        for e in (
            torch.tensor([h, 0, 0], dtype=torch.float64),
            torch.tensor([0, h, 0], dtype=torch.float64),
        )
    )
    torch.testing.assert_close(u.laplacian(), lap, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(u.dt(), u.d(2))


def test_dt_without_time_is_a_clear_error():
    x = torch.rand(4, 2, requires_grad=True)
    u = pl.Field(
        x,
        x.sum(1, keepdim=True),
        estimator=pl.derivatives.Autograd(),
        input_names=("x", "y"),
        output_names=("u",),
        spatial_dims=(0, 1),
    )
    with pytest.raises(ValueError, match="time"):
        u.dt()
