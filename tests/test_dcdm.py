"""DCDM: matrices, the conjugate-direction iteration, the loss, training data, network, CLI."""

import json

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from pdeml import cli
from pdeml.export.image import read_image_data, write_image_data
from pdeml.solvers import dcdm
from pdeml.solvers.dcdm.cli import rhs


@pytest.fixture(scope="module")
def layout():
    return dcdm.obstacles(24, 2, count=4, seed=3)


@pytest.mark.parametrize("shape", [(12, 9), (7, 6, 5)])
def test_matrix_free_operator_equals_the_assembled_spd_matrix(shape):
    fluid = dcdm.wall_connected(np.random.default_rng(0).random(shape) > 0.25)
    A = dcdm.assemble(fluid)
    assert abs(A - A.T).max() == 0
    assert spla.eigsh(A, k=1, which="SA")[0][0] > 0  # SPD on the fluid cells
    x = np.random.default_rng(1).standard_normal(fluid.sum())
    y = dcdm.GridPoisson(fluid)(torch.as_tensor(dcdm.prolong(fluid, x))[None])[0].numpy()
    assert np.allclose(dcdm.restrict(fluid, y), A @ x, atol=1e-12)
    assert np.all(y[~fluid] == 0)


def test_enclosed_fluid_is_a_clear_error():
    fluid = np.ones((8, 8), bool)
    fluid[2:5, 2:5] = False
    fluid[3, 3] = True  # a fluid cell walled in by solid
    with pytest.raises(ValueError, match="enclosed by solid cells.*Fix"):
        dcdm.assemble(fluid)


@pytest.mark.parametrize("kind", ["noise", "bump", "point"])
def test_identity_network_is_a_converging_conjugate_direction_method(layout, kind):
    A = dcdm.GridPoisson(layout)
    b = rhs(kind, layout)
    res = dcdm.solve(A, b, None, tol=1e-10, maxiter=2000, keep_directions=True)
    assert res.converged and res.residuals[-1] <= 1e-10
    ref = spla.spsolve(dcdm.assemble(layout).tocsc(), dcdm.restrict(layout, b))
    assert np.allclose(dcdm.restrict(layout, res.x.numpy()), ref, rtol=1e-8, atol=1e-10)
    # CG's iteration count (scipy) is matched: with q = r this is CG in exact arithmetic
    count = []
    spla.cg(
        dcdm.assemble(layout),
        dcdm.restrict(layout, b),
        rtol=1e-10,
        maxiter=2000,
        callback=lambda _: count.append(1),
    )
    assert abs(res.iterations - len(count)) <= max(3, 0.05 * len(count))
    # A-orthogonality of successive directions (k = 2)
    P = torch.stack(res.directions).reshape(len(res.directions), -1)
    AP = A(torch.stack(res.directions)).reshape(P.shape)
    G = (P @ AP.T).numpy()
    norm = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    for lag in (1, 2):
        assert np.max(np.abs(np.diag(G, lag)) / np.diag(norm, lag)) < 1e-10


class Fixed(torch.nn.Module):
    def __init__(self, q):
        super().__init__()
        self.q = q

    def forward(self, r, fluid):
        return self.q


def test_loss_is_the_residual_after_an_exact_line_search_and_scale_invariant(layout):
    A = dcdm.GridPoisson(layout)
    b = torch.as_tensor(dcdm.training_rhs(layout, 3, ritz=40))
    As = dcdm.assemble(layout).tocsc()
    exact = torch.as_tensor(
        dcdm.prolong(
            layout, np.stack([spla.spsolve(As, dcdm.restrict(layout, v.numpy())) for v in b])
        )
    )
    assert float(dcdm.loss(Fixed(exact), A, b)) < 1e-20
    q = torch.as_tensor(np.random.default_rng(0).standard_normal(b.shape)) * torch.as_tensor(layout)
    alpha = (q * b).flatten(1).sum(1) / (q * A(q)).flatten(1).sum(1)
    manual = (b - alpha[:, None, None] * A(q)).pow(2).flatten(1).sum(1).mean()
    assert torch.allclose(dcdm.loss(Fixed(q), A, b), manual)
    assert torch.allclose(dcdm.loss(Fixed(-7.5 * q), A, b), manual)


def test_training_rhs_are_unit_fluid_vectors_weighted_to_the_low_spectrum(layout):
    b = dcdm.training_rhs(layout, 200, ritz=60, seed=1)
    assert np.allclose(np.linalg.norm(b.reshape(200, -1), axis=1), 1)
    assert np.all(b[:, ~layout] == 0)
    A = dcdm.assemble(layout)
    vals, vecs = np.linalg.eigh(A.toarray())
    coef = dcdm.restrict(layout, b) @ vecs  # spectral content
    low = (coef[:, : len(vals) // 2] ** 2).sum(1).mean()
    assert low > 0.9  # x9 weighting of the low end


def test_lanczos_ritz_pairs_are_eigenpairs_when_the_run_is_full_and_span_the_spectrum_when_short(
    layout,
):
    from pdeml.solvers.dcdm.solver import lanczos_ritz

    A = dcdm.assemble(layout)
    exact = np.linalg.eigvalsh(A.toarray())
    vals, vecs = lanczos_ritz(A, A.shape[0], np.random.default_rng(0))
    # one start vector sees each repeated eigenvalue once: the run stops when the space is spent
    assert len(exact) - 5 <= len(vals) <= len(exact)
    assert np.abs(exact[None, :] - vals[:, None]).min(1).max() < 1e-10
    assert np.linalg.norm(A @ vecs - vecs * vals, axis=0).max() < 1e-8
    assert np.allclose(vecs.T @ vecs, np.eye(len(vals)), atol=1e-10)
    vals, vecs = lanczos_ritz(A, 40, np.random.default_rng(1))
    assert np.allclose(vecs.T @ vecs, np.eye(40), atol=1e-10)
    assert (
        abs(vals[0] - exact[0]) < 1e-3 * exact[0] and abs(vals[-1] - exact[-1]) < 1e-4 * exact[-1]
    )
    # the short run's Ritz values spread over the spectrum, not only its two ends
    mid = (vals > np.quantile(exact, 0.25)) & (vals < np.quantile(exact, 0.75))
    assert mid.sum() >= 10


def test_network_is_resolution_free_and_zero_in_solids(layout):
    net = dcdm.DirectionNet(2)
    for n in (24, 33):
        f = dcdm.obstacles(n, 2, count=3, seed=n)
        q = net(torch.randn(2, n, n), torch.as_tensor(f))
        assert q.shape == (2, n, n) and torch.all(q[:, ~torch.as_tensor(f)] == 0)
    net3 = dcdm.DirectionNet(3)
    f3 = torch.as_tensor(dcdm.obstacles(9, 3, count=2, seed=0))
    assert net3(torch.randn(1, 9, 9, 9), f3).shape == (1, 9, 9, 9)


def test_training_lowers_the_loss(layout):
    net, info = dcdm.train(layout, epochs=6, count=64, batch=8, progress=False, seed=0)
    assert info["loss"][-1] < 0.6 * info["loss"][0]
    torch.manual_seed(0)
    net2, info2 = dcdm.train(layout, epochs=6, count=64, batch=8, progress=False, seed=0)
    assert info2["loss"] == info["loss"]  # seeded: reproducible


def test_image_data_round_trip(tmp_path):
    a, b = np.random.default_rng(0).random((5, 7)), np.random.default_rng(1).random((5, 7))
    back = read_image_data(write_image_data(tmp_path / "f.vti", {"a": a, "b": b}))
    assert np.array_equal(back["a"], a) and np.array_equal(back["b"], b)
    c = np.random.default_rng(2).random((3, 4, 5))
    assert np.array_equal(read_image_data(write_image_data(tmp_path / "g.vti", {"c": c}))["c"], c)


def test_cli_trains_and_solves(tmp_path, capsys):
    out = tmp_path / "dcdm"
    assert (
        cli.main(
            [
                "dcdm",
                "train",
                "--n",
                "16",
                "--epochs",
                "1",
                "--count",
                "16",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    rc = cli.main(
        [
            "dcdm",
            "solve",
            str(out / "dcdm.pt"),
            "--n",
            "20",
            "--layout-seed",
            "1",
            "--rhs",
            "point",
            "--tol",
            "1e-3",
            "--maxiter",
            "3",
            "--out",
            str(tmp_path / "s"),
            "--no-progress",
        ]
    )
    assert rc in (0, 1)  # 1: not converged in 3 steps
    summary = json.loads((tmp_path / "s" / "solve.json").read_text())
    assert summary["iterations"] <= 3 and len(summary["residuals"]) == summary["iterations"] + 1
    fields = read_image_data(tmp_path / "s" / "solution.vti")
    assert set(fields) == {"x", "b", "residual", "fluid"} and fields["x"].shape == (20, 20)
    assert summary["multilevel"] == "auto"
    assert (tmp_path / "s" / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    histories = {}
    for mode in ("16", "off"):  # the cycle on 40^2 -> 20^2 changes the directions
        assert cli.main(
            [
                "dcdm",
                "solve",
                str(out / "dcdm.pt"),
                "--n",
                "40",
                "--maxiter",
                "2",
                "--multilevel",
                mode,
                "--out",
                str(tmp_path / mode),
                "--no-progress",
            ]
        ) in (0, 1)
        histories[mode] = json.loads((tmp_path / mode / "solve.json").read_text())["residuals"]
    assert len(histories["16"]) == 3 and histories["16"][0] == histories["off"][0]
    assert histories["16"][1:] != histories["off"][1:]
    assert (
        cli.main(["dcdm", "solve", str(out / "dcdm.pt"), "--multilevel", "yes", "--no-progress"])
        == 2
    )
    # the user's own system: a saved scipy matrix on a masked grid, b over the unknowns
    import scipy.sparse as sp

    fluid = dcdm.obstacles(24, 2, count=3, seed=5)
    A = dcdm.assemble(fluid) * 2.0  # not the CLI's own layout or scale
    sp.save_npz(tmp_path / "A.npz", A)
    np.save(tmp_path / "mask.npy", fluid)
    bvec = np.random.default_rng(0).standard_normal(int(fluid.sum()))
    np.save(tmp_path / "b.npy", bvec)
    rc = cli.main(
        [
            "dcdm",
            "solve",
            str(out / "dcdm.pt"),
            "--matrix",
            str(tmp_path / "A.npz"),
            "--fluid",
            str(tmp_path / "mask.npy"),
            "--b",
            str(tmp_path / "b.npy"),
            "--tol",
            "1e-8",
            "--maxiter",
            "400",
            "--out",
            str(tmp_path / "u"),
            "--no-progress",
        ]
    )
    x = read_image_data(tmp_path / "u" / "solution.vti")["x"]
    assert rc == 0 and np.allclose(x[fluid], spla.spsolve(A.tocsc(), bvec), atol=1e-6)
    assert (
        cli.main(
            [
                "dcdm",
                "train",
                "--matrix",
                str(tmp_path / "A.npz"),
                "--fluid",
                str(tmp_path / "mask.npy"),
                "--epochs",
                "1",
                "--count",
                "16",
                "--out",
                str(tmp_path / "t"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "t" / "train.json").read_text())["grid"] == [24, 24]
    assert dcdm.load(tmp_path / "t" / "dcdm.pt").trained_on == (24, 24)
    matrix = [
        "dcdm",
        "solve",
        str(out / "dcdm.pt"),
        "--matrix",
        str(tmp_path / "A.npz"),
        "--no-progress",
    ]
    assert (
        cli.main(matrix + ["--fluid", str(tmp_path / "mask.npy"), "--grid", "24", "24"]) == 2
    )  # not both
    assert cli.main(matrix) == 2  # nor neither
    assert (
        cli.main(
            ["dcdm", "solve", str(out / "dcdm.pt"), "--b", str(tmp_path / "b.npy"), "--no-progress"]
        )
        == 2
    )
    assert cli.main(["dcdm", "solve", str(tmp_path / "nope.pt"), "--no-progress"]) == 2


def test_resume_continues_with_more_epochs_and_refuses_other_training_data(tmp_path, capsys):
    """``dcdm train --resume`` trains on: more epochs continue the run (one more epoch's loss in
    train.json), while other data settings (--seed, --count, --n) would train the saved network
    on other right-hand sides and are refused, naming what differs; nothing is written then."""
    out = tmp_path / "dcdm"
    base = [*"dcdm train --n 16 --count 16 --ritz 16 --no-progress --out".split(), str(out)]
    assert cli.main([*base, "--epochs", "1"]) == 0
    assert json.loads((out / "run.json").read_text())["settings"]["count"] == 16
    assert cli.main([*base, "--epochs", "2", "--resume"]) == 0
    assert len(json.loads((out / "train.json").read_text())["loss"]) == 2
    before = (out / "dcdm.pt").read_bytes()
    capsys.readouterr()
    for change in (["--seed", "3"], ["--count", "32"]):
        assert cli.main([*base, "--epochs", "3", "--resume", *change]) == 2
        err = capsys.readouterr().err
        assert f"'{change[0][2:]}': {{'saved'" in err and "other settings" in err
    assert (out / "dcdm.pt").read_bytes() == before


def test_ic0_matches_a_on_its_pattern_and_is_exact_cholesky_without_fill():
    from pdeml.solvers.dcdm.baselines import ic0, ic0_preconditioner, pcg

    A = dcdm.assemble(dcdm.obstacles(12, 2, count=2, seed=0))
    L = ic0(A)
    LLt = (L @ L.T).tocsr()
    pattern = A != 0
    assert np.allclose(LLt[pattern], A[pattern], atol=1e-12)  # exact on the pattern of A
    tri = dcdm.assemble(np.ones((1, 30), bool))  # tridiagonal: no fill -> Cholesky
    assert np.allclose(ic0(tri).toarray(), np.linalg.cholesky(tri.toarray()), atol=1e-12)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    plain, pre = pcg(A, b, None, 1e-8), pcg(A, b, ic0_preconditioner(A), 1e-8)
    assert pre["converged"] and pre["iterations"] < plain["iterations"]


def test_stall_safeguard_rescues_a_network_that_repeats_itself(layout):
    A = dcdm.GridPoisson(layout)
    b = rhs("bump", layout)
    stuck = Fixed(torch.as_tensor(rhs("noise", layout))[None].float())  # the same q every step
    off = dcdm.solve(A, b, stuck, tol=1e-6, maxiter=200, stall=None)
    on = dcdm.solve(A, b, stuck, tol=1e-6, maxiter=200)
    assert not off.converged and off.fallbacks == 0
    assert on.converged and on.fallbacks > 0


def test_after_a_safeguard_step_the_network_is_tried_again(layout):
    """One useless network step, one q = r step, then an exact network: converged at step 3.
    (The former safeguard stayed on q = r until a q = r step itself gained 10%: 5 steps and 3
    fallbacks here.)"""
    As = dcdm.assemble(layout).tocsc()

    class FirstUselessThenExact(torch.nn.Module):
        calls = 0

        def forward(self, r, fluid):
            self.calls += 1
            if self.calls == 1:
                q = torch.zeros_like(r)
                q[0, 0, 0] = 1.0  # one corner cell
                return q * fluid
            x = spla.spsolve(As, dcdm.restrict(layout, r[0].double().numpy()))
            return torch.as_tensor(dcdm.prolong(layout, x[None]))

    A = dcdm.GridPoisson(layout)
    out = dcdm.solve(A, rhs("bump", layout), FirstUselessThenExact(), tol=1e-6, maxiter=50)
    assert out.converged and out.iterations == 3 and out.fallbacks == 1


def test_smooth_training_rhs_live_in_the_low_spectrum_and_bad_fractions_are_refused(layout):
    b = dcdm.training_rhs(layout, 40, ritz=200, smooth=1.0, seed=2)
    A = dcdm.assemble(layout)
    vals, vecs = np.linalg.eigh(A.toarray())
    coef = dcdm.restrict(layout, b) @ vecs
    low = (coef[:, : len(vals) // 10] ** 2).sum(1)  # the lowest 10% of the modes
    assert low.min() > 0.99
    mixed = (
        dcdm.restrict(layout, dcdm.training_rhs(layout, 40, ritz=200, smooth=0.0, seed=2)) @ vecs
    )
    assert (mixed[:, : len(vals) // 10] ** 2).sum(1).mean() < 0.5
    with pytest.raises(ValueError, match="smooth"):
        dcdm.training_rhs(layout, 4, smooth=1.5)


def test_bad_matrix_files_and_a_matrix_given_as_the_checkpoint_are_named(tmp_path, capsys):
    """A missing --matrix (was a raw errno), an object array as --b (needs pickle), and a matrix
    passed where the checkpoint goes (the fix said "delete it and train again": the user's
    matrix) all name the flag, the file and what it should hold."""
    import scipy.sparse as sp

    A = tmp_path / "A.npz"
    sp.save_npz(A, sp.identity(16, format="csr"))
    solve = ["dcdm", "solve"]
    common = ["--grid", "4", "4", "--no-progress", "--out", str(tmp_path / "s")]
    assert cli.main([*solve, str(A), "--matrix", str(A), *common]) == 2
    err = capsys.readouterr().err
    assert "not one; a matrix goes to --matrix" in err and "delete" not in err
    net = tmp_path / "net"
    args = ["dcdm", "train", "--n", "16", "--epochs", "1", "--count", "8", "--ritz", "8"]
    assert cli.main([*args, "--no-progress", "--out", str(net)]) == 0
    ckpt_file = str(net / "dcdm.pt")
    assert cli.main([*solve, ckpt_file, "--matrix", str(tmp_path / "none.npz"), *common]) == 2
    assert "--matrix=" in capsys.readouterr().err
    obj = tmp_path / "b.npy"
    np.save(obj, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert cli.main([*solve, ckpt_file, "--matrix", str(A), "--b", str(obj), *common]) == 2
    err = capsys.readouterr().err
    assert "--b=" in err and "cannot be read as a .npy vector" in err and "Traceback" not in err
