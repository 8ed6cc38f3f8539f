"""Multilevel DCDM: the multigrid cycle that carries residuals to the network's grid and back."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from pdeml.solvers import dcdm
from pdeml.solvers.dcdm.cli import rhs
from pdeml.solvers.dcdm.multilevel import Cycle, coarsen


def refine(fluid, times):
    return np.kron(fluid, np.ones((times,) * fluid.ndim, dtype=int)).astype(bool)


class ExactCoarse(torch.nn.Module):
    """A stand-in for a perfect network: solves the system on the grid it is given."""

    def __init__(self):
        super().__init__()
        self.dtype_carrier = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.calls = []

    def forward(self, r, fluid):
        f = fluid.numpy()
        self.calls.append(f.shape)
        x = spla.spsolve(dcdm.assemble(f).tocsc(), dcdm.restrict(f, r[0].numpy()))
        return torch.as_tensor(dcdm.prolong(f, x[None]))


def test_coarsening_halves_the_grid_and_keeps_every_fluid_cell_connected_to_the_wall():
    fluid = dcdm.obstacles(40, 2, count=6, seed=1)
    coarse = coarsen(torch.as_tensor(fluid))
    assert coarse.shape == (20, 20)
    assert np.array_equal(coarse.numpy(), dcdm.wall_connected(coarse.numpy()))
    exact = refine(dcdm.obstacles(16, 2, count=4, seed=0), 2)  # refined layout: recovered exactly
    assert np.array_equal(coarsen(torch.as_tensor(exact)).numpy(), exact[::2, ::2])
    assert coarsen(torch.as_tensor(np.ones((9, 9, 9), bool))).shape == (
        5,
        5,
        5,
    )  # odd sides round up


def test_with_an_exact_coarse_solve_the_w_cycle_count_stays_flat_where_v_grows_and_cg_doubles():
    """An exact solve on the 16^2 grid at the bottom of the cycle, 32^2 to 128^2. Piecewise-
    constant prolongation and block-mean restriction: a V-cycle loses about three iterations per
    level (11, 14, 17 measured), a W-cycle none (11, 12, 12); CG's count doubles."""
    base = dcdm.obstacles(16, 2, count=3, seed=0)
    counts, cg = {1: [], 2: []}, []
    for times in (2, 4, 8):
        fluid = refine(base, times)
        A = dcdm.GridPoisson(fluid)
        b = rhs("noise", fluid)
        ref = spla.spsolve(dcdm.assemble(fluid).tocsc(), dcdm.restrict(fluid, b))
        for corrections in (1, 2):
            net = ExactCoarse()
            out = dcdm.solve(
                A, b, net, tol=1e-8, maxiter=200, multilevel=16, stall=None, corrections=corrections
            )
            assert out.converged and set(net.calls) == {(16, 16)}
            assert len(net.calls) == out.iterations * corrections ** (
                len(Cycle(A, net, 16).levels) - 1
            )
            assert np.allclose(
                dcdm.restrict(fluid, out.x.numpy()), ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max()
            )
            counts[corrections].append(out.iterations)
        cg.append(dcdm.solve(A, b, None, tol=1e-8, maxiter=5000).iterations)
    assert max(counts[2]) <= 13 and max(counts[2]) - min(counts[2]) <= 2, counts
    assert counts[1][2] - counts[1][0] >= 4, counts  # the V-cycle does degrade
    assert cg[2] > 3 * cg[0], cg


def test_the_cycle_works_in_3d_and_on_odd_sides():
    fluid = dcdm.obstacles(13, 3, count=2, seed=0)  # 13 -> 7 (ceil)
    A = dcdm.GridPoisson(fluid)
    net = ExactCoarse()
    out = dcdm.solve(A, rhs("bump", fluid), net, tol=1e-8, maxiter=100, multilevel=8)
    assert out.converged and out.iterations < 20 and set(net.calls) == {(7, 7, 7)}
    zero = Cycle(A, dcdm.DirectionNet(3, levels=2), 8)(
        torch.zeros(1, 13, 13, 13, dtype=torch.float64)
    )
    assert torch.equal(zero, torch.zeros_like(zero))  # no 0/0 on a zero residual


def test_a_trained_network_keeps_its_count_at_four_times_its_grid(tmp_path):
    layout = dcdm.obstacles(16, 2, count=3, seed=0)
    net, info = dcdm.train(
        layout, epochs=30, count=128, batch=8, progress=False, seed=0, checkpoint=tmp_path / "n.pt"
    )
    assert net.trained_on == (16, 16) and dcdm.load(tmp_path / "n.pt").trained_on == (16, 16)
    A16 = dcdm.GridPoisson(layout)
    fine = refine(layout, 4)
    A64 = dcdm.GridPoisson(fine)
    own = dcdm.solve(A16, rhs("bump", layout), net, tol=1e-6, maxiter=500).iterations
    plain = dcdm.solve(A64, rhs("bump", fine), net, tol=1e-6, maxiter=500)
    ml = dcdm.solve(A64, rhs("bump", fine), net, tol=1e-6, maxiter=500, multilevel="auto")
    assert ml.converged and ml.iterations <= own + 5 and ml.iterations < plain.iterations, (
        own,
        ml.iterations,
        plain.iterations,
    )
    same = dcdm.solve(A16, rhs("bump", layout), net, tol=1e-6, maxiter=500, multilevel="auto")
    assert (
        same.residuals == dcdm.solve(A16, rhs("bump", layout), net, tol=1e-6, maxiter=500).residuals
    )


def test_bad_multilevel_arguments_are_clear_errors():
    fluid = dcdm.obstacles(16, 2, count=2, seed=0)
    A = dcdm.GridPoisson(fluid)
    with pytest.raises(ValueError, match="net=None.*coarse solver.*Fix"):
        dcdm.solve(A, rhs("bump", fluid), None, multilevel=8)
    with pytest.raises(ValueError, match="multilevel='auto'.*training grid.*Fix"):
        Cycle(A, dcdm.DirectionNet(2), "auto")
    with pytest.raises(ValueError, match="multilevel=0"):
        Cycle(A, dcdm.DirectionNet(2), 0)
    with pytest.raises(ValueError, match="too small for the network's 4 pooling levels.*Fix"):
        dcdm.solve(A, rhs("bump", fluid), dcdm.DirectionNet(2), multilevel=8)  # 16 -> 8: 8, 4, 2, 1
    with pytest.raises(ValueError, match="sweeps=0"):
        Cycle(A, dcdm.DirectionNet(2), 8, sweeps=0)


def variable_coefficient(n, seed=0):
    """5-point -div(k grad) on an n x n grid, Dirichlet walls, smooth k in [0.5, 1.5] on the
    faces."""
    import scipy.sparse as sp

    d1 = sp.diags([np.ones(n), -np.ones(n)], [0, -1], shape=(n + 1, n))  # face differences
    eye = sp.identity(n)
    dx, dy = sp.kron(d1, eye), sp.kron(eye, d1)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 2)
    fx = np.linspace(0, 1, n + 1)
    kx = 1 + 0.5 * np.sin(2 * np.pi * fx[:, None] + phase[0]) * np.cos(
        2 * np.pi * np.linspace(0, 1, n)[None] + phase[1]
    )
    ky = kx.T
    return (dx.T @ sp.diags(kx.ravel()) @ dx + dy.T @ sp.diags(ky.ravel()) @ dy).tocsr()


def test_matrix_operator_equals_grid_poisson_on_its_assembled_matrix():
    fluid = dcdm.obstacles(20, 2, count=3, seed=4)
    x = torch.randn(3, 20, 20, dtype=torch.float64) * torch.as_tensor(fluid)
    got = dcdm.MatrixOperator(dcdm.assemble(fluid), fluid)(x)
    assert torch.allclose(got, dcdm.GridPoisson(fluid)(x), atol=1e-12)
    fluid3 = dcdm.obstacles(7, 3, count=2, seed=0)
    x3 = torch.randn(1, 7, 7, 7, dtype=torch.float64) * torch.as_tensor(fluid3)
    assert torch.allclose(
        dcdm.MatrixOperator(dcdm.assemble(fluid3), fluid3)(x3),
        dcdm.GridPoisson(fluid3)(x3),
        atol=1e-12,
    )


def test_a_users_sparse_matrix_is_solved_in_the_shape_it_was_given():
    """A variable-coefficient matrix DCDM did not assemble: CG (net=None) and the cycle with an
    exact Poisson coarse solve both reach spsolve's answer; vectors in, vectors out."""
    n = 64
    A = variable_coefficient(n)
    b = np.random.default_rng(1).standard_normal(n * n)
    ref = spla.spsolve(A.tocsc(), b)
    cg = dcdm.solve(A, b, None, grid=(n, n), tol=1e-10, maxiter=5000)
    assert cg.x.shape == (n * n,) and np.allclose(
        cg.x.numpy(), ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max()
    )
    ml = dcdm.solve(A, b, ExactCoarse(), grid=(n, n), tol=1e-10, maxiter=200, multilevel=16)
    assert ml.converged and np.allclose(ml.x.numpy(), ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())
    assert ml.iterations < cg.iterations / 5, (ml.iterations, cg.iterations)
    on_grid = dcdm.solve(A, b.reshape(n, n), None, grid=(n, n), tol=1e-10, maxiter=5000)
    assert on_grid.x.shape == (n, n) and np.allclose(
        on_grid.x.numpy().ravel(), cg.x.numpy(), atol=1e-12
    )


def test_matrix_operator_refuses_what_it_cannot_solve():
    import scipy.sparse as sp

    A = variable_coefficient(8)
    with pytest.raises(ValueError, match="grid=None.*required with a scipy sparse matrix.*Fix"):
        dcdm.solve(A, np.ones(64), None)
    with pytest.raises(ValueError, match="grid=.*does not match the 64 x 64 matrix.*Fix"):
        dcdm.MatrixOperator(A, (8, 9))
    with pytest.raises(ValueError, match="matrix=.*is not symmetric.*Fix"):
        dcdm.MatrixOperator(A + sp.triu(A, 1), (8, 8))
    with pytest.raises(ValueError, match="matrix=.*not a square scipy sparse matrix.*Fix"):
        dcdm.MatrixOperator(A.toarray(), (8, 8))
    with pytest.raises(ValueError, match="b=.*fits neither the grid.*Fix"):
        dcdm.solve(A, np.ones(65), None, grid=(8, 8))
    with pytest.raises(ValueError, match="grid=.*only for scipy sparse matrices.*Fix"):
        dcdm.solve(dcdm.GridPoisson(np.ones((8, 8), bool)), np.ones(64), None, grid=(8, 8))


def test_training_on_a_users_matrix_learns_that_matrix():
    """train() on a MatrixOperator: Lanczos data from the user's matrix, the loss falls, and the
    network then beats CG on that matrix (trained_on is its grid). Over seeds: one seed's count
    is noisy (seeds 1-5 gave 9 to 12 iterations, seed 0 gave 22 before training ran under fit
    and 39 after, CG 53), so the median of three seeds is held to the bound."""
    n = 16
    A = dcdm.MatrixOperator(variable_coefficient(n, seed=2), (n, n))
    b = np.random.default_rng(3).standard_normal(n * n)
    cg = dcdm.solve(A, b, None, tol=1e-6, maxiter=500)
    ref = spla.spsolve(A.matrix.tocsc(), b)
    counts = []
    for seed in (0, 1, 2):
        net, info = dcdm.train(A, epochs=30, count=128, batch=8, progress=False, seed=seed)
        assert info["loss"][-1] < 0.3 * info["loss"][0] and net.trained_on == (n, n), info["loss"][
            ::10
        ]
        out = dcdm.solve(A, b, net, tol=1e-6, maxiter=500)
        assert out.converged and np.allclose(out.x.numpy(), ref, atol=1e-5 * np.abs(ref).max())
        counts.append(out.iterations)
    assert np.median(counts) < 0.6 * cg.iterations, (counts, cg.iterations)
