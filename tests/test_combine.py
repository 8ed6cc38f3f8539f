"""Gradient combiners: ConFIG against the authors' package, PCGrad, M-ConFIG, grad-norm weights."""

import json

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml.combine import config_direction, pcgrad_direction, set_gradient, term_gradients


def _conflicting(m, P, seed):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(m, P, generator=g)
    G[1] = -0.8 * G[0] + 0.3 * torch.randn(P, generator=g)  # a strong conflict
    return G


@pytest.mark.parametrize("m, seed", [(2, 0), (3, 1), (4, 2)])
def test_config_matches_conflictfree_and_descends_every_term(m, seed):
    from conflictfree.grad_operator import ConFIG_update

    G = _conflicting(m, 50, seed)  # float32: conflictfree 0.1.8 fails on float64
    ours = config_direction(G)
    ref = ConFIG_update([g for g in G])
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5)
    assert bool((G @ ours > 0).all())  # every term decreases to first order
    units = G / G.norm(dim=1, keepdim=True)
    cos = units @ (ours / ours.norm())
    assert torch.allclose(cos, cos.mean().expand_as(cos), atol=1e-5)  # equal angles to all terms


def test_pcgrad_removes_conflicts():
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    d = pcgrad_direction(G, [0, 1])
    # g1 loses its part along g2 and vice versa: [0.5, 0.5] + [0, 1]
    assert torch.allclose(d, torch.tensor([0.5, 1.5], dtype=torch.float64))
    for seed in range(5):  # two terms: the result descends both
        G = _conflicting(2, 40, seed).double()
        assert float(G[0] @ G[1]) < 0  # they do conflict
        assert bool((G @ pcgrad_direction(G) >= -1e-12).all())
    agree = torch.tensor([[1.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(pcgrad_direction(agree), agree.sum(0))  # no conflict: the plain sum


def _losses(x):
    w = x.sum() * 0 + x  # two quadratic terms pulling x apart
    return {"a": ((w - 1.0) ** 2).sum(), "b": ((w + 2.0) ** 2 * torch.tensor([1.0, 10.0])).sum()}


def test_term_gradients_and_set_gradient_round_trip():
    x = torch.tensor([0.5, -0.5], requires_grad=True)
    G = term_gradients(_losses(x), [x])
    assert torch.allclose(G, torch.tensor([[-1.0, -3.0], [5.0, 30.0]]))
    set_gradient([x], G[1])
    assert torch.allclose(x.grad, G[1])


def test_mconfig_backpropagates_one_term_per_step_in_turn():
    x = torch.tensor([0.5, -0.5], requires_grad=True)
    comb = pl.MConFIG().init(["a", "b"])
    seen = []
    for step in range(5):
        losses = _losses(x)
        for name, v in losses.items():
            v.register_hook(lambda g, name=name: seen.append(name))
        comb.backward(losses, [x])
        if step == 0:
            assert torch.equal(x.grad, torch.zeros(2))  # waits until both were seen
    assert seen == ["a", "b", "a", "b", "a"]
    assert int(comb.state["seen"][0]) == 3 and int(comb.state["seen"][1]) == 2
    state = comb.state_dict()
    other = pl.MConFIG().init(["a", "b"])
    other.load_state_dict(state)
    assert torch.equal(other.state["m"], comb.state["m"])


def test_gradnorm_weights_equalize_the_weighted_gradient_norms():
    x = torch.tensor([0.5, -0.5], requires_grad=True)
    comb = pl.GradNorm(alpha=0.0).init(["a", "b"])
    comb.backward(_losses(x), [x])
    G = term_gradients(_losses(x), [x])
    weighted = comb.weights[:, None] * G
    assert torch.allclose(weighted.norm(dim=1), weighted.norm(dim=1)[0].expand(2))
    assert torch.allclose(x.grad, weighted.sum(0))


@pytest.mark.parametrize("name", ["config", "mconfig", "pcgrad", "gradnorm"])
def test_cli_combiners_train_and_resume(tmp_path, name):
    from pdeml import cli

    out = tmp_path / "run"
    args = [
        "train",
        "heat_1d",
        "--steps",
        "40",
        "--lbfgs-steps",
        "0",
        "--combiner",
        name,
        "--out",
        str(out),
        "--no-progress",
    ]
    assert cli.main(args) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["steps"] == 40 and np.isfinite(first["final_losses"]["pde"])
    assert json.loads((out / "run.json").read_text())["overrides"]["combiner"] == name
    assert (
        cli.main(
            [
                "train",
                "heat_1d",
                "--steps",
                "60",
                "--lbfgs-steps",
                "0",
                "--combiner",
                name,
                "--out",
                str(out),
                "--no-progress",
                "--resume",
            ]
        )
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["steps"] == 60
    with pytest.raises(ValueError, match="combiner='nope'"):
        pl.combine.make_combiner("nope")
