"""The oneDNN pass of compiled CPU graphs (pdeml.gemm): which products it rewrites, that the
rewritten graph computes what the original did, and that a compiled PINN step really runs its
products through oneDNN (and trains as the eager step does)."""

import numpy as np
import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import pdeml as pl
from pdeml import gemm

pytestmark = [
    pytest.mark.skipif(not gemm.available(), reason="needs oneDNN on an x86-64 CPU"),
    pytest.mark.filterwarnings("error:compiling the training step failed"),
]


def _products(x, w, b, acc):
    y = torch.nn.functional.linear(x, w, b)  # addmm, a row bias
    z = x @ w.T  # mm
    g = torch.addmm(acc, x.T, z)  # addmm, a 2-D added term (a gradient's sum)
    s = torch.addmm(acc, x.T, z, beta=0.5)  # scaled: not rewritten
    small = x[:20] @ w.T  # 20*40*30 multiply-adds: not rewritten
    return y, z, g, s, small, x.double() @ w.double().T  # float64: not rewritten


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_the_pass_rewrites_large_float32_products_and_computes_the_same():
    torch.manual_seed(0)
    x, w, b, acc = torch.randn(1000, 40), torch.randn(30, 40), torch.randn(30), torch.randn(40, 30)
    gm = make_fx(_products, tracing_mode="fake")(x, w, b, acc)
    aten = torch.ops.aten
    before = _targets(gm)
    assert before.count(aten.addmm.default) == 3 and before.count(aten.mm.default) == 3
    gemm.PASS(gm.graph)
    gm.recompile()
    after = _targets(gm)
    assert after.count(gemm.onednn_linear) == 3  # y, z and g
    assert (
        after.count(aten.addmm.default) == 1 and after.count(aten.mm.default) == 2
    )  # s, small, float64
    for got, want in zip(gm(x, w, b, acc), _products(x, w, b, acc)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_onednn_linear_takes_transposed_strided_and_offset_factors_and_biases():
    torch.manual_seed(1)
    a = torch.randn(300, 200)[:, ::2]  # no unit stride in either dimension after .T
    w = torch.randn(64, 300).T  # (300, 64), transposed
    for x in (a, a.T.contiguous().T):
        got = gemm.onednn_linear(x.T, w.T, None)  # (100, 300) @ (300, 64)
        torch.testing.assert_close(got, x.T @ w, rtol=1e-5, atol=1e-4)
    big, bias = torch.randn(400, 300), torch.randn(200)
    wc = w.T[:, :100].contiguous()
    for x in (big[:, :100], big[5:, 3:103], big[:50, :100].contiguous()):  # padded rows, an offset
        for b in (bias[::2][:64], bias[:1].expand(64), bias[7:71]):  # strided, expanded, offset
            for ww in (wc, w.T[:, :100]):
                torch.testing.assert_close(
                    gemm.onednn_linear(x, ww, b), x @ ww.T + b, rtol=1e-5, atol=1e-4
                )


def _lshape(compile, onednn=True):
    from pdeml.cases.poisson_lshape import VERTICES
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN

    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES), lambda x, u: -u.laplacian() - 1.0, [pl.Dirichlet(0.0)]
    )
    be = PINN(pl.nn.MLP(40, 3), sampler=Uniform(1000, 40, every=5), compile=compile).build(
        prob, seed=0
    )
    be.gemm = "onednn" if onednn else "mkl"  # forced: the test holds on any x86 CPU
    return be


def _onednn_calls(backend, steps=20):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        r = pl.fit(backend, [(steps, pl.FirstOrder(pl.Adam(3e-3)))], seed=1, eval_every=1)
    calls = sum(e.count for e in prof.key_averages() if e.key == "pdeml::onednn_linear")
    return calls, np.array([h["loss"] for h in r.history])


def test_a_compiled_step_runs_its_products_through_onednn_and_trains_as_eager():
    """1000 points, 40x3 tanh: every product of 10^6 multiply-adds or more (the hidden layers'
    value and tangents, forward and backward) goes through oneDNN; with ``onednn_gemm = False``
    none does; both train as the eager step does, to float32 round-off, over 20 steps."""
    n_on, loss_on = _onednn_calls(_lshape(True))
    n_off, loss_off = _onednn_calls(_lshape(True, onednn=False))
    _, loss_eager = _onednn_calls(_lshape(False))
    assert n_on >= 20 * 6 and n_off == 0  # >= 2 hidden layers x (forward, 2 backward)
    assert loss_eager[-1] < 0.7 * loss_eager[0]
    np.testing.assert_allclose(loss_on, loss_eager, rtol=2e-4)
    np.testing.assert_allclose(loss_off, loss_eager, rtol=2e-4)


def test_a_compiled_stde_step_at_d_200_trains_as_eager():
    """The STDE case's own step (128x4, 100 points, 16 sampled directions, Allen-Cahn at
    D = 200): its hidden layers' products all go through oneDNN, and 20 steps give the eager
    run's losses to float32 round-off (the directions are the same stream)."""
    from pdeml.families.highdim import make_case
    from pdeml.run import build
    from pdeml.settings import replace

    case = make_case("allen_cahn", 200, 0)
    out = {}
    for mode in (False, True):
        be = build(case.replace(method=replace(case.method, compile=mode, gemm="onednn")), seed=0)
        calls, out[mode] = _onednn_calls(be, steps=20)
        assert (calls >= 20 * 9) if mode else calls == 0  # 3 hidden layers x (forward, 2 backward)
    assert out[False][-1] < out[False][0]
    np.testing.assert_allclose(out[True], out[False], rtol=1e-3)


def test_auto_gives_each_product_the_library_this_machine_measured_faster(tmp_path, monkeypatch):
    """``--gemm auto``: each product goes to the library measured faster at its shape on this
    machine (oneDNN only if at least 5% faster), measured once and kept in the machine's cache
    file, so later compiles decide alike without measuring; a run's own table (a resumed run's)
    wins over the cache. ``mkl`` and ``onednn`` force it; the compile options follow."""
    import json

    from pdeml import device
    from pdeml.solvers import PINNBackend

    monkeypatch.setenv("PDEML_CACHE", str(tmp_path))
    measured = []

    def fake(sig, rounds=9):  # oneDNN faster for the 1000-row products only
        measured.append(sig)
        return {"mkl": 1.0, "onednn": 0.5 if sig.startswith("1000x") else 0.95}

    monkeypatch.setattr(gemm, "measure", fake)
    torch.manual_seed(0)
    x, w, b, acc = torch.randn(1000, 40), torch.randn(30, 40), torch.randn(30), torch.randn(40, 30)

    def rewritten(table):
        gm = make_fx(_products, tracing_mode="fake")(x, w, b, acc)
        gemm.OneDNNGemm("auto", table)(gm.graph)
        gm.recompile()
        for got, want in zip(gm(x, w, b, acc), _products(x, w, b, acc)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
        return _targets(gm).count(gemm.onednn_linear)

    table: dict = {}
    assert rewritten(table) == 2  # y and z (1000 x 40 x 30); g (40 x 1000 x 30) stays with MKL
    assert table == {"1000x40x30:NT": "onednn", "40x1000x30:TN": "mkl"}
    cached = json.loads(gemm.cache_path().read_text())
    assert {k: v["choice"] for k, v in cached["products"].items()} == table
    assert cached["cpu"] == device.cpu_model() and cached["threads"] == torch.get_num_threads()
    measured.clear()
    assert rewritten({}) == 2 and measured == []  # from the cache: nothing measured again
    assert rewritten({"1000x40x30:NT": "mkl", "40x1000x30:TN": "onednn"}) == 1  # the run's own
    monkeypatch.undo()  # the real measurement
    t = gemm.measure("64x32x16:NN", rounds=3)
    assert set(t) == {"mkl", "onednn"} and all(v > 0 for v in t.values())

    problem = pl.Problem(
        pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 1.0, [pl.Dirichlet(0.0)]
    )
    cpu = torch.device("cpu")
    for asked in ("auto", "mkl", "onednn"):
        backend = PINNBackend(problem, pl.nn.MLP(4, 1), gemm=asked)
        assert backend.resolved()["gemm"] == asked
        passes = gemm.compile_options(backend, cpu).get("options", {})
        p = passes.get("post_grad_custom_post_pass")
        if asked == "mkl":
            assert p is None
        elif asked == "onednn":
            assert p is gemm.PASS
        else:
            assert p.mode == "auto" and p.table is backend.gemm_table
    assert device.gemm("auto", torch.device("cuda"))[0] == "native"
    with pytest.raises(ValueError, match="gemm"):
        pl.PINN(gemm="blas")


def test_the_products_choices_are_checkpointed_and_kept_on_resume(tmp_path, monkeypatch):
    """The per-product choices of a run go into its checkpoint; a resumed
    run takes them, so it does the arithmetic it started with on another machine; run.json
    records the mode and where the measurements live; a forced --gemm is kept on --resume."""
    import json

    from pdeml.cli import main
    from pdeml.solvers import PINNBackend

    monkeypatch.setenv("PDEML_CACHE", str(tmp_path / "cache"))
    problem = pl.Problem(
        pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 1.0, [pl.Dirichlet(0.0)]
    )
    sampler = pl.samplers.Uniform(32, 2)
    first = PINNBackend(problem, pl.nn.MLP(8, 2), seed=0)
    first.gemm_table.update({"1200x50x50:NN": "onednn", "50x1200x50:TN": "mkl"})
    ckpt = tmp_path / "checkpoint.pt"
    pl.fit(first, [(4, pl.FirstOrder())], sampler=sampler, checkpoint=ckpt)
    again = PINNBackend(problem, pl.nn.MLP(8, 2), seed=0)
    pl.fit(again, [(6, pl.FirstOrder())], sampler=sampler, checkpoint=ckpt, resume=True)
    assert again.gemm_table == first.gemm_table

    out = tmp_path / "run"
    args = ["train", "poisson_sin_2d", "--out", str(out), "--no-progress", "--lbfgs-steps", "0"]
    info = lambda: json.loads((out / "run.json").read_text())["resolved"]
    assert main([*args, "--steps", "2", "--gemm", "mkl"]) == 0 and info()["gemm"] == "mkl"
    assert main([*args, "--steps", "4", "--resume"]) == 0 and info()["gemm"] == "mkl"
    fresh = tmp_path / "fresh"
    assert main(["train", "poisson_sin_2d", "--out", str(fresh), *args[4:], "--steps", "2"]) == 0
    resolved = json.loads((fresh / "run.json").read_text())["resolved"]
    assert resolved["gemm"] == "auto" and str(tmp_path / "cache") in resolved["gemm_reason"]
