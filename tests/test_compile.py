"""``compile_losses``: the compiled PINN loss is the eager one, step by step, and reverse-mode
estimators stay eager with a warning instead of failing inside torch.compile."""

import pytest
import torch

import pdeml as pl
from cases._highdim import make_case
from pdeml.settings import replace
from solvers import PINNBackend


def _pair(spec, dim=6):
    case = make_case("allen_cahn", dim, 0)
    model = pl.nn.MLP(width=16, depth=2)
    make = lambda compiled: PINNBackend(case.problem, model, estimator=spec, hard_dirichlet=True, seed=0,
                                 compile_losses=compiled)
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
    assert compiled._compiled not in (None, False)       # the later steps did run compiled
    # stochastic estimator: each backend's generator starts from the same seed, so the index
    # draws agree; a compiled graph that froze or skipped a draw would change the loss far more
    assert len(set(le)) == len(le)                        # the draws do change from step to step
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
    assert build(case.replace(method=replace(case.method, compile=True)))._compiled is None  # after 1st call
    assert build(case)._compiled is False
    with pytest.raises(ValueError, match="compile"):
        replace(case.method, compile="yes")
    with pytest.raises(ValueError, match="compile_losses"):
        PINNBackend(case.problem, pl.nn.MLP(8, 2), compile_losses=1)


def test_cli_compile_flag():
    from pdeml.cli import _parser
    assert _parser().parse_args(["train", "case.py", "--compile"]).compile is True
    assert _parser().parse_args(["train", "case.py"]).compile is None   # the case's own setting
