"""High-dimensional cases: closed-form forcing against autograd, ansatz jets, case options."""

import json

import numpy as np
import pytest
import torch

import pdeml.run as R
from pdeml import cli
from pdeml.derivatives import jets as J
from pdeml.families.highdim import NONLINEAR, coefficients, two_body

D64 = torch.float64


def autograd_laplacian(u, x):
    g = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    return sum(
        torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0][:, i : i + 1]
        for i in range(x.shape[1])
    )


def test_two_body_laplacian_is_exact():
    x = (
        torch.rand(8, 7, dtype=D64, generator=torch.Generator().manual_seed(0)) - 0.5
    ).requires_grad_(True)
    u, lap = two_body(x, coefficients(7, 3))
    assert torch.allclose(autograd_laplacian(u, x), lap, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kind", sorted(NONLINEAR))
def test_highdim_case_residual_vanishes_on_the_exact_solution(kind):
    case, _ = R.load_case(f"{kind}_highdim", {"dim": "6", "case_seed": "2"})
    assert case.options == {"dim": 6, "case_seed": 2}
    p = case.problem
    x = torch.as_tensor(p.domain.sample_interior(16, np.random.default_rng(0))).requires_grad_(True)
    from pdeml.derivatives import Autograd
    from pdeml.field import Field

    u = Field(
        x,
        p.exact(x),
        estimator=Autograd(),
        input_names=p.inputs,
        output_names=p.outputs,
        spatial_dims=p.spatial_dims,
    )
    assert p.pde(x, u[0]).abs().max() < 1e-10


def test_biharmonic_forcing_and_normal_derivative_are_exact():
    from pdeml.cases.biharmonic_annulus import coefficients as three_body_coefficients
    from pdeml.cases.biharmonic_annulus import exact_and_forcing, make

    case = make(dim=5)
    p = case.problem
    c = three_body_coefficients(5, 0)
    x = torch.as_tensor(p.domain.sample_interior(6, np.random.default_rng(0))).requires_grad_(True)
    u = p.exact(x)
    assert torch.allclose(
        autograd_laplacian(autograd_laplacian(u, x), x),
        exact_and_forcing(x, c)[1],
        rtol=1e-10,
        atol=1e-9,
    )
    cond = p.conditions[0]
    xb = torch.as_tensor(p.domain.sample_boundary(10, np.random.default_rng(1))).requires_grad_(
        True
    )
    n = torch.as_tensor(p.domain.boundary_normal(xb.detach().numpy()))
    dn = (torch.autograd.grad(p.exact(xb).sum(), xb)[0] * n).sum(1, keepdim=True)
    assert torch.allclose(
        cond.value(xb), dn, rtol=1e-6
    )  # deepxde puts points on the spheres to ~1e-8


@pytest.mark.parametrize("module", ["heat_semilinear_highdim", "biharmonic_annulus"])
def test_case_ansatz_jets_match_the_nested_jvp_rule(module):
    import importlib

    ansatz = importlib.import_module(f"pdeml.cases.{module}").case.method.transform
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, dtype=D64, generator=g)
    y = torch.randn(4, 1, dtype=D64, generator=g)
    V = [torch.randn(4, 3, 6, dtype=D64, generator=g) for _ in range(4)]
    W = [torch.randn(4, 3, 1, dtype=D64, generator=g) for _ in range(4)]
    a = ansatz.jet(J.Jet([x] + V), J.Jet([y] + W))
    b = J.function_jet(ansatz, [J.Jet([x] + V), J.Jet([y] + W)])
    assert all(torch.allclose(p, q, atol=1e-10) for p, q in zip(a.c, b.c))


def test_terminal_condition_holds_exactly():
    from pdeml.cases.heat_semilinear_highdim import T, TerminalAnsatz, terminal

    x = torch.randn(5, 4, dtype=D64)
    x[:, -1] = T
    assert torch.allclose(
        TerminalAnsatz()(x, torch.randn(5, 1, dtype=D64)),
        terminal(x[:, :-1].pow(2).sum(1, keepdim=True)),
    )


def test_cli_passes_case_options_and_estimator(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(
        [
            "train",
            "allen_cahn_highdim",
            "--dim",
            "5",
            "--steps",
            "20",
            "--out",
            str(out),
            "--derivatives",
            "stde:2",
            "--no-progress",
        ]
    )
    assert rc == 0
    info = json.loads((out / "run.json").read_text())
    assert info["case_options"] == {"dim": "5"} and info["options"]["dim"] == 5
    assert info["overrides"]["derivatives"] == "stde:2"
    assert info["resolved"]["estimator"].startswith("STDE(samples=2,")  # what ran
    assert json.loads((out / "metrics.json").read_text())["l2_relative_error"] is not None
    assert (out / "solution.vtu").exists()  # a 2-D slice of the 5-D ball
    R.export_run(out, resolution=16, overwrite=True)  # rebuilt with the same options


@pytest.mark.parametrize(
    "argv, message",
    [
        (["heat_1d", "--dim", "3"], "takes none"),
        (["allen_cahn_highdim", "--dimm", "3"], "is not an option"),
        (["allen_cahn_highdim", "--dim", "many"], "is not a valid int"),
        (["allen_cahn_highdim", "--dim"], "has no value"),
        (["allen_cahn_highdim", "--derivatives", "stde:x"], "not an integer"),
    ],
)
def test_bad_case_options_are_clear_errors(argv, message, tmp_path, capsys):
    rc = cli.main(["train", *argv, "--steps", "1", "--out", str(tmp_path / "r"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Fix" in err
